"""Boot real Debian 12/13 machines as systemd-nspawn containers for tests.

The towers' roles are tested against a booted Debian with systemd, sshd and
apt, reached over real SSH, because only that shows what a tower operator
will see. See ``fixtures.py`` for the pytest entry points.
"""

from tests.harness.container import ContainerSpec, DebianContainer
from tests.harness.prereqs import Prerequisites, check_prerequisites
from tests.harness.rootfs import BASE_PACKAGES, RELEASES, cached_rootfs

__all__ = [
    "BASE_PACKAGES",
    "RELEASES",
    "ContainerSpec",
    "DebianContainer",
    "Prerequisites",
    "cached_rootfs",
    "check_prerequisites",
]

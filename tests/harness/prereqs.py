"""What a host needs before it can boot test containers, and why it cannot.

Tests that need a container skip with the exact missing piece on a laptop, but
fail in CI (env ``CI`` set): there a missing prerequisite is a broken pipeline,
not a reason to report green. ``scripts/ci-container-prereqs.sh`` installs and
starts everything checked here.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass

#: apt-cacher-ng: every .deb the containers fetch goes through it and is cached.
APT_PROXY_PORT = 3142
#: tinyproxy: https for anything that is not a .deb (optional).
HTTPS_PROXY_PORT = 8888

REQUIRED_COMMANDS = {
    "debootstrap": "apt-get install debootstrap",
    "systemd-nspawn": "apt-get install systemd-container",
    "nsenter": "apt-get install util-linux",
    "ip": "apt-get install iproute2",
    "ssh": "apt-get install openssh-client",
    "ssh-keygen": "apt-get install openssh-client",
}


def port_listening(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Prerequisites:
    """The outcome of checking the host: ``ok`` or the reasons it is not."""

    problems: tuple[str, ...]
    https_proxy: bool

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        fix = "run scripts/ci-container-prereqs.sh as root"
        return "container tests need: " + "; ".join(self.problems) + f" ({fix})"


def check_prerequisites() -> Prerequisites:
    """Check root, the commands the harness runs and the package proxy."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("root (veth links and systemd-nspawn need it)")
    for command, install in REQUIRED_COMMANDS.items():
        if shutil.which(command) is None:
            problems.append(f"{command} ({install})")
    if not port_listening(APT_PROXY_PORT):
        problems.append(f"apt-cacher-ng listening on 127.0.0.1:{APT_PROXY_PORT}")
    return Prerequisites(problems=tuple(problems), https_proxy=port_listening(HTTPS_PROXY_PORT))


def in_ci() -> bool:
    """CI sets ``CI`` (to ``true`` on most systems); any non-empty value but 0/false counts."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

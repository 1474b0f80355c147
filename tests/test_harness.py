"""The container harness boots real Debian 12 and 13 that Ansible can use.

If these fail, every tower test would fail for reasons unrelated to the roles;
they pin down what the tower tests take for granted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import DebianContainer
from tests.harness.rootfs import RELEASES

pytestmark = pytest.mark.container


def test_container_runs_the_requested_debian_release_under_systemd(
    debian_container: DebianContainer, debian_release: str
) -> None:
    version = debian_container.run("cut -d. -f1 /etc/debian_version", check=True).stdout.strip()
    assert version == RELEASES[debian_release]
    init = debian_container.run("ps -p 1 -o comm=", check=True).stdout.strip()
    assert init == "systemd"
    state = debian_container.run("systemctl is-system-running --wait", timeout=120).stdout.strip()
    assert state in ("running", "degraded"), debian_container.run("systemctl --failed").stdout


def test_ssh_reaches_the_admin_account_with_passwordless_sudo(debian_container: DebianContainer) -> None:
    result = debian_container.ssh("sudo -n id -u && hostname -I", user="admin")
    assert result.returncode == 0, result.stderr
    uid, addresses = result.stdout.split("\n", 1)
    assert uid == "0"
    assert debian_container.ip in addresses.split()


def test_apt_fetches_packages_through_the_host_proxy(debian_container: DebianContainer) -> None:
    # unrar is small and in non-free: the component the NVIDIA driver comes from.
    install = debian_container.run(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends unrar"
        " && dpkg-query -W -f='${Status}' unrar",
        timeout=600,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr
    assert install.stdout.endswith("install ok installed")
    proxy_log = Path("/var/log/apt-cacher-ng/apt-cacher.log").read_text(errors="replace")
    served = [line for line in proxy_log.splitlines() if f"|{debian_container.ip}|" in line]
    assert any("unrar" in line for line in served), "apt-cacher-ng never served the container's download"


def test_poweroff_inside_the_container_is_detected(debian_container: DebianContainer) -> None:
    debian_container.run("systemctl poweroff --no-block", check=True)
    debian_container.wait_for_poweroff(timeout=60)
    assert not debian_container.running

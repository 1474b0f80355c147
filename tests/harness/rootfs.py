"""Build Debian root file systems with debootstrap, once per package list.

A minbase debootstrap takes about a minute; a test should pay that once, so
each (release, package list) is built into
``/var/cache/nomadrig-tests/rootfs/<release>-<hash>/`` and every container
boots from a copy of it (``cp -a --reflink=auto``), which is thrown away with
the container. Downloads go through the host's apt-cacher-ng, so even a
rebuild reads .debs from its cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.harness.prereqs import APT_PROXY_PORT

#: Debian releases the towers support, with their version numbers.
RELEASES = {"bookworm": "12", "trixie": "13"}

#: What every test container needs: systemd as init, sshd for Ansible,
#: python3 (+ apt bindings, which Ansible's apt module would otherwise
#: install on first use), sudo for a non-root admin account; plus what any
#: installed Debian has but minbase lacks (time zone data, ps, modprobe),
#: so the roles meet the machine a tower owner actually has.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "ca-certificates",
    "tzdata",
    "procps",
    "kmod",
)

DEBIAN_MIRROR = os.environ.get("NOMADRIG_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CACHE_DIR = Path(os.environ.get("NOMADRIG_TEST_CACHE", "/var/cache/nomadrig-tests"))
COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")


def sources_list(release: str, mirror: str = DEBIAN_MIRROR, components: Iterable[str] = COMPONENTS) -> str:
    """The apt sources of a fresh Debian install, by default with all components enabled.

    non-free is where the NVIDIA driver and CUDA toolkit live; the roles are
    expected to enable it themselves on a real tower, but a stock installer
    with firmware already has non-free-firmware and often the rest.
    """
    components = " ".join(components)
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    return (
        f"deb {mirror} {release} {components}\n"
        f"deb {mirror} {release}-updates {components}\n"
        f"deb {security} {release}-security {components}\n"
    )


def rootfs_key(release: str, packages: Iterable[str]) -> str:
    """The cache key: release plus a hash of everything that shapes the tree."""
    material = "\n".join([release, DEBIAN_MIRROR, *sorted(set(packages)), sources_list(release)])
    return f"{release}-{hashlib.sha256(material.encode()).hexdigest()[:12]}"


def cached_rootfs(release: str, extra_packages: Iterable[str] = ()) -> Path:
    """Return a ready root file system for release, building it if needed.

    Safe under parallel test runs: each tree is built under its own lock file
    (different trees build in parallel) and published by an atomic rename
    only once complete, so a half-built tree is never booted.
    """
    if release not in RELEASES:
        raise ValueError(f"release {release!r} is not supported; choose one of {sorted(RELEASES)}")
    packages = sorted({*BASE_PACKAGES, *extra_packages})
    root = CACHE_DIR / "rootfs"
    root.mkdir(parents=True, exist_ok=True)
    target = root / rootfs_key(release, packages)
    if (target / "etc" / "os-release").exists():
        return target
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "etc" / "os-release").exists():
            return target
        building = target.with_name(target.name + ".building")
        if building.exists():
            shutil.rmtree(building)
        _debootstrap(release, packages, building)
        building.rename(target)
    return target


def _debootstrap(release: str, packages: list[str], directory: Path) -> None:
    env = {**os.environ, "http_proxy": f"http://127.0.0.1:{APT_PROXY_PORT}"}
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--components={','.join(COMPONENTS)}",
        f"--include={','.join(packages)}",
        release,
        str(directory),
        DEBIAN_MIRROR,
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        log = directory / "debootstrap" / "debootstrap.log"
        detail = log.read_text(errors="replace")[-3000:] if log.exists() else result.stderr[-3000:]
        raise RuntimeError(f"debootstrap {release} failed (exit {result.returncode}):\n{detail}")
    (directory / "etc" / "apt" / "sources.list").write_text(sources_list(release))
    # Start from an empty package cache and lists: the container's first
    # `apt-get update` goes through the proxy like a real tower's would.
    subprocess.run(["chroot", str(directory), "apt-get", "clean"], check=True)
    shutil.rmtree(directory / "var" / "lib" / "apt" / "lists", ignore_errors=True)
    (directory / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True)

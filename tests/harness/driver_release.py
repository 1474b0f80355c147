"""A stand-in for Debian publishing the next build of the NVIDIA driver's branch, and a newer branch.

Built in the test, on the host, from what the converged tower has installed:
every installed package of the driver's two source packages re-versioned to
the next build number of the same branch (files unchanged, control files
re-versioned consistently), and empty packages named like the archive's for a
newer branch; signed with a throwaway key and added to the tower's sources.
Its Release file can be dressed as another archive (origin, label, codename),
e.g. Debian's security archive for unattended-upgrades' Origins-Pattern.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.harness.container import DebianContainer
from tests.harness.standin_repo import STANDIN_TAG, build_signed_repo, empty_package, reversion
from tests.harness.towers import ConvergedTower

#: Debian's source packages of the driver and its open kernel module: what the role pins.
DRIVER_SOURCES = ("nvidia-graphics-drivers", "nvidia-open-gpu-kernel-modules")
REPO_IN_CONTAINER = "/srv/nomadrig-standin"
SOURCES_FILE = "/etc/apt/sources.list.d/nomadrig-standin.sources"
PIN_FILE = "/etc/apt/preferences.d/nomadrig-nvidia-driver"


@dataclass(frozen=True)
class StandinRelease:
    """What the stand-in archive published, against what the tower ran before."""

    before: dict[str, str]  # package -> installed version
    after: dict[str, str]  # package -> the stand-in's version of the same branch
    other_branch: str  # version of the empty packages of a newer branch
    other_branch_packages: tuple[str, ...]


def next_build(upstream: str) -> str:
    """535.309.01 -> 535.309.02: the next build number of the same branch, zero padding kept."""
    head, _, last = upstream.rpartition(".")
    return f"{head}.{int(last) + 1:0{len(last)}d}"


def branch_packages(container: DebianContainer, branch: str) -> dict[str, str]:
    """Installed packages of the driver's source packages at branch: name -> version."""
    listing = container.run("dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Version}|${source:Package}\\n'",
                            check=True).stdout
    rows = [line.split("|") for line in listing.splitlines()]
    return {name: version for status, name, version, source in rows
            if status.startswith("ii") and source in DRIVER_SOURCES and version.startswith(f"{branch}.")}


def exact_versions(packages: dict[str, str]) -> str:
    """apt's ``name=version`` arguments for packages, quoted for the container's shell."""
    return shlex.join(f"{name}={version}" for name, version in sorted(packages.items()))


def publish_standin_release(container: DebianContainer, branch: str, work: Path, *, origin: str = STANDIN_TAG,
                            label: str = STANDIN_TAG, codename: str | None = None) -> StandinRelease:
    """Build and sign the stand-in archive on the host, place it in the container, add it as a source.

    ``origin``, ``label`` and ``codename`` head its Release file: what apt pins and unattended-upgrades'
    Origins-Pattern select on.
    """
    before = branch_packages(container, branch)
    assert before, "the converged tower has no driver packages to upgrade"
    download = "/var/tmp/nomadrig-standin-debs"
    pins = exact_versions(before)
    container.run(f"rm -rf {download} && mkdir -p {download} && cd {download} && apt-get download -q {pins}",
                  timeout=600, check=True)
    versions: dict[str, str] = {}
    for version in set(before.values()):
        upstream, _, revision = version.partition("-")
        versions[version] = f"{next_build(upstream)}-{revision}+{STANDIN_TAG}1"
        versions[upstream] = next_build(upstream)
    built = work / "debs"
    built.mkdir(parents=True)
    debs = [reversion(deb, built, versions) for deb in sorted((container.rootfs / download.lstrip("/")).glob("*.deb"))]
    other = f"{int(branch) + 15}.999.01-1+{STANDIN_TAG}1"
    modules = tuple(sorted(name for name in before if name.endswith("kernel-dkms")))
    other_packages = ("nvidia-driver", *modules)
    debs += [empty_package(built, name, other, source=DRIVER_SOURCES[1] if "open" in name else DRIVER_SOURCES[0])
             for name in other_packages]
    repo = build_signed_repo(debs, container.rootfs / REPO_IN_CONTAINER.lstrip("/"), work / "gnupg",
                             origin=origin, label=label, codename=codename)
    keyring = f"{REPO_IN_CONTAINER}.gpg"
    (container.rootfs / SOURCES_FILE.lstrip("/")).write_text(repo.sources_entry(REPO_IN_CONTAINER, keyring))
    container.run(f"rm -rf {download} && apt-get update -q", timeout=600, check=True)
    after = {name: versions[version] for name, version in before.items()}
    return StandinRelease(before, after, other, other_packages)


def hold_other_upgrades(container: DebianContainer, release: StandinRelease) -> tuple[str, ...]:
    """Hold every upgradable package the stand-in did not publish; return what was held.

    A tower booted from a fresh debootstrap lags Debian's security archive by
    every update since the point release; unattended-upgrades would install
    all of them (minutes, and more every month) before a test could read what
    it did with the driver. Held packages are left out of its run, the
    stand-in's are not.
    """
    listing = container.run("apt list --upgradable 2>/dev/null", check=True).stdout
    upgradable = {line.split("/", 1)[0] for line in listing.splitlines() if "/" in line}
    held = tuple(sorted(upgradable - set(release.after) - set(release.other_branch_packages)))
    if held:
        container.run(f"apt-mark hold {shlex.join(held)}", check=True)
    return held


def release_holds(container: DebianContainer, held: tuple[str, ...]) -> None:
    """Undo ``hold_other_upgrades``: only the holds it placed."""
    if held:
        container.run(f"apt-mark unhold {shlex.join(held)}", check=True)


def withdraw_standin_release(tower: ConvergedTower, release: StandinRelease) -> None:
    """Remove the stand-in archive and go back to the real archive's build, as the other tests expect."""
    container = tower.container
    container.run(f"rm -rf {SOURCES_FILE} {REPO_IN_CONTAINER} {REPO_IN_CONTAINER}.gpg && apt-get update -q",
                  timeout=600, check=True)
    pins = exact_versions(release.before)
    container.run(f"DEBIAN_FRONTEND=noninteractive apt-get install -q -y --allow-downgrades {pins}",
                  timeout=900, check=True)
    tower.reapply()

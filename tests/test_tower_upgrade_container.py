"""`nomadrig tower apply --upgrade` takes a newer build of the driver branch, and the pin refuses another branch.

The acceptance test of the driver's update path, in a booted Debian 12 that a
first apply converged (the session's shared tower). A local apt repository,
signed with a throwaway key, stands in for Debian's archive publishing a
security release: it carries every installed package of the driver's two
source packages rebuilt under the next upstream build number of the same
branch (their files unchanged, their control files re-versioned
consistently), and empty packages named like the archive's for a newer
branch. What this proves: the role's choice of build, the apt pin, the
upgrade of the whole branch set in one transaction, the note on a tower that
is behind, and that a newer branch is never installed. What it does not: that
Debian's real next build installs or loads (the container has no GPU and
DKMS builds no module for the host's kernel).

The tower is restored to the archive's build at the end, for the tests after it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from nomadrig import towers
from tests.harness.container import DebianContainer
from tests.harness.standin_repo import STANDIN_TAG, build_signed_repo, empty_package, reversion
from tests.harness.towers import ConvergedTower

pytestmark = [pytest.mark.container, pytest.mark.slow]

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


def publish_standin_release(container: DebianContainer, branch: str, work: Path) -> StandinRelease:
    """Build and sign the stand-in archive on the host, place it in the container, add it as a source."""
    before = branch_packages(container, branch)
    assert before, "the converged tower has no driver packages to upgrade"
    download = "/var/tmp/nomadrig-standin-debs"
    pins = " ".join(shlex.quote(f"{name}={version}") for name, version in sorted(before.items()))
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
    repo = build_signed_repo(debs, container.rootfs / REPO_IN_CONTAINER.lstrip("/"), work / "gnupg")
    keyring = f"{REPO_IN_CONTAINER}.gpg"
    (container.rootfs / SOURCES_FILE.lstrip("/")).write_text(repo.sources_entry(REPO_IN_CONTAINER, keyring))
    container.run(f"rm -rf {download} && apt-get update -q", timeout=600, check=True)
    after = {name: versions[version] for name, version in before.items()}
    return StandinRelease(before, after, other, other_packages)


def withdraw_standin_release(tower: ConvergedTower, release: StandinRelease) -> None:
    """Remove the stand-in archive and go back to the real archive's build, as the other tests expect."""
    container = tower.container
    container.run(f"rm -rf {SOURCES_FILE} {REPO_IN_CONTAINER} {REPO_IN_CONTAINER}.gpg && apt-get update -q",
                  timeout=600, check=True)
    pins = " ".join(shlex.quote(f"{name}={version}") for name, version in sorted(release.before.items()))
    container.run(f"DEBIAN_FRONTEND=noninteractive apt-get install -q -y --allow-downgrades {pins}",
                  timeout=900, check=True)
    tower.reapply()


@pytest.fixture(scope="module")
def standin(converged_tower: ConvergedTower, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinRelease]:
    branch = converged_tower.release.driver_branch
    release = publish_standin_release(converged_tower.container, branch, tmp_path_factory.mktemp("standin"))
    yield release
    withdraw_standin_release(converged_tower, release)


def run(tower: ConvergedTower, mode: towers.Mode = "apply", *, upgrade: bool = False) -> towers.RunReport:
    return towers.run(tower.team, tower.name, mode, replace(tower.options, upgrade=upgrade))


def driver_changes(report: towers.RunReport) -> list[str]:
    return [task for task in report.changed_tasks if task.startswith("nvidia_driver :")]


def test_without_upgrade_the_tower_keeps_its_build_and_the_run_names_the_newer_one(
    converged_tower: ConvergedTower, standin: StandinRelease
) -> None:
    report = run(converged_tower)
    assert report.succeeded, report.summary()
    assert branch_packages(converged_tower.container, converged_tower.release.driver_branch) == standin.before
    assert driver_changes(report) == [], report.summary()
    module = next(name for name in standin.before if name.endswith("kernel-dkms"))
    newer = [note for note in report.notes if note.startswith("NOTE: NVIDIA driver") and standin.after[module] in note]
    assert newer and "nomadrig tower apply --upgrade" in newer[0], report.notes


def test_check_with_upgrade_shows_the_upgrade_and_changes_nothing(
    converged_tower: ConvergedTower, standin: StandinRelease
) -> None:
    report = run(converged_tower, "check", upgrade=True)
    assert report.succeeded, report.summary()
    assert driver_changes(report) == ["nvidia_driver : Pin Debian's driver packages to the chosen build and the branch"]
    module = next(name for name in standin.before if name.endswith("kernel-dkms"))
    expected = f"NOTE: dry run: --upgrade moves NVIDIA driver {standin.before[module]} to {standin.after[module]}"
    assert any(note.startswith(expected) for note in report.notes), report.notes
    assert branch_packages(converged_tower.container, converged_tower.release.driver_branch) == standin.before


def test_upgrade_takes_the_newer_build_of_the_branch_for_every_package_and_never_the_other_branch(
    converged_tower: ConvergedTower, standin: StandinRelease
) -> None:
    report = run(converged_tower, upgrade=True)
    assert report.succeeded, report.summary()
    branch = converged_tower.release.driver_branch
    assert branch_packages(converged_tower.container, branch) == standin.after
    pin = converged_tower.sh(f"cat {PIN_FILE}")
    upstream = standin.after["nvidia-driver"].partition("-")[0]
    assert f"Pin: version {upstream}-*" in pin, pin
    # The newer branch is in the sources, and apt itself refuses it: priority -1, never the candidate.
    for name in standin.other_branch_packages:
        policy = converged_tower.sh(f"apt-cache policy {name}")
        assert re.search(rf"(?m)^ +{re.escape(standin.other_branch)} -1$", policy), policy
        assert f"Candidate: {standin.after[name]}" in policy, policy
    # Nor does an admin's `apt full-upgrade` take it (only naming its exact version would).
    simulated = converged_tower.sh("apt-get -s -q full-upgrade")
    assert standin.other_branch not in simulated, simulated
    assert not re.search(r"(?m)^Inst (lib)?nvidia", simulated), simulated


def test_a_second_upgrade_changes_nothing(converged_tower: ConvergedTower, standin: StandinRelease) -> None:
    report = run(converged_tower, upgrade=True)
    assert report.succeeded, report.summary()
    assert driver_changes(report) == [], report.summary()
    assert not [note for note in report.notes if note.startswith("NOTE: NVIDIA driver")], report.notes

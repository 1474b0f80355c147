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
from collections.abc import Iterator
from dataclasses import replace

import pytest

from nomadrig import towers
from tests.harness.driver_release import (
    PIN_FILE,
    StandinRelease,
    branch_packages,
    publish_standin_release,
    withdraw_standin_release,
)
from tests.harness.towers import ConvergedTower

pytestmark = [pytest.mark.container, pytest.mark.slow]


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

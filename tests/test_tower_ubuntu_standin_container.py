"""The Ubuntu task files, run end to end: a Debian 12 container dressed as Ubuntu 22.04 and 24.04.

The stand-in (tests/harness/ubuntu_standin.py says exactly what it proves and
what it does not) is a booted Debian 12 whose os-release says Ubuntu, plus a
signed local archive of empty packages with Ubuntu's names, versions and
dependency shapes for the driver branches and the CUDA toolkit that
nomadrig's compatibility data lists for the release, including Ubuntu 24.04's
transitional 535 packages. The tower is the example's RTX 4090 on the release,
with the branch, kernel modules and toolkit nomadrig chooses for it (580 open,
CUDA 11.5 on 22.04 and 12.0 on 24.04, the archive's own).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from nomadrig import towers
from tests.harness.tower_pool import TowerPool
from tests.harness.towers import UBUNTU_STANDIN_TOWERS, ConvergedTower
from tests.harness.ubuntu_standin import STANDIN_TAG

pytestmark = [pytest.mark.container, pytest.mark.slow]


@pytest.fixture(scope="module", params=sorted(UBUNTU_STANDIN_TOWERS), ids=lambda r: UBUNTU_STANDIN_TOWERS[r].os)
def applied(request: pytest.FixtureRequest, tower_pool: TowerPool) -> ConvergedTower:
    """A dressed container of each Ubuntu release after its first apply (started when the session began)."""
    return tower_pool.get(request.param)


def installed(tower: ConvergedTower, pattern: str) -> dict[str, str]:
    """Fully installed packages matching a glob: name -> version."""
    return {name: version for name, (status, version) in tower.packages(pattern).items() if status.startswith("ii")}


def test_ansible_sees_ubuntu_and_the_first_apply_succeeds(applied: ConvergedTower) -> None:
    assert applied.first.succeeded, applied.first.summary()
    # The tree says Ubuntu (the stand-in's dress); the driver package below shows the Ubuntu task files ran.
    facts = applied.container.run("cat /etc/os-release").stdout
    assert f'VERSION_ID="{applied.release.os.removeprefix("ubuntu-")}"' in facts


def test_the_ubuntu_task_files_install_the_server_driver_and_the_archive_toolkit(applied: ConvergedTower) -> None:
    branch = applied.release.driver_branch
    drivers = installed(applied, "nvidia-*")
    wanted = f"nvidia-driver-{branch}-server-open"
    assert wanted in drivers, f"{wanted} not installed; NVIDIA packages: {drivers}"
    assert drivers[wanted].startswith(f"{branch}.") and STANDIN_TAG in drivers[wanted], drivers
    # Its exact-version dependencies came with it; nothing of another branch or of Debian's driver did.
    assert f"nvidia-dkms-{branch}-server-open" in drivers and f"nvidia-utils-{branch}-server" in drivers, drivers
    assert all(version.startswith(f"{branch}.") for name, version in drivers.items() if name != "nvidia-cuda-toolkit"), drivers
    assert "nvidia-driver" not in drivers and f"nvidia-driver-{branch}-server" not in drivers, drivers
    toolkit = drivers.get("nvidia-cuda-toolkit", "")
    assert toolkit.startswith(f"{applied.release.cuda_version}.") and STANDIN_TAG in toolkit, drivers
    # Ubuntu's packages carry the branch in their name: nothing is held.
    assert applied.sh("apt-mark showhold").split() == []


def test_second_apply_changes_nothing(applied: ConvergedTower) -> None:
    report = towers.run(applied.team, applied.name, "apply", applied.options)
    assert report.succeeded, report.summary()
    assert report.changed_tasks == [], report.summary()


def test_check_of_the_bare_machine_succeeds_and_says_what_it_cannot_check_yet(applied: ConvergedTower) -> None:
    """`tower check` ran on the bare container just before the first apply (tests/harness/tower_pool.py)."""
    check = applied.bare_check
    assert check is not None and check.succeeded, check.summary() if check else "no bare check"
    assert "nvidia_driver : Install the NVIDIA driver packages" in check.changed_tasks, check.summary()
    assert any(note.startswith("NOTE: dry run: nvidia-cuda-toolkit is not installed yet") for note in check.notes), check.notes


def test_a_transitional_branch_is_refused_with_the_fix_and_nothing_is_installed(tower_pool: TowerPool) -> None:
    """Ubuntu 24.04 keeps 535 only as transitional packages that pull 580 (22.04 still has a real 535)."""
    noble = tower_pool.get("noble")
    options = replace(noble.options, overrides={**noble.options.overrides, "nvidia_driver_branch": "535"})
    report = towers.run(noble.team, noble.name, "apply", options)
    assert not report.succeeded
    [failure] = report.failed_tasks
    assert failure["task"] == "nvidia_driver : Refuse a transitional package that installs another driver branch"
    message = failure["msg"]
    assert "nvidia-driver-535-server-open is a transitional package" in message, message
    assert "nvidia-driver-580-server-open" in message and "Fix:" in message, message
    assert not [name for name in installed(noble, "*nvidia*535*")], installed(noble, "*nvidia*")
    assert not [task for task in report.changed_tasks if task.startswith("nvidia_driver :")], report.summary()

"""`gpu_stack_updates: unattended`: Debian's unattended-upgrades takes the branch's security build; manual never.

On the session's converged Debian 12 tower, the stand-in archive of
tests/harness/driver_release.py is dressed as Debian's security archive: its
Release says ``Origin: Debian``, ``Label: Debian-Security`` and ``Codename:
<release>-security``, which the Origins-Pattern of Debian's own
50unattended-upgrades selects. The real ``unattended-upgrade`` then runs on
the tower, as its daily timer would.

What this proves: the team field reaches the roles (tower_vars), and the pin
and the blacklist nomadrig writes for each setting make the real
unattended-upgrades leave the driver alone (manual) or take the next build
of its branch for every package together and never the newer branch
(unattended); an apply after that changes nothing. What it does not: that
Debian's next build reaches its security archive (Debian 12's 535.309.01 is
there) or that it loads (no GPU, and DKMS builds no module for the host's
kernel here).

Debian's other pending security updates (everything the fresh debootstrap
lags behind) are held while the module runs: unattended-upgrades would
otherwise spend minutes installing them, which says nothing about the driver.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from nomadrig import towers
from nomadrig.team import Team
from tests.harness.driver_release import (
    PIN_FILE,
    StandinRelease,
    branch_packages,
    hold_other_upgrades,
    publish_standin_release,
    release_holds,
    withdraw_standin_release,
)
from tests.harness.towers import ConvergedTower

pytestmark = [pytest.mark.container, pytest.mark.slow]

BLACKLIST_FILE = "/etc/apt/apt.conf.d/52nomadrig-unattended-upgrades"


@pytest.fixture(scope="module")
def security_release(
    converged_tower: ConvergedTower, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StandinRelease]:
    codename = converged_tower.sh(". /etc/os-release && echo $VERSION_CODENAME").strip()
    release = publish_standin_release(converged_tower.container, converged_tower.release.driver_branch,
                                      tmp_path_factory.mktemp("security"), origin="Debian",
                                      label="Debian-Security", codename=f"{codename}-security")
    held = hold_other_upgrades(converged_tower.container, release)
    yield release
    release_holds(converged_tower.container, held)
    withdraw_standin_release(converged_tower, release)


def with_updates(tower: ConvergedTower, setting: str) -> Team:
    """The tower's team with gpu_stack_updates set: the team file's field, not a role variable."""
    changed = tower.team.towers[0].model_copy(update={"gpu_stack_updates": setting})
    return tower.team.model_copy(update={"towers": [changed]})


def unattended_upgrade(tower: ConvergedTower) -> str:
    """One run of the real unattended-upgrades, as apt's daily timer starts it; its log."""
    return tower.sh("unattended-upgrade -v 2>&1; tail -n 40 /var/log/unattended-upgrades/unattended-upgrades.log || true",
                    timeout=900)


def test_the_archive_stand_in_is_selected_by_debians_own_origins_pattern(
    converged_tower: ConvergedTower, security_release: StandinRelease
) -> None:
    patterns = converged_tower.sh("apt-config dump Unattended-Upgrade::Origins-Pattern")
    assert re.search(r'"origin=Debian,codename=\$\{distro_codename\}-security,label=Debian-Security"', patterns), \
        patterns
    policy = converged_tower.sh("apt-cache policy")
    assert "o=Debian" in policy and "l=Debian-Security" in policy and "-security" in policy, policy


def test_with_manual_updates_unattended_upgrades_leaves_the_driver_alone(
    converged_tower: ConvergedTower, security_release: StandinRelease
) -> None:
    branch = converged_tower.release.driver_branch
    report = towers.run(with_updates(converged_tower, "manual"), converged_tower.name, "apply",
                        converged_tower.options)
    assert report.succeeded and report.changed == 0, report.changed_tasks
    assert '"^nvidia-";' in converged_tower.sh(f"cat {BLACKLIST_FILE}")
    log = unattended_upgrade(converged_tower)
    assert branch_packages(converged_tower.container, branch) == security_release.before, log


def test_with_unattended_updates_it_takes_the_branchs_new_build_for_every_package_and_never_the_newer_branch(
    converged_tower: ConvergedTower, security_release: StandinRelease
) -> None:
    branch = converged_tower.release.driver_branch
    team = with_updates(converged_tower, "unattended")
    report = towers.run(team, converged_tower.name, "apply", converged_tower.options)
    assert report.succeeded, report.summary()
    pin = converged_tower.sh(f"cat {PIN_FILE}")
    assert "Pin-Priority: 1001" not in pin and f"Pin: version {branch}.*\nPin-Priority: 500" in pin, pin
    assert '"^nvidia-";' not in converged_tower.sh(f"cat {BLACKLIST_FILE}")

    log = unattended_upgrade(converged_tower)
    assert branch_packages(converged_tower.container, branch) == security_release.after, log
    for name in security_release.other_branch_packages:
        assert security_release.other_branch not in converged_tower.sh(f"dpkg-query -W {name}"), log

    again = towers.run(team, converged_tower.name, "apply", converged_tower.options)
    assert again.succeeded and again.changed == 0, again.changed_tasks
    assert branch_packages(converged_tower.container, branch) == security_release.after

"""Least privilege for people on a tower, on a booted Debian 13, checked on the system itself.

Only playbooks/access.yml (the base and hardening roles) runs, through
``nomadrig.towers.run`` over real SSH as the installer-style ``admin`` account:
the GPU roles take many minutes and have their own test
(test_tower_container.py). Two nomads get accounts, one of them admin (and
docker user); then the admin leaves the team file, and the next apply must
lock that account (home kept) and take its keys, sudo and docker away; an
apply after that changes nothing.

The container lives for this module only; its tests run in file order, each
stage's fixture applying the team of that stage once.
"""

from __future__ import annotations

import shlex
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nomadrig import towers
from nomadrig.team.load import load_team
from nomadrig.team.model import Team
from tests.harness import ContainerSpec, DebianContainer
from tests.harness.fixtures import WORK_ROOT

pytestmark = [pytest.mark.container, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"
RELEASE = "trixie"
ADMIN, USER, LEAVER_NOTE = "linus", "ada", "data that must survive\n"


@dataclass
class Tower:
    """The booted container, how to reach it, and the figures measured on the way."""

    container: DebianContainer
    options: towers.RunOptions
    seconds: dict[str, float] = field(default_factory=dict)

    def sh(self, command: str) -> str:
        """Run a command inside the container (not over SSH); it must succeed."""
        result = self.container.run(command, timeout=120)
        assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def groups_of(self, user: str) -> set[str]:
        return set(self.sh(f"id -nG {shlex.quote(user)}").split())

    def apply(self, team: Team, stage: str) -> towers.RunReport:
        started = time.monotonic()
        report = towers.run(team, team.towers[0].name, "apply", self.options)
        self.seconds[stage] = round(time.monotonic() - started, 1)
        print(f"\n{stage}: {self.seconds[stage]:.0f} s\n{report.summary()}")
        return report


def team_for(container: DebianContainer, key: Path, nomads_on_tower: list[str]) -> Team:
    """The example team with its tower at the container; linus is the admin and docker user while he is on it."""
    team = load_team(EXAMPLE)
    public = key.with_suffix(".pub").read_text().strip()
    nomads = [n.model_copy(update={"ssh_key": public}) for n in team.nomads if n.name in nomads_on_tower]
    on_tower = [n.name for n in nomads]
    tower = team.towers[0].model_copy(
        update={
            "name": "ci-access",
            "address": container.ip,
            "ssh_user": "admin",
            "os": "debian-13",
            "nomads": on_tower,
            "admins": [ADMIN] if ADMIN in on_tower else [],
            "docker_users": [ADMIN] if ADMIN in on_tower else [],
            "gpu_containers": True,
            "ssh_only_over_wireguard": True,  # the run's own address keeps SSH: this module's logins come from it too
        }
    )
    return team.model_copy(update={"nomads": nomads, "towers": [tower]})


@pytest.fixture(scope="module")
def booted(container_prerequisites: None, container_ssh_key: Path) -> Iterator[Tower]:
    started = time.monotonic()
    workdir = WORK_ROOT / f"tower-access-{int(time.time())}"
    container = DebianContainer(ContainerSpec(release=RELEASE), workdir, container_ssh_key)
    container.boot(timeout=120)
    options = towers.RunOptions(
        ssh_key_file=container_ssh_key,
        runs_dir=workdir.with_name(workdir.name + "-runs"),
        strict_host_keys=False,
        playbook="access.yml",
    )
    tower = Tower(container, options, {"boot": round(time.monotonic() - started, 1)})
    try:
        yield tower
    finally:
        container.close()
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"\naccess container figures (s): {tower.seconds}, module {time.monotonic() - started:.0f} s")


@pytest.fixture(scope="module")
def first(booted: Tower, container_ssh_key: Path) -> towers.RunReport:
    """Two nomads on the tower: linus (admin, docker user) and ada."""
    report = booted.apply(team_for(booted.container, container_ssh_key, [USER, ADMIN]), "first apply")
    booted.sh(f"echo -n {shlex.quote(LEAVER_NOTE)} > /home/{ADMIN}/notes.txt && chown {ADMIN}: /home/{ADMIN}/notes.txt")
    return report


@pytest.fixture(scope="module")
def removed(booted: Tower, first: towers.RunReport, container_ssh_key: Path) -> towers.RunReport:
    """linus has left the team file."""
    return booted.apply(team_for(booted.container, container_ssh_key, [USER]), "apply after removal")


def test_first_apply_succeeds(first: towers.RunReport) -> None:
    assert first.succeeded, first.summary()
    assert first.changed > 0


def test_the_admin_has_passwordless_sudo_and_the_other_nomad_none(booted: Tower, first: towers.RunReport) -> None:
    as_admin = booted.container.ssh("sudo -n true", user=ADMIN, timeout=30)
    assert as_admin.returncode == 0, as_admin.stderr
    as_user = booted.container.ssh("sudo -n true", user=USER, timeout=30)
    assert as_user.returncode != 0, f"{USER} has sudo: {as_user.stdout}"
    assert "password is required" in as_user.stderr


def test_every_nomad_gets_the_gpu_groups_and_only_the_docker_user_docker(
    booted: Tower, first: towers.RunReport
) -> None:
    for name in (USER, ADMIN):
        assert {"nomads", "nomadrig-ssh", "video", "render"} <= booted.groups_of(name), name
    assert "docker" in booted.groups_of(ADMIN)
    assert not {"docker", "nomadrig-admins", "sudo"} & booted.groups_of(USER)


def test_sshd_refuses_x11_and_admits_the_ssh_group_only(booted: Tower, first: towers.RunReport) -> None:
    effective = dict(
        line.split(" ", 1) for line in booted.sh("sshd -T -C user=admin,host=x,addr=127.0.0.1").splitlines()
    )
    assert effective["x11forwarding"] == "no"
    assert effective["maxauthtries"] == "3"
    assert effective["allowgroups"].split() == ["nomadrig-ssh"]
    assert effective["permitrootlogin"] == "no"
    assert "nomadrig-ssh" in booted.groups_of("admin")  # the account the run logs in as is not shut out


def test_ssh_is_for_wireguard_and_the_runs_own_address_only(booted: Tower, first: towers.RunReport) -> None:
    ruleset = booted.sh("nft list table inet nomadrig")
    assert 'iifname "wg0" tcp dport' in ruleset
    assert f"ip saddr {booted.container.host_ip} tcp dport 22 accept" in ruleset
    assert any("only over WireGuard" in note for note in first.notes), first.notes


def test_an_unknown_host_key_stops_the_run_with_what_to_do(
    booted: Tower, first: towers.RunReport, container_ssh_key: Path
) -> None:
    """Host keys are checked unless a test relaxes it: ansible-runner's own default would not check them."""
    from dataclasses import replace

    team = team_for(booted.container, container_ssh_key, [USER, ADMIN])
    report = towers.run(team, team.towers[0].name, "check", replace(booted.options, strict_host_keys=True))
    assert not report.succeeded and report.unreachable == 1, report.summary()
    assert any("host key" in note and "ssh -p 22 admin@" in note for note in report.notes), report.summary()


def test_a_removed_nomad_is_locked_with_home_kept(booted: Tower, removed: towers.RunReport) -> None:
    assert removed.succeeded, removed.summary()
    assert booted.container.run(f"id {ADMIN}").returncode == 0, "the account was deleted"
    assert booted.sh(f"cat /home/{ADMIN}/notes.txt") == LEAVER_NOTE
    assert booted.container.run(f"test -e /home/{ADMIN}/.ssh/authorized_keys").returncode != 0
    assert not {"nomadrig-admins", "docker", "nomadrig-ssh"} & booted.groups_of(ADMIN)
    assert "nologin" in booted.sh(f"getent passwd {ADMIN}").strip().split(":")[-1]
    assert booted.sh(f"chage -l {ADMIN}").count("Jan 02, 1970") == 1  # the account expiry line
    assert any(ADMIN in note and "locked" in note for note in removed.notes), removed.notes


def test_a_removed_nomad_cannot_log_in_or_sudo(booted: Tower, removed: towers.RunReport) -> None:
    login = booted.container.ssh("true", user=ADMIN, timeout=30)
    assert login.returncode != 0, "the removed nomad still logs in over SSH"
    assert booted.container.ssh("sudo -n true", user=USER, timeout=30).returncode != 0


def test_the_remaining_nomad_still_logs_in(booted: Tower, removed: towers.RunReport) -> None:
    login = booted.container.ssh("id -nG", user=USER, timeout=30)
    assert login.returncode == 0, login.stderr


def test_an_apply_after_the_removal_changes_nothing(
    booted: Tower, removed: towers.RunReport, container_ssh_key: Path
) -> None:
    again = booted.apply(team_for(booted.container, container_ssh_key, [USER]), "apply again")
    assert again.succeeded, again.summary()
    assert again.changed == 0, again.changed_tasks
    assert any(ADMIN in note for note in again.notes), "the locked accounts are reported on every run"


def test_even_with_its_key_back_a_locked_account_cannot_log_in(booted: Tower, removed: towers.RunReport) -> None:
    """Expiry and the SSH group hold on their own: put the key back by hand and try (last: it undoes the removal)."""
    public = shlex.quote(booted.container.ssh_key.with_suffix(".pub").read_text().strip())
    booted.sh(
        f"install -d -o {ADMIN} -m 700 /home/{ADMIN}/.ssh && echo {public} > /home/{ADMIN}/.ssh/authorized_keys"
        f" && chown {ADMIN}: /home/{ADMIN}/.ssh/authorized_keys && chmod 600 /home/{ADMIN}/.ssh/authorized_keys"
    )
    login = booted.container.ssh("true", user=ADMIN, timeout=30)
    assert login.returncode != 0, "a locked account logs in once its key is back"

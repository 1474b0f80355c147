"""`nomadrig tower apply` turns a bare Debian 12/13 into a configured tower.

The issue's acceptance test: the real playbook, over real SSH, against a booted
Debian with systemd, installing the real NVIDIA driver (550 on 13, 535 on 12)
and CUDA toolkit from Debian's non-free archive and a real JAX (CPU) build;
then the assertions look at the system, not at Ansible's output. There is no
GPU and no loadable kernel module in a container: the roles detect that and
skip what cannot work, which is part of what is tested.

Connects as an ``admin`` account with sudo, as a Debian installer leaves a
machine, so hardening sets ``PermitRootLogin no`` as on a real tower.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest

from nomadrig import towers
from tests.harness.tower_pool import TowerPool
from tests.harness.towers import DEBIAN_TOWERS, ConvergedTower

pytestmark = [pytest.mark.container, pytest.mark.slow]


@pytest.fixture(scope="module", params=sorted(DEBIAN_TOWERS), ids=lambda r: DEBIAN_TOWERS[r].os)
def applied(request: pytest.FixtureRequest, tower_pool: TowerPool) -> ConvergedTower:
    """A container of each release after one `tower apply` (first run from bare).

    Both come from the session's pool, whose first applies started in the
    background when the session began; Debian 12's is the shared
    ``converged_tower`` that other modules use too.
    """
    return tower_pool.get(request.param)


def test_first_apply_succeeds(applied: ConvergedTower, record_property: pytest.RecordProperty) -> None:
    record_property("first_apply_s", round(applied.first_s))
    record_property("apt_download_mb", round(applied.download_mb))
    print(
        f"\n{applied.release.os}: first apply {applied.first_s:.0f} s, "
        f"apt through proxy {applied.download_mb:.0f} MB, wheels {applied.wheels_mb:.0f} MB"
    )
    assert applied.first.succeeded, applied.first.summary()
    assert applied.first.changed > 0


def test_check_of_the_bare_machine_succeeds_says_what_would_change_and_changes_nothing(applied: ConvergedTower) -> None:
    """`tower check` ran on the bare container just before the first apply (tests/harness/tower_pool.py)."""
    check = applied.bare_check
    assert check is not None and check.mode == "check"
    assert check.succeeded, check.summary()
    would = set(check.changed_tasks)
    assert {"hardening : Write the firewall rules, checked with `nft -c` before they land",
            "base : Create or update one account per nomad, in exactly the groups the team file grants"} <= would
    # What the dry run cannot look up before the sources and the environment exist, it says.
    assert any(note.startswith("NOTE: dry run: Debian's contrib and non-free") for note in check.notes), check.notes
    assert any("pip cannot say what it" in note for note in check.notes), check.notes
    # It changed nothing: the apply right after it still had to make those changes.
    assert {"hardening : Write the firewall rules, checked with `nft -c` before they land",
            "base : Create or update one account per nomad, in exactly the groups the team file grants",
            "agent : Install the agent's systemd service and timer"} <= set(applied.first.changed_tasks)


def test_driver_and_cuda_come_from_debian_non_free_and_are_pinned_to_the_branch(applied: ConvergedTower) -> None:
    branch = applied.release.driver_branch
    modules = applied.packages("nvidia*kernel-dkms")
    assert modules, f"no NVIDIA kernel module package; NVIDIA packages: {applied.packages('*nvidia*')}"
    for package, (status, version) in modules.items():
        assert status[1:2] == "i", f"{package} {version} is not fully installed: dpkg status {status!r}"
        assert version.startswith(f"{branch}."), f"{package} {version} is not branch {branch}"
    status, toolkit = applied.packages("nvidia-cuda-toolkit").get("nvidia-cuda-toolkit", ("", ""))
    assert status[1:2] == "i" and toolkit.startswith(applied.release.cuda_version), (status, toolkit)
    assert f"release {applied.release.cuda_version}" in applied.sh("nvcc --version")
    # Pinned by version, not held: a hold would also block `tower apply --upgrade` (test_tower_upgrade_container).
    held = set(applied.sh("apt-mark showhold").split())
    assert not {"nvidia-driver", *modules} & held, f"driver packages held: {sorted(held)}"
    for package in ("nvidia-driver", *modules):
        policy = applied.sh(f"apt-cache policy {package}")
        installed = re.search(r"Installed: (\S+)", policy)
        assert installed and f"*** {installed[1]} 1001" in policy, f"{package} is not pinned where it is:\n{policy}"
    # The toolkit must at least be out of unattended upgrades' reach (base role's blacklist).
    blacklist = applied.sh("cat /etc/apt/apt.conf.d/52nomadrig-unattended-upgrades")
    patterns = re.findall(r'"([^"]+)"', blacklist)
    protected = "nvidia-cuda-toolkit" in held or any(re.match(p, "nvidia-cuda-toolkit") for p in patterns)
    assert protected, f"nvidia-cuda-toolkit is neither held nor blacklisted for unattended upgrades: {patterns}"


def test_the_playbook_installs_no_kernel(applied: ConvergedTower) -> None:
    """A kernel the tower did not ask for would become its boot default, without the NVIDIA module built for it.

    (wireguard-tools recommends wireguard-modules, which only kernel images provide: in a container,
    which has no kernel package, apt used to pull in a whole kernel and initramfs.)
    """
    kernels = applied.packages("linux-image-*")
    assert kernels == {}, f"the tower playbook installed kernel packages: {kernels}"


def test_nouveau_is_blacklisted(applied: ConvergedTower) -> None:
    blacklist = applied.sh("cat /etc/modprobe.d/*.conf")
    assert any(line.split()[:2] == ["blacklist", "nouveau"] for line in blacklist.splitlines())


def test_sshd_accepts_keys_only_and_no_root(applied: ConvergedTower) -> None:
    effective = dict(
        line.split(" ", 1) for line in applied.sh("sshd -T -C user=admin,host=x,addr=127.0.0.1").splitlines()
    )
    assert effective["passwordauthentication"] == "no"
    assert effective["permitrootlogin"] == "no"
    assert effective["pubkeyauthentication"] == "yes"


def test_root_cannot_log_in_over_ssh_but_a_nomad_can(applied: ConvergedTower) -> None:
    assert applied.container.ssh("true", user="root", timeout=30).returncode != 0
    nomad = applied.team.towers[0].nomads[0]
    as_nomad = applied.container.ssh("id -nG", user=nomad, timeout=30)
    assert as_nomad.returncode == 0, as_nomad.stderr
    assert "nomads" in as_nomad.stdout.split()


def test_nftables_ruleset_is_loaded_with_ssh_and_wireguard_open(applied: ConvergedTower) -> None:
    ruleset = applied.sh("nft list ruleset")
    tower = applied.team.towers[0]
    assert "policy drop" in ruleset
    assert f"dport {tower.ssh_port}" in ruleset
    assert f"dport {tower.wireguard_port}" in ruleset


def test_each_nomad_has_an_account_with_exactly_their_key(applied: ConvergedTower) -> None:
    by_name = {n.name: n for n in applied.team.nomads}
    for name in applied.team.towers[0].nomads:
        keys = applied.sh(f"cat /home/{shlex.quote(name)}/.ssh/authorized_keys").strip().splitlines()
        assert keys == [by_name[name].ssh_key]
    others = {n.name for n in applied.team.nomads} - set(applied.team.towers[0].nomads)
    for name in others:
        assert applied.container.run(f"id {shlex.quote(name)}").returncode != 0, f"{name} got an account"


def test_wireguard_is_configured_with_the_nomads_as_peers(applied: ConvergedTower) -> None:
    config = applied.sh("cat /etc/wireguard/wg0.conf")
    for nomad in applied.team.nomads:
        if nomad.name in applied.team.towers[0].nomads:
            assert nomad.wireguard_public_key in config
    public = applied.sh(f"cat {towers.TOWER_PUBLIC_KEY_FILE}").strip()
    assert applied.first.tower_public_key == public
    mode = applied.sh("stat -c %a /etc/wireguard/wg0.conf").strip()
    assert mode == "600"  # it holds the tower's private key


def test_jax_runs_a_computation_in_the_shared_venv(applied: ConvergedTower) -> None:
    out = applied.sh(
        "/opt/nomadrig/venv/bin/python -c "
        '"import jax.numpy as np; print(float((np.ones((64, 64)) @ np.ones((64, 64))).sum()))"'
    )
    assert out.strip() == str(64.0 * 64 * 64)


@pytest.mark.parametrize("applied", ["bookworm"], indirect=True, ids=lambda r: DEBIAN_TOWERS[r].os)
def test_the_shared_venv_is_the_nomads_groups_and_an_apply_puts_back_a_file_that_drifted(
    applied: ConvergedTower,
) -> None:
    """Every file of the venv is root's and the nomads group's; nothing it links to outside it is touched.

    On Debian 12 only: the tasks read no distribution, and the drift costs an apply.
    """
    venv = "/opt/nomadrig/venv"
    not_ours = f"find {venv} \\( ! -user root -o ! -group nomads \\) -print"
    assert applied.sh(not_ours) == ""
    # The venv's interpreter links out to the system's (through one or two links); those stay as Debian ships them.
    assert applied.sh(f"readlink -f {venv}/bin/python3").startswith("/usr/bin/python3")
    assert applied.sh("find /usr/bin -maxdepth 1 -name 'python3*' ! -group root -print") == ""

    drifted = applied.sh(f"find {venv}/lib -name '*.py' -print -quit").strip()
    applied.sh(f"chgrp root {drifted}")
    report = applied.reapply()
    assert "frameworks : Let the nomads group read and use the environment" in report.changed_tasks
    assert applied.sh(not_ours) == ""


def test_verify_passes_its_cpu_path_through_the_cli(
    applied: ConvergedTower, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml
    from typer.testing import CliRunner

    from nomadrig.cli import app

    team_file = tmp_path / "team.yaml"
    team_file.write_text(yaml.safe_dump(applied.team.model_dump(mode="json", exclude_defaults=True)))
    # Host keys are checked as for a user: the container's key (new on every boot) is known from a file of
    # the test's own, not from root's known_hosts.
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(applied.container.known_hosts_line())
    monkeypatch.setenv("ANSIBLE_SSH_COMMON_ARGS", f"-o UserKnownHostsFile={known_hosts}")
    args = ["tower", "verify", applied.name, "--team", str(team_file), "--ssh-key", str(applied.options.ssh_key_file),
            "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    for key, value in applied.options.overrides.items():
        args += ["-e", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def test_check_mode_on_a_converged_tower_shows_no_change(applied: ConvergedTower) -> None:
    report = towers.run(applied.team, applied.name, "check", applied.options)
    assert report.succeeded, report.summary()
    assert report.changed == 0, report.changed_tasks


def test_second_apply_changes_nothing(applied: ConvergedTower, record_property: pytest.RecordProperty) -> None:
    started = time.monotonic()
    report = towers.run(applied.team, applied.name, "apply", applied.options)
    elapsed = time.monotonic() - started
    record_property("second_apply_s", round(elapsed))
    print(f"\n{applied.release.os}: second apply {elapsed:.0f} s")
    assert report.succeeded, report.summary()
    assert report.changed == 0, report.changed_tasks
    # The first apply's check passed and recorded what it depended on; nothing changed since.
    assert any(note.startswith("NOTE: the frameworks' numbers passed on") for note in report.notes), report.notes


@pytest.mark.parametrize("applied", ["bookworm"], indirect=True, ids=lambda r: DEBIAN_TOWERS[r].os)
def test_a_power_cap_in_the_team_file_becomes_a_boot_unit_and_leaves_with_it(applied: ConvergedTower) -> None:
    """gpu_power_limit_watts -> tower_vars -> the driver role's boot unit; removing it removes the unit.

    No GPU here: the unit is written and enabled but not started (its condition, a loaded NVIDIA module,
    does not hold), which is what a tower gets before the reboot that loads the driver.

    On Debian 12 only: the unit, its template and the tasks that write and remove it are the same on
    every release (nothing in them reads the distribution), and the three applies cost two minutes a
    release in CI.
    """
    unit = "/etc/systemd/system/nomadrig-gpu-power-limit.service"
    tower = applied.team.towers[0].model_copy(update={"gpu_power_limit_watts": 300})
    capped = applied.team.model_copy(update={"towers": [tower]})
    try:
        first = towers.run(capped, applied.name, "apply", applied.options)
        assert first.succeeded, first.summary()
        assert "nvidia_driver : Write the boot unit that caps every GPU's power" in first.changed_tasks
        assert "ExecStart=/usr/bin/nvidia-smi --power-limit=300" in applied.sh(f"cat {unit}").splitlines()
        assert applied.sh("systemctl is-enabled nomadrig-gpu-power-limit.service || true").strip() == "enabled"
        again = towers.run(capped, applied.name, "apply", applied.options)
        assert again.succeeded and again.changed == 0, again.changed_tasks
    finally:
        removed = towers.run(applied.team, applied.name, "apply", applied.options)
    assert removed.succeeded, removed.summary()
    assert any("GPU power cap is no longer set" in note for note in removed.notes), removed.notes
    assert applied.sh(f"test -e {unit} && echo present || echo absent").strip() == "absent"

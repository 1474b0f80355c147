"""The preflight role, run for real by ansible-playbook against this machine.

Every hardware observation is replaced through ``preflight_observed_*`` extra vars,
so each check can be driven to its failure or warning without the hardware; the
tests assert the exit status and the exact sentence the user reads. The role is
read-only, so running it against the development machine is harmless, and one
test checks that against the real probes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")

pytestmark = pytest.mark.skipif(
    not Path(ANSIBLE_PLAYBOOK).exists(), reason="ansible-playbook is not installed (pip install ansible)"
)

# Task names of the role's report (tasks/report.yml): what the user sees.
WARNINGS_TASK = "Warn about what the team should fix but need not stop for"
NOTES_TASK = "Show the notes"
FAILURE_TASK = "Stop before anything is installed when the tower cannot carry the GPU stack"
OBSERVED_TASK = "Show what the preflight observed"

# A tower that passes every check: a supported OS, 64 GiB, an SSD, 2 TB free,
# Secure Boot off, LUKS data disks, bare metal, one 450 W GPU and a 125 W CPU
# on a 1000 W supply (needs 690 W with the 20% margin).
PASSING_TOWER: dict[str, Any] = {
    "preflight_observed_os_id": "debian-13",
    "preflight_observed_ram_mb": 65536,
    "preflight_observed_root_rotational": False,
    "preflight_observed_free_disk_gb": 2000,
    "preflight_observed_secure_boot": "disabled",
    "preflight_observed_data_encrypted": True,
    "preflight_observed_virtualization_type": "none",
    "preflight_gpus": [{"model": "RTX 4090", "count": 1, "tdp_w": 450}],
    "preflight_cpu_tdp_w": 125,
    "preflight_psu_watts": 1000,
}

PLAYBOOK = """\
- name: Run the preflight role against this machine
  hosts: all
  gather_facts: false  # the role gathers what it reads unless every observation is given
  roles:
    - preflight
"""


@dataclass(frozen=True)
class PreflightRun:
    """What one ansible-playbook run of the role showed the user."""

    rc: int
    failure: str | None
    warnings: list[str]
    notes: list[str]
    observed: dict[str, Any]
    changed: int
    output: str


def _task_result(report: dict[str, Any], task_name: str) -> dict[str, Any] | None:
    for play in report["plays"]:
        for task in play["tasks"]:
            # The callback names role tasks "<role> : <task name>".
            if task["task"]["name"].split(" : ", 1)[-1] == task_name:
                return task["hosts"]["localhost"]
    return None


def _loop_messages(result: dict[str, Any] | None, prefix: str = "") -> list[str]:
    if result is None or result.get("skipped"):
        return []
    return [item["msg"].removeprefix(prefix) for item in result.get("results", []) if "msg" in item]


def run_preflight(tmp_path: Path, **overrides: Any) -> PreflightRun:
    """Run the role on localhost with the passing tower's facts plus ``overrides``."""
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(PLAYBOOK)
    extra_vars = {**PASSING_TOWER, **overrides, "ansible_python_interpreter": sys.executable}
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
    }
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(playbook), "-e", json.dumps(extra_vars)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    output = f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook printed no JSON report:\n{output}")
    failure = _task_result(report, FAILURE_TASK)
    observed = _task_result(report, OBSERVED_TASK)
    return PreflightRun(
        rc=proc.returncode,
        failure=None if failure is None or failure.get("skipped") else failure["msg"],
        warnings=_loop_messages(_task_result(report, WARNINGS_TASK), prefix="WARNING: "),
        notes=_loop_messages(_task_result(report, NOTES_TASK)),
        observed={} if observed is None else observed["msg"],
        changed=report["stats"]["localhost"]["changed"],
        output=output,
    )


def one_problem(message: str) -> str:
    return f"Preflight found 1 problem on localhost:\n- {message}"


def test_a_tower_that_meets_every_requirement_passes_and_shows_its_power_budget(tmp_path: Path) -> None:
    run = run_preflight(tmp_path)

    assert run.rc == 0, run.output
    assert run.failure is None
    assert run.warnings == []
    assert run.notes == [
        "Power budget: the 1000 W power supply covers the 690 W needed "
        "(1 x RTX 4090 at 450 W + CPU 125 W = 575 W, plus 20% margin)."
    ]


def test_an_unsupported_operating_system_stops_the_run(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_os_id="debian-11")

    assert run.rc == 2, run.output
    assert run.failure == one_problem(
        "Unsupported operating system debian-11: nomadrig installs the GPU stack on debian-12, "
        "debian-13, ubuntu-22.04, ubuntu-24.04, ubuntu-26.04. Reinstall the tower with one of them, "
        "or correct the tower's os in the team file."
    )


def test_too_little_memory_stops_the_run(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_ram_mb=16384)

    assert run.rc == 2, run.output
    assert run.failure == one_problem(
        "Not enough memory: 16.0 GB of RAM, at least 32 GB needed (data loaders, notebooks and "
        "datasets staged in memory live there). Add memory before installing the GPU stack."
    )


def test_memory_the_firmware_reserves_does_not_fail_a_32_gb_tower(tmp_path: Path) -> None:
    # A machine with 32 GiB installed reports about 31.3 GiB in MemTotal.
    run = run_preflight(tmp_path, preflight_observed_ram_mb=32050)

    assert run.rc == 0, run.output
    assert run.failure is None


def test_the_minimum_memory_is_configurable(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_ram_mb=2048, preflight_min_ram_gb=2)

    assert run.rc == 0, run.output


def test_a_root_file_system_on_a_spinning_disk_warns_but_goes_on(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_root_rotational=True)

    assert run.rc == 0, run.output
    assert run.warnings == [
        "The root file system is on a spinning disk: the OS, the Python environment and the package "
        "caches will be slow. Move the root file system to an SSD (NVMe preferably)."
    ]


def test_little_free_disk_space_warns_but_goes_on(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_free_disk_gb=500)

    assert run.rc == 0, run.output
    assert run.warnings == [
        "Only 500 GB free on the data file systems, under the 1000 GB recommended for datasets and "
        "checkpoints. Add a disk or free space before training."
    ]


def test_secure_boot_stops_the_run_with_mok_enrolment_instructions(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_secure_boot="enabled")

    assert run.rc == 2, run.output
    assert run.failure == one_problem(
        "Secure Boot is enabled: the NVIDIA kernel modules built by DKMS will not load unless they are "
        "signed with a Machine Owner Key (MOK) the firmware trusts. Either disable Secure Boot in the "
        "firmware setup, or set preflight_allow_secure_boot: true, let the run install the driver (DKMS "
        "signs the modules with /var/lib/dkms/mok.pub), then enrol that key: `sudo mokutil --import "
        '/var/lib/dkms/mok.pub`, choose a one-time password, reboot, pick "Enroll MOK" in the MOK manager '
        "and enter the password."
    )


@pytest.mark.parametrize(("data_byte", "expected"), [(1, "enabled"), (0, "disabled")])
def test_preflight_judges_the_secure_boot_state_tower_facts_reads_from_the_uefi_variable(
    tmp_path: Path, data_byte: int, expected: str
) -> None:
    """The seam: tower_facts parses a SecureBoot variable in efivarfs's layout, preflight acts on it."""
    efivars = tmp_path / "efi" / "efivars"
    efivars.mkdir(parents=True)
    # efivarfs: 4 bytes of attributes (NV|BS|RT = 6, little-endian), then the variable's one data byte.
    (efivars / "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c").write_bytes(bytes([6, 0, 0, 0, data_byte]))
    run = run_preflight(tmp_path, preflight_observed_secure_boot=None, tower_facts_efi_dir=str(tmp_path / "efi"))
    assert run.observed["secure_boot"] == expected, run.output
    if expected == "enabled":
        assert run.rc == 2 and run.failure is not None and "Secure Boot is enabled" in run.failure, run.output
    else:
        assert run.rc == 0, run.output


def test_secure_boot_instructions_name_ubuntus_key(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_secure_boot="enabled", preflight_observed_os_id="ubuntu-24.04")

    assert run.rc == 2, run.output
    assert "`sudo mokutil --import /var/lib/shim-signed/mok/MOK.der`" in (run.failure or "")


def test_secure_boot_on_ubuntus_distro_channel_is_a_note_since_the_driver_takes_signed_modules(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_secure_boot="enabled", preflight_observed_os_id="ubuntu-24.04",
                        preflight_signed_modules=True)

    assert run.rc == 0, run.output
    assert any(note.startswith("Secure Boot is enabled: on Ubuntu the driver uses Canonical's signed precompiled")
               for note in run.notes), run.notes


def test_secure_boot_on_debian_still_stops_the_run_whatever_the_signed_modules_flag_says(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_secure_boot="enabled", preflight_signed_modules=True)

    assert run.rc == 2, run.output
    assert "Secure Boot is enabled: the NVIDIA kernel modules built by DKMS" in (run.failure or "")


def test_secure_boot_goes_on_when_the_team_allows_it(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_secure_boot="enabled", preflight_allow_secure_boot=True)

    assert run.rc == 0, run.output
    assert (
        "Secure Boot is enabled and allowed (preflight_allow_secure_boot): the NVIDIA modules load only "
        'once the DKMS key is enrolled (`sudo mokutil --import /var/lib/dkms/mok.pub`, then reboot and pick "Enroll MOK").'
    ) in run.notes


def test_unencrypted_data_stops_the_run_where_the_policy_makes_encryption_mandatory(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_data_encrypted=False, preflight_data_encryption="mandatory")

    assert run.rc == 2, run.output
    assert run.failure == one_problem(
        "Data is not encrypted at rest and the team's policy requires it (preflight_data_encryption: "
        "mandatory). Put the data on LUKS: reinstall with encrypted LVM (the installer's guided "
        "partitioning offers it) or move the data to a volume made with `cryptsetup luksFormat`."
    )


def test_unencrypted_data_only_warns_where_encryption_is_advisory(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_data_encrypted=False)

    assert run.rc == 0, run.output
    assert run.warnings == [
        "Data is not encrypted at rest: a stolen tower gives away the datasets and keys on it. Put the "
        "data on LUKS (reinstall with encrypted LVM, or `cryptsetup luksFormat` a data volume); set "
        "preflight_data_encryption: mandatory to enforce it."
    ]


def test_unencrypted_data_is_not_mentioned_where_encryption_is_off(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_data_encrypted=False, preflight_data_encryption="off")

    assert run.rc == 0, run.output
    assert run.warnings == []


def test_a_power_supply_short_of_the_gpus_and_cpu_plus_margin_stops_the_run(tmp_path: Path) -> None:
    run = run_preflight(
        tmp_path,
        preflight_gpus=[{"model": "RTX 4090", "count": 2, "tdp_w": 450}],
        preflight_cpu_tdp_w=125,
        preflight_psu_watts=1000,
    )

    assert run.rc == 2, run.output
    assert run.failure == one_problem(
        "Power supply too small: 1000 W declared, 1230 W needed (2 x RTX 4090 at 450 W + CPU 125 W = "
        "1025 W, plus 20% margin for load spikes). Fit a PSU of at least 1230 W, cap the GPUs lower with the "
        "tower's gpu_power_limit_watts (`nomadrig validate` names the highest cap that fits), or remove a GPU; an "
        "overloaded supply shuts the tower down under training load."
    )


def test_an_undeclared_power_supply_warns(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_psu_watts=0)

    assert run.rc == 0, run.output
    assert run.warnings == [
        "No power supply rating declared, so the power budget (690 W with the 20% margin) was not "
        "checked. Declare the tower's psu_watts in the team file."
    ]


def test_every_failure_is_reported_in_one_run(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_os_id="debian-11", preflight_observed_ram_mb=8192)

    assert run.rc == 2, run.output
    assert (run.failure or "").startswith("Preflight found 2 problems on localhost:\n- Unsupported operating")
    assert "\n- Not enough memory: 8.0 GB of RAM" in (run.failure or "")


def test_firmware_and_disk_checks_do_not_apply_in_a_container(tmp_path: Path) -> None:
    run = run_preflight(
        tmp_path,
        preflight_observed_virtualization_type="systemd-nspawn",
        preflight_observed_secure_boot="enabled",
        preflight_observed_root_rotational=True,
        preflight_observed_free_disk_gb=10,
        preflight_observed_data_encrypted=False,
        preflight_data_encryption="mandatory",
    )

    assert run.rc == 0, run.output
    assert run.warnings == []
    assert run.notes[:2] == [
        "Secure Boot: not applicable in a container (systemd-nspawn); the host's firmware and kernel "
        "decide which modules load.",
        "Disk checks (SSD, free space, encryption): not applicable in a container (systemd-nspawn); "
        "the host's disks hold the data.",
    ]


def test_an_invalid_secure_boot_observation_is_refused_by_name(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, preflight_observed_secure_boot="on")

    assert run.rc == 2, run.output
    assert "preflight_observed_secure_boot is on; give one of enabled, disabled, unknown" in run.output


def test_the_real_probes_read_this_machine_and_change_nothing(tmp_path: Path) -> None:
    # Leave RAM, disks, Secure Boot and virtualization to the real probes (lsblk,
    # /sys/firmware/efi, the mount facts), and pretend to be bare metal so the
    # firmware and disk probes run even where this machine is a container.
    run = run_preflight(
        tmp_path,
        preflight_observed_ram_mb=None,
        preflight_observed_root_rotational=None,
        preflight_observed_free_disk_gb=None,
        preflight_observed_secure_boot=None,
        preflight_observed_data_encrypted=None,
        preflight_min_ram_gb=1,
        preflight_allow_secure_boot=True,
        preflight_data_encryption="advisory",
    )

    assert run.rc == 0, run.output
    assert run.changed == 0, run.output
    meminfo_kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    assert abs(run.observed["ram_mb"] - meminfo_kb // 1024) <= 1, run.observed
    assert run.observed["secure_boot"] in {"enabled", "disabled", "unknown"}, run.observed
    assert run.observed["root_rotational"] in {True, False, "unknown"}, run.observed
    assert isinstance(run.observed["data_encrypted"], bool), run.observed


# -- the tower's PCI GPUs against the ones the install plan was chosen for ------------------------------


def plan_vars() -> dict[str, Any]:
    """What nomadrig hands preflight for the example tower (one RTX 4090): the real tower_vars output."""
    from nomadrig.team.load import load_team
    from nomadrig.towers import tower_vars

    team = load_team(REPO / "examples" / "team.yaml")
    variables = tower_vars(team, team.towers[0])
    return {key: variables[key] for key in ("preflight_planned_gpus", "preflight_known_gpu_pci_ids",
                                            "preflight_driver_plan")}


def test_the_declared_gpu_on_the_pci_bus_passes_with_a_note(tmp_path: Path) -> None:
    plan = plan_vars()
    run = run_preflight(tmp_path, **plan, preflight_observed_gpu_pci_ids=["2684"])

    assert run.rc == 0, run.output
    assert f"GPUs: the PCI bus shows 10de:2684 RTX 4090, as the team file declares ({plan['preflight_driver_plan']})." \
        in run.notes


def test_a_declared_gpu_missing_from_the_pci_bus_stops_the_run(tmp_path: Path) -> None:
    plan = plan_vars()
    run = run_preflight(tmp_path, **plan, preflight_observed_gpu_pci_ids=[])

    assert run.rc == 2, run.output
    assert run.failure == one_problem(
        "The team file declares 1 x RTX 4090 but the PCI bus shows 0 (PCI ids 10de:2684); the tower has: no NVIDIA "
        f"GPU. The driver plan ({plan['preflight_driver_plan']}) was chosen for the declared GPUs. Correct the "
        "tower's gpus in the team file (or seat the GPU), then run again."
    )


def test_another_gpu_than_declared_stops_the_run_naming_both(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, **plan_vars(), preflight_observed_gpu_pci_ids=["2204"])

    assert run.rc == 2, run.output
    assert "declares 1 x RTX 4090 but the PCI bus shows 0" in run.failure
    assert "The tower has 10de:2204 RTX 3090, but the team file declares RTX 4090; RTX 3090 is not among them" \
        in run.failure


def test_an_nvidia_device_the_matrix_does_not_know_warns(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, **plan_vars(), preflight_observed_gpu_pci_ids=["2684", "ffff"])

    assert run.rc == 0, run.output
    assert len(run.warnings) == 1 and run.warnings[0].startswith("NVIDIA PCI device(s) 10de:ffff are not in the "
                                                                 "compatibility matrix")


def test_the_gpu_check_does_not_apply_in_a_container(tmp_path: Path) -> None:
    run = run_preflight(tmp_path, **plan_vars(), preflight_observed_gpu_pci_ids=[],
                        preflight_observed_virtualization_type="systemd-nspawn")

    assert run.rc == 0, run.output
    assert any(note.startswith("GPUs: not compared with the team file in a container") for note in run.notes)

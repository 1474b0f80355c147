"""The verify role: where it looks for the frameworks, what it checks on every GPU, and what it says.

The role runs for real with ansible-playbook against this machine (read-only:
it stats files, finds kernel modules and asks nvidia-smi). This machine has no
GPU, so a script first on PATH stands in for ``nvidia-smi`` and prints what
NVIDIA documents for ``--query-gpu=... --format=csv,noheader``; the paths the
role reads the kernel's state from point into the test's directory. What runs
on the GPU (framework_check.py) is tested by importing it: its judging and
reporting everywhere, its PyTorch and JAX paths where those are installed
(the all-reduce with gloo on the CPU: the same code NCCL runs on a tower).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")
FRAMEWORK_CHECK = REPO / "roles" / "verify" / "files" / "framework_check.py"

PLAYBOOK = """\
- name: Run the verify role against this machine
  hosts: all
  gather_facts: false
  roles:
    - verify
"""
# The driver role's real reboot decision, then verify in the same play: verify reads what the role set.
DRIVER_THEN_VERIFY = """\
- name: Decide the driver's reboot as the nvidia_driver role does, then verify
  hosts: all
  gather_facts: false
  tasks:
    - name: Decide the reboot as the driver role does
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: reboot
    - name: Verify the GPU
      ansible.builtin.include_role:
        name: verify
"""

H100 = ("NVIDIA H100 80GB HBM3", "81559 MiB")
#: What nvidia-smi prints when the driver is installed but its kernel module is not loaded.
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
             "Make sure that the latest NVIDIA driver is installed and running.")
#: Kernels newer than any this machine runs; by version 10 is newer than 9, by spelling it is not.
OLDER, NEWEST = "999.1.0-9-amd64", "999.1.0-10-amd64"


def fake_nvidia_smi(bin_dir: Path, gpus: int = 0, driver: str = "550.54.15", fails: str = "", rc: int = 9) -> None:
    """An nvidia-smi that lists `gpus` H100s with this driver, or prints `fails` and exits rc."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    listing = "\n".join(f"GPU {i}: {H100[0]} (UUID: GPU-{i:08x}-0000-0000-0000-000000000000)" for i in range(gpus))
    # index, name, driver_version, memory.total, pci.bus_id, as --format=csv,noheader prints them
    query = "\n".join(f"{i}, {H100[0]}, {driver}, {H100[1]}, 00000000:{0x18 + 0x10 * i:02X}:00.0" for i in range(gpus))
    if fails:
        body = f"cat <<'EOF'\n{fails}\nEOF\nexit {rc}\n"
    else:
        body = (f'case "$1" in\n  -L) cat <<\'EOF\'\n{listing}\nEOF\n  ;;\n'
                f"  --query-gpu=index,name,driver_version,memory.total,pci.bus_id) cat <<'EOF'\n{query}\nEOF\n  ;;\n"
                f"  topo) cat <<'EOF'\n{topology(gpus)}\nEOF\n  ;;\n"
                '  *) echo "unexpected arguments: $*" >&2; exit 2 ;;\nesac\n')
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)


def topology(gpus: int) -> str:
    """`nvidia-smi topo -m`'s matrix for GPUs joined by NVLink (NV18 between H100 SXMs), as NVIDIA prints it."""
    names = [f"GPU{i}" for i in range(gpus)]
    rows = ["\t" + "\t".join(names) + "\tCPU Affinity\tNUMA Affinity"]
    rows += [f"{a}\t" + "\t".join("X" if a == b else "NV18" for b in names) + "\t0-31\t0" for a in names]
    return "\n".join(rows + ["", "Legend:", "", "  X    = Self", "  NV#  = Connection traversing a bonded set of # NVLinks"])


def kernel_tree(root: Path, kernels: dict[str, str | None]) -> Path:
    """A /lib/modules with these kernels, each with its NVIDIA module at the given relative path (or none)."""
    modules = root / "lib" / "modules"
    for release, module in kernels.items():
        (modules / release / "kernel" / "drivers").mkdir(parents=True)
        if module:
            (modules / release / module).parent.mkdir(parents=True, exist_ok=True)
            (modules / release / module).write_bytes(b"\x7fELF")
    return modules


def run_role(tmp_path: Path, playbook: str = PLAYBOOK, **variables: Any) -> dict[str, Any]:
    """The ansible.posix.json report of one run, with the fake nvidia-smi (if the test made one) first on PATH.

    The machine's state is read from the test's directory unless the test says otherwise: no kernels,
    no reboot-required file, no nouveau, no loaded driver.
    """
    (tmp_path / "verify.yml").write_text(playbook)
    extra = {
        "verify_require_gpu": False,
        "ansible_python_interpreter": sys.executable,
        "__verify_modules_dir": str(tmp_path / "lib" / "modules"),
        "__verify_reboot_required_file": str(tmp_path / "run" / "reboot-required"),
        "__verify_driver_proc_version": str(tmp_path / "proc" / "driver" / "nvidia" / "version"),
        "__verify_nouveau_module_dir": str(tmp_path / "sys" / "module" / "nouveau"),
        "frameworks_venv": str(tmp_path / "no-venv"),  # verify_venv follows it; nothing is there
        **variables,
    }
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_RETRY_FILES_ENABLED": "false",
           "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(tmp_path / "verify.yml"),
                           "-e", json.dumps(extra)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"exit {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}") from None


def task_results(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(task["task"]["name"], task["hosts"]["localhost"])
            for play in report["plays"] for task in play["tasks"] if "localhost" in task["hosts"]]


def failure(report: dict[str, Any]) -> str:
    """The message of the task that stopped the role."""
    failed = [result for _, result in task_results(report) if result.get("failed")]
    assert failed, json.dumps(report)[-3000:]
    return str(failed[0].get("msg", ""))


def said(report: dict[str, Any], task: str) -> list[str]:
    """What a debug task printed: one message, or one per loop item."""
    for name, result in task_results(report):
        if name.endswith(task) and not result.get("skipped"):
            return [str(item.get("msg", "")) for item in result.get("results", [result])]
    raise AssertionError(f"no {task!r} ran:\n{json.dumps(report)[-3000:]}")


def verify_failure(tmp_path: Path, **variables: object) -> str:
    """The message of the task that stopped the role (it must stop: no environment exists there)."""
    return failure(run_role(tmp_path, **variables))


# -- where the frameworks are ---------------------------------------------------------------------------


def test_verify_follows_the_frameworks_environment(tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "venv"
    message = verify_failure(tmp_path, frameworks_venv=str(moved))
    assert f"No Python environment at {moved}" in message, message


def test_an_explicit_verify_venv_still_wins(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    message = verify_failure(tmp_path, frameworks_venv=str(tmp_path / "other"), verify_venv=str(chosen))
    assert f"No Python environment at {chosen}" in message, message


# -- every GPU nvidia-smi lists -----------------------------------------------------------------------


def test_each_gpu_nvidia_smi_lists_is_reported_on_its_own_line(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", gpus=2)
    report = run_role(tmp_path, verify_expected_gpu_count=2, nvidia_driver_branch="550")
    assert said(report, "Report each GPU the driver sees") == [
        f"GPU 0: {H100[0]}, driver 550.54.15, {H100[1]}, PCI 00000000:18:00.0",
        f"GPU 1: {H100[0]}, driver 550.54.15, {H100[1]}, PCI 00000000:28:00.0",
    ]
    topology = next(result["msg"] for name, result in task_results(report)
                    if name.endswith("Report the GPUs' peer-to-peer topology"))
    assert [line.split() for line in topology[1:3]] == [["GPU0", "X", "NV18", "0-31", "0"],
                                                        ["GPU1", "NV18", "X", "0-31", "0"]], topology
    # Count and branch agree, so the run goes on to the frameworks (and stops there: none is installed).
    assert "No Python environment at" in failure(report)


def test_fewer_gpus_than_the_team_file_declares_fail_naming_both_numbers(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", gpus=1)
    message = failure(run_role(tmp_path, verify_expected_gpu_count=2))
    assert "lists 1 GPU(s) but the team file declares 2" in message, message
    assert "seated" in message and "riser" in message and "Above 4G decoding" in message, message


def test_a_driver_of_another_branch_fails_with_the_fix(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", gpus=1, driver="535.183.01")
    # The expected branch is the one the nvidia_driver role installs: verify follows nvidia_driver_branch.
    message = failure(run_role(tmp_path, nvidia_driver_branch="550"))
    assert "driver 535.183.01 (branch 535) but branch 550 is expected" in message, message
    assert "`nomadrig tower apply`" in message, message


def test_a_driver_of_another_branch_with_a_reboot_pending_says_so(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", gpus=1, driver="535.183.01")
    reason = make_reboot_required(tmp_path)
    message = failure(run_role(tmp_path, nvidia_driver_branch="550"))
    assert "(branch 535) but branch 550 is expected" in message, message
    assert f"reboot pending: {reason}" in message and "the reboot loads the installed branch" in message, message


def test_an_empty_expected_branch_accepts_any_driver(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", gpus=1, driver="535.183.01")
    message = failure(run_role(tmp_path, nvidia_driver_branch="550", verify_expected_driver_branch=""))
    assert "No Python environment at" in message, message


# -- the kernel the next boot takes ---------------------------------------------------------------------


def test_a_newest_kernel_without_an_nvidia_module_fails(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", gpus=1)
    running = os.uname().release
    kernel_tree(tmp_path, {running: "updates/dkms/nvidia.ko.zst", OLDER: "updates/dkms/nvidia-current.ko",
                           NEWEST: None})
    message = failure(run_role(tmp_path))
    assert f"The newest installed kernel on localhost, {NEWEST}, has no NVIDIA kernel module" in message, message
    assert f"next boot would come up on {NEWEST} without a GPU driver" in message, message
    assert f"dkms autoinstall -k {NEWEST}" in message, message


def test_a_newest_kernel_with_its_module_passes(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", gpus=1)
    kernel_tree(tmp_path, {os.uname().release: "updates/dkms/nvidia.ko", OLDER: None,
                           NEWEST: "kernel/nvidia-550srv/nvidia.ko"})
    assert "No Python environment at" in failure(run_role(tmp_path))


def test_a_machine_without_a_gpu_is_not_held_to_its_kernels(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", fails="NVIDIA-SMI has failed", rc=9)
    kernel_tree(tmp_path, {os.uname().release: "updates/dkms/nvidia.ko", NEWEST: None})
    assert "No Python environment at" in failure(run_role(tmp_path, verify_require_gpu=False))


# -- reboot pending, not "no GPU" ---------------------------------------------------------------------


def make_module_only_for_the_newest_kernel(tmp_path: Path) -> str:
    kernel_tree(tmp_path, {os.uname().release: None, NEWEST: "updates/dkms/nvidia.ko"})
    return f"built for kernel {NEWEST}, which the next boot takes, but not for the running kernel"


def make_reboot_required(tmp_path: Path) -> str:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "reboot-required").write_text("*** System restart required ***\n")
    return f"{tmp_path / 'run' / 'reboot-required'} exists"


def make_nouveau_hold_the_gpu(tmp_path: Path) -> str:
    kernel_tree(tmp_path, {os.uname().release: "updates/dkms/nvidia.ko"})
    (tmp_path / "sys" / "module" / "nouveau").mkdir(parents=True)
    return "nouveau drives the GPU and the NVIDIA module built for"


@pytest.mark.parametrize("witness", [make_module_only_for_the_newest_kernel, make_reboot_required,
                                     make_nouveau_hold_the_gpu], ids=lambda make: make.__name__[5:])
def test_a_driver_that_waits_for_a_reboot_says_reboot_pending(tmp_path: Path, witness: Any) -> None:
    fake_nvidia_smi(tmp_path / "bin", fails=NO_DRIVER, rc=9)
    reason = witness(tmp_path)
    message = failure(run_role(tmp_path, verify_require_gpu=True))
    assert message.startswith("reboot pending on localhost: the NVIDIA driver is installed but not running"), message
    assert reason in message, message
    assert "`nomadrig tower apply` with reboots allowed" in message and "reboot the tower by hand" in message


def test_a_driver_library_mismatch_says_reboot_pending(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", fails="Failed to initialize NVML: Driver/library version mismatch", rc=18)
    message = failure(run_role(tmp_path, verify_require_gpu=True))
    assert message.startswith("reboot pending on localhost"), message
    assert "driver/library version mismatch" in message, message


def test_the_nvidia_driver_roles_pending_reboot_reaches_verify(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", fails=NO_DRIVER, rc=9)
    report = run_role(tmp_path, DRIVER_THEN_VERIFY, verify_require_gpu=True,
                      # what test_nvidia_driver_reboot.py gives the driver role: a change that needs the reboot
                      __nvidia_driver_nouveau_blacklist={"changed": True}, __nvidia_driver_loaded_branch="",
                      nvidia_driver_branch="580", tower_facts_in_container=False, nvidia_driver_allow_reboot=False)
    message = failure(report)
    assert message.startswith("reboot pending on localhost"), message
    assert ("the nvidia_driver role changed the driver in this run and did not reboot "
            "(nvidia_driver_allow_reboot is false)") in message, message


def test_a_reboot_the_nvidia_driver_role_did_is_not_pending(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", fails=NO_DRIVER, rc=9)
    # The role needed a reboot and nothing blocked it: it rebooted, so a GPU still missing is missing.
    message = failure(run_role(tmp_path, verify_require_gpu=True, nvidia_driver_reboot_needed=True,
                               nvidia_driver_reboot_blocker=""))
    assert message.startswith("No NVIDIA GPU found on localhost"), message


def test_without_a_witness_of_a_pending_reboot_there_is_no_gpu(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", fails=NO_DRIVER, rc=9)
    kernel_tree(tmp_path, {os.uname().release: "updates/dkms/nvidia.ko"})  # built and not loaded; no nouveau
    message = failure(run_role(tmp_path, verify_require_gpu=True))
    assert message.startswith("No NVIDIA GPU found on localhost"), message
    assert NO_DRIVER in message, message


def test_a_pending_reboot_on_a_machine_that_may_lack_a_gpu_is_a_note(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", fails=NO_DRIVER, rc=9)
    reason = make_reboot_required(tmp_path)
    report = run_role(tmp_path, verify_require_gpu=False)
    [note] = said(report, "Say that the GPU checks are skipped on a machine without a GPU")
    assert note.startswith("NOTE: reboot pending on localhost") and reason in note, note
    assert "No Python environment at" in failure(report)  # the CPU check still runs


# -- a framework that cannot reach the GPU ---------------------------------------------------------------

#: Stands in for a CPU-only PyTorch build (the wheel from the wrong index): it imports, and answers
#: torch.cuda.is_available() with False, which is all the check asks before it gives up on the GPU.
CPU_ONLY_TORCH = '''\
__version__ = "2.6.0+cpu"


class version:
    cuda = None


class cuda:
    @staticmethod
    def is_available():
        return False
'''


def venv_with_cpu_only_torch(tmp_path: Path) -> Path:
    """An environment whose bin/python is this Python with the CPU-only stand-in for torch importable."""
    (tmp_path / "stub" / "torch").mkdir(parents=True)
    (tmp_path / "stub" / "torch" / "__init__.py").write_text(CPU_ONLY_TORCH)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={tmp_path / "stub"} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return venv


def test_a_gpu_the_framework_cannot_use_fails_instead_of_passing_on_the_cpu(tmp_path: Path) -> None:
    fake_nvidia_smi(tmp_path / "bin", gpus=2)
    message = failure(run_role(tmp_path, verify_venv=str(venv_with_cpu_only_torch(tmp_path))))
    assert message.startswith("Verification failed on localhost"), message
    assert "PyTorch 2.6.0+cpu cannot use the GPU: torch.cuda.is_available() is False" in message, message


# -- an apply that changed nothing does not multiply again ----------------------------------------------------


def passed_record(venv: Path, **fingerprint_changes: Any) -> dict[str, Any]:
    """The record the role writes after a passed check on this GPU-less machine, as its copy task shapes it.

    The fingerprint is what framework_check.py prints with the environment's Python, as the role runs it.
    """
    done = subprocess.run([str(venv / "bin" / "python"), str(FRAMEWORK_CHECK), "--fingerprint"],
                          capture_output=True, text=True, timeout=60, check=True)
    fingerprint = {**json.loads(done.stdout.splitlines()[-1]), **fingerprint_changes}
    return {"record": {"device": "cpu", "gpus": [], "fingerprint": fingerprint}, "passed_at": "2026-12-03T09:00:00Z"}


def ran(report: dict[str, Any], task: str) -> bool:
    return any(name.endswith(task) and not result.get("skipped") for name, result in task_results(report))


def test_an_apply_skips_the_products_that_passed_while_nothing_they_depend_on_changed(tmp_path: Path) -> None:
    venv = venv_with_cpu_only_torch(tmp_path)  # its products would fail: a skip is the only way to pass
    record = tmp_path / "state" / "verify-passed.json"
    record.parent.mkdir()
    record.write_text(json.dumps(passed_record(venv)))
    report = run_role(tmp_path, verify_venv=str(venv), verify_reuse_unchanged=True, verify_passed_file=str(record))
    assert not [result for _, result in task_results(report) if result.get("failed")], json.dumps(report)[-3000:]
    [note] = said(report, "Say that the numbers passed before and nothing they depend on changed since")
    assert note.startswith("NOTE: the frameworks' numbers passed on 2026-12-03T09:00:00Z"), note
    assert "`nomadrig tower verify` checks them now" in note, note
    assert not ran(report, "List the frameworks the environment can import")
    assert report["stats"]["localhost"]["changed"] == 0


@pytest.mark.parametrize("change", [{"boot_id": "another-boot"}, {"changed": {"/var/lib/dpkg/status": 1}}],
                         ids=["rebooted", "packages-changed"])
def test_anything_the_numbers_depend_on_changed_checks_them_again(tmp_path: Path, change: dict[str, Any]) -> None:
    venv = venv_with_cpu_only_torch(tmp_path)
    record = tmp_path / "verify-passed.json"
    record.write_text(json.dumps(passed_record(venv, **change)))
    report = run_role(tmp_path, verify_venv=str(venv), verify_reuse_unchanged=True, verify_passed_file=str(record))
    assert ran(report, "List the frameworks the environment can import")
    assert failure(report).startswith("Verification failed on localhost")  # the stand-in's products ran, and failed
    assert json.loads(record.read_text()) == passed_record(venv, **change)  # a failed check records nothing


def test_another_gpu_list_checks_the_numbers_again(tmp_path: Path) -> None:
    venv = venv_with_cpu_only_torch(tmp_path)
    record = tmp_path / "verify-passed.json"
    before = passed_record(venv)
    before["record"]["gpus"] = [f"GPU 0: {H100[0]} (UUID: GPU-00000000-0000-0000-0000-000000000000)"]
    record.write_text(json.dumps(before))
    report = run_role(tmp_path, verify_venv=str(venv), verify_reuse_unchanged=True, verify_passed_file=str(record))
    assert ran(report, "List the frameworks the environment can import")


def test_verify_alone_always_multiplies(tmp_path: Path) -> None:
    """`nomadrig tower verify` (playbooks/verify.yml) leaves verify_reuse_unchanged off: a record is not read."""
    venv = venv_with_cpu_only_torch(tmp_path)
    record = tmp_path / "verify-passed.json"
    record.write_text(json.dumps(passed_record(venv)))
    report = run_role(tmp_path, verify_venv=str(venv), verify_passed_file=str(record))
    assert ran(report, "List the frameworks the environment can import")
    assert failure(report).startswith("Verification failed on localhost")


def test_the_tower_playbook_reuses_a_passed_check_and_the_verify_playbook_does_not() -> None:
    import yaml

    tower = yaml.safe_load((REPO / "playbooks" / "tower.yml").read_text())
    [verify] = [role for play in tower if "roles" in play for role in play["roles"] if role["role"] == "verify"]
    assert verify["vars"]["verify_reuse_unchanged"] is True
    assert "verify_reuse_unchanged" not in (REPO / "playbooks" / "verify.yml").read_text()


# -- framework_check.py: what it judges and reports --------------------------------------------------------


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """framework_check.py, imported by name from its directory, as spawned all-reduce workers import it."""
    monkeypatch.syspath_prepend(str(FRAMEWORK_CHECK.parent))
    spec = importlib.util.spec_from_file_location("framework_check", FRAMEWORK_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "framework_check", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return module


def test_the_fingerprint_is_stable_and_changes_when_dpkg_writes_its_database(
    check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = tmp_path / "status"
    status.write_text("Package: nvidia-driver\n")
    monkeypatch.setattr(check, "DPKG_STATUS", str(status))
    before = check.fingerprint()
    assert check.fingerprint() == before  # reading it changes nothing it reads
    assert before["checks"] == hashlib.sha256(FRAMEWORK_CHECK.read_bytes()).hexdigest()
    os.utime(status, ns=(1, 1))  # dpkg installed, removed or upgraded something
    after = check.fingerprint()
    assert after != before and after["changed"][str(status)] == 1


def test_framework_check_keeps_to_python_3_10_syntax() -> None:
    # The tower's Python may be older than ours; a newer construct would fail there before any check ran.
    ast.parse(FRAMEWORK_CHECK.read_text(), feature_version=(3, 10))


def test_the_check_run_alone_reports_a_missing_gpu_as_a_failed_result(tmp_path: Path) -> None:
    venv = venv_with_cpu_only_torch(tmp_path)
    done = subprocess.run([str(venv / "bin" / "python"), str(FRAMEWORK_CHECK), "--framework", "pytorch",
                           "--device", "cuda", "--expect-gpus", "2"],
                          capture_output=True, text=True, timeout=60, check=False)
    result = json.loads(done.stdout.splitlines()[-1])
    assert done.returncode == 1 and result["ok"] is False, done.stdout + done.stderr
    assert result["device"] == "cuda" and result["devices"] == []
    assert result["report"] == [f"pytorch 2.6.0+cpu on cuda: FAILED: {result['problem']}"]


def gpu(index: int, **changes: Any) -> dict[str, Any]:
    """One GPU's healthy numbers, as the checks measure them on an H100."""
    entry = {"device": f"cuda:{index}", "name": "NVIDIA H100 80GB HBM3", "exact_max_abs_error": 0.0, "big_n": 8192,
             "freivalds_relative_error": 3e-7, "tflops": 51.0, "bf16_relative_error": 2.2e-3, "bf16_tflops": 640.0,
             "conv_relative_error": 4e-4}
    entry.update(changes)
    return entry


def two_gpus(**changes: Any) -> dict[str, Any]:
    result = {"framework": "pytorch", "version": "2.6.0+cu124", "device": "cuda", "expected_gpus": 2,
              "cudnn_version": "9.1.0", "devices": [gpu(0), gpu(1)],
              "all_reduce": {"backend": "nccl", "world_size": 2, "elements": 1 << 24, "max_abs_error": 0.0,
                             "bus_gbps": 180.0}}
    result.update(changes)
    return result


def test_healthy_gpus_pass_with_one_report_line_each(check: ModuleType) -> None:
    result = check.judge(two_gpus())
    assert result["ok"] is True and "problem" not in result
    assert result["report"] == [
        "pytorch 2.6.0+cu124 on cuda:0 (NVIDIA H100 80GB HBM3): 128x128 integer product exact; 8192x8192 float32 "
        "Freivalds error 3.0e-07 at 51.0 TFLOP/s; bf16 error 2.2e-03 at 640.0 TFLOP/s; cuDNN conv2d vs CPU error 4.0e-04",
        "pytorch 2.6.0+cu124 on cuda:1 (NVIDIA H100 80GB HBM3): 128x128 integer product exact; 8192x8192 float32 "
        "Freivalds error 3.0e-07 at 51.0 TFLOP/s; bf16 error 2.2e-03 at 640.0 TFLOP/s; cuDNN conv2d vs CPU error 4.0e-04",
        "pytorch 2.6.0+cu124: cuDNN 9.1.0",
        "pytorch 2.6.0+cu124: nccl all-reduce across 2 devices exact at 180.0 GB/s bus bandwidth",
    ]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"devices": [{"exact_max_abs_error": 2.0}]}, "integer matrix product wrong (largest error 2.0)"),
        ({"devices": [{"freivalds_relative_error": float("nan")}]}, "fails Freivalds' test"),
        ({"devices": [{"bf16_relative_error": 0.05}]}, "bfloat16 product differs"),
        ({"devices": [{"conv_relative_error": 0.3}]}, "conv2d through cuDNN differs from the CPU's by 0.3"),
        ({"cudnn_version": None}, "PyTorch cannot use cuDNN"),
        ({"expected_gpus": 3}, "pytorch sees 2 GPU(s) but nvidia-smi lists 3"),
        ({"all_reduce": {"backend": "nccl", "world_size": 2, "max_abs_error": 1.0, "bus_gbps": 1.0}},
         "nccl all-reduce across 2 devices returned wrong sums (largest error 1"),
        ({"all_reduce": {"backend": "nccl", "world_size": 2, "problem": "the nccl all-reduce ... did not finish"}},
         "did not finish"),
    ],
    ids=["exact", "freivalds-nan", "bf16", "cudnn-conv", "no-cudnn", "gpu-count", "all-reduce-sums",
         "all-reduce-hang"],
)
def test_each_wrong_number_fails_and_is_named(check: ModuleType, changes: dict[str, Any], named: str) -> None:
    result = two_gpus()
    for key, value in changes.items():
        if key == "devices":  # a change to the second GPU only: the first one's good numbers must not hide it
            result["devices"][1].update(value[0])
        else:
            result[key] = value
    judged = check.judge(result)
    assert judged["ok"] is False and named in judged["problem"], judged.get("problem")


def test_one_gpu_that_crashes_is_reported_and_the_others_still_are(check: ModuleType) -> None:
    def crash() -> dict[str, Any]:
        raise RuntimeError("CUDA error: uncorrectable ECC error encountered")

    crashed = check.guarded("cuda:1", crash)
    result = check.judge(two_gpus(devices=[gpu(0), crashed]))
    assert result["ok"] is False
    assert "pytorch on cuda:1: RuntimeError: CUDA error: uncorrectable ECC error" in result["problem"]
    assert result["report"][0].startswith("pytorch 2.6.0+cu124 on cuda:0 (NVIDIA H100 80GB HBM3): 128x128")
    assert result["report"][1].startswith("pytorch 2.6.0+cu124 on cuda:1: FAILED: cuda:1: RuntimeError")


def test_a_hidden_gpu_names_cuda_visible_devices(check: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    result = check.judge(two_gpus(expected_gpus=3))
    assert "(CUDA_VISIBLE_DEVICES=0 hides the others; unset it)" in result["problem"], result["problem"]


def test_cudnn_versions_read_as_people_write_them(check: ModuleType) -> None:
    assert check.cudnn_version_text(8902) == "8.9.2"  # cuDNN 8: major * 1000 + minor * 100 + patch
    assert check.cudnn_version_text(90100) == "9.1.0"  # cuDNN 9: major * 10000 + minor * 100 + patch
    assert check.cudnn_version_text(None) is None


def to_bfloat16(values: Any) -> Any:
    """float32 values rounded to the nearest bfloat16 (ties to even), still stored as float32."""
    import numpy as np

    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def test_the_bf16_tolerance_passes_rounding_and_catches_a_broken_product(check: ModuleType) -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    a, b = (to_bfloat16(rng.standard_normal((512, 512), dtype=np.float32)) for _ in range(2))
    reference = a @ b  # the check's reference: the float32 product of the bfloat16 operands

    def error(product: Any) -> float:
        return float(np.linalg.norm(product - reference) / np.linalg.norm(reference))

    rounded = error(to_bfloat16(reference))  # a correct bfloat16 product: its result rounded to bfloat16
    assert 1e-4 < rounded < check.BF16_TOLERANCE / 4, rounded
    # bfloat16 partial sums: the inner dimension split in eight, each part rounded, then summed and rounded
    parts = [to_bfloat16(a[:, k:k + 64] @ b[k:k + 64, :]) for k in range(0, 512, 64)]
    assert error(to_bfloat16(sum(parts))) < check.BF16_TOLERANCE / 2
    assert error(to_bfloat16(a @ b.T)) > check.BF16_TOLERANCE  # the wrong layout
    missing_tile = to_bfloat16(reference).copy()
    missing_tile[:, :64] = 0  # one tile of the result never written
    assert error(missing_tile) > check.BF16_TOLERANCE


def test_the_all_reduce_knows_every_sum(check: ModuleType) -> None:
    for world_size in (2, 3, 8):
        for position in (0, 1, 999, 1000, 123_456):
            held = [(position % check.ALL_REDUCE_PERIOD) + rank + 1 for rank in range(world_size)]
            assert check.all_reduce_expected(position, world_size) == sum(held)
    # float32 holds every sum exactly, so any difference is a corrupted transfer
    assert check.all_reduce_expected(check.ALL_REDUCE_ELEMENTS - 1, 16) < 2**24


def test_bus_bandwidth_is_what_nccl_tests_reports(check: ModuleType) -> None:
    # 1 GB all-reduced in 10 ms across 8 GPUs: 100 GB/s of data, 175 GB/s over each link of the ring.
    assert check.bus_bandwidth_gbps(10**9, 0.01, 8) == pytest.approx(175.0)


def test_a_free_port_can_be_bound(check: ModuleType) -> None:
    import socket

    port = check.free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))


# -- framework_check.py with the real frameworks, on the CPU, where they are installed -------------------------


def test_the_all_reduce_sums_exactly_across_processes(check: ModuleType) -> None:
    pytest.importorskip("torch")
    result = check.all_reduce_check(2, "gloo", "cpu", elements=1 << 16, timeout_s=120)
    assert result.get("max_abs_error") == 0.0, result
    assert check.all_reduce_problems("pytorch", result) == []


def test_an_all_reduce_that_does_not_finish_is_a_problem_not_a_hang(check: ModuleType) -> None:
    pytest.importorskip("torch")
    result = check.all_reduce_check(2, "gloo", "cpu", elements=1 << 16, timeout_s=0.01)
    assert "did not finish in 0 s" in result["problem"], result


def test_an_all_reduce_whose_workers_fail_says_why(check: ModuleType) -> None:
    pytest.importorskip("torch")
    result = check.all_reduce_check(2, "nccl", "cpu", elements=1 << 10, timeout_s=120)  # NCCL needs a GPU
    assert result["problem"].startswith("the nccl all-reduce across 2 devices failed: "), result


@pytest.mark.parametrize("framework", ["pytorch", "jax"])
def test_every_check_passes_on_the_cpu(check: ModuleType, framework: str) -> None:
    pytest.importorskip(check.FRAMEWORKS[framework])
    run = check.check_pytorch if framework == "pytorch" else check.check_jax
    result = check.judge(run("cpu", 256))
    assert result["ok"] is True, result.get("problem")
    [entry] = result["devices"]
    assert entry["exact_max_abs_error"] == 0 and entry["bf16_relative_error"] < check.BF16_TOLERANCE
    assert result["report"][0].startswith(f"{framework} "), result["report"]

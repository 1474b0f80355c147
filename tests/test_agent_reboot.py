"""A tower reboots itself for a pending update only when allowed, idle, warned, and once per update.

The pure readers of what waits for a reboot, then ``nomadrig-agent tick`` as
the timer runs it over a fake root (see tests/test_agent_cli.py's FakeBox):
``/run/reboot-required`` as Debian's unattended-upgrades and Ubuntu's
update-notifier write it, and a loaded NVIDIA module older than the one on
disk (a stand-in ``modinfo``), with a stand-in reboot command that records
that it ran.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nomadrig.agent import bundle
from nomadrig.agent.reboot import (
    driver_reason,
    installed_kernels,
    kernel_sort_key,
    newest_kernel_blocker,
    required_reason,
    sample_reboot,
)
from tests.test_agent_cli import FakeBox

KERNEL_FLAG = "*** System restart required ***\n"


@pytest.mark.parametrize(
    ("loaded", "on_disk", "expected"),
    [
        ("535.261.03", "535.309.01", "NVIDIA driver 535.309.01 is installed, 535.261.03 is loaded"),
        ("550.163.01\n", "550.163.01\n", None),  # the file and modinfo end in a newline
        (None, "535.309.01", None),  # no module loaded: a failed load must not reboot in a loop
        ("535.261.03", None, None),  # modinfo failed: nothing is known to wait
        ("535.261.03", "535.309.01; reboot", None),  # not a version: ignored, never shown
        ("535.261.03\x1b[2J", "535.309.01", None),
    ],
)
def test_the_driver_waits_for_a_reboot_only_when_the_loaded_module_differs_from_the_one_on_disk(
    loaded: str | None, on_disk: str | None, expected: str | None
) -> None:
    assert driver_reason(loaded, on_disk) == expected


def test_reboot_required_names_its_packages_printably_and_briefly() -> None:
    assert required_reason(None, "linux-image-6.1.0-28-amd64\n") is None
    assert required_reason(KERNEL_FLAG, None) == "an update asks for a reboot (/run/reboot-required)"
    packages = "linux-image-6.1.0-28-amd64\nlinux-image-6.1.0-28-amd64\nlibc6\x1b[31m\n" + "".join(
        f"pkg{i}\n" for i in range(6))
    reason = required_reason(KERNEL_FLAG, packages)
    assert reason is not None and "\x1b" not in reason and reason.endswith(" and 3 more)")
    assert reason.count("linux-image-6.1.0-28-amd64") <= 1


def test_the_sample_reads_both_sources_and_asks_modinfo_only_when_a_module_is_loaded(tmp_path: Path) -> None:
    files = {"/run/reboot-required": KERNEL_FLAG, "/sys/module/nvidia/version": "535.261.03\n"}
    asked: list[list[str]] = []

    def runner(argv: list[str]) -> tuple[int, str, str]:
        asked.append(argv)
        return 0, "535.309.01\n", ""

    part = sample_reboot(files.get, runner)
    assert part["pending"] and asked == [["modinfo", "-F", "version", "nvidia"]]
    assert part["reasons"] == ["an update asks for a reboot (/run/reboot-required)",
                               "NVIDIA driver 535.309.01 is installed, 535.261.03 is loaded"]
    asked.clear()
    assert sample_reboot({}.get, runner) == {"status": "ok", "pending": False, "reasons": []}
    assert asked == []


def test_kernels_are_ordered_as_the_boot_loader_orders_them_and_leftover_directories_are_not_kernels(
    tmp_path: Path,
) -> None:
    for release in ("6.1.0-9-amd64", "6.1.0-28-amd64", "6.1.0-10-amd64", "5.10.0-32-amd64"):
        (tmp_path / release / "kernel").mkdir(parents=True)
    (tmp_path / "6.1.0-30-amd64" / "updates" / "dkms").mkdir(parents=True)  # a removed kernel's DKMS leftovers
    (tmp_path / "6.1.0-31-amd64; reboot" / "kernel").mkdir(parents=True)  # not a release: never passed to modinfo
    assert installed_kernels(str(tmp_path)) == ["5.10.0-32-amd64", "6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-28-amd64"]
    assert installed_kernels(str(tmp_path / "missing")) == []
    assert sorted(["6.8.0-100-generic", "6.8.0-49-generic"], key=kernel_sort_key)[-1] == "6.8.0-100-generic"


@pytest.mark.parametrize(
    ("running", "kernels", "with_module", "blocked"),
    [
        # Ubuntu: unattended-upgrades installed 6.8.0-50 but held back its signed-module package.
        ("6.8.0-49-generic", ["6.8.0-49-generic", "6.8.0-50-generic"], {"6.8.0-49-generic"}, "6.8.0-50-generic"),
        # Debian: DKMS built the module for the new kernel: the reboot is safe.
        ("6.1.0-27-amd64", ["6.1.0-27-amd64", "6.1.0-28-amd64"], {"6.1.0-27-amd64", "6.1.0-28-amd64"}, None),
        # The newest kernel already runs: rebooting comes back to it.
        ("6.1.0-28-amd64", ["6.1.0-27-amd64", "6.1.0-28-amd64"], {"6.1.0-28-amd64"}, None),
        # Nothing known: no block (and no invented reason).
        ("", ["6.1.0-28-amd64"], set(), None),
        ("6.1.0-28-amd64", [], set(), None),
    ],
)
def test_a_reboot_into_a_newest_kernel_without_an_nvidia_module_is_blocked_with_the_fix(
    running: str, kernels: list[str], with_module: set[str], blocked: str | None
) -> None:
    reason = newest_kernel_blocker(running, kernels, lambda k: "535.309.01" if k in with_module else None)
    if blocked is None:
        assert reason is None
    else:
        assert reason is not None and f"the newest installed kernel, {blocked}, has no NVIDIA module" in reason
        assert "nomadrig tower apply" in reason


def test_the_sample_asks_modinfo_about_the_newest_kernel_only_when_a_reboot_is_pending() -> None:
    files = {"/run/reboot-required": KERNEL_FLAG, "/sys/module/nvidia/version": "535.309.01\n",
             "/proc/sys/kernel/osrelease": "6.8.0-49-generic\n"}
    asked: list[list[str]] = []

    def runner(argv: list[str]) -> tuple[int, str, str]:
        asked.append(argv)
        return (1, "", "modinfo: ERROR: Module nvidia not found.") if "-k" in argv else (0, "535.309.01\n", "")

    part = sample_reboot(files.get, runner, lambda: ["6.8.0-49-generic", "6.8.0-50-generic"])
    assert part["pending"] and "6.8.0-50-generic, has no NVIDIA module" in part["blocked"]
    assert ["modinfo", "-k", "6.8.0-50-generic", "-F", "version", "nvidia"] in asked
    asked.clear()
    quiet = {k: v for k, v in files.items() if k != "/run/reboot-required"}
    assert "blocked" not in sample_reboot(quiet.get, runner, lambda: ["6.8.0-49-generic", "6.8.0-50-generic"])
    assert asked == [["modinfo", "-F", "version", "nvidia"]]


# --- the tick, as the timer runs it ---------------------------------------------------------


class Tower(FakeBox):
    """A quiet tower in report mode whose reboot command records that it ran."""

    def __init__(self, root: Path, **config: object) -> None:
        self.reboot_log = root / "reboot.log"
        root.mkdir(parents=True, exist_ok=True)
        reboot = self.script(root / "reboot", f"echo reboot >> '{self.reboot_log}'")
        settings = {"mode": "report", "idle_minutes": 30, "grace_minutes": 5, "reboot_when_pending": True,
                    "reboot_command": [str(reboot)]}
        super().__init__(root / "tower", **{**settings, **config})

    def pend(self, packages: str = "linux-image-6.1.0-28-amd64\n") -> None:
        (self.root / "run").mkdir(exist_ok=True)
        (self.root / "run" / "reboot-required").write_text(KERNEL_FLAG)
        (self.root / "run" / "reboot-required.pkgs").write_text(packages)

    def status(self) -> dict:
        return json.loads((self.state_dir / "status.json").read_text())


@pytest.fixture
def tower(tmp_path: Path) -> Tower:
    return Tower(tmp_path)


def test_an_idle_tower_with_a_pending_update_is_warned_then_rebooted_after_the_grace(tower: Tower) -> None:
    tower.pend()
    tower.seed_quiet_history(31)
    assert tower.run("tick").returncode == 0
    assert tower.stored_samples()[-1]["action"] == "warn"
    warning = tower.wall_log.read_text()
    assert "will reboot in 5 min" in warning and "linux-image-6.1.0-28-amd64" in warning
    assert not tower.reboot_log.exists()

    tower.seed_quiet_history(37, action_at={31: "warn"})
    done = tower.run("tick")
    assert done.returncode == 0, done.stderr
    assert tower.reboot_log.read_text() == "reboot\n"
    assert tower.stored_samples()[-1]["action"] == "reboot"
    record = json.loads((tower.state_dir / "reboot.json").read_text())
    assert record["reasons"] == tower.status()["reboot_reasons"]
    assert not tower.poweroff_log.exists()


def test_a_busy_tower_is_not_rebooted_and_its_status_says_the_reboot_waits(tower: Tower) -> None:
    tower.pend()
    tower.seed_quiet_history(40)
    tower.gpu_csv.write_text(json.loads((Path(__file__).parent / "fixtures" / "agent" /
                                         "h100_matmul_recording.json").read_text())["busy"]["gpu_csv"])
    assert tower.run("tick").returncode == 0
    assert tower.stored_samples()[-1]["action"] == "none"
    assert any("the agent reboots the machine once it is idle" in line for line in tower.status()["reasons"])
    assert not tower.reboot_log.exists() and not tower.wall_log.exists()


def test_without_reboot_when_pending_the_tower_stays_up_and_says_a_reboot_waits(tmp_path: Path) -> None:
    tower = Tower(tmp_path, reboot_when_pending=False)
    tower.pend()
    tower.seed_quiet_history(40)
    assert tower.run("tick").returncode == 0
    assert tower.stored_samples()[-1]["action"] == "report"
    assert any("reboot_when_pending is off" in line for line in tower.status()["reasons"])
    assert not tower.reboot_log.exists()


def test_a_reboot_that_does_not_clear_the_update_is_not_repeated_until_it_clears(tower: Tower) -> None:
    tower.pend()
    tower.seed_quiet_history(37, action_at={31: "warn"})
    assert tower.run("tick").returncode == 0 and tower.reboot_log.exists()
    # The next boot: the same update still waits (the flag came back), the tower is idle again.
    tower.seed_quiet_history(40)
    assert tower.run("tick").returncode == 0
    assert tower.stored_samples()[-1]["action"] == "report"
    assert any("did not clear it, so it does not reboot again" in line for line in tower.status()["reasons"])
    assert tower.reboot_log.read_text() == "reboot\n"
    # Once nothing waits, the record goes; a later update may reboot the tower again.
    os.unlink(tower.root / "run" / "reboot-required")
    assert tower.run("tick").returncode == 0
    assert not (tower.state_dir / "reboot.json").exists()
    tower.pend("linux-image-6.1.0-29-amd64\n")
    tower.seed_quiet_history(37, action_at={31: "warn"})
    assert tower.run("tick").returncode == 0
    assert tower.reboot_log.read_text() == "reboot\nreboot\n"


def test_a_failed_reboot_is_reported_and_retried_next_run(tmp_path: Path) -> None:
    tower = Tower(tmp_path, reboot_command=["false"], grace_minutes=0)
    tower.pend()
    tower.seed_quiet_history(31)
    done = tower.run("tick")
    assert done.returncode == 1 and "false exited 1" in done.stderr
    assert tower.stored_samples()[-1]["action"] == "reboot_failed"


def test_a_box_that_stops_when_idle_neither_ships_nor_samples_the_reboot_reader(tmp_path: Path) -> None:
    shipped = {Path(f.path).name for f in bundle.agent_files({"mode": "shutdown"})}
    assert "reboot.py" not in shipped and "decision.py" in shipped
    assert "reboot.py" in {Path(f.path).name for f in bundle.agent_files({"mode": "report"})}
    box = FakeBox(tmp_path / "box", mode="shutdown", idle_minutes=30, grace_minutes=5)
    done = box.run("sample")
    assert done.returncode == 0 and "reboot" not in json.loads(done.stdout)


def test_an_idle_tower_is_not_rebooted_into_a_kernel_without_an_nvidia_module(tower: Tower) -> None:
    """The real tick over a tower whose newest kernel's module package was held back (Ubuntu's shape)."""
    tower.pend("linux-image-6.8.0-50-generic\n")
    (tower.root / "proc" / "sys" / "kernel" / "osrelease").write_text("6.8.0-49-generic\n")
    (tower.root / "sys" / "module" / "nvidia").mkdir(parents=True)
    (tower.root / "sys" / "module" / "nvidia" / "version").write_text("535.309.01\n")
    for release in ("6.8.0-49-generic", "6.8.0-50-generic"):
        (tower.root / "lib" / "modules" / release / "kernel").mkdir(parents=True)
    tower.script(tower.root / "stand-ins" / "modinfo",
                 'case "$2" in 6.8.0-50-generic) echo "modinfo: ERROR: Module nvidia not found." >&2; exit 1 ;; esac\n'
                 "echo 535.309.01")
    tower.seed_quiet_history(40)
    assert tower.run("tick", path=str(tower.root / "stand-ins")).returncode == 0
    assert tower.stored_samples()[-1]["action"] == "report"
    assert any("6.8.0-50-generic, has no NVIDIA module" in line for line in tower.status()["reasons"])
    assert not tower.reboot_log.exists() and not tower.wall_log.exists()
    # Once the module is there (the next apply installed it), the same tower reboots after its warning.
    tower.script(tower.root / "stand-ins" / "modinfo", "echo 535.309.01")
    tower.seed_quiet_history(37, action_at={31: "warn"})
    assert tower.run("tick", path=str(tower.root / "stand-ins")).returncode == 0
    assert tower.reboot_log.read_text() == "reboot\n"


def test_activity_during_a_reboot_warning_cancels_a_reboot_and_says_so(tower: Tower) -> None:
    tower.pend()
    tower.seed_quiet_history(33, action_at={31: "warn", 32: "warn"})
    tower.gpu_csv.write_text(json.loads((Path(__file__).parent / "fixtures" / "agent" /
                                         "h100_matmul_recording.json").read_text())["busy"]["gpu_csv"])
    assert tower.run("tick").returncode == 0
    assert "nomadrig: idle reboot cancelled, activity seen (gpu" in tower.wall_log.read_text()
    assert not tower.reboot_log.exists()

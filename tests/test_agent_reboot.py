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
from nomadrig.agent.reboot import driver_reason, required_reason, sample_reboot
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

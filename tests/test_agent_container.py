"""The idle agent on a booted Debian: installed as cloud-init or the role would, driven by its timer.

The container stands in for a cloud box: systemd as PID 1, the agent's units,
a stand-in ``nvidia-smi`` on PATH printing what an H100 printed (recorded, see
``tests/fixtures/agent/h100_matmul_recording.json``), and a real ``systemctl
poweroff`` that stops the container the way it stops a cloud box. The timer
period is shortened to 10 s and the idle window to 1 minute to keep it short.

Two things differ from a cloud box on purpose: the container sees the host's
``/proc/loadavg`` (the kernel is shared), so the CPU threshold is set out of
reach and the test is about the GPU; and the first agent run is started by
hand instead of waiting the timer's ``OnBootSec=2min``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nomadrig.agent import bundle
from tests.harness import ContainerSpec, DebianContainer
from tests.harness.fixtures import WORK_ROOT

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parent.parent
RECORDING = json.loads((REPO / "tests" / "fixtures" / "agent" / "h100_matmul_recording.json").read_text())
TEST_CONFIG = {
    "mode": "shutdown",
    "idle_minutes": 1,
    "interval_seconds": 10,
    "cpu_load_threshold": 1000.0,  # the container sees the host's load average
}


def install_agent(container: DebianContainer, config: dict[str, Any], gpu_csv: str) -> None:
    """Write the bundle's files into the box and start the timer, as cloud-init's write_files + runcmd do."""
    for item in bundle.agent_files(config, compact=True):
        target = container.rootfs / item.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item.content)
        target.chmod(item.mode)
    set_gpu(container, gpu_csv)
    stand_in = container.rootfs / "usr" / "local" / "bin" / "nvidia-smi"
    stand_in.write_text(
        "#!/bin/sh\n# Stand-in for nvidia-smi: prints a recorded H100 answer to the agent's queries.\n"
        'case "$1" in\n  --query-gpu=*) cat /etc/nomadrig-test/gpu.csv ;;\n  *) : ;;\nesac\n'
    )
    stand_in.chmod(0o755)
    for command in bundle.cloud_init_runcmd():
        container.run(command, check=True)


def set_gpu(container: DebianContainer, gpu_csv: str) -> None:
    target = container.rootfs / "etc" / "nomadrig-test" / "gpu.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(gpu_csv)


def stored_actions(container: DebianContainer) -> list[dict[str, Any]]:
    path = container.rootfs / "var" / "lib" / "nomadrig" / "agent.json"
    if not path.exists():
        return []
    return json.loads(path.read_text())["samples"]


def first_run(container: DebianContainer) -> None:
    """Start the first run now; the timer repeats it every interval from there."""
    assert container.run("systemctl is-active nomadrig-agent.timer").stdout.strip() == "active"
    container.run("systemctl start nomadrig-agent.service", check=True)


@dataclass
class IdleBox:
    """A box of the timing tests: its container and when its agent's first run was started."""

    container: DebianContainer
    started: float


#: The timing tests' boxes: (GPU recording, release, grace minutes), keyed by what each test asks for.
IDLE_BOXES = {
    "quiet-bookworm": ("idle", "bookworm", 1),
    "quiet-trixie": ("idle", "trixie", 1),
    "busy-trixie": ("busy", "trixie", 0),
}


@pytest.fixture(scope="module")
def idle_boxes(container_prerequisites: None, container_ssh_key: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, IdleBox]]:
    """The timing tests' boxes, booted and started together.

    Each test waits out a one-minute idle window (and a grace): started one
    after the other they cost three waits, started together one.
    """
    logs = tmp_path_factory.mktemp("idle-boxes")
    booted: dict[str, IdleBox] = {}
    try:
        for key, (recording, release, grace) in IDLE_BOXES.items():
            container = DebianContainer(ContainerSpec(release=release, admin_user=None),
                                        WORK_ROOT / f"{os.getpid()}-idle-{key}", container_ssh_key)
            booted[key] = IdleBox(container, 0.0)
            container.boot(120)
            install_agent(container, dict(TEST_CONFIG, grace_minutes=grace), RECORDING[recording]["gpu_csv"])
        for box in booted.values():
            first_run(box.container)
            box.started = time.monotonic()
        yield booted
    finally:
        for key, box in booted.items():
            box.container.close()
            if box.container.boot_log.exists():
                shutil.copy(box.container.boot_log, logs / f"{key}-boot.log")
            shutil.rmtree(box.container.workdir, ignore_errors=True)


def test_a_box_with_a_quiet_gpu_warns_then_powers_itself_off(idle_boxes: dict[str, IdleBox], debian_release: str):
    box = idle_boxes[f"quiet-{debian_release}"]

    box.container.wait_for_poweroff(timeout=max(1.0, box.started + 300 - time.monotonic()))
    took = time.monotonic() - box.started

    samples = stored_actions(box.container)
    actions = [s["action"] for s in samples]
    assert actions[-1] == "shutdown", actions
    first_warn = actions.index("warn")
    warn_mono, shutdown_mono = samples[first_warn]["mono"], samples[-1]["mono"]
    assert shutdown_mono - warn_mono >= 60, "shut down before the 1-minute grace ran out"
    assert samples[first_warn]["mono"] - samples[0]["mono"] >= 60, "warned before the 1-minute window"
    print(f"{debian_release}: powered off {took:.0f} s after the first run, {len(samples)} runs: {actions}")


def test_a_box_with_a_busy_gpu_stays_up_past_the_window_and_grace(idle_boxes: dict[str, IdleBox]):
    box = idle_boxes["busy-trixie"]
    container = box.container

    # The idle window, no grace, and margin for four more runs, counted from the first run.
    time.sleep(max(0.0, box.started + 60 + 0 + 45 - time.monotonic()))

    assert container.running
    samples = stored_actions(container)
    assert len(samples) >= 6, samples
    assert {s["action"] for s in samples} == {"none"}
    status = json.loads((container.rootfs / "var" / "lib" / "nomadrig" / "status.json").read_text())
    assert status["signals"]["gpu"]["state"] == "active" and "GPU 0 at 100%" in status["signals"]["gpu"]["detail"]
    shown = container.run("nomadrig-agent status", check=True).stdout
    assert shown.startswith("not idle: active signal(s): gpu"), shown


def test_the_agent_role_installs_the_timer_and_a_second_run_changes_nothing(
    boot_container, container_ssh_key: Path, tmp_path: Path
):
    container = boot_container(ContainerSpec(release="trixie"))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"box ansible_host={container.ip} ansible_user=admin ansible_become=true "
        f"ansible_ssh_private_key_file={container_ssh_key} ansible_python_interpreter=/usr/bin/python3 "
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
    )
    playbook = tmp_path / "agent.yml"
    playbook.write_text(
        "- hosts: box\n  become: true\n  roles:\n    - role: agent\n"
        f"      agent_source_dir: {REPO / 'nomadrig' / 'agent'}\n"
        "      agent_idle_minutes: 45\n"
    )
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_STDOUT_CALLBACK="default",
    )

    def apply() -> str:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), str(playbook)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        return done.stdout

    first = apply()
    assert "changed=0" not in first.splitlines()[-2]
    assert container.run("systemctl is-active nomadrig-agent.timer").stdout.strip() == "active"
    config = json.loads(container.run("cat /etc/nomadrig/agent.json", check=True).stdout)
    assert config == {"grace_minutes": 10, "idle_minutes": 45, "mode": "report", "reboot_when_pending": False}
    shipped = sorted(container.run("ls /opt/nomadrig/agent/nomadrig_agent", check=True).stdout.split())
    assert shipped == bundle.package_modules()
    ran = container.run("nomadrig-agent tick && nomadrig-agent status", timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "mode report, idle window 45 min" in ran.stdout

    second = apply()
    recap = next(line for line in second.splitlines() if line.startswith("box "))
    assert "changed=0" in recap, second[-3000:]

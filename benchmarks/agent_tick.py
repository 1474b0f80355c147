"""Cost of the idle agent per timer run: the decision on a full history, and a whole `tick`.

Run: .venv/bin/python benchmarks/agent_tick.py [--runs 15]

The decision is measured on the longest history the agent keeps for the
largest idle window the example team allows (240 min + 10 min grace); the
tick is the real command (a new python3 process, as the timer starts it) over
a fake root with that history, so it includes reading and atomically
rewriting the state file. Prints medians and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nomadrig.agent.config import AgentConfig  # noqa: E402
from nomadrig.agent.decision import decide  # noqa: E402
from nomadrig.agent.sampler import boot_time_seconds  # noqa: E402
from nomadrig.agent.state import history_limit  # noqa: E402

RECORDING = json.loads((ROOT / "tests" / "fixtures" / "agent" / "h100_matmul_recording.json").read_text())
BOOT_ID = "8732c567-d206-4e7b-923a-6403c4a6278d"


def quiet_history(count: int, now_wall: float, now_boot: float) -> list[dict]:
    samples = []
    for k in range(count, 0, -1):
        sample = json.loads(json.dumps(RECORDING["after"]["sample"]))
        sample.update(t=now_wall - 60 * k, mono=now_boot - 60 * k, boot_id=BOOT_ID, action="none")
        samples.append(sample)
    return samples


def fake_root(base: Path, config: AgentConfig) -> Path:
    proc = base / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "sys" / "kernel" / "random").mkdir(parents=True)
    header = (ROOT / "tests" / "fixtures" / "agent" / "proc_net_tcp.txt").read_text().splitlines()[0] + "\n"
    (proc / "net" / "tcp").write_text(header)
    (proc / "net" / "tcp6").write_text(header)
    (proc / "loadavg").write_text("0.05 0.05 0.05 1/200 4242\n")
    (proc / "stat").write_text("cpu 1\ncpu0 1\n")
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text(BOOT_ID + "\n")
    smi = base / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncase \"$1\" in --query-gpu=*) echo '0, 0, 81559' ;; esac\n")
    smi.chmod(0o755)
    (base / "etc" / "nomadrig").mkdir(parents=True)
    settings = dict(config.to_dict(), nvidia_smi=str(smi))
    (base / "etc" / "nomadrig" / "agent.json").write_text(json.dumps(settings))
    return base


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    config = AgentConfig(mode="report", idle_minutes=240, grace_minutes=10)
    size = history_limit(config)

    history = quiet_history(size, time.time(), boot_time_seconds())
    decide_times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        decision = decide(history, config, now=history[-1]["t"])
        decide_times.append(time.perf_counter() - started)

    tick_times = []
    with tempfile.TemporaryDirectory() as tmp:
        root = fake_root(Path(tmp), config)
        state = root / "var" / "lib" / "nomadrig"
        state.mkdir(parents=True)
        env = dict(os.environ, NOMADRIG_AGENT_ROOT=str(root))
        for _ in range(args.runs):
            seeded = quiet_history(size - 1, time.time(), boot_time_seconds())
            (state / "agent.json").write_text(json.dumps({"version": 1, "samples": seeded}))
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "nomadrig.agent", "tick"], cwd=ROOT, env=env,
                           capture_output=True, check=True)
            tick_times.append(time.perf_counter() - started)
        state_bytes = (state / "agent.json").stat().st_size

    print(f"decide, {size} samples (240 min window + 10 min grace): median "
          f"{statistics.median(decide_times) * 1000:.1f} ms ({args.runs} runs); verdict: {decision.reasons[0]}")
    print(f"nomadrig-agent tick, same history: median {statistics.median(tick_times) * 1000:.0f} ms "
          f"({args.runs} runs); state file {state_bytes / 1024:.0f} KiB")
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; {date.today().isoformat()}")


if __name__ == "__main__":
    main()

"""Record what the idle agent sees on a real GPU: before, during and after a PyTorch matmul.

Run on a GPU machine from the repository root (needs python3 with torch there)::

    python3 benchmarks/agent_gpu_record.py OUTDIR [--seconds 25]

Writes to OUTDIR:

* ``agent_gpu_recording.json``: for each phase (idle, busy, after) the raw
  stdout of the two ``nvidia-smi`` queries the agent runs, exactly as printed
  (for the parser tests), and ``nomadrig-agent sample --json``;
* ``summary.txt``: the GPU verdict of the decision for each sample and the
  time one sample took, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from nomadrig.agent.config import AgentConfig  # noqa: E402
from nomadrig.agent.decision import read_signals  # noqa: E402
from nomadrig.agent.gpu import APPS_QUERY, GPU_QUERY  # noqa: E402

MATMUL = """
import sys, time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + float(sys.argv[1])
print("matmul running", flush=True)
while time.time() < end:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize()
print("matmul done", flush=True)
"""


def record(phase: str, recording: dict, env: dict) -> dict:
    raw = {}
    for query, name in ((GPU_QUERY, "gpu_csv"), (APPS_QUERY, "apps_csv")):
        done = subprocess.run(["nvidia-smi"] + query, capture_output=True, text=True, check=False)
        raw[name] = done.stdout
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "nomadrig.agent", "sample", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=env,
    )
    took = time.perf_counter() - started
    sample = json.loads(done.stdout)
    recording[phase] = dict(raw, sample=sample)
    gpu = read_signals(sample, AgentConfig())["gpu"]
    return {
        "phase": phase,
        "gpu_state": gpu.state,
        "gpu_detail": gpu.detail,
        "sample_seconds": round(took, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--seconds", type=float, default=25.0)
    args = parser.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    root = tempfile.mkdtemp(prefix="agent-root-")
    env = dict(os.environ, NOMADRIG_AGENT_ROOT=root, NOMADRIG_AGENT_PROC="/proc")
    recording: dict = {}
    rows = [record("idle", recording, env)]
    job = subprocess.Popen(
        [sys.executable, "-c", MATMUL, str(args.seconds)], stdout=subprocess.PIPE, text=True
    )
    assert job.stdout is not None
    job.stdout.readline()  # "matmul running": tensors allocated, loop started
    time.sleep(min(8.0, args.seconds / 2))
    rows.append(record("busy", recording, env))
    job.wait()
    time.sleep(3)
    rows.append(record("after", recording, env))
    gpu_name = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    lines = [
        f"{row['phase']:<6} gpu {row['gpu_state']:<7} {row['gpu_detail']}"
        f"  (sample took {row['sample_seconds']} s)"
        for row in rows
    ]
    lines.append(
        f"machine: {gpu_name}; {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    text = "\n".join(lines) + "\n"
    recording["machine"] = lines[-1]
    with open(os.path.join(args.outdir, "agent_gpu_recording.json"), "w") as handle:
        json.dump(recording, handle, indent=1, sort_keys=True)
    with open(os.path.join(args.outdir, "summary.txt"), "w") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

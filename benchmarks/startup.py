"""Start-up time of the CLI: `nomadrig --help` and `nomadrig validate` against `python -c pass`.

Run: .venv/bin/python benchmarks/startup.py [--runs 15]
Prints the median wall time of each command and the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def median_wall(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, cwd=ROOT, check=False)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, cwd=ROOT, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    py = sys.executable
    nomadrig = str(Path(py).with_name("nomadrig"))
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "nomadrig --help": [nomadrig, "--help"],
        "nomadrig validate examples/team.yaml": [nomadrig, "validate", "examples/team.yaml"],
    }
    for name, cmd in cases.items():
        print(f"{name}: median {median_wall(cmd, args.runs):.3f} s ({args.runs} runs)")
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {os.cpu_count()} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}; {date.today()}")


if __name__ == "__main__":
    main()

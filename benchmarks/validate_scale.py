"""How `nomadrig validate` scales with the team, and what hostile YAML costs it: wall time and peak memory.

Run: .venv/bin/python benchmarks/validate_scale.py [--runs 5] [--sizes 100 1000 10000] [--out FILE]

Each run is the real command (`python -m nomadrig.cli validate --team FILE`, a new
process, so imports count) on a team file made by plan_scale.team_file (the
example's three nomads repeated under new names), where every nomad gets its
own ed25519 public key and e-mail address, as a real team has. Then the
explosive files of tests/test_team_file_hostile.py (alias bombs, a recursive
alias, nesting 10,000 deep, a 5,000-digit number), which must exit 2 in well
under a second and under 100 MB: the tests check the exit code, the line and
the memory; the time is measured here.

Wall time, CPU time (user + system: what a run costs whatever else the machine
runs) and peak memory are the command's own, taken by the tests' small launcher
(forked from this process, the command would be charged with this process's
memory in ru_maxrss). "parse" is the time
load_located takes in this process for the same text: the part of the wall
time that is the YAML itself, without Python's start-up and imports.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plan_scale import machine, team_file  # noqa: E402  (benchmarks/ is this script's own folder)

from nomadrig.yamlmap import load_located  # noqa: E402
from tests.test_team_file_hostile import EXPLOSIVE, run_measured  # noqa: E402

BUSY_NOTE = ("note: the machine was busy with other jobs (load average above 1 on 2 cores), so wall times carry "
             "their load; peak memory does not depend on it.")


def ed25519_public_key(seed: str) -> str:
    """A well-formed ssh-ed25519 public key line, different for every seed (the 32 key bytes are a hash)."""
    def field(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    blob = field(b"ssh-ed25519") + field(hashlib.sha256(seed.encode()).digest())
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {seed}@laptop"


def realistic_team(nomads: int, directory: Path) -> Path:
    """plan_scale's team of `nomads`, each with their own key and address."""
    path = team_file(nomads, directory)
    data = yaml.safe_load(path.read_text())
    for nomad in data["nomads"]:
        nomad["ssh_key"] = ed25519_public_key(nomad["name"])
        nomad["email"] = f"{nomad['name']}@vision-lab.example"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def parse_seconds(text: str) -> float:
    """How long the YAML of text takes to read here, in this process: the file's own cost, without start-up."""
    start = time.perf_counter()
    load_located(text, "team.yaml")
    return time.perf_counter() - start


def measure(label: str, command: list[str], runs: int, expected_exit: int, text: str | None = None) -> str:
    """Median wall and CPU time, and peak memory, of `runs` runs of command (and of parsing text in-process)."""
    results = [run_measured(command, timeout=600) for _ in range(runs)]
    for run in results:
        if run.code != expected_exit:
            raise SystemExit(f"{label}: exit {run.code}, expected {expected_exit}:\n{run.output[-2000:]}")
    walls = [run.wall_s for run in results]
    line = (f"{label}: median {statistics.median(walls):.2f} s wall, "
            f"{statistics.median(run.cpu_s for run in results):.2f} s CPU ({runs} runs, wall min {min(walls):.2f} s, "
            f"max {max(walls):.2f} s), peak {max(run.peak_mb for run in results):.0f} MB, exit {expected_exit}")
    if text is not None:
        line += f"; parse {statistics.median(parse_seconds(text) for _ in range(runs)) * 1000:.0f} ms"
    print(line, flush=True)
    return line


def validate(label: str, path: Path, runs: int, expected_exit: int) -> str:
    """measure() of `nomadrig validate --team path`."""
    command = [sys.executable, "-m", "nomadrig.cli", "validate", "--team", str(path)]
    return measure(f"nomadrig validate, {label}", command, runs, expected_exit, path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    parser.add_argument("--out", type=Path, default=None, help="Also write the results to this file.")
    args = parser.parse_args()
    start_load = os.getloadavg()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        lines.append(measure("reference: python -c pass (the machine's speed now)", [sys.executable, "-c", "pass"],
                             args.runs, 0))
        lines.append(validate("the example (3 nomads: start-up and imports)", ROOT / "examples" / "team.yaml",
                              args.runs, 0))
        for size in sorted(args.sizes):
            path = realistic_team(size, directory)
            lines.append(validate(f"{size:,} nomads ({path.stat().st_size / 1e3:,.0f} kB)", path, args.runs, 0))
        for case in sorted(EXPLOSIVE):
            path = directory / f"{case}.yaml"
            path.write_text(EXPLOSIVE[case][0])
            lines.append(validate(f"hostile {case} ({path.stat().st_size:,} bytes)", path, args.runs, 2))
    load = os.getloadavg()
    lines += [machine(), f"load average (1, 5, 15 min) at the start: {start_load[0]:.2f} {start_load[1]:.2f} "
              f"{start_load[2]:.2f}; at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"]
    if max(start_load[0], load[0]) > 1.0:
        lines.append(BUSY_NOTE)
    print("\n".join(lines[-3:]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

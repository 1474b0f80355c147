"""How `nomadrig plan` scales with the team: 1, 10 and 100 nomads, wall time and peak memory.

Run: .venv/bin/python benchmarks/plan_scale.py [--runs 3] [--sizes 1 10 100] [--out FILE]

Each run is the real command (`python -m nomadrig.cli plan --json`, a new
process, so imports count) on a team file made from examples/team.yaml with
its three nomads repeated under new names (AWS eu-west-1 + us-east-1, GCP
us-central1, as in the example), once as the plan chooses (worker processes
when they are quicker) and once with `--workers 1` (one process).
Peak memory is the largest sum of the RSS of the command and its workers,
sampled every 20 ms from /proc (Linux). CPU time is that of the whole tree.
Prints the median wall time per size and the machine; --out also writes it.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "team.yaml"


def team_file(nomads: int, directory: Path) -> Path:
    """The example team with `nomads` nomads, cycling through the example's three."""
    data = yaml.safe_load(EXAMPLE.read_text())
    base = data["nomads"]
    data["nomads"] = [dict(base[i % len(base)], name=f"{base[i % len(base)]['name']}{i:03d}") for i in range(nomads)]
    for tower in data.get("towers", []):
        tower["nomads"] = []  # towers name example nomads; the renamed team has other names
        for names in ("admins", "docker_users"):
            tower.pop(names, None)
    # A bigger team has a bigger budget; the benchmark measures the plan, not a budget verdict.
    data["budgets"]["monthly_usd"] = max(data["budgets"]["monthly_usd"], 200.0 * nomads)
    path = directory / f"team-{nomads}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tree_rss_kb(root: int) -> int:
    """The RSS of a process and all its descendants, in KiB (0 once it has gone)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        todo.extend(children.get(pid, []))
    return total


def one_run(path: Path, workers: int | None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, all processes) and peak tree RSS (MB) of one plan.

    CPU time is what the plan costs whatever else the machine runs; wall time is what a user waits.
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = usage.ru_utime + usage.ru_stime
    command = [sys.executable, "-m", "nomadrig.cli", "plan", "--team", str(path), "--json"]
    if workers is not None:
        command += ["--workers", str(workers)]
    # stderr to a file, not a pipe: nobody reads a pipe while the plan runs, and a full one would stall it.
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT)
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_rss_kb(process.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - start
        if process.returncode not in (0, 1):
            stderr.seek(0)
            raise SystemExit(f"nomadrig plan failed ({process.returncode}):\n{stderr.read().decode()[-2000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, usage.ru_utime + usage.ru_stime - cpu_before, peak / 1024


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"machine: {os.cpu_count()} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; {date.today().isoformat()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--out", type=Path, default=None, help="Also write the results to this file.")
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sorted(args.sizes):
            path = team_file(size, Path(tmp))
            for workers, label in ((None, "default"), (1, "--workers 1")):
                runs = [one_run(path, workers) for _ in range(args.runs)]
                walls, cpus = [w for w, _, _ in runs], [c for _, c, _ in runs]
                peak = max(m for _, _, m in runs)
                lines.append(f"nomadrig plan, {size} nomads, {label}: median {statistics.median(walls):.1f} s wall, "
                             f"{statistics.median(cpus):.1f} s CPU ({args.runs} runs, wall min {min(walls):.1f} s, "
                             f"max {max(walls):.1f} s), peak {peak:.0f} MB")
                print(lines[-1], flush=True)
    lines.append(machine())
    load = os.getloadavg()
    lines.append(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other jobs on the machine)")
    print("\n".join(lines[-2:]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

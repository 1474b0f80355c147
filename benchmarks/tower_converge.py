"""How long `nomadrig tower apply` takes to converge a bare Debian, and to confirm it after.

Run as root from the repository root, after scripts/ci-container-prereqs.sh::

    .venv/bin/python benchmarks/tower_converge.py [--release trixie --release bookworm] [--out FILE]

For each release: boot a bare container from the cached root file system,
run the full tower playbook (first run: driver, CUDA toolkit, JAX CPU wheels
from a local directory, ...) and then the same apply again --reruns times (the
idempotent run, which must change nothing; the line gives each and their median).
--compare-linear reruns as often again with Ansible's own strategy
(ANSIBLE_STRATEGY=linear), for the figure Mitogen's strategy is measured against.
The package cache (apt-cacher-ng) is warmed by one untimed apply per release
first, so the figure is the converge time of the roles, not of the network;
--no-warmup skips that when the cache is known to be warm already (the result
line then says "cache as found"). Prints and appends results with the machine
and date to benchmarks/results/tower_converge.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nomadrig import towers  # noqa: E402
from tests.harness import DebianContainer, check_prerequisites  # noqa: E402
from tests.harness.fixtures import WORK_ROOT  # noqa: E402
from tests.harness.towers import (  # noqa: E402
    TOWER_RELEASES,
    container_overrides,
    container_team,
    tower_container_spec,
)

RESULTS = REPO / "benchmarks" / "results" / "tower_converge.txt"


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}, kernel {platform.release()}"


#: One timed run: its report and wall seconds.
Timed = tuple[towers.RunReport, float]


def timed_apply(team: object, name: str, options: towers.RunOptions, strategy: str | None = None) -> Timed:
    """One `tower apply`; strategy, where given, is set as ANSIBLE_STRATEGY for that run only."""
    with mock.patch.dict(os.environ, {"ANSIBLE_STRATEGY": strategy} if strategy else {}):
        started = time.monotonic()
        report = towers.run(team, name, "apply", options)  # type: ignore[arg-type]
        return report, time.monotonic() - started


def converge(release: str, key: Path, runs: Path, reruns: int = 1,
             compare_linear: bool = False) -> tuple[Timed, list[Timed], list[Timed]]:
    """Boot a bare container, apply once, rerun; return the first run and the reruns (default, then linear)."""
    spec = tower_container_spec(release)
    container = DebianContainer(spec, WORK_ROOT / f"bench-{release}-{int(time.time())}", key)
    container.boot(timeout=120)
    try:
        team = container_team(TOWER_RELEASES[release], container, key, name=f"bench-{release}")
        overrides = container_overrides(TOWER_RELEASES[release])
        options = towers.RunOptions(ssh_key_file=key, overrides=overrides, runs_dir=runs, strict_host_keys=False)
        name = team.towers[0].name
        first = timed_apply(team, name, options)
        again = [timed_apply(team, name, options) for _ in range(reruns)]
        linear = [timed_apply(team, name, options, "linear") for _ in range(reruns if compare_linear else 0)]
        return first, again, linear
    finally:
        container.close()
        shutil.rmtree(container.workdir, ignore_errors=True)


def converge_all(releases: list[str], key: Path, work: Path) -> tuple[dict, float]:
    """Boot one bare container per release and converge them all with one `nomadrig tower apply --all`.

    The real CLI in a subprocess (its threads, progress and exit code), on a two-tower team file. Host
    keys are checked as for a user: the containers' keys (new on every boot) go into a known-hosts file
    of the benchmark's own.
    """
    import json

    import yaml

    containers = []
    try:
        towers_ = []
        team = None
        for release in releases:
            workdir = WORK_ROOT / f"bench-all-{release}-{int(time.time())}"
            container = DebianContainer(tower_container_spec(release), workdir, key)
            containers.append(container)
            container.boot(timeout=120)
            one = container_team(TOWER_RELEASES[release], container, key, name=f"bench-{release}")
            team = team or one
            towers_.append(one.towers[0])
        assert team is not None
        data = team.model_copy(update={"towers": towers_}).model_dump(mode="json", exclude_defaults=True)
        (work / "team.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        args = [str(Path(sys.executable).parent / "nomadrig"), "tower", "apply", "--all", "--team", "team.yaml",
                "--ssh-key", str(key), "--runs-dir", str(work / "runs"), "--json"]
        for name, value in container_overrides(TOWER_RELEASES[releases[0]]).items():
            args += ["-e", f"{name}={json.dumps(value)}"]
        known_hosts = work / "known_hosts"
        known_hosts.write_text("".join(container.known_hosts_line() for container in containers))
        env = {**os.environ, "NOMADRIG_HOME": str(work / "home"),
               "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={known_hosts}"}
        started = time.monotonic()
        done = subprocess.run(args, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=False)
        seconds = time.monotonic() - started
        result = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {"error": done.stderr[-2000:]}
        result["exit_code"] = done.returncode
        return result, seconds
    finally:
        for container in containers:
            container.close()
            shutil.rmtree(container.workdir, ignore_errors=True)


def rerun_figures(reruns: list[Timed]) -> str:
    """'reruns 18/17/18 s (median 18 s, 0 changed each, strategy mitogen_linear)'."""
    if not reruns:
        return "no rerun"
    seconds = [s for _, s in reruns]
    changed = sorted({r.changed for r, _ in reruns})
    return (f"reruns {'/'.join(f'{s:.0f}' for s in seconds)} s (median {statistics.median(seconds):.0f} s, "
            f"{'/'.join(map(str, changed))} changed each, strategy {reruns[0][0].strategy})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", action="append", choices=sorted(TOWER_RELEASES))
    parser.add_argument("--no-warmup", action="store_true", help="Skip the untimed warm-up apply.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--reruns", type=int, default=3, help="Idempotent reruns after the first apply.")
    parser.add_argument("--compare-linear", action="store_true",
                        help="Rerun as often again with ANSIBLE_STRATEGY=linear (Ansible's own strategy).")
    parser.add_argument("--all-only", action="store_true",
                        help="Only converge the releases together with one `nomadrig tower apply --all`.")
    args = parser.parse_args()
    found = check_prerequisites()
    if not found.ok:
        print(found.reason, file=sys.stderr)
        return 2
    releases = args.release or ["trixie", "bookworm"]
    lines = []
    with tempfile.TemporaryDirectory(prefix="nomadrig-bench-") as tmp:
        key = Path(tmp) / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        for release in [] if args.all_only else releases:
            if not args.no_warmup:
                converge(release, key, Path(tmp) / "runs")  # warm apt-cacher-ng; not timed
            (first, first_s), again, linear = converge(release, key, Path(tmp) / "runs", args.reruns,
                                                       args.compare_linear)
            os_name = TOWER_RELEASES[release].os
            cache = "as found" if args.no_warmup else "warmed by an untimed run"
            ok = "ok" if first.succeeded and all(r.succeeded for r, _ in again + linear) else "FAILED"
            roles = ", ".join(f"{r} {s:.0f}" for r, s in first.role_seconds.items())
            lines.append(
                f"tower apply {os_name} ({release}), package cache {cache}: "
                f"first run {first_s:.0f} s ({first.changed} changed, strategy {first.strategy}), "
                f"{rerun_figures(again)} [{ok}]"
            )
            if linear:
                lines.append(f"  for comparison, {rerun_figures(linear)}")
            lines.append(f"  first run per role, s: {roles}")
            print(*lines[-3 if linear else -2:], sep="\n", flush=True)
        if len(releases) > 1:
            result, seconds = converge_all(releases, key, Path(tmp))
            reports = result.get("reports", [])
            each = ", ".join(
                f"{r.get('tower')} {r.get('status')} {r.get('duration_s', 0):.0f} s ({r.get('changed')} changed)"
                for r in reports
            )
            lines.append(f"tower apply --all, {len(releases)} bare towers ({', '.join(releases)}) in one command: "
                         f"{seconds:.0f} s, exit {result['exit_code']}: {each or result.get('error', '')}")
            print(lines[-1], flush=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"machine: {machine()}; {stamp}")
    print(lines[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        out.write("\n".join(lines) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

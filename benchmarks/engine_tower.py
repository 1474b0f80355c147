"""`up` and `preview` of a real tower stack through the real Pulumi engine, and the engine's own share of it.

benchmarks/engine_real.py times a tower-shaped stack without its playbook; this one times the stack
`nomadrig up TOWER` makes, whose `Tower` dynamic provider runs the tower playbook over SSH. Run from the
repository root, after `bash scripts/setup.sh --test` (the built CLI) and, for the default target,
scripts/ci-container-prereqs.sh::

    .venv/bin/python benchmarks/engine_tower.py                 # boots and converges a Debian 12 container
    .venv/bin/python benchmarks/engine_tower.py --team team.yaml --tower basement --ssh-key ~/.ssh/id_ed25519

Each run starts from an empty file:// backend under a temp dir and does, on a tower that is already converged:
`up` (creates the stack; the provider runs the playbook, which changes nothing), `up` again (no change: the
provider's diff says so and no playbook runs), `preview` with no change, and `preview` of a team file whose
tower changed (one update shown; nothing runs on the tower).

Where the time goes, per operation: the playbook (the run report's duration, from ansible-runner's start to
its end); the `pulumi up`/`preview` process around it; the other CLI calls of the Automation API; the rest is
nomadrig and the Automation API in the nomadrig process. "Engine's own share" is the `pulumi` processes'
time less the playbook's: what the engine, its plugins, the policy pack and the provider's Python process add.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pytest  # noqa: E402  (MonkeyPatch: the same environment set-up as the tests, outside pytest)
from rich.console import Console  # noqa: E402

from benchmarks.engine_real import EventClock, Sample, measure, record, timed_root  # noqa: E402
from nomadrig import towers  # noqa: E402
from nomadrig.cli.tower import parse_overrides  # noqa: E402
from nomadrig.engine import Engine  # noqa: E402
from nomadrig.engine.stacks import TowerRun  # noqa: E402
from nomadrig.spec import tower_spec  # noqa: E402
from nomadrig.team.load import load_team  # noqa: E402
from nomadrig.team.model import Team  # noqa: E402
from tests.fake_pulumi.real import ENGINE_BIN, RealPulumi  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "engine_tower.txt"


def playbook_seconds(runs_dir: Path, seen: set[Path]) -> float:
    """The playbook time of the run reports written since `seen` was taken (adds them to it)."""
    total = 0.0
    for report in sorted(runs_dir.glob("*/report.json")) if runs_dir.is_dir() else []:
        if report not in seen:
            seen.add(report)
            total += towers.RunReport.from_json(report.read_text()).duration_s
    return total


def one_run(workdir: Path, clock: EventClock, team: Team, changed: Team, name: str, run: TowerRun) -> dict[str, Any]:
    """The four operations on a fresh backend; each with its Sample and its playbook seconds."""
    monkeypatch = pytest.MonkeyPatch()
    try:
        real = RealPulumi.install(monkeypatch, workdir)
        root, log = timed_root(workdir / "timed-pulumi")
        monkeypatch.setenv("NOMADRIG_PULUMI_ROOT", str(root))
        if not run.strict_host_keys:
            monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "False")
        runs_dir, seen = real.home / "runs", set[Path]()
        console = Console(file=io.StringIO(), width=200)
        same, other = Engine(team, console=console), Engine(changed, console=console)
        spec, changed_spec = tower_spec(team, name), tower_spec(changed, name)
        operations: dict[str, Callable[[], Any]] = {
            "up, creates the stack (the playbook runs, changes nothing)": lambda: same.up_tower(spec, run),
            "up, no change (no playbook)": lambda: same.up_tower(spec, run),
            "preview, no change": lambda: same.preview_tower(spec, run),
            "preview, 1 update (the tower changed in the team file)": lambda: other.preview_tower(changed_spec, run),
        }
        results: dict[str, Any] = {}
        for label, call in operations.items():
            verb = label.split(",")[0]
            sample = measure(call, log, clock, verb)
            results[label] = (sample, playbook_seconds(runs_dir, seen))
        return results
    finally:
        monkeypatch.undo()


def converged_container(workdir: Path) -> tuple[Team, TowerRun, Any]:
    """Boot a bare Debian 12 container and converge it (untimed); the team, how to reach it, and the job."""
    import subprocess

    from tests.harness import check_prerequisites
    from tests.harness.tower_pool import start_converge
    from tests.harness.towers import TOWER_RELEASES

    found = check_prerequisites()
    if not found.ok:
        sys.exit(f"cannot boot a test tower: {found.reason} (run scripts/ci-container-prereqs.sh)")
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    job = start_converge(TOWER_RELEASES["bookworm"], key, workdir)
    print(f"converging a Debian 12 container at {job.container.ip} (untimed)...", flush=True)
    converged = job.wait()
    if not converged.first.succeeded:
        job.close()
        sys.exit(f"the container's first apply failed:\n{converged.first.summary()}")
    run = TowerRun(ssh_key_file=str(key), overrides=dict(job.options.overrides), strict_host_keys=False)
    return job.team, run, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--team", type=Path, help="A team file whose tower is reachable and converged.")
    parser.add_argument("--tower", help="The tower's name in --team.")
    parser.add_argument("--ssh-key", type=Path, help="The private key `nomadrig up TOWER --ssh-key` would take.")
    parser.add_argument("-e", "--var", action="append", default=[], help="KEY=VALUE, as `nomadrig up -e`.")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (ENGINE_BIN / "pulumi").is_file():
        sys.exit(f"no built CLI in {ENGINE_BIN}: run bash scripts/build-engine.sh first")
    job = None
    with tempfile.TemporaryDirectory(prefix="nomadrig-engine-tower-", dir="/var/tmp") as scratch:
        if args.team:
            if not args.tower:
                sys.exit("--team needs --tower")
            team, name = load_team(args.team), args.tower
            strict = os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True").lower() not in ("false", "0", "no")
            run = TowerRun(ssh_key_file=str(args.ssh_key) if args.ssh_key else None,
                           overrides=parse_overrides(args.var), strict_host_keys=strict)
            target = f"tower {name} of {args.team}"
        else:
            team, run, job = converged_container(Path(scratch))
            name, target = team.towers[0].name, "a converged Debian 12 container (tests/harness)"
        try:
            tower = towers.find_tower(team, name)
            # One group fewer for the first admin: a change of the tower's variables, shown and never applied.
            changed = team.model_copy(update={"towers": [
                t.model_copy(update={"admins": t.admins[1:] if t.admins else []}) if t.name == name else t
                for t in team.towers]})
            if changed == team:
                sys.exit(f"tower {name} has no admin to leave out: give it one for the '1 update' preview")
            clock = EventClock()
            runs = []
            for index in range(args.runs):
                with tempfile.TemporaryDirectory(prefix=f"run{index}-", dir=scratch) as tmp:
                    runs.append(one_run(Path(tmp), clock, team, changed, name, run))
        finally:
            if job is not None:
                job.close()
    lines = [f"target: {target} ({tower.address}); {len(runs)} run(s), medians"]
    for label in runs[0]:
        samples: list[Sample] = [r[label][0] for r in runs]
        playbook = statistics.median(r[label][1] for r in runs)

        def med(attr: str, samples: list[Sample] = samples) -> float:
            return statistics.median(getattr(s, attr) for s in samples)

        lines.append(
            f"{label}: {med('wall'):.1f} s wall; playbook {playbook:.1f} s; pulumi process {med('process'):.1f} s "
            f"(engine's own share {med('process') - playbook:.1f} s); other CLI calls {med('other_cli'):.1f} s "
            f"({samples[0].other_calls} calls); nomadrig + Automation API {med('nomadrig'):.1f} s")
    record(lines, args.out)
    print(json.dumps({"written": str(args.out)}))


if __name__ == "__main__":
    main()

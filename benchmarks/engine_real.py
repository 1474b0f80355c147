"""`up` and `preview` of a tower-shaped stack through the real Pulumi engine, and the engine's share of it.

Run from the repository root, after `bash scripts/build-engine.sh`::

    .venv/bin/python benchmarks/engine_real.py [--runs 5] [--out benchmarks/results/engine_real.txt]

The stack is what a tower stack holds without its playbook: a component owning one dynamic resource (the
tower's provider is a dynamic provider too), plain and secret outputs, the policy pack attached. Each run
starts from an empty file:// backend under a temp dir. Operations: the first `up` (creates), a second `up`
(no change), a `preview` with no change and a `preview` that shows an update.

Where the time goes, per operation: the whole `Engine` call as nomadrig's user waits for it; the
`pulumi up`/`pulumi preview` process inside it, split at the engine's first event and at its summary
event (CLI start-up and plugin/program start, the engine's own run, CLI shut-down); the other CLI calls the
Automation API makes around it (stack select, config, outputs); the rest is nomadrig and the Automation
API in the nomadrig process (the program itself runs there too, answering the engine).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pytest  # noqa: E402  (MonkeyPatch: the same environment set-up as the tests, outside pytest)
from rich.console import Console  # noqa: E402

from nomadrig.engine import Engine  # noqa: E402
from nomadrig.engine.progress import UpdateProgress  # noqa: E402
from nomadrig.spec import tower_spec  # noqa: E402
from nomadrig.team.load import load_team  # noqa: E402
from tests.fake_pulumi.real import (  # noqa: E402
    ENGINE_BIN,
    RealPulumi,
    ScriptedPrograms,
    tower_like_program,
    wrapper_root,
)

STACK = "vision-lab--tower--basement"


@dataclass
class Sample:
    """One operation: wall time, the update process and its event marks, the other CLI calls."""

    wall: float
    process: float = 0.0
    to_first_event: float = 0.0
    engine: float = 0.0
    after_summary: float = 0.0
    other_cli: float = 0.0
    other_calls: int = 0

    @property
    def nomadrig(self) -> float:
        """What is neither the update process nor another CLI call: nomadrig, the Automation API, the program."""
        return self.wall - self.process - self.other_cli


def timed_root(folder: Path) -> tuple[Path, Path]:
    """The built CLI behind a wrapper that notes start and end (ns) and the arguments of each call."""
    log = folder / "calls.log"
    script = f"start=$(date +%s%N)\n\"$PULUMI\" \"$@\"\nrc=$?\necho \"$start $(date +%s%N) $*\" >> '{log}'\nexit $rc\n"
    return wrapper_root(folder, script), log


class EventClock:
    """Wall-clock time (ns) of the first engine event and of the summary event of the running update."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.summary: int | None = None
        original = UpdateProgress.handle

        def handle(progress: UpdateProgress, event: Any) -> str | None:
            now = time.time_ns()
            if self.first is None:
                self.first = now
            if getattr(event, "summary_event", None):
                self.summary = now
            return original(progress, event)

        UpdateProgress.handle = handle  # type: ignore[method-assign]

    def reset(self) -> None:
        self.first = self.summary = None


def measure(call: Callable[[], Any], log: Path, clock: EventClock, verb: str) -> Sample:
    log.write_text("")
    clock.reset()
    start = time.perf_counter()
    call()
    sample = Sample(wall=time.perf_counter() - start)
    for line in log.read_text().splitlines():
        begin, end, *argv = line.split()
        command = next((a for a in argv if not a.startswith("-")), "")  # the SDK puts --non-interactive first
        seconds = (int(end) - int(begin)) / 1e9
        if command == verb:
            sample.process = seconds
            if clock.first and clock.summary:
                sample.to_first_event = (clock.first - int(begin)) / 1e9
                sample.engine = (clock.summary - clock.first) / 1e9
                sample.after_summary = (int(end) - clock.summary) / 1e9
        else:
            sample.other_cli += seconds
            sample.other_calls += 1
    return sample


def one_run(workdir: Path, clock: EventClock) -> dict[str, Sample]:
    """The four operations on a fresh backend."""
    monkeypatch = pytest.MonkeyPatch()
    try:
        RealPulumi.install(monkeypatch, workdir)
        root, log = timed_root(workdir / "timed-pulumi")
        monkeypatch.setenv("NOMADRIG_PULUMI_ROOT", str(root))
        team = load_team(REPO / "examples" / "team.yaml")
        spec = tower_spec(team, "basement")
        console = Console(file=io.StringIO(), width=200)
        same = Engine(team, programs=ScriptedPrograms(tower=tower_like_program(["pytorch"])), console=console)
        changed = Engine(team, programs=ScriptedPrograms(tower=tower_like_program(["pytorch", "jax"])),
                         console=console)

        def preview(engine: Engine) -> None:
            """The engine's own preview path (progress view, error mapping); it has no public tower preview."""
            stack = engine.open_stack(STACK, engine.programs.tower(team, spec), {})
            engine._run_update(stack, "preview", lambda on_event: stack.preview(
                policy_packs=[str(REPO / "policypack")], on_event=on_event, color="never"))

        return {
            "up, creates stack + component + dynamic resource": measure(lambda: same.up_tower(spec), log, clock, "up"),
            "up, no change": measure(lambda: same.up_tower(spec), log, clock, "up"),
            "preview, no change": measure(lambda: preview(same), log, clock, "preview"),
            "preview, 1 update (dynamic resource)": measure(lambda: preview(changed), log, clock, "preview"),
        }
    finally:
        monkeypatch.undo()


def record(lines: list[str], out: Path) -> None:
    """Print the figures with the machine, the CLI's version, the date and the load, and append them to `out`."""
    version = os.popen(f"'{ENGINE_BIN / 'pulumi'}' version").read().strip()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [*lines, f"machine: {os.cpu_count()} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}, "
                     f"pulumi {version} (built from its Go modules); {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
                     f"load average at the end {os.getloadavg()[0]:.1f}"]
    text = "\n".join(lines)
    print(text)
    with out.open("a") as handle:
        handle.write(text + "\n\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "engine_real.txt")
    args = parser.parse_args()
    if not (ENGINE_BIN / "pulumi").is_file():
        sys.exit(f"no built CLI in {ENGINE_BIN}: run bash scripts/build-engine.sh first")
    clock = EventClock()
    runs: list[dict[str, Sample]] = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="nomadrig-engine-bench-") as tmp:
            runs.append(one_run(Path(tmp), clock))
    lines = []
    for name in runs[0]:
        samples = [run[name] for run in runs]

        def med(attr: str, samples: list[Sample] = samples) -> float:
            return statistics.median(getattr(s, attr) for s in samples)

        lines.append(
            f"{name}: median {med('wall'):.2f} s wall ({args.runs} runs); pulumi process {med('process'):.2f} s "
            f"= start-up to first engine event {med('to_first_event'):.2f} s + engine run {med('engine'):.2f} s "
            f"+ after summary {med('after_summary'):.2f} s; other CLI calls {med('other_cli'):.2f} s "
            f"({samples[0].other_calls} calls); nomadrig + Automation API {med('nomadrig'):.2f} s")
    record(lines, args.out)


if __name__ == "__main__":
    main()

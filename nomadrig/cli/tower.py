"""`nomadrig tower`: configure, check and verify on-prem towers; print WireGuard peers.

Thin: argument parsing, progress and printing. The work is in nomadrig.towers.

Exit codes follow the CLI's: 0 every run succeeded, 2 bad input (nothing
ran), 3 a run failed or could not start, 130 interrupted. With ``--all`` the
towers run in parallel and the exit code is the worst of their outcomes.
"""

from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from nomadrig import paths
from nomadrig.cli.common import (
    JsonOption,
    TeamFileOption,
    console,
    emit_json,
    err_console,
    error_object,
    handle_errors,
    load_team_file,
    problems_of,
)
from nomadrig.engine.interrupt import ctrl_c_as_a_flag
from nomadrig.errors import BadInputError, CloudError, ExitCode, InputProblem, NomadrigError
from nomadrig.tables import DataTable, literal

if TYPE_CHECKING:
    from nomadrig.team.model import Team
    from nomadrig.towers import Mode, RunOptions, RunReport

tower_app = typer.Typer(help="On-prem GPU towers: configure over SSH with Ansible.", no_args_is_help=True)

TowerArgument = typer.Argument(None, help="Tower name from the team file (or --all).", show_default=False)
AllOption = typer.Option(False, "--all", help="Every tower of the team file, in parallel.")
ParallelOption = typer.Option(8, "--parallel", min=1, help="With --all: at most this many towers at once.")
SshKeyOption = typer.Option(None, "--ssh-key", "-i", help="Private key for SSH (default: your SSH agent/config).")
VarOption = typer.Option(
    None, "--var", "-e", help="Override a role variable, KEY=VALUE (VALUE is YAML), e.g. -e agent_mode=shutdown."
)
UpgradeOption = typer.Option(
    False, "--upgrade",
    help="Also move the GPU stack to the newest build of what is installed: the driver within its branch (never "
         "another branch), the CUDA toolkit within its version, the container toolkit. May need a reboot.",
)
RunsDirOption = typer.Option(None, "--runs-dir", show_default=False,
                             help="Where run reports are kept (default: $NOMADRIG_HOME/runs, ~/.nomadrig/runs).")

#: The exit code of a tower whose run finished but failed (a task failed, or the tower was unreachable).
RUN_FAILED = int(ExitCode.CLOUD_FAILURE)


def register(app: typer.Typer) -> None:
    """Mount `tower` on the main CLI (called by nomadrig.cli)."""
    app.add_typer(tower_app, name="tower")


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE pairs to a dict, each VALUE read as YAML (so lists and booleans work)."""
    import yaml

    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInputError(
                "arguments", [InputProblem("--var", f"{pair!r} is not KEY=VALUE.", "Write e.g. -e agent_mode=report.")]
            )
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise BadInputError(
                "arguments", [InputProblem(f"--var {key}", f"value is not YAML: {exc}.", "Quote it.")]
            ) from None
    return overrides


def chosen_towers(team: Team, tower: str | None, every: bool) -> list[str]:
    """The towers a command acts on: the one named, or with --all every tower of the team file."""
    if every and tower:
        raise BadInputError("command line", [InputProblem("TOWER", f"both {tower!r} and --all given.",
                                                          "Name one tower, or pass --all alone.")])
    if every:
        if not team.towers:
            raise BadInputError("team file", [InputProblem("towers", "the team file declares no tower.",
                                                           "Add one under towers:, or leave out --all.")])
        return [t.name for t in team.towers]
    if not tower:
        known = ", ".join(t.name for t in team.towers) or "none declared"
        raise BadInputError("command line", [InputProblem("TOWER", f"no tower named (towers: {known}).",
                                                          "Name one (nomadrig tower check NAME), or pass --all.")])
    return [tower]


# -- running towers in parallel --------------------------------------------------------


@dataclass
class Outcome:
    """What became of one tower: its report, or the error that stopped it before or while running."""

    tower: str
    report: RunReport | None = None
    error: NomadrigError | None = None

    @property
    def exit_code(self) -> int:
        """0 when the run succeeded, 3 when it failed, the error's own code when it could not run."""
        if self.error is not None:
            return int(self.error.exit_code)
        return 0 if self.report is not None and self.report.succeeded else RUN_FAILED

    def as_json(self) -> dict[str, Any]:
        """The report as JSON, with an ``error`` object (cli.common's shape) when the tower did not succeed."""
        data: dict[str, Any] = asdict(self.report) if self.report is not None else {"tower": self.tower}
        if self.error is not None:
            data.update(error_object(self.exit_code, self.error.render(), problems_of(self.error)))
        elif self.exit_code:
            data.update(error_object(self.exit_code, f"tower {self.tower}: the {self.report.mode} run failed "
                                                     f"(status {self.report.status}); see {self.report.run_dir}."))
        return data


def run_towers(team: Team, names: list[str], mode: Mode, options: Callable[[str], RunOptions],
               parallel: int) -> list[Outcome]:
    """Run `mode` on each tower, at most `parallel` at once, each in its own thread; outcomes in `names` order.

    A tower's failure (bad variables, Ansible not starting, a failed task)
    is recorded and the others go on. The main thread polls the runs' queue
    and a Ctrl-C flag (`engine.interrupt.ctrl_c_as_a_flag`): on Ctrl-C it cancels every run
    through the runs' `cancel` option (ansible-runner stops its
    ansible-playbook), waits for them to stop, and raises KeyboardInterrupt
    (exit 130). An interrupt raised inside a run is handled the same way.
    """
    from nomadrig import towers

    slots = threading.BoundedSemaphore(parallel)
    stop = threading.Event()
    finished: queue.Queue[tuple[int, Outcome | BaseException | None]] = queue.Queue()

    def work(index: int, name: str) -> None:
        with slots:
            if stop.is_set():
                finished.put((index, None))  # interrupted before its turn: never started
                return
            try:
                run_options = replace(options(name), cancel=stop.is_set)
                finished.put((index, Outcome(name, report=towers.run(team, name, mode, run_options))))
            except NomadrigError as error:
                finished.put((index, Outcome(name, error=error)))
            except Exception as error:  # one tower's surprise must not hide the others' results
                finished.put((index, Outcome(name, error=CloudError(f"tower {name}: internal error: "
                                                                    f"{error.__class__.__name__}: {error}"))))
            except BaseException as error:  # KeyboardInterrupt raised in the run: the main thread re-raises it
                finished.put((index, error))

    threads: list[threading.Thread] = []
    outcomes: dict[int, Outcome | BaseException | None] = {}
    with ctrl_c_as_a_flag() as interrupted:
        for index, name in enumerate(names):
            thread = threading.Thread(target=work, args=(index, name), name=f"tower-{name}", daemon=True)
            threads.append(thread)
            thread.start()
        while len(outcomes) < len(names) and not interrupted():
            try:
                index, outcome = finished.get(timeout=0.1)
            except queue.Empty:
                continue
            outcomes[index] = outcome
            if isinstance(outcome, BaseException):  # KeyboardInterrupt raised inside a run
                break
        if interrupted() or any(isinstance(outcome, BaseException) for outcome in outcomes.values()):
            _stop_runs(stop, threads)
            raise KeyboardInterrupt
    return [outcome for _, outcome in sorted(outcomes.items())]  # type: ignore[misc]


def _stop_runs(stop: threading.Event, threads: list[threading.Thread]) -> None:
    """Cancel the runs still going and wait until each has stopped its playbook (a second Ctrl-C stops waiting)."""
    stop.set()
    running = [thread for thread in threads if thread.is_alive()]
    if running:
        err_console.print(f"interrupted: stopping {len(running)} running tower run(s)...", markup=False)
    for thread in running:
        thread.join()


class TowerProgress:
    """One status line per tower (the task it is on), redrawn under a spinner; safe to call from run threads."""

    def __init__(self, names: list[str], mode: str) -> None:
        from rich.status import Status

        self._lines = {name: f"{name}: starting ansible-playbook ({mode})" for name in names}
        self._lock = threading.Lock()
        self.status = Status(self._text(), console=err_console)

    def _text(self) -> str:
        return "\n".join(literal(line) for line in self._lines.values())

    def callback(self, name: str) -> Callable[[str, str, int, int | None], None]:
        """The progress callback for one tower's RunOptions."""

        def progress(host: str, task: str, done: int, total: int | None) -> None:
            of = f"/{total}" if total else ""
            with self._lock:
                self._lines[name] = f"{name}: [{done}{of} tasks done] {task}"
                self.status.update(self._text())

        return progress


def summary_table(outcomes: list[Outcome]) -> DataTable:
    """One row per tower: outcome, task counts, time, and where its run report is."""
    table = DataTable("tower", "result", "ok", "changed", "failed", "unreachable", "time", "report",
                      title="tower runs")
    for outcome in outcomes:
        report = outcome.report
        if report is None:
            table.add_row(outcome.tower, f"error (exit {outcome.exit_code})", "", "", "", "", "", "")
            continue
        result = "OK" if report.succeeded else f"FAILED ({report.status})"
        table.add_row(report.tower, result, str(report.ok), str(report.changed), str(report.failed),
                      str(report.unreachable), f"{report.duration_s:.0f} s", report.run_dir)
    return table


def _print_outcomes(outcomes: list[Outcome]) -> None:
    """Each report's summary on stdout (a tower that could not run: its error on stderr), then the table."""
    for outcome in outcomes:
        if outcome.report is not None:
            console.print(outcome.report.summary(), markup=False)
        elif outcome.error is not None:
            err_console.print(f"tower {outcome.tower}: {outcome.error.render()}", markup=False, soft_wrap=True)
    if len(outcomes) > 1:
        console.print(summary_table(outcomes))


def _run(mode: Mode, tower: str | None, every: bool, team_file: Path | None, ssh_key: Path | None,
         var: list[str] | None, runs_dir: Path | None, json_out: bool, parallel: int = 1,
         upgrade: bool = False) -> None:
    """Run one mode on the chosen towers, print their reports, exit with the worst outcome."""
    from nomadrig import towers

    team = load_team_file(team_file)
    names = chosen_towers(team, tower, every)
    overrides = parse_overrides(var)
    progress = None if json_out else TowerProgress(names, mode)

    def options(name: str) -> RunOptions:
        return towers.RunOptions(
            ssh_key_file=ssh_key,
            overrides=overrides,
            upgrade=upgrade,
            **({"runs_dir": runs_dir} if runs_dir is not None else {}),
            progress=progress.callback(name) if progress else None,
        )

    if progress is None:
        outcomes = run_towers(team, names, mode, options, parallel)
    else:
        with progress.status:
            outcomes = run_towers(team, names, mode, options, parallel)
    _finish(outcomes, single=tower is not None, json_out=json_out)


def _finish(outcomes: list[Outcome], *, single: bool, json_out: bool) -> None:
    """Print the outcomes (JSON: one report for a named tower, ``{"reports": [...]}`` for --all); exit the worst."""
    if single and outcomes[0].error is not None:
        raise outcomes[0].error  # handle_errors prints it (and its JSON error object), like any command's error
    worst = max(o.exit_code for o in outcomes)
    if json_out:
        reports = [o.as_json() for o in outcomes]
        if single:
            emit_json(reports[0])
        else:
            failed = [o.tower for o in outcomes if o.exit_code]
            extra = error_object(worst, f"{len(failed)} of {len(outcomes)} towers did not succeed: "
                                        f"{', '.join(failed)}.") if failed else {}
            emit_json({"reports": reports, **extra})
    else:
        _print_outcomes(outcomes)
    for outcome in outcomes:
        if outcome.exit_code and outcome.report is not None:
            err_console.print(f"error: tower {outcome.tower}: the {outcome.report.mode} run failed; "
                              f"its report is in {outcome.report.run_dir}", markup=False, soft_wrap=True)
    if worst:
        raise typer.Exit(worst)


_MODE_HELP: dict[Mode, str] = {
    "apply": "Configure the tower (playbooks/tower.yml). Exit 3 when a run fails.",
    "check": "Show what apply would change (Ansible check mode with diffs); the tower is not modified.",
    "verify": "Check every GPU, its driver and the frameworks on it: fp32, bf16, cuDNN, NCCL (playbooks/verify.yml).",
}


def _mode_command(mode: Mode) -> Callable[..., None]:
    """`tower apply`, `check` and `verify`: one signature, one run, three modes."""

    def command(
        tower: str = TowerArgument,
        every: bool = AllOption,
        team_file: Path = TeamFileOption,
        ssh_key: Path = SshKeyOption,
        var: list[str] = VarOption,
        runs_dir: Path = RunsDirOption,
        parallel: int = ParallelOption,
        json_out: bool = JsonOption,
        upgrade: bool = UpgradeOption,
    ) -> None:
        _run(mode, tower, every, team_file, ssh_key, var, runs_dir, json_out, parallel, upgrade is True)

    command.__name__ = mode
    command.__doc__ = _MODE_HELP[mode]
    if mode == "verify":  # verify installs nothing: no --upgrade (typer reads the signature; the default stays)
        signature = inspect.signature(command)
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[p for p in signature.parameters.values() if p.name != "upgrade"]
        )
    return command


for _mode in _MODE_HELP:
    tower_app.command(_mode)(handle_errors(_mode_command(_mode)))


@tower_app.command("peers")
@handle_errors
def peers(
    tower: str = typer.Argument(..., help="Tower name from the team file."),
    team_file: Path = TeamFileOption,
    ssh_key: Path = SshKeyOption,
    runs_dir: Path = RunsDirOption,
    offline: bool = typer.Option(False, "--offline", help="Use the key in the last run report; no SSH."),
) -> None:
    """Print each nomad's WireGuard client config for the tower."""
    from nomadrig import towers

    team = load_team_file(team_file)
    found = towers.find_tower(team, tower)
    key, unread = None, ""
    if not offline:
        try:
            key = towers.read_tower_public_key(team, tower, towers.RunOptions(ssh_key_file=ssh_key))
        except CloudError as exc:
            unread = str(exc)
    if key is None:
        last = towers.latest_report(tower, runs_dir, with_key=True)
        key = last.tower_public_key if last else None
        if last is not None and key is not None and unread:
            err_console.print(f"{unread}\n  Using the key in the last run report ({last.run_dir}).", markup=False)
    if key is None and unread:
        raise CloudError(f"{unread}\n  No run report under {runs_dir or paths.runs_dir()} holds the key either.")
    if key is None:
        raise CloudError(
            f"no WireGuard public key for tower {tower}: not readable at {towers.TOWER_PUBLIC_KEY_FILE} "
            f"and in no run report under {runs_dir or paths.runs_dir()}.\n"
            f"  Run `nomadrig tower apply {tower}` first."
        )
    for config in towers.peer_configs(team, found, key).values():
        console.print(config, markup=False)

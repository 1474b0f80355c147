"""`nomadrig reap`: stop what the idle agent missed, destroy what stayed stopped or expired (data kept)."""

from __future__ import annotations

from pathlib import Path

import typer

from nomadrig.cli.common import (
    JsonOption,
    TeamFileOption,
    console,
    emit_json,
    err_console,
    handle_errors,
    load_team_file,
)
from nomadrig.errors import BadInputError, ExitCode
from nomadrig.paths import REAPER_LOCK_ENV

LockUrlOption = typer.Option(
    None, "--lock-url", envvar=REAPER_LOCK_ENV, show_default=False,
    help="Where --apply keeps the team's reaper lock (file://, s3:// or gs://); default: beside the state. "
         "Needed when the state is in Pulumi Cloud.",
)


def register(app: typer.Typer) -> None:
    app.command(name="reap")(handle_errors(reap))


def reap(
    apply: bool = typer.Option(False, "--apply", help="Act: stop, snapshot and destroy. Without it: a dry run."),
    orphans: bool = typer.Option(False, "--orphans",
                                 help="Also snapshot and terminate managed instances that no stack owns."),
    show_all: bool = typer.Option(False, "--all", help="Also list the boxes the reaper keeps."),
    lock_url: str = LockUrlOption,
    json_out: bool = JsonOption,
    team_file: Path = TeamFileOption,
) -> None:
    """Stop idle boxes the agent missed; destroy boxes stopped too long or past their TTL (data kept)."""
    from nomadrig.engine import box_stacks
    from nomadrig.reaper import report_dict, report_table, run_reaper, unreadable_lines
    from nomadrig.reaper.lock import lock_url_problem

    problem = lock_url_problem(lock_url) if lock_url else None
    if problem is not None:
        raise BadInputError("command line", [problem])
    team = load_team_file(team_file)
    report = run_reaper(team, apply=apply, orphans=orphans, stacks=box_stacks(team, console=err_console),
                        progress=lambda message: err_console.print(message, markup=False), lock_url=lock_url)
    if json_out:
        emit_json(report_dict(report))
    else:
        console.print(report_table(report, show_keep=show_all))
        for line in unreadable_lines(report):  # data: tag values are printed as written, never as markup
            console.print(line, markup=False, soft_wrap=True)
    for error in report.errors:
        err_console.print(f"error: {error}", markup=False, soft_wrap=True)
    if report.errors:
        raise typer.Exit(int(ExitCode.CLOUD_FAILURE))

"""`nomadrig reap`: stop what the idle agent missed, destroy what stayed stopped or expired (data kept)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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
from nomadrig.tables import DataTable

if TYPE_CHECKING:
    from nomadrig.reaper import ReapReport

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
    from nomadrig.reaper import report_dict, run_reaper, unreadable_lines
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


def report_table(report: ReapReport, *, show_keep: bool = False) -> DataTable:
    """A ``rich.table.Table`` of the decisions; cells are tags and cloud text, never read as markup.

    `keep` rows are hidden unless `show_keep`: a team with 300 healthy boxes wants
    to see the five the reaper acts on; boxes kept for an unreadable tag are
    shown, since only a person can fix them. The caption carries the counts.
    """
    from nomadrig.reaper import Action

    # Rows worth a person's attention first; `keep` and skips follow.
    order = {a: n for n, a in enumerate([Action.DESTROY, Action.STOP, Action.ORPHAN, Action.KEEP,
                                         Action.SKIP_PROTECTED, Action.SKIP_UNMANAGED])}
    style = {Action.DESTROY: "red", Action.STOP: "yellow", Action.ORPHAN: "magenta"}
    mode = "applied" if report.applied else "dry run (add --apply to act)"
    summary = ", ".join(f"{report.count(a)} {a.value}" for a in Action if report.count(a))
    table = DataTable(title=f"nomadrig reap: team {report.team}, {mode}", caption=summary or "no managed instances")
    for column in ("verdict", "cloud", "location", "instance", "name", "owner", "state", "reason"):
        table.add_column(column, overflow="fold")
    rows = sorted(report.verdicts, key=lambda v: (order[v.action], v.instance.instance_id))
    for v in rows:
        if v.action == Action.KEEP and not show_keep and not v.unreadable:
            continue
        table.add_row(
            v.action.value,
            v.instance.cloud,
            v.instance.location,
            v.instance.instance_id,
            v.instance.name,
            v.instance.box_tags.owner or "",
            v.instance.state,
            v.reason,
            style=style.get(v.action),
        )
    return table

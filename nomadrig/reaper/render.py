"""How a reap report reads: a rich table for people, JSON for scripts and CI."""

from __future__ import annotations

import json
from typing import Any

from nomadrig.reaper.run import ReapReport
from nomadrig.reaper.verdicts import Action

# Rows worth a person's attention first; `keep` and skips follow.
_ORDER = {a: n for n, a in enumerate([Action.DESTROY, Action.STOP, Action.ORPHAN, Action.KEEP,
                                      Action.SKIP_PROTECTED, Action.SKIP_UNMANAGED])}
_STYLE = {Action.DESTROY: "red", Action.STOP: "yellow", Action.ORPHAN: "magenta"}


def report_dict(report: ReapReport) -> dict[str, Any]:
    """A JSON-ready view of the report (stable keys: scripts depend on them)."""
    return {
        "team": report.team,
        "applied": report.applied,
        "orphans_enabled": report.orphans_enabled,
        "started_at": report.started_at.isoformat(),
        "finished_at": report.finished_at.isoformat() if report.finished_at else None,
        "summary": {a.value: report.count(a) for a in Action},
        "verdicts": [
            {
                "cloud": v.instance.cloud,
                "location": v.instance.location,
                "instance_id": v.instance.instance_id,
                "name": v.instance.name,
                "state": v.instance.state,
                "owner": v.instance.box_tags.owner,
                "stack": v.stack.name if v.stack else None,
                "verdict": v.action.value,
                "reason": v.reason,
                "unreadable_tags": list(v.unreadable),
            }
            for v in report.verdicts
        ],
        "kept_unreadable": unreadable_lines(report),
        "actions": [vars(a) for a in report.actions],
        "errors": list(report.errors),
    }


def unreadable_lines(report: ReapReport) -> list[str]:
    """One "kept: unreadable tag KEY=VALUE: why (instance ID, NAME)" line per bad tag, in instance order.

    A box kept for a bad tag stays kept on every run until someone fixes the
    tag, so these lines are printed even where `keep` rows are hidden.
    """
    return [
        f"kept: {problem} (instance {v.instance.instance_id}, {v.instance.name})"
        for v in sorted(report.verdicts, key=lambda v: v.instance.instance_id)
        for problem in v.unreadable
    ]


def report_json(report: ReapReport) -> str:
    """`nomadrig reap --json`."""
    return json.dumps(report_dict(report), indent=2)


def report_table(report: ReapReport, *, show_keep: bool = False) -> Any:
    """A ``rich.table.Table`` of the verdicts (rich imported here: only the CLI needs it).

    `keep` rows are hidden unless `show_keep`: a team with 300 healthy boxes wants
    to see the five the reaper acts on; boxes kept for an unreadable tag are
    shown, since only a person can fix them. The caption carries the counts.
    """
    from nomadrig.cli.common import DataTable  # cells are tags and cloud text: never read as markup

    mode = "applied" if report.applied else "dry run (add --apply to act)"
    summary = ", ".join(f"{report.count(a)} {a.value}" for a in Action if report.count(a))
    table = DataTable(title=f"nomadrig reap: team {report.team}, {mode}", caption=summary or "no managed instances")
    for column in ("verdict", "cloud", "location", "instance", "name", "owner", "state", "reason"):
        table.add_column(column, overflow="fold")
    rows = sorted(report.verdicts, key=lambda v: (_ORDER[v.action], v.instance.instance_id))
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
            style=_STYLE.get(v.action),
        )
    return table

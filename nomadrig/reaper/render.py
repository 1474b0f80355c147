"""How a reap report reads to a script: JSON with stable keys (the CLI draws the table for people)."""

from __future__ import annotations

import json
from typing import Any

from nomadrig.reaper.run import ReapReport
from nomadrig.reaper.verdicts import Action


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

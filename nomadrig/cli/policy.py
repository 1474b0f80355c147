"""`policy list`: the team's rules, severities and parameters."""

from __future__ import annotations

from pathlib import Path

import typer

from nomadrig.cli.common import JsonOption, console, emit_json, handle_errors, load_team_file
from nomadrig.tables import DataTable

policy_app = typer.Typer(help="The team's policy: rules, severities, parameters.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")


@policy_app.command("list")
@handle_errors
def policy_list(team_file: Path = typer.Option(None, "--team", "-t",
                                               help="Show the severities and switches this team's file sets."),
                json_out: bool = JsonOption) -> None:
    """List every rule with its id, kind, severity and parameters."""
    from nomadrig.policy import all_rules
    from nomadrig.policy.model import PolicyContext
    from nomadrig.policy.registry import effective

    ctx = PolicyContext.from_team(load_team_file(team_file)) if team_file else PolicyContext.default()
    rows = []
    for rule in all_rules():
        enabled, severity, rule_ctx = effective(rule, ctx)
        rows.append({"id": rule.id, "kind": rule.kind, "title": rule.title, "severity": severity.value,
                     "enabled": enabled, "applies_to": list(rule.applies_to), "params": dict(rule_ctx.params)})
    if json_out:
        emit_json(rows)
        return
    table = DataTable(title=f"{len(rows)} policy rules")
    for col in ("id", "kind", "severity", "on", "title"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["kind"], r["severity"], "yes" if r["enabled"] else "no", r["title"])
    console.print(table)

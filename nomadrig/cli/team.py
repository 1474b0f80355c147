"""`validate` and `cost`: a team file checked, and what it will cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from nomadrig.cli.common import (
    JsonOption,
    TeamFileOption,
    console,
    emit_json,
    err_console,
    handle_errors,
    load_team_file,
    resolve_team_file,
)
from nomadrig.errors import ExitCode
from nomadrig.tables import DataTable


def register(app: typer.Typer) -> None:
    app.command(name="validate")(handle_errors(validate))
    app.command(name="cost")(handle_errors(cost))


def validate(
    team_file: Path = TeamFileOption,
    file: Path = typer.Argument(None, help="Deprecated: use --team FILE (the positional file still works).",
                                show_default=False),
    json_out: bool = JsonOption,
) -> None:
    """Check a team file (exit 2: every problem names the file, line, field and fix) and its towers against the
    policy's tower rules (exit 1 on a mandatory violation, with the rule id and the fix)."""
    if file is not None and team_file is not None and file != team_file:
        from nomadrig.errors import BadInputError, InputProblem

        raise BadInputError("command line", [InputProblem("FILE", f"two team files given: {file} and --team "
                                                                  f"{team_file}.", "Pass only --team FILE.")])
    if file is not None:
        err_console.print("note: `nomadrig validate FILE` is deprecated; use `nomadrig validate --team FILE`.",
                          markup=False, soft_wrap=True)
    from nomadrig.cli.plan import print_verdicts
    from nomadrig.policy import check_towers, mandatory

    path = resolve_team_file(team_file or file)
    team = load_team_file(path)
    verdicts = check_towers(team)
    blocking = mandatory(verdicts)
    if json_out:
        emit_json({"file": str(path), "valid": True, "team": team.name, "nomads": len(team.nomads),
                   "towers": len(team.towers), "policy_ok": not blocking,
                   "verdicts": [v.as_dict() for v in verdicts]})
    else:
        print_verdicts(verdicts)
        verdict = f"{len(blocking)} mandatory policy violation(s)" if blocking else "ok"
        console.print(f"{path}: {verdict}: team {team.name}, {len(team.nomads)} nomads, {len(team.towers)} towers",
                      markup=False)
    if blocking:
        raise typer.Exit(int(ExitCode.POLICY_VIOLATION))


def cost(team_file: Path = TeamFileOption, json_out: bool = JsonOption) -> None:
    """Project the team's monthly bill line by line (compute, disks, snapshots, NAT, egress, keys, buckets).

    Exit 1 where `plan` would on its box, team and tower rules (resource rules need `plan`)."""
    import datetime as dt

    from nomadrig.cost import team_projection
    from nomadrig.plan import spec_verdicts
    from nomadrig.spec import box_specs

    team = load_team_file(team_file)
    specs = box_specs(team)
    projection = team_projection(specs, team.usage, team.budgets.monthly_usd, team.policy.allow_public_ip)
    verdicts = spec_verdicts(team, specs, projection)
    today = dt.date.today()
    if json_out:
        emit_json({**projection.as_dict(), "stale_lines": [f"{ln.scope} {ln.item}" for ln in projection.lines
                                                           if ln.monthly_usd is not None and ln.stale(today)],
                   "verdicts": [v.as_dict() for v in verdicts]})
    else:
        a = projection.assumptions
        table = DataTable(title=f"team {team.name}: {a.hours_per_day:g} h/day x {a.days_per_month:g} days/month; "
                                f"per nomad {a.nat_gb_per_month:g} GB through NAT, {a.egress_gb_per_month:g} GB out")
        for col in ("item", "basis", "$/month", "rate"):
            table.add_column(col, justify="right" if col == "$/month" else "left")
        for box in projection.boxes:
            table.add_row(f"{box.nomad} ({box.cloud} {box.region}, {box.instance_type}"
                          + (", spot)" if box.spot else ")"), box.note, _usd_month(box.monthly_usd), "")
            for ln in box.lines:
                table.add_row(f"  {ln.item}", ln.basis, _usd_month(ln.monthly_usd), _rate_age(ln, today))
        for (cloud, region) in dict.fromkeys((ln.cloud, ln.region) for ln in projection.team):
            shared = [ln for ln in projection.team if (ln.cloud, ln.region) == (cloud, region)]
            table.add_row(f"team network ({cloud} {region})", "", _usd_month(round(sum(
                ln.monthly_usd or 0.0 for ln in shared), 2)), "")
            for ln in shared:
                table.add_row(f"  {ln.item}", ln.basis, _usd_month(ln.monthly_usd), _rate_age(ln, today))
        console.print(table)
        pct = projection.budget_used_pct
        console.print(f"total ${projection.total_usd:,.2f}/month of ${team.budgets.monthly_usd:,.0f} budget"
                      + (f" ({pct:g}%)" if pct is not None else ""), markup=False)
        console.print("by item: " + ", ".join(f"{k} ${v:,.2f}" for k, v in projection.by_item.items()), markup=False)
        if projection.unknown:
            console.print(f"no rate known (left out of the total): {', '.join(projection.unknown)}", markup=False)
        for v in verdicts:
            console.print(f"{v.severity.value} {v.rule_id}: {v.message}\n  fix: {v.fix}", markup=False)
    if any(v.mandatory for v in verdicts):
        raise typer.Exit(int(ExitCode.POLICY_VIOLATION))


def _usd_month(value: float | None) -> str:
    return f"{value:,.2f}" if value is not None else "unknown"


def _rate_age(line: Any, today: Any) -> str:
    """The rate's effective date, flagged when older than 90 days or unknown."""
    if line.monthly_usd is None:
        return ""
    when = line.effective_date or "undated"
    return f"{when} (stale)" if line.stale(today) else when

"""`nomadrig plan`: what every box would be, and what the policy says about it, without touching a cloud.

Pulumi and the cloud SDKs load inside the command, so `nomadrig --help` stays fast.
"""

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
from nomadrig.errors import ExitCode
from nomadrig.tables import DataTable, literal

if TYPE_CHECKING:
    from nomadrig.plan import PlanResult, StackPlan


def register(app: typer.Typer) -> None:
    app.command(name="plan")(handle_errors(plan))


def plan(
    team_file: Path = TeamFileOption,
    nomad: str = typer.Option(None, "--nomad", "-n", help="Plan only this nomad's box (and its team network)."),
    json_out: bool = JsonOption,
    workers: int = typer.Option(None, "--workers", min=1, show_default=False,
                                help="Run the programs in at most this many processes (default: one per core, "
                                     "up to 4, when that is quicker; 1: in this process only, least memory)."),
) -> None:
    """Run the real stacks offline (Pulumi mocks) and check every resource, box, tower and the team against the policy.

    Exit 1 when a mandatory rule is violated, 0 otherwise. No credentials, no network.
    """
    from nomadrig.plan import plan_team

    team = load_team_file(team_file)
    boxes = 1 if nomad else len(team.nomads)
    # On stderr, and only on a terminal: --json output and pipes stay clean.
    with err_console.status(f"Running the stacks of {boxes} box{'es' if boxes != 1 else ''} under Pulumi mocks…"):
        result = plan_team(team, nomad, workers=workers)
    if json_out:
        emit_json(result.as_dict())
    else:
        print_plan(result)
    if not result.ok:
        raise typer.Exit(int(ExitCode.POLICY_VIOLATION))


def _mark(verdicts: list):  # -> rich.text.Text
    """The policy cell: rule ids coloured by severity, built as Text so no id is ever read as markup."""
    from rich.text import Text

    if not verdicts:
        return Text("ok", style="green")
    return Text(", ").join(Text(v.rule_id, style="red" if v.mandatory else "yellow") for v in verdicts)


def _stack_table(stack: StackPlan) -> DataTable:
    title = f"{stack.stack}  ({stack.kind}, {stack.cloud} {stack.region})"
    if stack.cost and stack.cost.hourly_usd is not None:
        title += f"  ${stack.cost.hourly_usd:.3f}/h, ${stack.cost.monthly_usd:,.2f}/month"
    table = DataTable(title=title, title_justify="left", show_lines=False)
    table.add_column("resource type")
    table.add_column("name")
    table.add_column("on destroy")
    table.add_column("policy")
    for resource in stack.resources:
        kept = "kept" if stack.is_retained(resource) else ""
        table.add_row(resource.type, resource.name, kept, _mark(stack.verdicts_for(resource)))
    return table


def _print_verdict(verdict, indent: str) -> None:
    """One verdict: the rule id coloured by severity, the message and fix as written (they quote user values)."""
    colour = "red" if verdict.mandatory else "yellow"
    console.print(f"{indent}[{colour}]{literal(verdict.rule_id)} {literal(verdict.severity.value)}[/] "
                  f"{literal(verdict.message)}")
    console.print(f"{indent}  fix: {verdict.fix}", markup=False)


def print_verdicts(verdicts: list) -> None:
    """Verdicts outside any stack (team, towers), one after another, as `plan` prints them."""
    for verdict in verdicts:
        _print_verdict(verdict, "")


def print_plan(result: PlanResult) -> None:
    from nomadrig.cost import stack_summaries

    for stack in result.stacks:
        console.print(_stack_table(stack))
        for verdict in stack.verdicts:
            _print_verdict(verdict, "  ")
        console.print()
    print_verdicts(result.team_verdicts + result.tower_verdicts)
    projection = result.projection
    budget = f" of ${projection.budget_usd:,.2f} ({projection.budget_used_pct}%)" if projection.budget_usd else ""
    console.print(f"projected monthly cost: ${projection.total_usd:,.2f}{budget}"
                  + (f"; fixed: {', '.join(f'{k} ${v:,.2f}' for k, v in projection.fixed.items())}"
                     if projection.fixed else ""), markup=False)
    for line in stack_summaries(projection):
        console.print(f"  {line}", markup=False, soft_wrap=True)
    count = sum(len(s.resources) for s in result.stacks)
    failed = len(result.mandatory)
    summary = (f"{len(result.stacks)} stacks, {count} resources: "
               + (f"[red]{failed} mandatory violation(s)[/]" if failed else "[green]no mandatory violation[/]"))
    console.print(summary)

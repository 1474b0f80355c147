"""One policy, consulted on every path: the plan, the stacks, the CrossGuard pack, the towers.

Public entry points take a subject and a PolicyContext and return Verdicts;
callers decide what a mandatory verdict means for them (exit 1, fail the
stack before `up`, deny the preview).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from nomadrig.errors import ExitCode, NomadrigError
from nomadrig.policy import resource_rules, spec_rules  # noqa: F401  (each rule registers itself on import)
from nomadrig.policy.model import PlannedResource, PolicyContext, Rule, Severity, TeamPlan, Verdict, Violation
from nomadrig.policy.registry import all_rules, get_rule, resource_rule, run_rule, spec_rule, stack_rule

if TYPE_CHECKING:
    from nomadrig.spec import BoxSpec, TowerSpec
    from nomadrig.team.model import Team

__all__ = [
    "PlannedResource", "PolicyContext", "Rule", "Severity", "Verdict", "Violation", "TeamPlan",
    "all_rules", "get_rule", "resource_rule", "spec_rule", "stack_rule",
    "check_box", "check_team", "check_tower", "check_towers", "check_resource", "check_stack",
    "mandatory", "PolicyRefused",
]


def check_box(spec: BoxSpec, ctx: PolicyContext) -> list[Verdict]:
    out: list[Verdict] = []
    for rule in all_rules():
        if rule.kind == "box":
            out += run_rule(rule, spec, f"box {spec.nomad}", ctx)
    return out


def check_team(plan: TeamPlan, ctx: PolicyContext) -> list[Verdict]:
    out: list[Verdict] = []
    for rule in all_rules():
        if rule.kind == "team":
            out += run_rule(rule, plan, f"team {plan.team}", ctx)
    return out


def check_tower(spec: TowerSpec, ctx: PolicyContext) -> list[Verdict]:
    out: list[Verdict] = []
    for rule in all_rules():
        if rule.kind == "tower":
            out += run_rule(rule, spec, f"tower {spec.name}", ctx)
    return out


def check_towers(team: Team, ctx: PolicyContext | None = None) -> list[Verdict]:
    """Every tower of a team through the tower rules: what `validate`, `plan`, `cost` and `tower apply` judge."""
    from nomadrig.spec import tower_spec

    ctx = ctx or PolicyContext.from_team(team)
    out: list[Verdict] = []
    for tower in team.towers:
        out += check_tower(tower_spec(team, tower), ctx)
    return out


class PolicyRefused(NomadrigError):
    """A command stopped before it changed anything because mandatory rules failed (exit 1).

    `problems` carries the verdicts as `--json` prints them.
    """

    exit_code = ExitCode.POLICY_VIOLATION

    def __init__(self, subject: str, verdicts: Sequence[Verdict]) -> None:
        self.verdicts = list(verdicts)
        self.problems = [v.as_dict() for v in self.verdicts]
        lines = [f"refused: {subject}: {len(self.verdicts)} mandatory policy violation(s); nothing was run."]
        lines += [f"  {v.rule_id} {v.message}\n    fix: {v.fix}" for v in self.verdicts]
        super().__init__("\n".join(lines))


def check_resource(resource: PlannedResource, ctx: PolicyContext) -> list[Verdict]:
    out: list[Verdict] = []
    for rule in all_rules():
        if rule.kind == "resource" and rule.applies(resource.type):
            out += run_rule(rule, resource, f"{resource.type} {resource.name}", ctx)
    return out


def check_stack(resources: Sequence[PlannedResource], ctx: PolicyContext) -> list[Verdict]:
    out: list[Verdict] = []
    for resource in resources:
        out += check_resource(resource, ctx)
    for rule in all_rules():
        if rule.kind == "stack":
            out += run_rule(rule, list(resources), "stack", ctx)
    return out


def mandatory(verdicts: Iterable[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.mandatory]

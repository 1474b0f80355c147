"""The offline plan: run the real Pulumi programs under mocks and judge every resource they declare.

No credentials, no network, no Pulumi CLI: `pulumi.runtime.set_mocks` stands in
for the engine, `stacks.mocks.PlanMocks` for the clouds. All team networks and
boxes register in one mock run (one event loop, so 100 boxes take seconds);
each resource is then attributed to the stack it would live in (a team
network stack per cloud and region, a box stack per nomad) and the policy
runs per stack, exactly as CrossGuard would run it on `pulumi preview`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import BadInputError, InputProblem
from .policy import PlannedResource, PolicyContext, TeamPlan, Verdict, check_box, check_stack, check_team, mandatory

if TYPE_CHECKING:
    from stacks.mocks import PlanMocks

    from .config import Team
    from .cost import BoxCost, TeamProjection
    from .spec import BoxSpec

# Inputs too long to print or to put in JSON; shown as size + digest.
BULKY_INPUTS = ("userData", "userDataBase64", "user-data")


@dataclass
class StackPlan:
    """One stack as the plan sees it: what it would create, and what the policy says about it."""

    stack: str
    kind: str  # "team" or "box"
    cloud: str
    region: str
    component: str  # the component's type token
    resources: list[PlannedResource] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    spec: BoxSpec | None = None
    cost: BoxCost | None = None
    retained: set[str] = field(default_factory=set)  # URNs of resources kept when the stack is destroyed

    def is_retained(self, resource: PlannedResource) -> bool:
        return resource.urn in self.retained

    @property
    def nomad(self) -> str | None:
        return self.spec.nomad if self.spec else None

    def verdicts_for(self, resource: PlannedResource) -> list[Verdict]:
        subject = f"{resource.type} {resource.name}"
        return [v for v in self.verdicts if v.subject == subject]

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack, "kind": self.kind, "cloud": self.cloud, "region": self.region,
            "component": self.component, "nomad": self.nomad,
            "resources": [{"type": r.type, "name": r.name, "props": summarize_props(r.props)} for r in self.resources],
            "verdicts": [v.as_dict() for v in self.verdicts],
            "cost": self.cost.as_dict() if self.cost else None,
            "retained_on_destroy": [r.name for r in self.resources if self.is_retained(r)],
        }


@dataclass
class PlanResult:
    """The whole plan: stacks, team-level verdicts and the cost projection."""

    team: str
    stacks: list[StackPlan]
    team_verdicts: list[Verdict]
    projection: TeamProjection

    @property
    def verdicts(self) -> list[Verdict]:
        return [v for s in self.stacks for v in s.verdicts] + self.team_verdicts

    @property
    def mandatory(self) -> list[Verdict]:
        return mandatory(self.verdicts)

    @property
    def ok(self) -> bool:
        return not self.mandatory

    def stack(self, name: str) -> StackPlan:
        for stack in self.stacks:
            if stack.stack == name or stack.nomad == name:
                return stack
        raise KeyError(name)

    def resources(self, type_token: str | None = None) -> list[PlannedResource]:
        return [r for s in self.stacks for r in s.resources if type_token is None or r.type == type_token]

    def as_dict(self) -> dict[str, Any]:
        return {
            "team": self.team, "ok": self.ok, "mandatory_violations": len(self.mandatory),
            "stacks": [s.as_dict() for s in self.stacks],
            "team_verdicts": [v.as_dict() for v in self.team_verdicts],
            "cost": self.projection.as_dict(),
        }


def summarize_props(props: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs for display: bulky user data replaced by its size and digest."""

    def walk(value: Any, key: str = "") -> Any:
        if key in BULKY_INPUTS and isinstance(value, str):
            return f"<{len(value)} bytes sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]}>"
        if isinstance(value, Mapping):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(props)


def select_specs(team: Team, nomad: str | None = None) -> list[BoxSpec]:
    """Every nomad's box, or one; an unknown name is bad input naming the choices."""
    from .spec import box_specs

    specs = box_specs(team)
    if nomad is None:
        return specs
    chosen = [s for s in specs if s.nomad == nomad]
    if not chosen:
        names = ", ".join(s.nomad for s in specs) or "none"
        raise BadInputError("--nomad", [InputProblem("", f"no nomad named {nomad!r} in team {team.team}.",
                                                     f"Pick one of: {names}.")])
    return chosen


def new_mocks(team: Team) -> PlanMocks:
    """Mocks answering with the team's own account and project (tests replace this to add transforms)."""
    from stacks.mocks import MockScope, PlanMocks

    aws, gcp = team.clouds.aws, team.clouds.gcp
    return PlanMocks(MockScope(account_id=aws.account_id if aws and aws.account_id else MockScope.account_id,
                               project=gcp.project if gcp else MockScope.project))


def run_programs(team: Team, specs: Sequence[BoxSpec], mocks: PlanMocks | None = None) -> PlanMocks:
    """Register the team networks the specs need and their boxes, under mocks; return the record."""
    import pulumi

    from stacks.mocks import RecordingMonitor
    from stacks.program import deploy_box, deploy_team_network, team_networks

    mocks = mocks or new_mocks(team)
    pulumi.runtime.set_mocks(mocks, project="nomadrig", stack=f"{team.team}-plan", preview=False,
                             monitor=RecordingMonitor(mocks))
    needed = {(s.cloud, s.region) for s in specs}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        networks = {key: deploy_team_network(team, *key) for key in team_networks(team) if key in needed}
        boxes = [deploy_box(team, spec, networks[(spec.cloud, spec.region)].ref()) for spec in specs]
        return pulumi.Output.all(*[c.urn for c in [*networks.values(), *boxes]])

    program()
    return mocks


def attribute(team: Team, specs: Sequence[BoxSpec], mocks: PlanMocks) -> list[StackPlan]:
    """Group the recorded resources by the stack they would live in (their top-level component)."""
    from stacks.program import team_stack_name

    by_urn = {r.urn: r for r in mocks.resources}
    spec_by_nomad = {s.nomad: s for s in specs}
    stacks: dict[str, StackPlan] = {}
    for rec in mocks.resources:
        if rec.parent in by_urn or rec.custom:
            continue
        kind = rec.type.rsplit(":", 1)[-1]
        cloud = rec.type.split(":")[1]
        if kind == "Box":
            spec = spec_by_nomad[rec.name]
            stacks[rec.urn] = StackPlan(spec.stack_name, "box", cloud, spec.region, rec.type, spec=spec)
        elif kind == "TeamNetwork":
            region = rec.name.removeprefix(f"{team.team}-")
            stacks[rec.urn] = StackPlan(team_stack_name(team.team, cloud, region), "team", cloud, region, rec.type)

    def top(urn: str) -> str:
        while by_urn.get(urn) is not None and by_urn[urn].parent in by_urn:
            urn = by_urn[urn].parent
        return urn

    for rec in mocks.resources:
        if not rec.custom or rec.type.startswith("pulumi:providers:"):
            continue
        owner = stacks.get(top(rec.urn))
        if owner is None:
            raise RuntimeError(f"resource {rec.type} {rec.name} belongs to no team network or box")
        owner.resources.append(PlannedResource(rec.type, rec.name, rec.inputs, rec.urn))
        if rec.retain_on_delete:
            owner.retained.add(rec.urn)
    for stack in stacks.values():
        stack.resources.sort(key=lambda r: (r.type, r.name))
    order = {"team": 0, "box": 1}
    return sorted(stacks.values(), key=lambda s: (order[s.kind], s.stack))


def plan_team(team: Team, nomad: str | None = None, mocks: PlanMocks | None = None) -> PlanResult:
    """The whole offline plan: programs under mocks, resource + stack + box + team rules, costs."""
    from .cost import box_cost, team_projection

    ctx = PolicyContext.from_team(team)
    all_specs = select_specs(team)
    specs = select_specs(team, nomad) if nomad else all_specs
    stacks = attribute(team, specs, run_programs(team, specs, mocks))
    for stack in stacks:
        stack.verdicts = check_stack(stack.resources, ctx)
        if stack.spec is not None:
            stack.verdicts = check_box(stack.spec, ctx) + stack.verdicts
            stack.cost = box_cost(stack.spec, team.usage)
    projection = team_projection(all_specs, team.usage, team.budgets.monthly_usd, team.policy.allow_public_ip)
    team_plan = TeamPlan(team.team, tuple(all_specs), sum(projection.fixed.values()))
    return PlanResult(team.team, stacks, check_team(team_plan, ctx), projection)

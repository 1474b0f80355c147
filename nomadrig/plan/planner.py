"""The offline plan: run the real Pulumi programs under mocks and judge every resource they declare.

No credentials, no network, no Pulumi CLI: `pulumi.runtime.set_mocks` stands in
for the engine, `stacks.mocks.PlanMocks` for the clouds. A process registers
its team networks and boxes in one mock run (one event loop, not a stack each);
each resource is then attributed to the stack it would live in (a team
network stack per cloud and region, a box stack per nomad) and the policy
runs per stack, exactly as CrossGuard would run it on `pulumi preview`.

A big team's boxes are split across worker processes (one per core, at most
`MAX_WORKERS`): the Pulumi SDK runs one resource at a time on one core, and
the boxes do not depend on each other. Each worker registers the team networks
its boxes need; the parent merges the records by URN, so a network two workers
both registered counts once, and the plan is the same as a single run's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nomadrig import names
from nomadrig.errors import BadInputError, InputProblem
from nomadrig.policy import (
    PlannedResource,
    PolicyContext,
    TeamPlan,
    Verdict,
    check_box,
    check_stack,
    check_team,
    check_towers,
    mandatory,
)

if TYPE_CHECKING:
    from nomadrig.cost import BoxCost, TeamProjection
    from nomadrig.spec import BoxSpec
    from nomadrig.stacks.mocks import PlanMocks
    from nomadrig.stacks.record import RecordedResource
    from nomadrig.team.model import Team

# Inputs too long to print or to put in JSON; shown as size + digest.
BULKY_INPUTS = ("userData", "userDataBase64", "user-data")
# What a run of the programs costs, in boxes registered (about 40 ms each on a 2-core CI machine): importing a
# cloud's SDK and registering its first resources (AWS about 1.3 s, GCP 2.2 s), and starting a worker process.
SDK_IMPORT_BOXES = {"aws": 30, "gcp": 55}
WORKER_START_BOXES = 8
# Past four workers each one mostly imports SDKs (and holds ~200 MB) for little gain.
MAX_WORKERS = 4


@dataclass
class StackPlan:
    """One stack as the plan sees it: what it would create, and what the policy says about it."""

    stack: str
    kind: str  # "network" (the team network of a cloud and region) or "box", as `ls` says
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
    tower_verdicts: list[Verdict] = field(default_factory=list)

    @property
    def verdicts(self) -> list[Verdict]:
        return [v for s in self.stacks for v in s.verdicts] + self.team_verdicts + self.tower_verdicts

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
            "tower_verdicts": [v.as_dict() for v in self.tower_verdicts],
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
    from nomadrig.spec import box_specs

    specs = box_specs(team)
    if nomad is None:
        return specs
    chosen = [s for s in specs if s.nomad == nomad]
    if not chosen:
        names = ", ".join(s.nomad for s in specs) or "none"
        raise BadInputError("--nomad", [InputProblem("", f"no nomad named {nomad!r} in team {team.name}.",
                                                     f"Pick one of: {names}.")])
    return chosen


def new_mocks(team: Team) -> PlanMocks:
    """Mocks answering with the team's own account and project.

    Tests replace this to add transforms; a replacement acts in this process
    only, so such a test plans one nomad or passes its mocks to `plan_team`.
    """
    from nomadrig.stacks.mocks import MockScope, PlanMocks

    aws, gcp = team.clouds.aws, team.clouds.gcp
    return PlanMocks(MockScope(account_id=aws.account_id if aws and aws.account_id else MockScope.account_id,
                               project=gcp.project if gcp else MockScope.project))


def run_programs(team: Team, specs: Sequence[BoxSpec], mocks: PlanMocks | None = None) -> PlanMocks:
    """Register the team networks the specs need and their boxes, under mocks; return the record."""
    import pulumi

    from nomadrig.spec import network_specs
    from nomadrig.stacks.mocks import RecordingMonitor
    from nomadrig.stacks.program import deploy_box, deploy_team_network

    mocks = mocks or new_mocks(team)
    # set_mocks makes a root stack only where none is left: without the reset, the components of a second run
    # in this process would be children of the first program's stack, and their URNs would say so.
    pulumi.runtime.reset_options()
    pulumi.runtime.set_mocks(mocks, project="nomadrig", stack=f"{team.name}-plan", preview=False,
                             monitor=RecordingMonitor(mocks))
    needed = {(s.cloud, s.region) for s in specs}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        networks = {(net.cloud, net.region): deploy_team_network(net) for net in network_specs(team)
                    if (net.cloud, net.region) in needed}
        boxes = [deploy_box(spec, networks[(spec.cloud, spec.region)].ref()) for spec in specs]
        return pulumi.Output.all(*[c.urn for c in [*networks.values(), *boxes]])

    program()
    return mocks


def plan_workers() -> int:
    """How many worker processes this machine gives the plan: the cores this process may use, capped."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def run_cost(specs: Sequence[BoxSpec]) -> int:
    """What running the programs for these boxes in one process costs, in boxes (see `SDK_IMPORT_BOXES`)."""
    return _cost(len(specs), {s.cloud for s in specs})


def _cost(boxes: int, clouds: set[str]) -> int:
    return boxes + sum(SDK_IMPORT_BOXES.get(cloud, 0) for cloud in clouds)


def split_specs(specs: Sequence[BoxSpec], workers: int) -> list[list[BoxSpec]]:
    """The boxes in the fewest runs (at most `workers`) that finish soonest; one run means: no workers.

    Boxes are cut into contiguous runs in (cloud, region) order, so neighbours
    share a team network and an SDK. One more run must save more than a
    worker's start (`WORKER_START_BOXES`) to be worth its process.
    """
    ordered = sorted(specs, key=lambda s: (s.cloud, s.region))
    best = [ordered]
    for count in range(2, workers + 1):
        runs = cheapest_runs(ordered, count)
        if max(map(run_cost, runs)) + WORKER_START_BOXES < max(map(run_cost, best)):
            best = runs
    return best


def cheapest_runs(ordered: Sequence[BoxSpec], count: int) -> list[list[BoxSpec]]:
    """At most `count` contiguous runs whose costliest run is as cheap as it can be.

    A binary search on that cost; for a given limit, filling each run greedily
    needs the fewest runs, as costs only grow when a run grows.
    """

    def fill(limit: int) -> list[list[BoxSpec]]:
        runs: list[list[BoxSpec]] = [[]]
        clouds: set[str] = set()
        for spec in ordered:
            if runs[-1] and _cost(len(runs[-1]) + 1, clouds | {spec.cloud}) > limit:
                runs.append([])
                clouds = set()
            runs[-1].append(spec)
            clouds.add(spec.cloud)
        return runs

    low, high = 1, run_cost(ordered)
    while low < high:
        middle = (low + high) // 2
        if len(fill(middle)) <= count:
            high = middle
        else:
            low = middle + 1
    return [run for run in fill(low) if run]


def record_resources(team: Team, specs: Sequence[BoxSpec], mocks: PlanMocks | None = None,
                     workers: int | None = None) -> list[RecordedResource]:
    """Every resource the programs register for these boxes, each once (in one process or in several).

    `workers`: at most this many processes (default `plan_workers()`); 1 runs
    everything here. Mocks passed in (tests with transforms) run here, in this
    process: their transforms are closures that cannot travel to a worker.
    """
    if not specs:  # a team of towers only: no box, so no team network either
        return []
    runs = [] if mocks is not None else split_specs(specs, plan_workers() if workers is None else workers)
    if len(runs) < 2:
        return run_programs(team, specs, mocks).resources
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(runs)) as waiters:  # threads only wait on the workers' pipes
        records = list(waiters.map(lambda run: _in_worker(team, run), runs))
    merged: dict[str, RecordedResource] = {}
    for record in records:
        for resource in record:
            merged.setdefault(resource.urn, resource)
    return list(merged.values())


def _in_worker(team: Team, specs: Sequence[BoxSpec]) -> list[RecordedResource]:
    """Run the programs for some boxes in a `nomadrig.plan.worker` process; raise what it raised."""
    import pickle
    import signal
    import subprocess
    import sys

    payload = pickle.dumps(list(sys.path)) + pickle.dumps((team, list(specs)))
    done = subprocess.run([sys.executable, "-m", "nomadrig.plan.worker"], input=payload, stdout=subprocess.PIPE,
                          check=False)
    if done.returncode == -signal.SIGINT:  # Ctrl-C, seen first by the worker: the command was interrupted
        raise KeyboardInterrupt
    if done.returncode < 0:
        raise RuntimeError(f"a plan worker was killed by {signal.Signals(-done.returncode).name} (out of memory?)")
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"a plan worker exited with {done.returncode} and no result (its error is above)")
    status, value = pickle.loads(done.stdout)
    if status == "error":
        raise value
    return value


def attribute(team: Team, specs: Sequence[BoxSpec], resources: Sequence[RecordedResource]) -> list[StackPlan]:
    """Group the recorded resources by the stack they would live in (their top-level component)."""

    by_urn = {r.urn: r for r in resources}
    spec_by_nomad = {s.nomad: s for s in specs}
    stacks: dict[str, StackPlan] = {}
    for rec in resources:
        if rec.parent in by_urn or rec.custom:
            continue
        kind = rec.type.rsplit(":", 1)[-1]
        cloud = rec.type.split(":")[1]
        if kind == "Box":
            spec = spec_by_nomad[rec.name]
            stacks[rec.urn] = StackPlan(spec.stack_name, "box", cloud, spec.region, rec.type, spec=spec)
        elif kind == "TeamNetwork":
            region = rec.name.removeprefix(f"{team.name}-")
            stacks[rec.urn] = StackPlan(names.network_stack_name(team.name, cloud, region), "network", cloud, region,
                                        rec.type)

    def top(urn: str) -> str:
        while by_urn.get(urn) is not None and by_urn[urn].parent in by_urn:
            urn = by_urn[urn].parent
        return urn

    for rec in resources:
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
    order = {"network": 0, "box": 1}
    return sorted(stacks.values(), key=lambda s: (order[s.kind], s.stack))


def plan_team(team: Team, nomad: str | None = None, mocks: PlanMocks | None = None,
              workers: int | None = None) -> PlanResult:
    """The whole offline plan: programs under mocks, resource + stack + box + team + tower rules, costs.

    `workers`: at most this many processes run the programs (default: one per core, see `record_resources`).
    The towers are judged when the whole team is planned; `nomad` plans one box and leaves them out.
    """
    from nomadrig.cost import team_projection

    ctx = PolicyContext.from_team(team)
    all_specs = select_specs(team)
    specs = select_specs(team, nomad) if nomad else all_specs
    stacks = attribute(team, specs, record_resources(team, specs, mocks, workers))
    projection = team_projection(all_specs, team.usage, team.budgets.monthly_usd, team.policy.allow_public_ip)
    # A stack's cost is its line of the team's projection, so the two always agree (shared NAT included).
    box_costs = {box.nomad: box for box in projection.boxes}
    for stack in stacks:
        stack.verdicts = check_stack(stack.resources, ctx)
        if stack.spec is not None:
            stack.verdicts = check_box(stack.spec, ctx) + stack.verdicts
            stack.cost = box_costs[stack.spec.nomad]
    team_plan = TeamPlan(team.name, tuple(all_specs))
    towers = [] if nomad else check_towers(team, ctx)
    return PlanResult(team.name, stacks, check_team(team_plan, ctx), projection, towers)


def spec_verdicts(team: Team, specs: Sequence[BoxSpec], projection: TeamProjection) -> list[Verdict]:
    """The rules `plan` runs that need no program run: box, team and tower rules (what `cost` judges by).

    Resource rules need the stacks' resources, so only `plan` (and `up`) runs them.
    """
    ctx = PolicyContext.from_team(team)
    boxes = [v for spec in specs for v in check_box(spec, ctx)]
    team_plan = TeamPlan(team.name, tuple(specs))
    return boxes + check_team(team_plan, ctx) + check_towers(team, ctx)

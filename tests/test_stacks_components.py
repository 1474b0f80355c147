"""Every component exposes each child it registers as an attribute.

A caller (a test, the plan, the next component) reaches a team network's key or
a box's data volume by name, never by searching the registrations; a child
declared without an attribute is one nobody can reach. Run for the example team
and for the example with every switch turned (the NAT-less network, the GCP
budget), so the optional children count too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pytest
from nomadrig.stacks.args import tower_args
from nomadrig.stacks.mocks import MockScope, PlanMocks, RecordingMonitor
from nomadrig.stacks.program import deploy_box, deploy_team_network
from nomadrig.stacks.tower import Tower

from nomadrig.spec import box_spec, network_specs, tower_spec
from nomadrig.team.load import load_team
from nomadrig.team.model import Team
from tests.test_stacks_snapshot import EXAMPLE, other_way_team


def attribute_children(component: pulumi.ComponentResource) -> list[pulumi.Resource]:
    """The resources a component holds in its attributes, one by one or in lists."""
    found: list[pulumi.Resource] = []
    for value in vars(component).values():
        found += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, pulumi.Resource)]
    return found


def components_of(team: Team) -> tuple[PlanMocks, dict[str, set[str]]]:
    """Each component's URN -> the URNs of the children its attributes hold, with the mocks' record."""
    mocks = PlanMocks(MockScope(project="vision-lab-research"))
    pulumi.runtime.set_mocks(mocks, project="nomadrig", stack="components", preview=False,
                             monitor=RecordingMonitor(mocks))
    held: dict[str, set[str]] = {}

    @pulumi.runtime.test
    def program() -> Any:
        networks = {(net.cloud, net.region): deploy_team_network(net) for net in network_specs(team)}
        boxes = [deploy_box(spec, networks[(spec.cloud, spec.region)].ref())
                 for spec in (box_spec(team, nomad) for nomad in team.nomads)]
        towers = [Tower(tower.name, tower_args(tower_spec(team, tower))) for tower in team.towers]
        return pulumi.Output.all(*[keep(c) for c in [*networks.values(), *boxes, *towers]])

    def keep(component: pulumi.ComponentResource) -> pulumi.Output[None]:
        record: Callable[[list[str]], None] = lambda urns: held.__setitem__(urns[0], set(urns[1:]))  # noqa: E731
        return pulumi.Output.all(component.urn, *[r.urn for r in attribute_children(component)]).apply(record)

    program()
    return mocks, held


@pytest.mark.parametrize("team_of", [lambda: load_team(EXAMPLE), other_way_team], ids=["example", "other way"])
def test_every_child_a_component_registers_is_one_of_its_attributes(team_of: Callable[[], Team]) -> None:
    mocks, held = components_of(team_of())
    assert held, "no component registered"
    for urn, attributes in held.items():
        registered = {r.urn for r in mocks.resources if r.parent == urn}
        assert registered - attributes == set(), f"{urn}: children without an attribute"
        assert attributes <= registered, f"{urn}: attributes that are not its children: {attributes - registered}"

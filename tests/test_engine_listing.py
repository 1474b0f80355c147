"""`nomadrig ls`'s rules, without the Pulumi CLI: which backend stacks are the team's, and what each one is."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from nomadrig.engine.listing import TeamStacks, stack_base
from nomadrig.names import box_stack_name, network_stack_name, tower_stack_name
from nomadrig.team.load import load_team

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"


@pytest.fixture(scope="module")
def index() -> TeamStacks:
    return TeamStacks.of(load_team(EXAMPLE))


def summary(*, updating: bool = False, resources: int = 5) -> SimpleNamespace:
    """The fields of Pulumi's StackSummary that `ls` reads."""
    return SimpleNamespace(update_in_progress=updating, resource_count=resources, last_update="2026-12-02T10:00:00Z")


def test_a_prefix_is_not_enough_the_outputs_or_the_team_file_decide(index: TeamStacks) -> None:
    other_team = "vision-lab-2--ada"  # another team whose name starts with this one's
    assert index.may_belong(other_team) and not index.belongs(other_team, {"team": "vision-lab-2"})
    gone = box_stack_name("vision-lab", "linus")  # a nomad removed from the team file
    assert index.belongs(gone, {"team": "vision-lab", "nomad": "linus"})
    assert index.belongs(box_stack_name("vision-lab", "ada"), {})
    assert stack_base("acme/nomadrig/" + gone) == gone


def test_each_stack_is_named_for_what_it_is(index: TeamStacks) -> None:
    done = SimpleNamespace(result="succeeded", kind="update")
    box = index.status(box_stack_name("vision-lab", "ada"), summary(), {}, done)
    assert (box.kind, box.subject, box.cloud, box.region, box.state) == ("box", "ada", "aws", "eu-west-1", "deployed")
    tower = index.status(tower_stack_name("vision-lab", "basement"), summary(), {}, done)
    assert (tower.kind, tower.subject) == ("tower", "basement")
    net = index.status(network_stack_name("vision-lab", "gcp", "us-central1"), summary(), {}, done)
    assert (net.kind, net.subject, net.cloud, net.region) == ("network", "gcp/us-central1", "gcp", "us-central1")
    gone = index.status(box_stack_name("vision-lab", "linus"), summary(), {"nomad": "linus", "cloud": "gcp"}, done)
    assert (gone.kind, gone.subject, gone.cloud) == ("box", "linus", "gcp")


@pytest.mark.parametrize(("updating", "resources", "last", "state"), [
    (True, 5, None, "updating"),
    (False, 0, None, "never deployed"),
    (False, 5, SimpleNamespace(result="failed", kind="update"), "update failed"),
    (False, 5, SimpleNamespace(result="succeeded", kind="destroy"), "destroyed"),
    (False, 0, SimpleNamespace(result="succeeded", kind="update"), "destroyed"),
    (False, 5, SimpleNamespace(result="succeeded", kind="update"), "deployed"),
])
def test_the_state_comes_from_the_last_update(index: TeamStacks, updating, resources, last, state) -> None:
    name = box_stack_name("vision-lab", "ada")
    assert index.status(name, summary(updating=updating, resources=resources), {}, last).state == state

"""What the stacks write, the reaper reads: names, tags and labels, round trip through the real parts.

The box programs run for real under Pulumi mocks (`nomadrig.plan`); the
instance's tags (AWS) or labels (GCP) are taken from the inputs they
registered and handed, in the shape each cloud's API returns them, to the
reaper's own adapter translation and verdicts. No tag is written by hand,
except the one a person adds in a console (``protect``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomadrig import names
from nomadrig.plan import plan_team, record_resources
from nomadrig.reaper.aws import instance_from_ec2
from nomadrig.reaper.gcp import instance_from_gce
from nomadrig.reaper.inventory import CpuWindow, ManagedInstance
from nomadrig.reaper.ports import StackRef
from nomadrig.reaper.verdicts import Action, ReapPolicy, judge
from nomadrig.regions import REGIONS_BY_CLOUD
from nomadrig.spec import BoxSpec, box_spec
from nomadrig.team.load import load_team
from nomadrig.team.model import NAME_RE, Team, _check_name

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "team.yaml"
INSTANCE = {"aws": "aws:ec2/instance:Instance", "gcp": "gcp:compute/instance:Instance"}
NOMAD = {"aws": "ada", "gcp": "grace"}
IDLE = CpuWindow(minutes=240, max_percent=0.5, datapoints=48, expected=48)  # the team's max_idle_minutes


# ---------------------------------------------------------------- stack names


def _valid(name: str) -> bool:
    try:
        _check_name(name, "name")
    except ValueError:
        return False
    return True


valid_names = st.from_regex(NAME_RE, fullmatch=True).filter(_valid)
regions = st.sampled_from(sorted((cloud, region) for cloud, found in REGIONS_BY_CLOUD.items() for region in found))


def team_stacks(team: str, nomads: list[str], towers: list[str],
                networks: list[tuple[str, str]]) -> dict[str, names.StackName]:
    """Every stack a team with these members would have, by name -> what it should parse back to."""
    stacks: list[tuple[str, names.StackName]] = []
    for nomad in nomads:
        stacks.append((names.box_stack_name(team, nomad), names.StackName(names.BOX, team, nomad)))
        stacks.append((names.purge_stack_name(team, nomad), names.StackName(names.PURGE, team, nomad)))
    for tower in towers:
        stacks.append((names.tower_stack_name(team, tower), names.StackName(names.TOWER, team, tower)))
    for cloud, region in networks:
        stacks.append((names.network_stack_name(team, cloud, region),
                       names.StackName(names.NETWORK, team, f"{cloud}/{region}", cloud, region)))
    return dict(stacks)


@settings(max_examples=300, deadline=None)
@given(teams=st.lists(st.tuples(valid_names, st.lists(valid_names, max_size=6, unique=True),
                                st.lists(valid_names, max_size=3, unique=True),
                                st.lists(regions, max_size=3, unique=True)),
                      min_size=1, max_size=4, unique_by=lambda t: t[0]))
def test_no_two_stacks_of_any_teams_share_a_name_and_every_name_parses_back(teams):
    seen: dict[str, names.StackName] = {}
    for team, nomads, towers, networks in teams:
        for name, meant in team_stacks(team, nomads, towers, networks).items():
            assert name not in seen or seen[name] == meant, f"{name} names both {seen[name]} and {meant}"
            seen[name] = meant
            assert names.parse_stack_name(name) == meant
            assert names.parse_stack_name(f"acme/nomadrig/{name}") == meant  # Pulumi Cloud's full name
            assert meant.name == name
    total = sum(len(n) * 2 + len(t) + len(w) for _, n, t, w in teams)
    assert len(seen) == total, "two members' stacks got the same name"


@pytest.mark.parametrize(("first", "second"), [
    (("vision", "lab-ada"), ("vision-lab", "ada")),  # collided as vision-lab-ada
    (("vision", "net-aws-eu-west-1"), ("vision", "net", "aws", "eu-west-1")),  # a nomad named like a network
    (("vision", "tower-basement"), ("vision", "tower", "basement")),  # a nomad named like a tower stack
])
def test_names_that_collided_under_the_old_scheme_are_distinct(first, second):
    def name(parts: tuple[str, ...]) -> str:
        if len(parts) == 2:
            return names.box_stack_name(*parts)
        if parts[1] == "tower":
            return names.tower_stack_name(parts[0], parts[2])
        return names.network_stack_name(parts[0], parts[2], parts[3])

    assert "-".join(first) == "-".join(second), "the old scheme made them one stack"
    assert name(first) != name(second)


def test_the_old_names_of_each_stack_are_what_earlier_releases_wrote():
    assert names.legacy_stack_names("vision-lab--ada") == ("vision-lab-ada",)
    assert names.legacy_stack_names("vision-lab--net--aws--eu-west-1") == ("vision-lab-net-aws-eu-west-1",)
    assert names.legacy_stack_names("vision-lab--tower--basement") == ("vision-lab-tower-basement",)
    assert names.legacy_stack_names("not a nomadrig stack") == ()


def test_a_spec_and_the_engine_name_stacks_through_the_one_module(example_team: Team):
    from nomadrig.names import network_stack_name, tower_stack_name
    from nomadrig.spec import tower_spec

    spec = box_spec(example_team, "ada")
    assert spec.stack_name == "vision-lab--ada"
    assert tower_spec(example_team, "basement").stack_name == tower_stack_name("vision-lab", "basement")
    plan_names = {s.stack for s in plan_team(example_team).stacks if s.kind == "network"}
    assert network_stack_name("vision-lab", "aws", "eu-west-1") in plan_names


# ---------------------------------------------------------------- tags and labels: writer -> reaper


@pytest.fixture(scope="module")
def example_team() -> Team:
    return load_team(EXAMPLE)


def planned_instance(team: Team, spec: BoxSpec) -> dict[str, Any]:
    """The inputs the real box program registers for the instance, under mocks."""
    found = [r for r in record_resources(team, [spec], workers=1) if r.type == INSTANCE[spec.cloud]]
    assert len(found) == 1, [r.name for r in found]
    return dict(found[0].inputs)


@pytest.fixture(scope="module", params=["aws", "gcp"])
def planned(request, example_team: Team) -> tuple[BoxSpec, dict[str, Any]]:
    spec = box_spec(example_team, NOMAD[request.param])
    return spec, planned_instance(example_team, spec)


def as_the_cloud_lists_it(spec: BoxSpec, inputs: dict[str, Any], *, state: str, launched: datetime,
                          stopped: datetime | None = None, extra: dict[str, str] | None = None) -> ManagedInstance:
    """The planned instance as the cloud's list call returns it, through the reaper's own translation.

    Only what the cloud adds is made up here (id, state, times); tags and labels are the program's own.
    """
    if spec.cloud == "aws":
        tags = [{"Key": k, "Value": v} for k, v in {**inputs["tags"], **(extra or {})}.items()]
        raw = {"InstanceId": "i-0123456789abcdef0", "State": {"Name": state}, "InstanceType": inputs["instanceType"],
               "LaunchTime": launched, "Tags": tags, "RootDeviceName": "/dev/sda1", "BlockDeviceMappings": [],
               "StateTransitionReason": f"User initiated ({stopped:%Y-%m-%d %H:%M:%S} GMT)" if stopped else ""}
        return instance_from_ec2(raw, spec.region)
    status = {"running": "RUNNING", "stopped": "TERMINATED"}[state]
    raw = SimpleNamespace(status=status, disks=[], id=4242, name=inputs["name"],
                          machine_type=f"zones/{spec.region}-a/machineTypes/{inputs['machineType']}",
                          last_start_timestamp=launched.isoformat(), creation_timestamp=launched.isoformat(),
                          last_stop_timestamp=stopped.isoformat() if stopped else "",
                          labels={**inputs["labels"], **(extra or {})})
    return instance_from_gce(raw, f"{spec.region}-a")


def verdict_at(planned: tuple[BoxSpec, dict[str, Any]], team: Team, hours: float, state: str, *,
               stopped_hours_ago: float | None = None, cpu: CpuWindow | None = None,
               extra: dict[str, str] | None = None) -> Any:
    """The reaper's verdict on the planned box `hours` after its recorded creation, owned by its stack."""
    spec, inputs = planned
    created = names.parse_time(spec.created)
    now = created + timedelta(hours=hours)
    stopped = now - timedelta(hours=stopped_hours_ago) if stopped_hours_ago is not None else None
    instance = as_the_cloud_lists_it(spec, inputs, state=state, launched=created, stopped=stopped, extra=extra)
    stack = StackRef(spec.stack_name, spec.nomad, spec.cloud, spec.region, instance.instance_id)
    return judge(instance, stack, cpu, ReapPolicy.from_team(team), now)


def test_the_reaper_reads_back_every_fact_the_program_wrote(planned):
    spec, inputs = planned
    instance = as_the_cloud_lists_it(spec, inputs, state="running", launched=datetime.now(UTC))
    tags = instance.box_tags
    assert tags.errors == ()
    assert (tags.managed, tags.team, tags.owner, tags.protect) == (True, spec.team, spec.nomad, False)
    assert tags.ttl_hours == spec.ttl_hours and tags.idle_minutes == spec.idle_minutes
    assert tags.created == names.parse_time(spec.created)
    if spec.cloud == "gcp":
        assert inputs["name"] == spec.stack_name, "the reaper matches a GCE instance to its stack by name"


@pytest.mark.parametrize(("share_of_ttl", "state", "stopped_hours_ago", "cpu", "expected"), [
    (1.01, "running", None, None, Action.DESTROY),  # past its TTL
    (0.5, "running", None, IDLE, Action.STOP),  # running idle within its TTL: the agent missed it
    (0.5, "stopped", 1.0, None, Action.KEEP),  # stopped an hour ago, within its TTL
], ids=["past-ttl-destroy", "idle-stop", "stopped-recently-keep"])
def test_the_reaper_judges_a_planned_box_by_its_own_tags(planned, example_team, share_of_ttl, state,
                                                         stopped_hours_ago, cpu, expected):
    hours = planned[0].ttl_hours * share_of_ttl
    verdict = verdict_at(planned, example_team, hours, state, stopped_hours_ago=stopped_hours_ago, cpu=cpu)
    assert verdict.action == expected, verdict.reason


@pytest.mark.parametrize("value", ["", "true", "yes"])
def test_a_protect_flag_set_in_the_console_keeps_an_expired_box(planned, example_team, value):
    spec, _ = planned
    protect = {names.tag_key(spec.cloud, names.PROTECT): value}  # what a person adds; the console's flag is empty
    verdict = verdict_at(planned, example_team, spec.ttl_hours + 24, "stopped", stopped_hours_ago=spec.ttl_hours,
                         extra=protect)
    assert verdict.action == Action.SKIP_PROTECTED, verdict.reason


def test_the_other_clouds_prefix_is_not_read(planned, example_team):
    spec, _ = planned
    if spec.cloud != "aws":
        pytest.skip("GCP label keys cannot hold ':', so an AWS-prefixed key never reaches a GCP box")
    stray = {names.tag_key("gcp", names.PROTECT): "true", names.tag_key("gcp", names.TTL): "100000"}
    verdict = verdict_at(planned, example_team, spec.ttl_hours + 24, "running", extra=stray)
    assert verdict.action == Action.DESTROY, verdict.reason


# ---------------------------------------------------------------- created is written once


def test_a_box_planned_again_keeps_the_creation_time_its_stack_recorded(example_team):
    earlier = "2026-01-05T09:30Z"
    spec = box_spec(example_team, "grace", created=earlier)
    first = planned_instance(example_team, spec)
    second = planned_instance(example_team, box_spec(example_team, "grace", created=earlier))
    assert first["labels"] == second["labels"]
    assert first["labels"][names.tag_key("gcp", names.CREATED)] == "2026-01-05t09-30z"
    assert names.parse_time(first["labels"][names.tag_key("gcp", names.CREATED)]) == names.parse_time(earlier)


def test_a_box_without_a_recorded_creation_time_is_created_now(example_team):
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    created = names.parse_time(box_spec(example_team, "ada").created)
    assert before <= created <= datetime.now(UTC)


def test_a_creation_time_from_the_stack_is_normalised_and_a_bad_one_refused(example_team):
    assert box_spec(example_team, "ada", created="2026-01-05T09:30:59+02:00").created == "2026-01-05T07:30Z"
    with pytest.raises(ValueError):
        box_spec(example_team, "ada", created="yesterday")

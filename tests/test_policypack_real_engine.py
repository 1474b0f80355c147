"""The CrossGuard pack in policypack/, loaded by the real Pulumi engine (built by scripts/build-engine.sh).

No AWS or GCP provider plugin exists here, so a real `aws:ec2/instance:Instance` cannot be registered: a
custom resource needs its provider's plugin before the engine even calls the analyzer. A *component*
resource needs no provider, may carry any type token, and the engine hands it to every analyzer like a custom
resource: `validate_resource` gets its type token and its inputs, `validate_stack` its registered outputs.
So each test replays what the real box and network programs register under mocks (nomadrig's offline
plan: type tokens and camelCase inputs) as components of the same type, name and inputs, and the real engine
runs the pack on them exactly as it would on the cloud resources.

What this does not reach: the inputs a provider's `Check` would normalise (defaults it fills in) before the
analyzer sees a custom resource; nomadrig's rules treat absent values as the cloud does (STYLE.md).
"""

from __future__ import annotations

import copy
import io
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pulumi
import pytest
import yaml
from rich.console import Console

from nomadrig.engine import Engine
from nomadrig.errors import CloudError
from nomadrig.names import network_stack_name
from nomadrig.plan import plan_team
from nomadrig.policy import PlannedResource
from nomadrig.spec import box_spec
from nomadrig.team.load import load_team, parse_team
from tests.fake_pulumi.real import REPO, RealPulumi, ScriptedPrograms
from tests.test_stacks_aws import FLIPS as AWS_FLIPS
from tests.test_stacks_gcp import FLIPS as GCP_FLIPS

TEAM_FILE = REPO / "examples" / "team.yaml"
NOMAD = {"aws": "ada", "gcp": "grace"}
FLIPS = {f"aws {name}": ("aws", *flip) for name, flip in AWS_FLIPS.items()}
FLIPS.update({f"gcp {name}": ("gcp", *flip) for name, flip in GCP_FLIPS.items()})


class LookAlike(pulumi.ComponentResource):
    """A component with a cloud resource's type token, name and inputs: what the pack judges, and no cloud."""

    def __init__(self, resource: PlannedResource) -> None:
        super().__init__(resource.type, resource.name, dict(resource.props))
        self.register_outputs(dict(resource.props))


def replay(resources: Iterable[PlannedResource]) -> Callable[[], None]:
    resources = list(resources)

    def program() -> None:
        for resource in resources:
            LookAlike(resource)

    return program


def planned(cloud: str) -> tuple[list[PlannedResource], list[PlannedResource]]:
    """(network, box) resources of the nomad on `cloud`, as the real programs register them under mocks."""
    plan = plan_team(load_team(TEAM_FILE), NOMAD[cloud])
    network = [r for s in plan.stacks if s.kind == "network" for r in s.resources]
    box = [r for s in plan.stacks if s.kind == "box" for r in s.resources]
    return network, box


def flipped(resources: list[PlannedResource], cloud: str) -> dict[str, PlannedResource]:
    """Per flip of `cloud`: a copy of the team's own resource of that type with that one setting broken."""
    copies = {}
    for flip, (flip_cloud, _rule, type_token, alter) in sorted(FLIPS.items()):
        if flip_cloud != cloud:
            continue
        original = next(r for r in resources if r.type == type_token)
        props = copy.deepcopy(dict(original.props))
        alter(props)
        name = f"{original.name}-{re.sub(r'[^a-z0-9]+', '-', flip.lower()).strip('-')}"
        copies[flip] = PlannedResource(original.type, name, props)
    return copies


@pytest.fixture
def real(monkeypatch, tmp_path) -> RealPulumi:
    return RealPulumi.install(monkeypatch, tmp_path)


def engine_for(network: list[PlannedResource], box: list[PlannedResource], out: io.StringIO) -> Engine:
    programs = ScriptedPrograms(network=replay(network), box=lambda _outputs: replay(box))
    return Engine(load_team(TEAM_FILE), programs=programs, console=Console(file=out, width=250))


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_teams_own_network_and_box_pass_the_pack_under_the_real_engine(real, cloud):
    network, box = planned(cloud)
    out = io.StringIO()
    team = load_team(TEAM_FILE)
    engine = engine_for(network, box, out)

    engine.up_box(box_spec(team, NOMAD[cloud]))

    assert "policy mandatory" not in out.getvalue(), out.getvalue()
    deployed = {s.name: s.state for s in engine.list_stacks()}
    assert deployed == {box_spec(team, NOMAD[cloud]).stack_name: "deployed",
                        network_stack_name("vision-lab", cloud, box_spec(team, NOMAD[cloud]).region): "deployed"}


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_each_resource_that_breaks_a_mandatory_rule_is_denied_and_only_those(real, cloud):
    """One preview holds the team's own resources and, per flip, a copy with that one setting broken."""
    network, box = planned(cloud)
    broken = flipped(network + box, cloud)
    team = load_team(TEAM_FILE)
    spec = box_spec(team, NOMAD[cloud])
    engine = engine_for(network + box + list(broken.values()), [], io.StringIO())

    with pytest.raises(CloudError) as caught:
        engine.preview_box(spec)  # the network is not deployed: its stack (holding everything here) is previewed

    message = str(caught.value)
    previewed = network_stack_name("vision-lab", cloud, spec.region)
    assert caught.value.exit_code == 3
    assert f"stack {previewed}: pulumi preview failed:" in message, message
    denied = set(re.findall(r"mandatory nomadrig/([A-Z]+-\d+) \(([^)]+)\)", message))
    assert {name for _rule, name in denied} == {r.name for r in broken.values()}, message  # the team's own pass
    for flip, resource in broken.items():
        assert (FLIPS[flip][1], resource.name) in denied, f"{flip}: {message}"  # a flip may break more than one rule
    assert {s.name: s.state for s in engine.list_stacks()}[previewed] == "never deployed"


def test_what_the_team_file_allows_or_turns_off_is_no_longer_denied_under_the_real_engine(real):
    """The engine's --policy-pack-config carries the team's policy: public IPs allowed, IMDSv2 rule off."""
    network, box = planned("aws")
    broken = flipped(network + box, "aws")
    document = yaml.safe_load(TEAM_FILE.read_text())
    document["policy"].update(allow_public_ip=True, rules={"SEC-002": {"enabled": False}})
    team = parse_team(yaml.safe_dump(document), "team.yaml")
    programs = ScriptedPrograms(network=replay(network + box + list(broken.values())), box=lambda _outputs: replay([]))
    engine = Engine(team, programs=programs, console=Console(file=io.StringIO(), width=250))

    with pytest.raises(CloudError) as caught:
        engine.preview_box(box_spec(team, "ada"))

    denied = set(re.findall(r"mandatory nomadrig/([A-Z]+-\d+) \(([^)]+)\)", str(caught.value)))
    allowed = {broken["aws public IP"].name, broken["aws httpTokens optional"].name}
    assert not {name for _rule, name in denied} & allowed, caught.value
    still = {flip: resource for flip, resource in broken.items() if resource.name not in allowed}
    assert still and all((FLIPS[flip][1], r.name) in denied for flip, r in still.items()), caught.value


# ---------------------------------------------------------------- what the engine hands a pack

PROBE = """\
import json, os, sys
from pulumi_policy import (EnforcementLevel, PolicyPack, ResourceValidationPolicy, StackValidationPolicy)

OUT = {out!r}

def plain(value):
    # the pack SDK wraps props in read-only proxies; JSON needs plain dicts and lists
    if isinstance(value, (str, bytes)):
        return value
    if hasattr(value, "items"):
        return {{key: plain(item) for key, item in value.items()}}
    if hasattr(value, "__iter__"):
        return [plain(item) for item in value]
    return value

def record(kind, entries):
    with open(OUT, "a") as handle:
        for entry in entries:
            handle.write(json.dumps({{"kind": kind, **entry}}, sort_keys=True) + "\\n")

def resource(args, report):
    record("resource", [{{"type": args.resource_type, "name": args.name, "props": plain(args.props)}}])

def stack(args, report):
    record("stack", [{{"type": r.resource_type, "name": r.name, "props": plain(r.props)}} for r in args.resources])

PolicyPack(name="probe", enforcement_level=EnforcementLevel.ADVISORY, policies=[
    ResourceValidationPolicy(name="see-resource", description="records", validate=resource),
    StackValidationPolicy(name="see-stack", description="records", validate=stack),
])
"""


def probe_pack(folder: Path, out: Path) -> Path:
    """A pack that writes down every resource the engine hands it, in the layout of policypack/."""
    folder.mkdir()
    (folder / "PulumiPolicy.yaml").write_text(
        f"runtime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: {Path(sys.prefix)}\n")
    (folder / "__main__.py").write_text(PROBE.format(out=str(out)))
    return folder


def test_the_engine_hands_the_pack_each_component_with_its_type_token_and_camelcase_inputs(
        real, monkeypatch, tmp_path):
    network, box = planned("aws")
    seen = tmp_path / "seen.jsonl"
    monkeypatch.setenv("NOMADRIG_POLICY_PACK", str(probe_pack(tmp_path / "probe", seen)))
    engine_for(network, box, io.StringIO()).up_network("aws", "eu-west-1")

    records = [json.loads(line) for line in seen.read_text().splitlines()]
    by_resource = {(r["type"], r["name"]): r["props"] for r in records if r["kind"] == "resource"}
    by_stack = {(r["type"], r["name"]): r["props"] for r in records if r["kind"] == "stack"}
    for resource in network:
        expected = json.loads(json.dumps(dict(resource.props)))
        assert by_resource[(resource.type, resource.name)] == expected, resource.name
        assert by_stack[(resource.type, resource.name)] == expected, resource.name
    assert ("pulumi:pulumi:Stack", f"nomadrig-{network_stack_name('vision-lab', 'aws', 'eu-west-1')}") in by_resource

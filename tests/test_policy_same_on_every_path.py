"""One policy on every path: `up`/`preview` judge a team's resources exactly as `nomadrig plan` does.

The team allows public IPs, turns one rule off, makes one advisory and gives one a parameter. `plan` (the real
programs under mocks) records the resources and its verdicts. The engine, through the CLI double, writes the
`--policy-pack-config` it hands Pulumi; the real pack (policypack/nomadrig_policies.py) is then served by
pulumi_policy's own analyzer servicer, configured the way the Pulumi CLI configures a local pack (schema
defaults, then the file, as protobuf), and asked to analyze the same recorded resources. Its diagnostics must
be plan's verdicts, rule by rule: same rule, same resource, same enforcement, same message.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from nomadrig.stacks.mocks import MockScope, PlanMocks, alter_inputs
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

from nomadrig.engine import Engine, policy_pack_config
from nomadrig.plan import PlanResult, plan_team
from nomadrig.policy import PolicyContext, Verdict
from nomadrig.policy.pack_config import TEAM_POLICY_KEY, context_from_team_policy, team_policy_json
from nomadrig.spec import box_spec
from nomadrig.team.load import parse_team
from nomadrig.team.model import Team
from tests.fake_pulumi import FakePulumi
from tests.test_engine import RecordingPrograms, make_engine
from tests.test_stacks_aws import FLIPS as AWS_FLIPS

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "policypack"))
from nomadrig_policies import PACK_NAME, PackConfigError, build_policies  # noqa: E402

EXAMPLE = REPO / "examples" / "team.yaml"
OVERRIDES = {
    "SEC-002": {"enabled": False},  # IMDSv2 off: the broken instance passes on both paths
    "SEC-001": {"severity": "advisory"},  # unencrypted volumes warn instead of deny
    "SEC-013": {"params": {"require_secure_boot": True}},  # the GCP box (no secure boot) is now denied
}
# Broken copies of the AWS box's resources, one per rule: off, advisory, kept mandatory (SEC-005).
AWS_BREAKS = ("httpTokens optional", "unencrypted volume", "missing tag")
Diagnostic = tuple[str, str, str, str]  # (rule id, resource urn or "" for the stack, enforcement, message)


def team_with_overrides(allow_public_ip: bool = True) -> Team:
    """examples/team.yaml with the overrides, validated as the user's own file would be."""
    document = yaml.safe_load(EXAMPLE.read_text())
    document["policy"]["allow_public_ip"] = allow_public_ip
    document["policy"]["rules"] = OVERRIDES
    return parse_team(yaml.safe_dump(document), "team.yaml")


@pytest.fixture(scope="module")
def team() -> Team:
    return team_with_overrides()


@pytest.fixture(scope="module")
def plans(team: Team) -> list[PlanResult]:
    """The AWS box with three settings broken, and the GCP box as the stacks make it."""
    aws = PlanMocks(MockScope())
    for flip in AWS_BREAKS:
        _rule, type_token, alter = AWS_FLIPS[flip]
        aws.register_transform(alter_inputs(type_token, alter))
    gcp = PlanMocks(MockScope(project="vision-lab-research"))
    return [plan_team(team, "ada", aws), plan_team(team, "grace", gcp)]


@pytest.fixture
def engine_config(team: Team, monkeypatch, tmp_path) -> dict[str, Any]:
    """What the engine hands the CLI on a preview: the content of its --policy-pack-config file."""
    fake = FakePulumi.install(monkeypatch, tmp_path)
    engine: Engine = make_engine(team, RecordingPrograms())
    engine.preview_box(box_spec(team, "ada"))
    [record] = [json.loads(line) for line in (fake.dir / "policy-configs.jsonl").read_text().splitlines()]
    [call] = [c for c in fake.argvs() if c[0] == "preview"]
    assert call[call.index("--policy-pack-config") + 1] == record["path"]
    assert record["pack"] == str(fake.policy_pack)
    return record["config"]


# ---------------------------------------------------------------- the pack as the Pulumi CLI serves it


def servicer(file_config: Mapping[str, Any] | None) -> _PolicyAnalyzerServicer:
    """The real pack in pulumi_policy's servicer, configured as the CLI does a local pack.

    Like the CLI's ReconcilePolicyPackConfig: each policy starts from its
    enforcement level and its schema's defaults, the file's entries override
    them, and the result reaches the pack as protobuf (`Configure`).
    """
    pack = _PolicyAnalyzerServicer(PACK_NAME, "0.0.1", build_policies(), EnforcementLevel.MANDATORY)
    info = pack.GetAnalyzerInfo(None, None)
    request = proto.ConfigureAnalyzerRequest()
    for policy in info.policies:
        schema = json_format.MessageToDict(policy.configSchema.properties)
        props = {name: spec["default"] for name, spec in schema.items() if "default" in spec}
        level = policy.enforcementLevel
        entry = dict((file_config or {}).get(policy.name, {}))
        if "enforcementLevel" in entry:
            level = proto.EnforcementLevel.Value(entry.pop("enforcementLevel").upper())
        props.update(entry)
        request.policyConfig[policy.name].CopyFrom(
            proto.PolicyConfig(enforcementLevel=level, properties=json_format.ParseDict(props, struct_pb2.Struct())))
    pack.Configure(request, None)
    return pack


def _wire(resource: Any) -> dict[str, Any]:
    return {"type": resource.type, "urn": resource.urn, "name": resource.name,
            "properties": json_format.ParseDict(json.loads(json.dumps(dict(resource.props))), struct_pb2.Struct())}


def pack_diagnostics(pack: _PolicyAnalyzerServicer, plan: PlanResult) -> set[Diagnostic]:
    """Every diagnostic the pack reports on the plan's stacks: per resource (Analyze), per stack (AnalyzeStack)."""
    found: set[Diagnostic] = set()
    for stack in plan.stacks:
        responses = [pack.Analyze(proto.AnalyzeRequest(**_wire(r)), None) for r in stack.resources]
        stack_request = proto.AnalyzeStackRequest(resources=[proto.AnalyzerResource(**_wire(r))
                                                             for r in stack.resources])
        responses.append(pack.AnalyzeStack(stack_request, None))
        for response in responses:
            for d in response.diagnostics:
                _description, _, message = d.message.partition("\n")
                found.add((d.policyName, d.urn, proto.EnforcementLevel.Name(d.enforcementLevel).lower(), message))
    return found


def plan_diagnostics(plan: PlanResult) -> set[Diagnostic]:
    """Plan's verdicts on the resources the pack judges, in the pack's terms."""
    found: set[Diagnostic] = set()
    for stack in plan.stacks:
        urns = {f"{r.type} {r.name}": r.urn for r in stack.resources}
        for verdict in stack.verdicts:
            found.add(_as_diagnostic(verdict, "" if verdict.subject == "stack" else urns[verdict.subject]))
    return found


def _as_diagnostic(verdict: Verdict, urn: str) -> Diagnostic:
    return verdict.rule_id, urn, verdict.severity.value, f"{verdict.message}. Fix: {verdict.fix}"


# ---------------------------------------------------------------- the tests


def test_the_engine_writes_the_config_its_own_function_builds(team: Team, engine_config: dict) -> None:
    assert engine_config == policy_pack_config(team)
    assert engine_config["SEC-002"]["enforcementLevel"] == "disabled"
    assert engine_config["SEC-001"]["enforcementLevel"] == "advisory"
    assert engine_config["SEC-004"]["enforcementLevel"] == "mandatory"
    assert {entry[TEAM_POLICY_KEY] for entry in engine_config.values()} == {team_policy_json(team)}


def test_the_pack_builds_plans_policy_context_from_the_config(team: Team, engine_config: dict) -> None:
    assert context_from_team_policy(engine_config["SEC-004"][TEAM_POLICY_KEY]) == PolicyContext.from_team(team)


def test_pack_verdicts_on_the_planned_resources_are_plans_rule_by_rule(plans: list[PlanResult],
                                                                       engine_config: dict) -> None:
    pack = servicer(engine_config)
    for plan in plans:
        expected = plan_diagnostics(plan)
        assert pack_diagnostics(pack, plan) == expected
        rules = {rule for rule, *_ in expected}
        assert "SEC-002" not in rules and "SEC-004" not in rules  # off, and public IPs allowed
    aws, gcp = (plan_diagnostics(p) for p in plans)
    assert {(rule, level) for rule, _urn, level, _m in aws} == {("SEC-001", "advisory"), ("SEC-005", "mandatory")}
    assert {(rule, level) for rule, _urn, level, _m in gcp} == {("SEC-013", "mandatory")}


def test_without_the_config_the_pack_judges_differently(plans: list[PlanResult]) -> None:
    """The config really changes the outcome: with nomadrig's defaults the public IP and IMDSv1 are denied."""
    aws, gcp = (pack_diagnostics(servicer(None), p) for p in plans)
    denied = {(rule, level) for rule, _urn, level, _m in aws}
    assert {("SEC-004", "mandatory"), ("SEC-002", "mandatory"), ("SEC-001", "mandatory")} <= denied
    assert aws != plan_diagnostics(plans[0])
    assert not {rule for rule, *_ in gcp} & {"SEC-013"}


@pytest.mark.parametrize("bad, named", [
    ("{not json", "not JSON"),
    (json.dumps({"team": "vision-lab", "nomads": []}), "nomads"),
    (json.dumps({"team": "vision-lab", "budgets": {"monthly_usd": 100, "box_hourly_cap_usd": 5},
                 "policy": {"rules": {"SEC-999": {"enabled": False}}}}), "SEC-999"),
    (json.dumps({"team": "vision-lab", "budgets": {"monthly_usd": 100, "box_hourly_cap_usd": 5},
                 "policy": {"allow_public_ip": "maybe"}}), "allow_public_ip"),
])
def test_a_tampered_team_policy_is_refused_naming_the_problem(plans: list[PlanResult], bad: str, named: str) -> None:
    config = {rule: {TEAM_POLICY_KEY: bad} for rule in ("SEC-004", "SEC-005")}
    pack = servicer(config)
    instance = plans[0].resources("aws:ec2/instance:Instance")[0]
    with pytest.raises(PackConfigError) as caught:
        pack.Analyze(proto.AnalyzeRequest(**_wire(instance)), None)
    assert named in str(caught.value) and "nomadrig up" in str(caught.value)

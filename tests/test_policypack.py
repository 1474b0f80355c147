"""The CrossGuard pack: nomadrig's rules as Pulumi policies, judged on the resources the plan records."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from nomadrig.stacks.mocks import MockScope, PlanMocks, alter_inputs
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from nomadrig.plan import PlanResult, StackPlan, plan_team
from nomadrig.policy import PlannedResource, Severity, all_rules
from nomadrig.team.load import load_team
from nomadrig.team.model import Team
from tests.test_stacks_aws import FLIPS as AWS_FLIPS
from tests.test_stacks_gcp import FLIPS as GCP_FLIPS

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "policypack"))
from nomadrig_policies import build_policies  # noqa: E402

EXAMPLE = REPO / "examples" / "team.yaml"
FLIPS = {f"aws {name}": (*flip, "ada") for name, flip in AWS_FLIPS.items()}
FLIPS.update({f"gcp {name}": (*flip, "grace") for name, flip in GCP_FLIPS.items()})


@pytest.fixture(scope="module")
def team() -> Team:
    return load_team(EXAMPLE)


@pytest.fixture(scope="module")
def plan(team: Team) -> PlanResult:
    return plan_team(team)


@pytest.fixture(scope="module")
def policies() -> dict[str, ResourceValidationPolicy | StackValidationPolicy]:
    return {p.name: p for p in build_policies()}


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[])


def resource_violations(policy: ResourceValidationPolicy, resource: PlannedResource,
                        config: Mapping[str, Any] | None = None) -> list[str]:
    reported: list[str] = []
    args = ResourceValidationArgs(resource.type, resource.props, resource.urn, resource.name, _options(), None,
                                  config=config)
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


def stack_violations(policy: StackValidationPolicy, resources: list[PlannedResource],
                     config: Mapping[str, Any] | None = None) -> list[str]:
    reported: list[str] = []
    stack = [PolicyResource(r.type, r.props, r.urn, r.name, _options(), None, None, [], {}) for r in resources]
    policy.validate(StackValidationArgs(stack, config=config), lambda message, urn=None: reported.append(message))
    return reported


def all_violations(policies: Mapping[str, Any], stack: StackPlan) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, policy in policies.items():
        if isinstance(policy, StackValidationPolicy):
            messages = stack_violations(policy, stack.resources)
        else:
            messages = [m for r in stack.resources for m in resource_violations(policy, r)]
        if messages:
            found[name] = messages
    return found


def test_pack_has_one_policy_per_resource_and_stack_rule_with_its_enforcement_level(policies: dict) -> None:
    rules = {r.id: r for r in all_rules() if r.kind in ("resource", "stack")}
    assert set(policies) == set(rules)
    for rule_id, rule in rules.items():
        expected = EnforcementLevel.MANDATORY if rule.severity is Severity.MANDATORY else EnforcementLevel.ADVISORY
        assert policies[rule_id].enforcement_level == expected
        kind = StackValidationPolicy if rule.kind == "stack" else ResourceValidationPolicy
        assert isinstance(policies[rule_id], kind)


def test_config_schema_offers_public_ip_tags_and_rule_params(policies: dict) -> None:
    schema = policies["SEC-013"].config_schema.properties
    assert schema["allow_public_ip"]["default"] is False
    assert "nomadrig:owner" in schema["required_tags"]["default"]
    assert schema["require_secure_boot"] == {"type": "boolean", "default": False}


def test_every_policy_takes_the_teams_policy_as_json_text(policies: dict) -> None:
    """The engine's config gives each policy `team_policy`; the CLI refuses keys a schema types otherwise."""
    for name, policy in policies.items():
        assert policy.config_schema.properties["team_policy"]["type"] == "string", name


def test_example_stacks_pass_every_policy(plan: PlanResult, policies: dict) -> None:
    for stack in plan.stacks:
        assert all_violations(policies, stack) == {}, stack.stack


@pytest.fixture(scope="module")
def flipped_plans(team: Team) -> dict[str, PlanResult]:
    plans = {}
    for flip, (_, type_token, alter, nomad) in FLIPS.items():
        mocks = PlanMocks(MockScope(project="vision-lab-research"))
        mocks.register_transform(alter_inputs(type_token, alter))
        plans[flip] = plan_team(team, nomad, mocks)
    return plans


@pytest.mark.parametrize("flip", sorted(FLIPS))
def test_flipped_security_default_is_denied_by_its_policy(flip: str, flipped_plans: dict, policies: dict,
                                                          plan: PlanResult) -> None:
    rule_id, type_token, _, _ = FLIPS[flip]
    flipped = next(r for r in flipped_plans[flip].resources(type_token))
    messages = resource_violations(policies[rule_id], flipped)
    assert messages, f"{flip}: {rule_id} reported nothing for {flipped.name}"
    assert flipped.name in messages[0] and "Fix:" in messages[0]
    original = next(r for r in plan.resources(type_token) if r.name == flipped.name)
    assert resource_violations(policies[rule_id], original) == []


def test_allow_public_ip_config_lets_a_public_instance_pass(flipped_plans: dict, policies: dict) -> None:
    public = flipped_plans["aws public IP"].resources("aws:ec2/instance:Instance")[0]
    assert resource_violations(policies["SEC-004"], public)
    assert resource_violations(policies["SEC-004"], public, {"allow_public_ip": True}) == []


def test_required_tags_config_is_enforced(plan: PlanResult, policies: dict) -> None:
    instance = plan.resources("aws:ec2/instance:Instance")[0]
    messages = resource_violations(policies["SEC-005"], instance, {"required_tags": ["cost-center"]})
    assert messages and "cost-center" in messages[0]


def test_rule_params_come_from_the_policy_config(plan: PlanResult, policies: dict) -> None:
    instance = plan.resources("gcp:compute/instance:Instance")[0]
    assert resource_violations(policies["SEC-013"], instance) == []
    messages = resource_violations(policies["SEC-013"], instance, {"require_secure_boot": True})
    assert messages and "enableSecureBoot" in messages[0]


def test_stack_policy_denies_a_bucket_without_its_companions(plan: PlanResult, policies: dict) -> None:
    network = plan.stack("vision-lab--net--aws--eu-west-1")
    assert stack_violations(policies["SEC-010"], network.resources) == []
    bare = [r for r in network.resources if not r.type.startswith("aws:s3/bucket") or r.type == "aws:s3/bucket:Bucket"]
    messages = stack_violations(policies["SEC-010"], bare)
    assert len(messages) == 3 and all("datasets" in m for m in messages)


def _public_storage_cases() -> dict[str, tuple[str, Any, bool]]:
    from tests.test_box_least_privilege import AWS_CASES, _gcs

    return {
        "S3 ACL grant to AllUsers": ("SEC-021", AWS_CASES["BucketAclV2 grant to AllUsers"][0], True),
        "S3 ACL public-read-write": ("SEC-021", AWS_CASES["BucketAclV2 public-read-write"][0], True),
        "S3 ACL private": ("SEC-021", AWS_CASES["BucketAclV2 private"][0], False),
        "GCS binding to allUsers": ("SEC-022", _gcs("binding", "allUsers"), True),
        "GCS policy to allAuthenticatedUsers": ("SEC-022", _gcs("policy", "allAuthenticatedUsers"), True),
        "GCS member for a service account": ("SEC-022", _gcs("member", "serviceAccount:b@p.iam.gserviceaccount.com"),
                                             False),
    }


@pytest.mark.parametrize("case", sorted(_public_storage_cases()))
def test_public_storage_grants_are_denied_by_the_pack_on_the_sdks_own_inputs(case: str, policies: dict) -> None:
    from tests.test_box_least_privilege import register

    rule_id, build, public = _public_storage_cases()[case]
    [recorded] = register(build)
    resource = PlannedResource(recorded.type, recorded.name, recorded.inputs, recorded.urn)
    messages = resource_violations(policies[rule_id], resource)
    assert bool(messages) is public, messages
    assert policies[rule_id].enforcement_level == EnforcementLevel.MANDATORY

"""The AWS team network and box programs, run for real under Pulumi mocks (examples/team.yaml)."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from nomadrig.stacks.aws.box import DLAMI_PARAMETER, SESSION_MANAGER_ACTIONS, data_device_path
from nomadrig.stacks.mocks import MockScope, PlanMocks, alter_inputs

from nomadrig.plan import PlanResult, StackPlan, plan_team
from nomadrig.policy import mandatory
from nomadrig.team.load import load_team
from nomadrig.team.model import Team

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "team.yaml"
INSTANCE = "aws:ec2/instance:Instance"
VOLUME = "aws:ebs/volume:Volume"


@pytest.fixture(scope="module")
def team() -> Team:
    return load_team(EXAMPLE)


@pytest.fixture(scope="module")
def plan(team: Team) -> PlanResult:
    return plan_team(team)


def aws_boxes(plan: PlanResult) -> list[StackPlan]:
    return [s for s in plan.stacks if s.kind == "box" and s.cloud == "aws"]


def one(stack: StackPlan, type_token: str) -> dict[str, Any]:
    found = [r for r in stack.resources if r.type == type_token]
    assert len(found) == 1, f"{stack.stack}: expected one {type_token}, got {[r.name for r in found]}"
    return dict(found[0].props)


def user_data(instance: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(gzip.decompress(base64.b64decode(instance["userDataBase64"])).decode())


def test_example_team_satisfies_every_mandatory_rule_on_aws(plan: PlanResult) -> None:
    aws_stacks = [s for s in plan.stacks if s.cloud == "aws"]
    assert {s.kind for s in aws_stacks} == {"network", "box"}
    problems = [v.as_dict() for s in aws_stacks for v in mandatory(s.verdicts)]
    assert problems == []


def test_boxes_require_imdsv2_and_encrypt_a_gp3_root(plan: PlanResult) -> None:
    for box in aws_boxes(plan):
        instance = one(box, INSTANCE)
        assert instance["metadataOptions"]["httpTokens"] == "required"
        root = instance["rootBlockDevice"]
        assert (root["encrypted"], root["volumeType"], root["volumeSize"]) == (True, "gp3", box.spec.root_disk_gb)
        assert root["kmsKeyId"].startswith("arn:aws:kms:")


def test_boxes_have_no_public_ip_and_shutdown_means_stop(plan: PlanResult) -> None:
    for box in aws_boxes(plan):
        instance = one(box, INSTANCE)
        assert instance["associatePublicIpAddress"] is False
        assert instance["instanceInitiatedShutdownBehavior"] == "stop"


def test_box_image_is_the_deep_learning_ami_from_its_public_ssm_parameter(plan: PlanResult) -> None:
    box = aws_boxes(plan)[0]
    expected = PlanMocks(MockScope()).call(_call(DLAMI_PARAMETER, box.region))["value"]
    assert one(box, INSTANCE)["ami"] == expected
    assert one(box, INSTANCE)["instanceType"] == box.spec.machine_type


def _call(name: str, region: str) -> Any:
    from pulumi.runtime.mocks import MockCallArgs

    return MockCallArgs("aws:ssm/getParameter:getParameter", {"name": name, "region": region}, "")


def test_spot_box_is_persistent_stops_on_interruption_and_bids_at_most_on_demand(plan: PlanResult) -> None:
    linus = plan.stack("linus")
    assert linus.spec.spot
    market = one(linus, INSTANCE)["instanceMarketOptions"]
    assert market["marketType"] == "spot"
    assert market["spotOptions"]["spotInstanceType"] == "persistent"
    assert market["spotOptions"]["instanceInterruptionBehavior"] == "stop"
    assert float(market["spotOptions"]["maxPrice"]) == pytest.approx(linus.spec.on_demand_usd_hr)


def test_on_demand_box_has_no_market_options(plan: PlanResult) -> None:
    ada = plan.stack("ada")
    assert not ada.spec.spot
    assert "instanceMarketOptions" not in one(ada, INSTANCE)


def test_data_volume_is_encrypted_retained_and_attached(plan: PlanResult) -> None:
    for box in aws_boxes(plan):
        volume = one(box, VOLUME)
        assert volume["encrypted"] is True and volume["type"] == "gp3"
        assert volume["size"] == box.spec.data_disk_gb
        volume = next(r for r in box.resources if r.type == VOLUME)
        assert box.is_retained(volume), "the data volume must survive `pulumi destroy` of the box"
        assert [r.type for r in box.resources if box.is_retained(r)] == [VOLUME]
        attachment = one(box, "aws:ec2/volumeAttachment:VolumeAttachment")
        assert attachment["stopInstanceBeforeDetaching"] is True


def test_instance_and_volumes_carry_the_nomadrig_tags(plan: PlanResult) -> None:
    for box in aws_boxes(plan):
        expected = box.spec.tags()
        for tagged in (one(box, INSTANCE)["tags"], one(box, VOLUME)["tags"], one(box, INSTANCE)["rootBlockDevice"]["tags"]):
            assert {k: tagged.get(k) for k in expected} == expected


def test_user_data_mounts_the_data_volume_by_its_nvme_id(plan: PlanResult) -> None:
    box = plan.stack("ada")
    config = user_data(one(box, INSTANCE))
    attachment = one(box, "aws:ec2/volumeAttachment:VolumeAttachment")
    device = data_device_path(attachment["volumeId"])
    assert device.startswith("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0")
    mount = next(f["content"] for f in config["write_files"] if f["path"] == "/etc/systemd/system/data.mount")
    assert f"What={device}\n" in mount and "Where=/data\n" in mount
    assert config["users"][1]["name"] == "ada"
    assert config["users"][1]["ssh_authorized_keys"] == [box.spec.ssh_key]


def test_instance_role_has_only_session_manager_and_the_nomads_bucket_prefix(plan: PlanResult) -> None:
    box = plan.stack("ada")
    assert not [r for r in box.resources if r.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"]
    inline = {r.name: json.loads(r.props["policy"]) for r in box.resources if r.type == "aws:iam/rolePolicy:RolePolicy"}
    assert sorted(inline) == ["ada-datasets", "ada-session-manager"]
    assert [a for st in inline["ada-session-manager"]["Statement"] for a in st["Action"]] == list(SESSION_MANAGER_ACTIONS)
    policy = inline["ada-datasets"]
    resources = [res for st in policy["Statement"] for res in st["Resource"]]
    s3_objects = [r for r in resources if r.startswith("arn:aws:s3:::") and r.endswith("/*")]
    assert s3_objects and all(r.endswith("/ada/*") for r in s3_objects)
    actions = [a for st in policy["Statement"] for a in st["Action"]]
    assert not [a for a in actions if "*" in a]


def test_security_group_has_no_ingress_rule_at_all(plan: PlanResult) -> None:
    for stack in plan.stacks:
        if stack.kind == "network" and stack.cloud == "aws":
            sg = one(stack, "aws:ec2/securityGroup:SecurityGroup")
            assert sg.get("ingress", []) == []
            assert not [r for r in stack.resources if "ingress" in r.type.lower()]


def test_private_subnets_leave_through_one_nat_gateway(plan: PlanResult) -> None:
    stack = plan.stack("vision-lab--net--aws--eu-west-1")
    subnets = [r.props for r in stack.resources if r.type == "aws:ec2/subnet:Subnet"]
    assert len(subnets) == 4 and not any(s["mapPublicIpOnLaunch"] for s in subnets)
    assert len({s["availabilityZone"] for s in subnets}) == 2
    assert len([r for r in stack.resources if r.type == "aws:ec2/natGateway:NatGateway"]) == 1


def test_dataset_bucket_is_private_kms_encrypted_and_versioned(plan: PlanResult) -> None:
    stack = plan.stack("vision-lab--net--aws--eu-west-1")
    pab = one(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(pab[f] for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    sse = one(stack, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert one(stack, "aws:s3/bucketVersioning:BucketVersioning")["versioningConfiguration"]["status"] == "Enabled"
    assert one(stack, "aws:kms/key:Key")["enableKeyRotation"] is True


def test_budget_alerts_at_80_and_100_percent_once_per_account(plan: PlanResult, team: Team) -> None:
    budgets = [r.props for r in plan.resources("aws:budgets/budget:Budget")]
    assert len(budgets) == 1, "budgets are account-wide: one, in the first AWS team network"
    budget = budgets[0]
    assert float(budget["limitAmount"]) == team.budgets.monthly_usd
    assert sorted(n["threshold"] for n in budget["notifications"]) == [80, 100]
    assert all(n["subscriberEmailAddresses"] == team.budgets.alert_emails for n in budget["notifications"])


def test_team_that_allows_public_ips_gets_public_subnets_and_no_nat(team: Team) -> None:
    public_team = team.model_copy(update={"policy": team.policy.model_copy(update={"allow_public_ip": True})})
    result = plan_team(public_team, "ada")
    network = result.stack("vision-lab--net--aws--eu-west-1")
    assert not [r for r in network.resources if r.type == "aws:ec2/natGateway:NatGateway"]
    assert one(result.stack("ada"), INSTANCE)["associatePublicIpAddress"] is True
    assert one(network, "aws:ec2/securityGroup:SecurityGroup").get("ingress", []) == []
    assert not result.mandatory


# -- each security default, flipped, is denied by its rule -----------------------------------------


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def alter(props: dict[str, Any]) -> None:
        node = props
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return alter


def _drop_tag(props: dict[str, Any]) -> None:
    props["tags"].pop("nomadrig:owner")


def _open_ingress(props: dict[str, Any]) -> None:
    props["ingress"] = [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]


def _wildcard_action(props: dict[str, Any]) -> None:
    policy = json.loads(props["policy"])
    policy["Statement"][-1]["Action"] = ["s3:*"]
    props["policy"] = json.dumps(policy)


FLIPS = {
    "unencrypted volume": ("SEC-001", VOLUME, _set(("encrypted",), False)),
    "httpTokens optional": ("SEC-002", INSTANCE, _set(("metadataOptions", "httpTokens"), "optional")),
    "ingress from 0.0.0.0/0": ("SEC-003", "aws:ec2/securityGroup:SecurityGroup", _open_ingress),
    "public IP": ("SEC-004", INSTANCE, _set(("associatePublicIpAddress",), True)),
    "missing tag": ("SEC-005", INSTANCE, _drop_tag),
    "wildcard IAM action": ("SEC-011", "aws:iam/rolePolicy:RolePolicy", _wildcard_action),
}


def flipped_plan(team: Team, type_token: str, alter: Callable[[dict[str, Any]], None]) -> PlanResult:
    mocks = PlanMocks(MockScope())
    mocks.register_transform(alter_inputs(type_token, alter))
    return plan_team(team, "ada", mocks)


@pytest.mark.parametrize("flip", sorted(FLIPS))
def test_flipped_security_default_is_denied_by_its_rule(team: Team, flip: str) -> None:
    rule_id, type_token, alter = FLIPS[flip]
    result = flipped_plan(team, type_token, alter)
    denied = {v.rule_id for v in result.mandatory}
    assert rule_id in denied, f"{flip}: expected {rule_id} among {denied}"
    assert not result.ok


# -- the programs the engine runs -------------------------------------------------------------------

TEAM_OUTPUTS = {"vpc_id": "vpc-0aaa", "subnet_ids": ["subnet-0aaa", "subnet-0bbb"],
                "availability_zones": ["eu-west-1a", "eu-west-1b"], "security_group_id": "sg-0aaa",
                "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/abc", "bucket_name": "nomadrig-vision-lab-x",
                "bucket_arn": "arn:aws:s3:::nomadrig-vision-lab-x"}


def run_program(program: Callable[[], None], scope: MockScope) -> PlanMocks:
    import pulumi
    from nomadrig.stacks.mocks import RecordingMonitor

    mocks = PlanMocks(scope)
    pulumi.runtime.set_mocks(mocks, project="nomadrig", stack="test", monitor=RecordingMonitor(mocks))

    @pulumi.runtime.test
    def run() -> Any:
        program()
        return pulumi.Output.from_input(None)

    run()
    return mocks


@pytest.mark.parametrize("source", ["outputs mapping", "stack reference"])
def test_box_program_reads_its_team_network_from_outputs_or_a_stack_reference(team: Team, source: str) -> None:
    from nomadrig.stacks.program import box_program

    from nomadrig.spec import box_spec

    stack_name = "organization/nomadrig/vision-lab--net--aws--eu-west-1"
    network = TEAM_OUTPUTS if source == "outputs mapping" else stack_name
    mocks = run_program(box_program(box_spec(team, "ada"), network),
                        MockScope(stack_outputs={stack_name: TEAM_OUTPUTS}))
    instance = next(r.inputs for r in mocks.resources if r.type == INSTANCE)
    volume = next(r.inputs for r in mocks.resources if r.type == VOLUME)
    assert instance["subnetId"] == "subnet-0aaa" and instance["vpcSecurityGroupIds"] == ["sg-0aaa"]
    assert volume["availabilityZone"] == "eu-west-1a" and volume["kmsKeyId"] == TEAM_OUTPUTS["kms_key_arn"]


def test_box_program_refuses_incomplete_team_outputs(team: Team) -> None:
    from nomadrig.stacks.program import box_program

    from nomadrig.spec import box_spec

    partial = {k: v for k, v in TEAM_OUTPUTS.items() if k != "kms_key_arn"}
    with pytest.raises(KeyError, match="kms_key_arn"):
        run_program(box_program(box_spec(team, "ada"), partial), MockScope())


@pytest.mark.parametrize("cloud, region", [("aws", "eu-west-1"), ("gcp", "us-central1")])
def test_team_program_exports_every_output_a_box_reads(team: Team, cloud: str, region: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi
    from nomadrig.stacks.program import AWS_NETWORK_OUTPUTS, GCP_NETWORK_OUTPUTS, team_program

    from nomadrig.spec import network_spec

    exported: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", lambda key, value: exported.setdefault(key, value))
    run_program(team_program(network_spec(team, cloud, region)), MockScope(project="vision-lab-research"))
    expected = AWS_NETWORK_OUTPUTS if cloud == "aws" else GCP_NETWORK_OUTPUTS
    assert set(expected) <= set(exported)
    assert (exported["team"], exported["cloud"], exported["region"]) == ("vision-lab", cloud, region)

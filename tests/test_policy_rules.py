"""Every policy rule passes a good input and denies a bad one, with a message naming the subject and a fix."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nomadrig.policy import (
    PlannedResource,
    PolicyContext,
    Severity,
    TeamPlan,
    all_rules,
    check_box,
    check_resource,
    check_stack,
    check_team,
    check_tower,
    get_rule,
)
from nomadrig.policy.registry import run_rule
from nomadrig.spec import BoxSpec, TowerGpuSpec, TowerSpec
from nomadrig.team.model import Budgets, PolicySettings, RuleOverride, Usage

BOX = BoxSpec(
    team="vision-lab",
    nomad="ada",
    cloud="aws",
    region="eu-west-1",
    instance_type="g5.xlarge",
    machine_type="g5.xlarge",
    accelerator_type=None,
    gpu_model="A10G",
    gpu_count=1,
    gpu_vram_gb=24,
    vcpu=4,
    ram_gb=16,
    root_disk_gb=100,
    data_disk_gb=500,
    spot=False,
    ttl_hours=72,
    idle_minutes=60,
    ssh_key="ssh-ed25519 AAAA",
    timezone="UTC",
    email="",
    allow_public_ip=False,
    on_demand_usd_hr=1.1,
    spot_usd_hr=0.45,
    created="2026-11-26T10:00Z",
)
TOWER = TowerSpec(
    team="vision-lab",
    name="basement",
    address="192.0.2.10",
    ssh_user="admin",
    ssh_port=22,
    os="debian-13",
    gpus=(TowerGpuSpec("RTX 4090", 1, 450, 24),),
    cpu_tdp_w=125,
    psu_watts=1000,
    ram_gb=64,
    disk_gb=2000,
    root_on_ssd=True,
    data_encrypted=True,
    driver_channel="distro",
    driver_branch="550",
    cuda_version="12.4",
    frameworks=("pytorch",),
    gpu_containers=False,
    nomads=("ada",),
    wireguard_port=51820,
)
CTX = PolicyContext(
    policy=PolicySettings(spot_required_above_usd=4.0, max_gpus_per_box=4, allowed_instance_types=[]),
    budgets=Budgets(monthly_usd=1000, box_hourly_cap_usd=5.0),
    usage=Usage(hours_per_day=8, days_per_month=21),
    allowed_regions={"aws": ("eu-west-1", "us-east-1"), "gcp": ("us-central1",)},
)
TAGS = {
    "nomadrig:managed": "true",
    "nomadrig:team": "vision-lab",
    "nomadrig:owner": "ada",
    "nomadrig:ttl": "72",
    "nomadrig:idle-minutes": "60",
}
LABELS = {k.replace(":", "-"): v for k, v in TAGS.items()}


def box(**changes) -> BoxSpec:
    return dataclasses.replace(BOX, **changes)


def tower(**changes) -> TowerSpec:
    return dataclasses.replace(TOWER, **changes)


def res(type_: str, **props) -> PlannedResource:
    return PlannedResource(type_, "thing", props)


AWS_INSTANCE_OK = dict(
    metadataOptions={"httpTokens": "required"},
    rootBlockDevice={"encrypted": True, "volumeType": "gp3"},
    associatePublicIpAddress=False,
    tags=TAGS,
    instanceInitiatedShutdownBehavior="stop",
    instanceMarketOptions={
        "marketType": "spot",
        "spotOptions": {"instanceInterruptionBehavior": "stop", "spotInstanceType": "persistent"},
    },
)
GCP_INSTANCE_OK = dict(
    networkInterfaces=[{"network": "n", "subnetwork": "s"}],
    labels=LABELS,
    shieldedInstanceConfig={"enableSecureBoot": False, "enableVtpm": True, "enableIntegrityMonitoring": True},
    metadata={"enable-oslogin": "TRUE"},
    bootDisk={"kmsKeySelfLink": "projects/p/keys/k"},
    scheduling={"provisioningModel": "SPOT", "instanceTerminationAction": "STOP", "onHostMaintenance": "TERMINATE"},
)


def with_(base: dict, **changes) -> dict:
    return {**base, **changes}


# rule id -> (passing subject, failing subject, a word the failure message must contain)
CASES: dict[str, tuple[object, object, str]] = {
    "SPEC-001": (box(), box(region="us-west-2"), "us-west-2"),
    "SPEC-002": (box(), box(), ""),  # replaced below: needs a context with a list
    "SPEC-004": (TeamPlan("vision-lab", (box(),)), TeamPlan("vision-lab", (box(),)), ""),  # below: needs clouds
    "SPEC-003": (box(), box(gpu_count=8, instance_type="p4d.24xlarge"), "8 GPUs"),
    "COST-001": (box(), box(on_demand_usd_hr=12.0), "$12.00/h"),
    "COST-002": (box(on_demand_usd_hr=4.5, spot=True), box(on_demand_usd_hr=4.5), "not spot"),
    "COST-004": (TeamPlan("vision-lab", (box(),)), TeamPlan("vision-lab", (box(),) * 10), "exceeds"),
    "LIFE-001": (box(), box(ttl_hours=500), "ttl_hours 500"),
    "LIFE-002": (box(), box(idle_minutes=500), "idle_minutes 500"),
    "TWR-001": (tower(), tower(os="centos-7"), "centos-7"),
    "TWR-002": (tower(), tower(ram_gb=16), "16 GB"),
    "TWR-003": (tower(), tower(psu_watts=650), "650 W"),
    "TWR-004": (tower(), tower(disk_gb=500), "500 GB"),
    "TWR-005": (tower(), tower(root_on_ssd=False), "rotational"),
    "TWR-006": (tower(), tower(data_encrypted=False), "not encrypted"),
    "TWR-007": (tower(gpus=(TowerGpuSpec("RTX 4090", 2, 450, 24),)),
                tower(gpus=(TowerGpuSpec("GTX 1080 Ti", 1, 250, 11), TowerGpuSpec("RTX 4090", 1, 450, 24))),
                "Pascal (GTX 1080 Ti), Ada (RTX 4090)"),
    "SEC-001": (
        res("aws:ebs/volume:Volume", encrypted=True, tags=TAGS),
        res("aws:ebs/volume:Volume", tags=TAGS),
        "not encrypted",
    ),
    "SEC-002": (
        res("aws:ec2/instance:Instance", **AWS_INSTANCE_OK),
        res("aws:ec2/instance:Instance", **with_(AWS_INSTANCE_OK, metadataOptions={"httpTokens": "optional"})),
        "httpTokens is 'optional'",
    ),
    "SEC-003": (
        res("aws:ec2/securityGroup:SecurityGroup", ingress=[], egress=[{"cidrBlocks": ["0.0.0.0/0"]}]),
        res(
            "aws:ec2/securityGroup:SecurityGroup",
            ingress=[{"fromPort": 8888, "toPort": 8888, "protocol": "tcp", "ipv6CidrBlocks": ["::/0"]}],
        ),
        "::/0",
    ),
    "SEC-004": (
        res("aws:ec2/instance:Instance", **AWS_INSTANCE_OK),
        res("aws:ec2/instance:Instance", **with_(AWS_INSTANCE_OK, associatePublicIpAddress=True)),
        "associate_public_ip_address",
    ),
    "SEC-005": (
        res("aws:ec2/instance:Instance", **AWS_INSTANCE_OK),
        res("aws:ec2/instance:Instance", **with_(AWS_INSTANCE_OK, tags={"Name": "x"})),
        "nomadrig:owner",
    ),
    "SEC-006": (
        res("gcp:compute/instance:Instance", **GCP_INSTANCE_OK),
        res("gcp:compute/instance:Instance", **with_(GCP_INSTANCE_OK, labels={})),
        "nomadrig-team",
    ),
    "SEC-007": (
        res(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            blockPublicAcls=True,
            blockPublicPolicy=True,
            ignorePublicAcls=True,
            restrictPublicBuckets=True,
        ),
        res(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            blockPublicAcls=True,
            blockPublicPolicy=False,
            ignorePublicAcls=True,
            restrictPublicBuckets=True,
        ),
        "blockPublicPolicy",
    ),
    "SEC-008": (
        res(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}],
        ),
        res(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}],
        ),
        "AES256",
    ),
    "SEC-009": (
        res("aws:s3/bucketVersioning:BucketVersioning", versioningConfiguration={"status": "Enabled"}),
        res("aws:s3/bucketVersioning:BucketVersioning", versioningConfiguration={"status": "Suspended"}),
        "Suspended",
    ),
    "SEC-010": (
        [
            PlannedResource("aws:s3/bucket:Bucket", "data", {"bucket": "vl-data"}),
            PlannedResource("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "pab", {"bucket": "vl-data"}),
            PlannedResource(
                "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                "sse",
                {"bucket": "vl-data"},
            ),
            PlannedResource("aws:s3/bucketVersioning:BucketVersioning", "ver", {"bucket": "vl-data"}),
        ],
        [
            PlannedResource("aws:s3/bucket:Bucket", "data", {"bucket": "vl-data"}),
            PlannedResource("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "pab", {"bucket": "vl-data"}),
        ],
        "versioning",
    ),
    "SEC-011": (
        res(
            "aws:iam/rolePolicy:RolePolicy",
            policy=json.dumps(
                {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"}]}
            ),
        ),
        res(
            "aws:iam/rolePolicy:RolePolicy",
            policy=json.dumps({"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}),
        ),
        "s3:*",
    ),
    "SEC-020": (
        res("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            policyArn="arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"),
        res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", policyArn="arn:aws:iam::aws:policy/AdministratorAccess"),
        "AdministratorAccess",
    ),
    "SEC-012": (
        res("gcp:compute/disk:Disk", diskEncryptionKey={"kmsKeySelfLink": "k"}, labels=LABELS),
        res("gcp:compute/disk:Disk", labels=LABELS),
        "Google-managed",
    ),
    "SEC-013": (
        res("gcp:compute/instance:Instance", **GCP_INSTANCE_OK),
        res("gcp:compute/instance:Instance", **with_(GCP_INSTANCE_OK, shieldedInstanceConfig=None)),
        "shielded VM",
    ),
    "SEC-014": (
        res("gcp:compute/instance:Instance", **GCP_INSTANCE_OK),
        res("gcp:compute/instance:Instance", **with_(GCP_INSTANCE_OK, metadata={})),
        "enable-oslogin",
    ),
    "SEC-015": (
        res("gcp:compute/firewall:Firewall", direction="INGRESS", sourceRanges=["35.235.240.0/20"]),
        res("gcp:compute/firewall:Firewall", direction="INGRESS", sourceRanges=["10.0.0.0/8"]),
        "10.0.0.0/8",
    ),
    "SEC-016": (
        res("aws:ec2/instance:Instance", **AWS_INSTANCE_OK),
        res("aws:ec2/instance:Instance", **with_(AWS_INSTANCE_OK, instanceMarketOptions={"marketType": "spot"})),
        "terminate",
    ),
    "SEC-017": (
        res("aws:ec2/instance:Instance", **AWS_INSTANCE_OK),
        res("aws:ec2/instance:Instance", **with_(AWS_INSTANCE_OK, instanceInitiatedShutdownBehavior="terminate")),
        "terminate",
    ),
    "SEC-018": (res("aws:kms/key:Key", enableKeyRotation=True), res("aws:kms/key:Key"), "rotation is off"),
    "SEC-019": (
        res(
            "gcp:storage/bucket:Bucket",
            uniformBucketLevelAccess=True,
            publicAccessPrevention="enforced",
            versioning={"enabled": True},
        ),
        res(
            "gcp:storage/bucket:Bucket",
            uniformBucketLevelAccess=True,
            publicAccessPrevention="inherited",
            versioning={"enabled": True},
        ),
        "public access prevention",
    ),
    "SEC-021": (
        res("aws:s3/bucketAclV2:BucketAclV2", bucket="vl-data", acl="private"),
        res("aws:s3/bucketAclV2:BucketAclV2", bucket="vl-data", acl="public-read"),
        "public-read",
    ),
    "SEC-022": (
        res("gcp:storage/bucketIAMMember:BucketIAMMember", bucket="vl-data", role="roles/storage.objectViewer",
            member="serviceAccount:box@vision-lab.iam.gserviceaccount.com"),
        res("gcp:storage/bucketIAMMember:BucketIAMMember", bucket="vl-data", role="roles/storage.objectViewer",
            member="allUsers"),
        "allUsers",
    ),
}


def verdicts_of(rule_id: str, subject: object, ctx: PolicyContext = CTX):
    return run_rule(get_rule(rule_id), subject, "subject", ctx)


def test_every_rule_has_a_case():
    assert {r.id for r in all_rules()} == set(CASES)


def test_rule_counts_meet_the_design():
    kinds = [r.kind for r in all_rules()]
    assert sum(k in ("box", "team", "tower") for k in kinds) >= 10
    assert sum(k in ("resource", "stack") for k in kinds) >= 12


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_passes_good_input(rule_id):
    good, _, _ = CASES[rule_id]
    assert verdicts_of(rule_id, good) == []


@pytest.mark.parametrize("rule_id", sorted(set(CASES) - {"SPEC-002", "SPEC-004"}))
def test_rule_denies_bad_input(rule_id):
    _, bad, word = CASES[rule_id]
    verdicts = verdicts_of(rule_id, bad)
    assert verdicts, f"{rule_id} let a bad input through"
    assert all(v.rule_id == rule_id and v.fix for v in verdicts)
    assert any(word in v.message for v in verdicts), [v.message for v in verdicts]


def test_allowed_instance_types_denies_others():
    ctx = dataclasses.replace(CTX, policy=CTX.policy.model_copy(update={"allowed_instance_types": ["g4dn.xlarge"]}))
    assert verdicts_of("SPEC-002", box(instance_type="g4dn.xlarge"), ctx) == []
    [verdict] = verdicts_of("SPEC-002", box(), ctx)
    assert "g5.xlarge" in verdict.message and "g4dn.xlarge" in verdict.fix


def test_box_images_from_a_foreign_account_or_project_are_denied():
    from nomadrig.team.model import Clouds

    own = Clouds.model_validate({
        "aws": {"account_id": "123456789012", "regions": ["eu-west-1"],
                "ami_parameter": "arn:aws:ssm:eu-west-1:123456789012:parameter/team/box-ami"},
        "gcp": {"project": "vision-lab-research", "regions": ["us-central1"],
                "image_family": "projects/deeplearning-platform-release/global/images/family/common-cu128"},
    })
    foreign = Clouds.model_validate({
        "aws": {"account_id": "123456789012", "regions": ["eu-west-1"],
                "ami_parameter": "arn:aws:ssm:eu-west-1:999999999999:parameter/free-gpu-ami"},
        "gcp": {"project": "vision-lab-research", "regions": ["us-central1"],
                "image_family": "projects/someone-elses-project/global/images/family/fast-ml"},
    })
    team = TeamPlan("vision-lab", (box(),))
    assert verdicts_of("SPEC-004", team, dataclasses.replace(CTX, clouds=own)) == []
    denied = verdicts_of("SPEC-004", team, dataclasses.replace(CTX, clouds=foreign))
    assert len(denied) == 2 and all(v.mandatory and v.fix for v in denied), denied
    assert any("999999999999" in v.message for v in denied) and any("someone-elses-project" in v.message
                                                                     for v in denied)


def test_unknown_price_is_advisory_not_a_pass():
    [verdict] = verdicts_of("COST-001", box(on_demand_usd_hr=None, spot_usd_hr=None))
    assert verdict.severity is Severity.ADVISORY and "no price" in verdict.message


def test_gcp_world_ingress_is_denied_by_sec003():
    verdicts = verdicts_of("SEC-003", res("gcp:compute/firewall:Firewall", sourceRanges=["0.0.0.0/0"]))
    assert verdicts and "0.0.0.0/0" in verdicts[0].message


def test_public_ip_allowed_by_team_policy():
    ctx = dataclasses.replace(CTX, policy=CTX.policy.model_copy(update={"allow_public_ip": True}))
    bad = res("aws:ec2/instance:Instance", **with_(AWS_INSTANCE_OK, associatePublicIpAddress=True))
    assert verdicts_of("SEC-004", bad, ctx) == []


def test_team_override_turns_a_rule_off_and_changes_severity():
    off = CTX.policy.model_copy(update={"rules": {"LIFE-001": RuleOverride(enabled=False)}})
    assert check_box(box(ttl_hours=500), dataclasses.replace(CTX, policy=off)) == []
    soft = CTX.policy.model_copy(update={"rules": {"LIFE-001": RuleOverride(severity="advisory")}})
    [verdict] = check_box(box(ttl_hours=500), dataclasses.replace(CTX, policy=soft))
    assert verdict.severity is Severity.ADVISORY


def test_tower_encryption_is_mandatory_where_the_team_says_so():
    strict = dataclasses.replace(CTX, policy=CTX.policy.model_copy(update={"tower_data_encryption": "mandatory"}))
    [verdict] = verdicts_of("TWR-006", tower(data_encrypted=False), strict)
    assert verdict.mandatory


def test_entry_points_route_subjects_to_their_rules():
    assert {v.rule_id for v in check_box(box(region="us-west-2", ttl_hours=500), CTX)} == {"SPEC-001", "LIFE-001"}
    assert {v.rule_id for v in check_tower(tower(psu_watts=500, os="arch"), CTX)} == {"TWR-001", "TWR-003"}
    assert {v.rule_id for v in check_team(TeamPlan("t", (box(),) * 10), CTX)} == {"COST-004"}
    bad_instance = res("aws:ec2/instance:Instance", **with_(AWS_INSTANCE_OK, metadataOptions={}))
    assert {v.rule_id for v in check_resource(bad_instance, CTX)} == {"SEC-002"}
    assert {v.rule_id for v in check_stack([PlannedResource("aws:s3/bucket:Bucket", "b", {"bucket": "b"})], CTX)} == {
        "SEC-010"
    }


def test_wildcard_action_in_a_role_inline_policy_is_denied():
    role = res("aws:iam/role:Role", inlinePolicies=[{"name": "x", "policy": json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})}])
    [verdict] = verdicts_of("SEC-011", role)
    assert "allows *" in verdict.message


def test_ssm_managed_instance_core_is_denied_because_it_reads_every_parameter():
    attachment = res("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                     policyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    [verdict] = verdicts_of("SEC-020", attachment)
    assert "AmazonSSMManagedInstanceCore" in verdict.message and "Session Manager" in verdict.fix

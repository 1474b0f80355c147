"""Each box reaches only what its nomad owns, judged on the inputs the real programs register under Pulumi mocks.

AWS: the role has Session Manager's five actions (not AmazonSSMManagedInstanceCore, which reads every SSM
parameter of the account), lists and touches only `<nomad>/` of the dataset bucket, and uses the team key
only through S3 for that bucket; the key policy grants nothing account-wide. GCP: every box runs as its own
service account whose bucket grant is conditioned on its own prefix. Public storage grants are denied by
SEC-021 (S3 ACLs) and SEC-022 (GCS IAM and ACLs), on the wire names the SDKs really send.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nomadrig.stacks.gcp.box import box_account_id
from nomadrig.stacks.mocks import MockScope, PlanMocks, RecordingMonitor
from nomadrig.stacks.record import RecordedResource

from nomadrig.plan import PlanResult, StackPlan, attribute, plan_team, run_programs
from nomadrig.policy import PlannedResource, PolicyContext, check_resource
from nomadrig.spec import box_spec
from nomadrig.team.load import load_team
from nomadrig.team.model import PolicySettings, Team
from tests.test_stacks_aws import aws_boxes

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "team.yaml"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
# AWS's minimal Session Manager policy, written out here rather than read from the stacks.
SESSION_MANAGER = ["ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel",
                   "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"]
GCP_ACCOUNT = "gcp:serviceaccount/account:Account"
GCS_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
ACCOUNT_ID_RULE = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")  # GCP: 6-30 characters, a letter first


@pytest.fixture(scope="module")
def team() -> Team:
    return load_team(EXAMPLE)


@pytest.fixture(scope="module")
def plan(team: Team) -> PlanResult:
    return plan_team(team)


def inline_policies(box: StackPlan) -> dict[str, dict[str, Any]]:
    return {r.name: json.loads(r.props["policy"]) for r in box.resources if r.type == ROLE_POLICY}


def as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def string_like(pattern: str, value: str) -> bool:
    """IAM's StringLike: `*` is any run of characters, `?` exactly one, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def may_list(policy: Mapping[str, Any], bucket_arn: str, prefix: str) -> bool:
    """Whether an Allow statement admits s3:ListBucket on the bucket for a request with this `s3:prefix`."""
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or "s3:ListBucket" not in as_list(statement["Action"]):
            continue
        if bucket_arn not in as_list(statement["Resource"]):
            continue
        condition = statement.get("Condition", {})
        assert set(condition) <= {"StringLike"} and set(condition.get("StringLike", {})) <= {"s3:prefix"}, condition
        patterns = as_list(condition.get("StringLike", {}).get("s3:prefix", ["*"]))
        if any(string_like(p, prefix) for p in patterns):
            return True
    return False


def bucket_arn_of(plan: PlanResult, box: StackPlan) -> str:
    network = plan.stack(f"{box.spec.team}--net--aws--{box.spec.region}")
    [bucket] = [r for r in network.resources if r.type == "aws:s3/bucket:Bucket"]
    return f"arn:aws:s3:::{bucket.props.get('bucket') or bucket.name + '_id'}"


# -- AWS: Session Manager only ----------------------------------------------------------------------


def test_aws_box_role_attaches_no_managed_policy_and_has_exactly_the_session_manager_actions(
        plan: PlanResult) -> None:
    for box in aws_boxes(plan):
        attached = [r.props.get("policyArn") for r in box.resources
                    if r.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"]
        assert attached == [], f"{box.stack}: {attached}"
        [role] = [r.props for r in box.resources if r.type == "aws:iam/role:Role"]
        assert not role.get("managedPolicyArns"), role.get("managedPolicyArns")
        policies = inline_policies(box)
        ssm_actions = [a for doc in policies.values() for s in doc["Statement"] for a in as_list(s["Action"])
                       if a.startswith(("ssm:", "ssmmessages:", "ec2messages:"))]
        assert sorted(ssm_actions) == sorted(SESSION_MANAGER)
        [session] = [doc for doc in policies.values() if any(a in SESSION_MANAGER for s in doc["Statement"]
                                                             for a in as_list(s["Action"]))]
        assert [as_list(s["Action"]) for s in session["Statement"]] == [SESSION_MANAGER]


# -- AWS: the nomad's own prefix, and nothing beside it ---------------------------------------------


@pytest.mark.parametrize("prefix, allowed", [
    ("ada/", True), ("ada/runs/", True), ("ada/x", True),
    ("adam/", False), ("adam/x", False), ("ada", False), ("ad", False), ("", False),
    ("ada-old/x", False), ("Ada/x", False), ("linus/ada/", False), ("*", False),
])
def test_ada_lists_her_own_folder_and_never_adams(plan: PlanResult, prefix: str, allowed: bool) -> None:
    ada = plan.stack("ada")
    assert may_list(inline_policies(ada)["ada-datasets"], bucket_arn_of(plan, ada), prefix) is allowed


@given(prefix=st.text(alphabet=st.sampled_from("ad/m*?x-"), max_size=8) | st.text(max_size=12))
def test_a_listing_prefix_is_admitted_exactly_when_it_lies_under_ada_slash(plan: PlanResult, prefix: str) -> None:
    ada = plan.stack("ada")
    assert may_list(inline_policies(ada)["ada-datasets"], bucket_arn_of(plan, ada), prefix) is prefix.startswith("ada/")


def test_object_actions_reach_only_objects_under_the_nomads_prefix(plan: PlanResult) -> None:
    for box in aws_boxes(plan):
        bucket_arn, nomad = bucket_arn_of(plan, box), box.spec.nomad
        doc = inline_policies(box)[f"{nomad}-datasets"]
        objects = [r for s in doc["Statement"] if any(a.startswith("s3:") and a != "s3:ListBucket"
                                                     for a in as_list(s["Action"])) for r in as_list(s["Resource"])]
        assert objects == [f"{bucket_arn}/{nomad}/*"]
        assert not string_like(objects[0], f"{bucket_arn}/{nomad}x/data.bin")
        assert string_like(objects[0], f"{bucket_arn}/{nomad}/data.bin")


# -- AWS: the team key ------------------------------------------------------------------------------


def test_box_role_uses_the_team_key_only_through_s3_for_its_own_bucket(plan: PlanResult) -> None:
    for box in aws_boxes(plan):
        bucket_arn, nomad = bucket_arn_of(plan, box), box.spec.nomad
        kms = [s for s in inline_policies(box)[f"{nomad}-datasets"]["Statement"]
               if any(a.startswith("kms:") for a in as_list(s["Action"]))]
        assert len(kms) == 1, kms
        [statement] = kms
        assert sorted(as_list(statement["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
        [key_arn] = as_list(statement["Resource"])
        assert key_arn.startswith("arn:aws:kms:") and "*" not in key_arn
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": f"s3.{box.spec.region}.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket_arn, f"{bucket_arn}/{nomad}/*"]},
        }


def key_policies(plan: PlanResult) -> list[tuple[str, dict[str, Any]]]:
    return [(r.name, json.loads(r.props["policy"])) for r in plan.resources("aws:kms/key:Key")]


def test_team_key_policy_grants_nothing_account_wide(plan: PlanResult, team: Team) -> None:
    account = team.clouds.aws.account_id or MockScope.account_id
    spot_role = f"arn:aws:iam::{account}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
    assert key_policies(plan)
    for name, policy in key_policies(plan):
        for statement in policy["Statement"]:
            principal = statement["Principal"]["AWS"]
            if principal == f"arn:aws:iam::{account}:root":
                continue  # administration through IAM: each principal still needs its own IAM allow
            assert principal == "*", (name, statement)
            condition = statement["Condition"]
            assert condition["ArnEquals"] == {"aws:PrincipalArn": spot_role}, (name, statement)
            assert condition["StringEquals"]["kms:ViaService"].startswith("ec2."), (name, statement)


def test_team_key_creates_grants_only_for_aws_resources(plan: PlanResult) -> None:
    """EBS encryption with the team key needs kms:CreateGrant, but only for EC2's own use of the volume."""
    for name, policy in key_policies(plan):
        granting = [s for s in policy["Statement"] if "kms:CreateGrant" in as_list(s["Action"])]
        assert granting, f"{name}: nobody may create grants; spot boxes could not attach encrypted volumes"
        for statement in granting:
            assert statement["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}, (name, statement)


# -- GCP: one service account per box, limited to its prefix ----------------------------------------


@pytest.fixture(scope="module")
def two_gcp_boxes(team: Team) -> list[StackPlan]:
    grace = box_spec(team, "grace")
    specs = [grace, dataclasses.replace(grace, nomad="gracie")]
    stacks = attribute(team, specs, run_programs(team, specs).resources)
    return [s for s in stacks if s.kind == "box"] + [s for s in stacks if s.kind == "network"]


def test_each_gcp_box_runs_as_its_own_service_account(two_gcp_boxes: list[StackPlan]) -> None:
    boxes = [s for s in two_gcp_boxes if s.kind == "box"]
    emails = []
    for box in boxes:
        [account] = [r.props for r in box.resources if r.type == GCP_ACCOUNT]
        assert ACCOUNT_ID_RULE.fullmatch(account["accountId"]), account["accountId"]
        email = f"{account['accountId']}@{box.spec.project}.iam.gserviceaccount.com"
        [instance] = [r.props for r in box.resources if r.type == "gcp:compute/instance:Instance"]
        assert instance["serviceAccount"]["email"] == email
        emails.append(email)
    assert len(boxes) == 2 and len(set(emails)) == 2, emails


def starts_with_literal(expression: str) -> str:
    """The one CEL form the boxes use: resource.name.startsWith("<literal>")."""
    match = re.fullmatch(r'resource\.name\.startsWith\("([^"\\]*)"\)', expression)
    assert match, f"unexpected condition: {expression}"
    return match.group(1)


def test_each_gcp_box_may_reach_only_objects_under_its_own_prefix(two_gcp_boxes: list[StackPlan]) -> None:
    [network] = [s for s in two_gcp_boxes if s.kind == "network"]
    [bucket] = [r for r in network.resources if r.type == "gcp:storage/bucket:Bucket"]
    assert not [r for r in network.resources if r.type == GCS_MEMBER], "no team-wide grant on the bucket"
    for box in (s for s in two_gcp_boxes if s.kind == "box"):
        nomad = box.spec.nomad
        [account] = [r.props for r in box.resources if r.type == GCP_ACCOUNT]
        [grant] = [r.props for r in box.resources if r.type == GCS_MEMBER]
        assert grant["member"] == f"serviceAccount:{account['accountId']}@{box.spec.project}.iam.gserviceaccount.com"
        assert grant["role"] == "roles/storage.objectUser"
        prefix = starts_with_literal(grant["condition"]["expression"])
        assert prefix == f"projects/_/buckets/{grant['bucket']}/objects/{nomad}/"
        assert grant["bucket"].startswith(f"{bucket.name}-"), "the team bucket (mocks name it <logical>-<hash>)"
        for other in ("grace", "gracie"):
            reaches = f"projects/_/buckets/{grant['bucket']}/objects/{other}/weights.pt".startswith(prefix)
            assert reaches is (other == nomad), (nomad, other)
        assert not f"projects/_/buckets/{grant['bucket']}".startswith(prefix), "a listing is not an object"


@pytest.mark.parametrize("team_name, nomad", [("vision-lab", "ab"), ("vision-lab", "a" * 30),
                                              ("a" * 30, "b-" * 14 + "c"), ("t1", "x-y-z")])
def test_service_account_ids_keep_gcps_length_rule(team_name: str, nomad: str) -> None:
    account_id = box_account_id(team_name, nomad)
    assert ACCOUNT_ID_RULE.fullmatch(account_id), account_id


def test_service_account_ids_differ_across_teams_and_for_names_sharing_a_long_start() -> None:
    long = "a" * 20
    ids = {box_account_id("vision-lab", "ada"), box_account_id("speech-lab", "ada"),
           box_account_id("vision-lab", long + "x"), box_account_id("vision-lab", long + "y")}
    assert len(ids) == 4, ids
    assert box_account_id("vision-lab", "ada") == box_account_id("vision-lab", "ada"), "stable across runs"


# -- SEC-021 / SEC-022 on the inputs the SDKs really register ---------------------------------------


def register(build: Callable[[], Any]) -> list[RecordedResource]:
    """Run `build` (which declares resources with the real SDK) under mocks; return what was registered."""
    import pulumi

    mocks = PlanMocks(MockScope())
    pulumi.runtime.set_mocks(mocks, project="nomadrig", stack="rules", preview=False,
                             monitor=RecordingMonitor(mocks))

    @pulumi.runtime.test
    def program() -> Any:
        build()
        return pulumi.Output.from_input(None)

    program()
    return [r for r in mocks.resources if r.custom and not r.type.startswith("pulumi:")]


def rules_denying(resource: RecordedResource) -> set[str]:
    ctx = PolicyContext(policy=PolicySettings())
    verdicts = check_resource(PlannedResource(resource.type, resource.name, resource.inputs), ctx)
    return {v.rule_id for v in verdicts if v.mandatory}


def _aws_acl(**kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        import pulumi_aws as aws

        return aws.s3.BucketAclV2("acl", bucket="vl-data", **kwargs)

    return build


def _aws_grant(uri: str) -> Callable[[], Any]:
    def build() -> Any:
        import pulumi_aws as aws

        policy = aws.s3.BucketAclV2AccessControlPolicyArgs(
            owner=aws.s3.BucketAclV2AccessControlPolicyOwnerArgs(id="owner"),
            grants=[aws.s3.BucketAclV2AccessControlPolicyGrantArgs(
                permission="READ", grantee=aws.s3.BucketAclV2AccessControlPolicyGrantGranteeArgs(
                    type="Group" if uri.startswith("http") else "CanonicalUser",
                    uri=uri if uri.startswith("http") else None, id=None if uri.startswith("http") else uri))])
        return aws.s3.BucketAclV2("acl", bucket="vl-data", access_control_policy=policy)

    return build


def _aws_other(kind: str, acl: str) -> Callable[[], Any]:
    def build() -> Any:
        import pulumi_aws as aws

        if kind == "BucketAcl":
            return aws.s3.BucketAcl("acl", bucket="vl-data", acl=acl)
        if kind == "Bucket":
            return aws.s3.Bucket("legacy", bucket="vl-legacy", acl=acl)
        return aws.s3.BucketObjectv2("object", bucket="vl-data", key="ada/x", content="x", acl=acl)

    return build


ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED = "https://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
AWS_CASES: dict[str, tuple[Callable[[], Any], bool]] = {
    "BucketAclV2 public-read": (_aws_acl(acl="public-read"), True),
    "BucketAclV2 public-read-write": (_aws_acl(acl="public-read-write"), True),
    "BucketAclV2 authenticated-read": (_aws_acl(acl="authenticated-read"), True),
    "BucketAclV2 grant to AllUsers": (_aws_grant(ALL_USERS), True),
    "BucketAclV2 grant to AuthenticatedUsers": (_aws_grant(AUTHENTICATED), True),
    "BucketAcl public-read": (_aws_other("BucketAcl", "public-read"), True),
    "legacy Bucket acl public-read": (_aws_other("Bucket", "public-read"), True),
    "object acl public-read": (_aws_other("BucketObjectv2", "public-read"), True),
    "BucketAclV2 private": (_aws_acl(acl="private"), False),
    "BucketAclV2 acl absent (private)": (_aws_acl(), False),
    "BucketAclV2 log-delivery-write": (_aws_acl(acl="log-delivery-write"), False),
    "BucketAclV2 grant to LogDelivery": (_aws_grant(LOG_DELIVERY), False),
    "BucketAclV2 grant to a canonical user": (_aws_grant("79a59df900b949e55d96a1e698fbaced"), False),
    "object acl bucket-owner-full-control": (_aws_other("BucketObjectv2", "bucket-owner-full-control"), False),
}


@pytest.mark.parametrize("case", sorted(AWS_CASES))
def test_public_s3_acls_are_denied_by_sec021(case: str) -> None:
    build, public = AWS_CASES[case]
    [resource] = register(build)
    assert ("SEC-021" in rules_denying(resource)) is public, resource.inputs


def _gcs(kind: str, principal: str) -> Callable[[], Any]:
    def build() -> Any:
        import pulumi_gcp as gcp

        role = "roles/storage.objectViewer"
        if kind == "member":
            return gcp.storage.BucketIAMMember("m", bucket="vl-data", role=role, member=principal)
        if kind == "binding":
            return gcp.storage.BucketIAMBinding("b", bucket="vl-data", role=role,
                                                members=["serviceAccount:box@p.iam.gserviceaccount.com", principal])
        if kind == "policy":
            data = json.dumps({"bindings": [{"role": role, "members": [principal]}]})
            return gcp.storage.BucketIAMPolicy("p", bucket="vl-data", policy_data=data)
        if kind == "folder":
            return gcp.storage.ManagedFolderIamMember("f", bucket="vl-data", managed_folder="ada/", role=role,
                                                      member=principal)
        if kind == "bucket-acl":
            return gcp.storage.BucketACL("a", bucket="vl-data", role_entities=[f"READER:{principal}"])
        if kind == "default-object-acl":
            return gcp.storage.DefaultObjectACL("d", bucket="vl-data", role_entities=[f"READER:{principal}"])
        if kind == "object-acl":
            return gcp.storage.ObjectACL("o", bucket="vl-data", object="ada/x", role_entities=[f"READER:{principal}"])
        if kind == "access-control":
            return gcp.storage.BucketAccessControl("c", bucket="vl-data", role="READER", entity=principal)
        if kind == "predefined":
            return gcp.storage.BucketACL("a", bucket="vl-data", predefined_acl=principal)
        return gcp.storage.ObjectACL("o", bucket="vl-data", object="ada/x", predefined_acl=principal)

    return build


GCS_KINDS = ("member", "binding", "policy", "folder", "bucket-acl", "default-object-acl", "object-acl",
             "access-control")


@pytest.mark.parametrize("kind", GCS_KINDS)
@pytest.mark.parametrize("principal", ["allUsers", "allAuthenticatedUsers"])
def test_gcs_grants_to_everyone_are_denied_by_sec022(kind: str, principal: str) -> None:
    [resource] = register(_gcs(kind, principal))
    assert "SEC-022" in rules_denying(resource), resource.inputs


@pytest.mark.parametrize("kind", GCS_KINDS)
def test_gcs_grants_to_named_principals_pass_sec022(kind: str) -> None:
    principal = ("serviceAccount:box@p.iam.gserviceaccount.com" if kind in ("member", "binding", "policy", "folder")
                 else "user-ada@example.com")
    [resource] = register(_gcs(kind, principal))
    assert "SEC-022" not in rules_denying(resource), resource.inputs


@pytest.mark.parametrize("kind, acl, public", [
    ("predefined", "publicRead", True), ("predefined", "publicReadWrite", True),
    ("predefined", "authenticatedRead", True), ("object-predefined", "publicRead", True),
    ("predefined", "private", False), ("predefined", "projectPrivate", False),
    ("object-predefined", "bucketOwnerFullControl", False),
])
def test_gcs_predefined_acls_that_open_data_are_denied_by_sec022(kind: str, acl: str, public: bool) -> None:
    [resource] = register(_gcs(kind, acl))
    assert ("SEC-022" in rules_denying(resource)) is public, resource.inputs


def test_the_example_team_has_no_public_grant_and_no_unconditional_bucket_grant(plan: PlanResult) -> None:
    assert not [v.as_dict() for v in plan.verdicts if v.rule_id in ("SEC-020", "SEC-021", "SEC-022")]
    for resource in plan.resources(GCS_MEMBER):
        assert resource.props.get("condition", {}).get("expression"), resource.name

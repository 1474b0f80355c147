"""Rules over resources exactly as Pulumi passes them (type token + camelCase wire-name inputs).

The same functions run under the offline plan (mock inputs), in the stacks and
in the CrossGuard pack (`props`). An absent value is read the way the cloud
reads it: AWS defaults `httpTokens` to optional and `encrypted` to false.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nomadrig.policy.model import PlannedResource, PolicyContext, Severity, Violation
from nomadrig.policy.registry import resource_rule, stack_rule

AWS_INSTANCE = "aws:ec2/instance:Instance"
AWS_LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
AWS_VOLUME = "aws:ebs/volume:Volume"
AWS_SG = "aws:ec2/securityGroup:SecurityGroup"
AWS_SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
AWS_SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
AWS_SUBNET = "aws:ec2/subnet:Subnet"
AWS_BUCKET = "aws:s3/bucket:Bucket"
AWS_BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
AWS_BUCKET_ACL = "aws:s3/bucketAcl:BucketAcl"
AWS_BUCKET_ACL_V2 = "aws:s3/bucketAclV2:BucketAclV2"
AWS_BUCKET_OBJECT = "aws:s3/bucketObject:BucketObject"
AWS_BUCKET_OBJECT_V2 = "aws:s3/bucketObjectv2:BucketObjectv2"
AWS_OBJECT_COPY = "aws:s3/objectCopy:ObjectCopy"
AWS_BUCKET_PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
AWS_BUCKET_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
AWS_BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
AWS_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
AWS_POLICY = "aws:iam/policy:Policy"
AWS_ROLE = "aws:iam/role:Role"
AWS_ROLE_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
AWS_KMS_KEY = "aws:kms/key:Key"
GCP_INSTANCE = "gcp:compute/instance:Instance"
GCP_DISK = "gcp:compute/disk:Disk"
GCP_FIREWALL = "gcp:compute/firewall:Firewall"
GCP_BUCKET = "gcp:storage/bucket:Bucket"
GCP_BUCKET_IAM_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
GCP_BUCKET_IAM_BINDING = "gcp:storage/bucketIAMBinding:BucketIAMBinding"
GCP_BUCKET_IAM_POLICY = "gcp:storage/bucketIAMPolicy:BucketIAMPolicy"
GCP_FOLDER_IAM_MEMBER = "gcp:storage/managedFolderIamMember:ManagedFolderIamMember"
GCP_FOLDER_IAM_BINDING = "gcp:storage/managedFolderIamBinding:ManagedFolderIamBinding"
GCP_FOLDER_IAM_POLICY = "gcp:storage/managedFolderIamPolicy:ManagedFolderIamPolicy"
GCP_BUCKET_ACL = "gcp:storage/bucketACL:BucketACL"
GCP_DEFAULT_OBJECT_ACL = "gcp:storage/defaultObjectACL:DefaultObjectACL"
GCP_OBJECT_ACL = "gcp:storage/objectACL:ObjectACL"
GCP_BUCKET_ACCESS_CONTROL = "gcp:storage/bucketAccessControl:BucketAccessControl"
GCP_DEFAULT_OBJECT_ACCESS_CONTROL = "gcp:storage/defaultObjectAccessControl:DefaultObjectAccessControl"
GCP_OBJECT_ACCESS_CONTROL = "gcp:storage/objectAccessControl:ObjectAccessControl"
WORLD = ("0.0.0.0/0", "::/0")
IAP_RANGE = "35.235.240.0/20"


def dig(props: Any, *path: str | int, default: Any = None) -> Any:
    """Follow keys/indexes through nested inputs; absent anywhere means `default`."""
    node = props
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, Sequence) or isinstance(node, str) or len(node) <= part:
                return default
            node = node[part]
        else:
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
    return default if node is None else node


def _truthy(value: Any) -> bool:
    """Pulumi passes some booleans as strings (launch template block devices)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


@resource_rule(id="SEC-001", title="Block storage is encrypted (AWS)", severity=Severity.MANDATORY,
               applies_to=(AWS_INSTANCE, AWS_VOLUME, AWS_LAUNCH_TEMPLATE))
def aws_volumes_encrypted(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    fix = "set encrypted=True (with the team's KMS key)"
    if r.type == AWS_VOLUME:
        if not _truthy(r.props.get("encrypted")):
            yield Violation(f"{r.name}: EBS volume is not encrypted; a leaked snapshot exposes the data", fix)
    elif r.type == AWS_INSTANCE:
        if not _truthy(dig(r.props, "rootBlockDevice", "encrypted")):
            yield Violation(f"{r.name}: root volume is not encrypted",
                            "set root_block_device.encrypted=True")
        for i, dev in enumerate(r.props.get("ebsBlockDevices") or []):
            if not _truthy(dev.get("encrypted")):
                yield Violation(f"{r.name}: ebs_block_devices[{i}] is not encrypted", fix)
    else:
        for i, mapping in enumerate(r.props.get("blockDeviceMappings") or []):
            if "ebs" in mapping and not _truthy(dig(mapping, "ebs", "encrypted")):
                yield Violation(f"{r.name}: block_device_mappings[{i}] is not encrypted", fix)


@resource_rule(id="SEC-002", title="Instance metadata requires session tokens (IMDSv2)",
               severity=Severity.MANDATORY, applies_to=(AWS_INSTANCE, AWS_LAUNCH_TEMPLATE))
def imds_v2_required(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    tokens = dig(r.props, "metadataOptions", "httpTokens", default="optional")
    if tokens != "required":
        yield Violation(
            f"{r.name}: httpTokens is {tokens!r}; any process on the box can read its credentials",
            "set metadata_options.http_tokens='required'",
        )


def _open_cidrs(values: Iterable[Any]) -> list[str]:
    return [v for v in values or [] if v in WORLD]


@resource_rule(id="SEC-003", title="No ingress from the whole internet, on any port", severity=Severity.MANDATORY,
               applies_to=(AWS_SG, AWS_SG_RULE, AWS_SG_INGRESS, GCP_FIREWALL))
def no_world_ingress(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    fix = "remove the rule: boxes are reached through SSM / IAP, which need no inbound port"
    found: list[str] = []
    if r.type == AWS_SG:
        for rule in r.props.get("ingress") or []:
            found += _open_cidrs(rule.get("cidrBlocks")) + _open_cidrs(rule.get("ipv6CidrBlocks"))
    elif r.type == AWS_SG_RULE:
        if r.props.get("type") == "ingress":
            found += _open_cidrs(r.props.get("cidrBlocks")) + _open_cidrs(r.props.get("ipv6CidrBlocks"))
    elif r.type == AWS_SG_INGRESS:
        found += _open_cidrs([r.props.get("cidrIpv4"), r.props.get("cidrIpv6")])
    elif r.props.get("direction", "INGRESS") == "INGRESS":
        found += _open_cidrs(r.props.get("sourceRanges"))
    if found:
        yield Violation(f"{r.name}: ingress from {', '.join(sorted(set(found)))} exposes the box to scanners", fix)


@resource_rule(id="SEC-004", title="No public IP unless the team allows it", severity=Severity.MANDATORY,
               applies_to=(AWS_INSTANCE, AWS_SUBNET, GCP_INSTANCE))
def no_public_ip(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    if ctx.policy.allow_public_ip:
        return
    fix = "keep boxes private (policy.allow_public_ip is false); reach them with `nomadrig ssh-config`"
    if r.type == AWS_INSTANCE and _truthy(r.props.get("associatePublicIpAddress")):
        yield Violation(f"{r.name}: associate_public_ip_address is true", fix)
    elif r.type == AWS_SUBNET and _truthy(r.props.get("mapPublicIpOnLaunch")):
        yield Violation(f"{r.name}: subnet maps public IPs on launch", "set map_public_ip_on_launch=False")
    elif r.type == GCP_INSTANCE:
        for i, nic in enumerate(r.props.get("networkInterfaces") or []):
            if nic.get("accessConfigs"):
                yield Violation(f"{r.name}: network_interfaces[{i}] has an access config (external IP)", fix)


TAGGED_AWS = (AWS_INSTANCE, AWS_VOLUME)
LABELLED_GCP = (GCP_INSTANCE, GCP_DISK)


@resource_rule(id="SEC-005", title="Box resources carry the nomadrig:* tags (AWS)", severity=Severity.MANDATORY,
               applies_to=TAGGED_AWS)
def aws_required_tags(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    tags = r.props.get("tags") or {}
    missing = [t for t in ctx.policy.required_tags if not tags.get(t)]
    if missing:
        yield Violation(f"{r.name}: missing tags {', '.join(missing)}; the reaper and budgets cannot attribute it",
                        "tag it with BoxSpec.tags() (nomadrig:managed/team/owner/ttl/idle-minutes)")


@resource_rule(id="SEC-006", title="Box resources carry the nomadrig-* labels (GCP)", severity=Severity.MANDATORY,
               applies_to=LABELLED_GCP)
def gcp_required_labels(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    labels = r.props.get("labels") or {}
    missing = [t.replace(":", "-") for t in ctx.policy.required_tags if not labels.get(t.replace(":", "-"))]
    if missing:
        yield Violation(f"{r.name}: missing labels {', '.join(missing)}; the reaper cannot attribute it",
                        "label it with BoxSpec.labels()")


@resource_rule(id="SEC-007", title="Buckets block every kind of public access (AWS)",
               severity=Severity.MANDATORY, applies_to=(AWS_BUCKET_PAB,))
def aws_bucket_public_access_block(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    off = [f for f in flags if not _truthy(r.props.get(f))]
    if off:
        yield Violation(f"{r.name}: {', '.join(off)} not set; the dataset bucket could be made public",
                        "set all four public access block flags to True")


@resource_rule(id="SEC-008", title="Buckets are encrypted with KMS (AWS)", severity=Severity.MANDATORY,
               applies_to=(AWS_BUCKET_SSE,))
def aws_bucket_kms(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    algos = [dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in r.props.get("rules") or []]
    if not any(a in ("aws:kms", "aws:kms:dsse") for a in algos):
        yield Violation(f"{r.name}: default encryption is {algos or 'absent'}, not SSE-KMS",
                        "set sse_algorithm='aws:kms' with the team's key")


@resource_rule(id="SEC-009", title="Buckets keep versions (AWS)", severity=Severity.MANDATORY,
               applies_to=(AWS_BUCKET_VERSIONING,))
def aws_bucket_versioning(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    status = dig(r.props, "versioningConfiguration", "status", default="Disabled")
    if status != "Enabled":
        yield Violation(f"{r.name}: versioning is {status!r}; an overwrite or delete loses data for good",
                        "set versioning_configuration.status='Enabled'")


@stack_rule(id="SEC-010", title="Every AWS bucket is private, encrypted and versioned", severity=Severity.MANDATORY)
def aws_bucket_companions(resources: list[PlannedResource], ctx: PolicyContext) -> Iterable[Violation]:
    buckets = {r.props.get("bucket") or r.name: r for r in resources if r.type == AWS_BUCKET}
    needed = {AWS_BUCKET_PAB: "a public access block", AWS_BUCKET_SSE: "SSE-KMS encryption",
              AWS_BUCKET_VERSIONING: "versioning"}
    for bucket_name, bucket in buckets.items():
        refs = {bucket_name, bucket.props.get("id"), f"{bucket.name}_id", bucket.name}
        for type_token, what in needed.items():
            if not any(r.type == type_token and r.props.get("bucket") in refs for r in resources):
                yield Violation(f"bucket {bucket.name}: has no {what}",
                                f"add a {type_token.rsplit(':', 1)[-1]} for it (stacks do this)")


def _statements(policy: Any) -> list[Mapping[str, Any]]:
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except json.JSONDecodeError:
            return []
    if not isinstance(policy, Mapping):
        return []
    statements = policy.get("Statement", [])
    return [statements] if isinstance(statements, Mapping) else list(statements)


@resource_rule(id="SEC-011", title="No wildcard IAM actions on instance roles", severity=Severity.MANDATORY,
               applies_to=(AWS_ROLE_POLICY, AWS_POLICY, AWS_ROLE))
def no_wildcard_actions(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    documents = [p.get("policy") for p in r.props.get("inlinePolicies") or []] if r.type == AWS_ROLE \
        else [r.props.get("policy")]
    statements = [st for doc in documents for st in _statements(doc)]
    for i, statement in enumerate(statements):
        if statement.get("Effect", "Allow") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else list(actions)
        wild = [a for a in actions if a == "*" or a.endswith(":*")]
        if wild:
            yield Violation(f"{r.name}: statement {i} allows {', '.join(wild)}; a compromised box could do anything "
                            "with that service", "list the exact actions the box needs")


@resource_rule(id="SEC-012", title="Disks are encrypted with the team's key (GCP)", severity=Severity.MANDATORY,
               applies_to=(GCP_DISK, GCP_INSTANCE), params={"require_cmek": True})
def gcp_disks_encrypted(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    if r.type == GCP_DISK:
        key = r.props.get("diskEncryptionKey") or {}
        if key.get("rawKey") or key.get("rsaEncryptedKey"):
            yield Violation(f"{r.name}: a customer-supplied raw key sits in the stack's inputs",
                            "use disk_encryption_key.kms_key_self_link instead")
        elif ctx.param("require_cmek", True) and not key.get("kmsKeySelfLink"):
            yield Violation(f"{r.name}: disk uses Google-managed keys only; the team cannot revoke access to it",
                            "set disk_encryption_key.kms_key_self_link to the team's KMS key")
    elif ctx.param("require_cmek", True) and not dig(r.props, "bootDisk", "kmsKeySelfLink"):
        yield Violation(f"{r.name}: boot disk uses Google-managed keys only",
                        "set boot_disk.kms_key_self_link to the team's KMS key")


@resource_rule(id="SEC-013", title="GCP boxes are shielded VMs", severity=Severity.MANDATORY,
               applies_to=(GCP_INSTANCE,), params={"require_secure_boot": False})
def gcp_shielded_vm(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    shielded = r.props.get("shieldedInstanceConfig") or {}
    wanted = ["enableVtpm", "enableIntegrityMonitoring"]
    if ctx.param("require_secure_boot", False):
        wanted.append("enableSecureBoot")
    # GCP's defaults: vTPM and integrity monitoring on, secure boot off.
    defaults = {"enableVtpm": True, "enableIntegrityMonitoring": True, "enableSecureBoot": False}
    off = [k for k in wanted if not shielded.get(k, defaults[k] if shielded else False)]
    if off:
        yield Violation(f"{r.name}: shielded VM {', '.join(off)} is off; boot-level tampering goes unnoticed",
                        "set shielded_instance_config with enable_vtpm and enable_integrity_monitoring True")


@resource_rule(id="SEC-014", title="GCP boxes use OS Login", severity=Severity.MANDATORY, applies_to=(GCP_INSTANCE,))
def gcp_os_login(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    value = str((r.props.get("metadata") or {}).get("enable-oslogin", "")).upper()
    if value != "TRUE":
        yield Violation(f"{r.name}: enable-oslogin is {value or 'unset'}; SSH keys in metadata bypass IAM",
                        "set metadata={'enable-oslogin': 'TRUE'}")


@resource_rule(id="SEC-015", title="GCP ingress only from the IAP range", severity=Severity.MANDATORY,
               applies_to=(GCP_FIREWALL,), params={"allowed_sources": IAP_RANGE})
def gcp_firewall_sources(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    if r.props.get("direction", "INGRESS") != "INGRESS":
        return
    allowed = {s.strip() for s in str(ctx.param("allowed_sources", IAP_RANGE)).split(",")}
    sources = list(r.props.get("sourceRanges") or [])
    if r.props.get("sourceTags") or r.props.get("sourceServiceAccounts"):
        return
    other = [s for s in sources if s not in allowed]
    if other or not sources:
        yield Violation(f"{r.name}: ingress from {', '.join(other) or 'anywhere (no source_ranges)'}, "
                        f"not only {', '.join(sorted(allowed))}",
                        f"set source_ranges=['{IAP_RANGE}'] (IAP TCP forwarding)")


@resource_rule(id="SEC-016", title="A spot interruption stops the box (data kept)", severity=Severity.MANDATORY,
               applies_to=(AWS_INSTANCE, GCP_INSTANCE))
def spot_interruption_stops(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    if r.type == AWS_INSTANCE:
        if dig(r.props, "instanceMarketOptions", "marketType") != "spot":
            return
        behaviour = dig(r.props, "instanceMarketOptions", "spotOptions", "instanceInterruptionBehavior",
                        default="terminate")
        kind = dig(r.props, "instanceMarketOptions", "spotOptions", "spotInstanceType", default="one-time")
        if behaviour != "stop" or kind != "persistent":
            yield Violation(f"{r.name}: spot interruption behaviour is {behaviour!r} ({kind}); an interruption "
                            "would terminate the box", "set spot_options instance_interruption_behavior='stop', "
                            "spot_instance_type='persistent'")
    else:
        scheduling = r.props.get("scheduling") or {}
        if scheduling.get("provisioningModel") != "SPOT" and not _truthy(scheduling.get("preemptible")):
            return
        action = scheduling.get("instanceTerminationAction", "")
        if action != "STOP":
            yield Violation(f"{r.name}: spot termination action is {action or 'unset'}; a preemption deletes the box",
                            "set scheduling.instance_termination_action='STOP'")


@resource_rule(id="SEC-017", title="An OS shutdown stops the box, never terminates it", severity=Severity.MANDATORY,
               applies_to=(AWS_INSTANCE,))
def shutdown_means_stop(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    behaviour = r.props.get("instanceInitiatedShutdownBehavior", "stop")
    if behaviour != "stop":
        yield Violation(f"{r.name}: shutdown behaviour is {behaviour!r}; the idle agent's poweroff would delete it",
                        "set instance_initiated_shutdown_behavior='stop'")


@resource_rule(id="SEC-018", title="KMS keys rotate", severity=Severity.MANDATORY, applies_to=(AWS_KMS_KEY,))
def kms_rotation(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    if not _truthy(r.props.get("enableKeyRotation")):
        yield Violation(f"{r.name}: key rotation is off", "set enable_key_rotation=True")


@resource_rule(id="SEC-019", title="GCS buckets are private, uniform and versioned", severity=Severity.MANDATORY,
               applies_to=(GCP_BUCKET,))
def gcp_bucket_private(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    problems = []
    if not _truthy(r.props.get("uniformBucketLevelAccess")):
        problems.append("uniform bucket-level access is off")
    if r.props.get("publicAccessPrevention") != "enforced":
        problems.append("public access prevention is not enforced")
    if not _truthy(dig(r.props, "versioning", "enabled")):
        problems.append("versioning is off")
    if problems:
        yield Violation(f"{r.name}: {'; '.join(problems)}",
                        "set uniform_bucket_level_access=True, public_access_prevention='enforced', "
                        "versioning.enabled=True")


# AmazonSSMManagedInstanceCore belongs here too: besides Session Manager it lets the box read every SSM
# parameter of the account (ssm:GetParameter*), where teams keep secrets.
BROAD_MANAGED_POLICIES = ("AdministratorAccess", "PowerUserAccess", "IAMFullAccess", "AmazonS3FullAccess",
                          "AmazonEC2FullAccess", "AmazonSSMManagedInstanceCore")


@resource_rule(id="SEC-020", title="No broad AWS managed policies on instance roles", severity=Severity.MANDATORY,
               applies_to=(AWS_ROLE_ATTACHMENT, AWS_ROLE))
def no_broad_managed_policies(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    if r.type == AWS_ROLE_ATTACHMENT:
        arns = [r.props.get("policyArn", "")]
    else:
        arns = list(r.props.get("managedPolicyArns") or [])
    for arn in arns:
        name = str(arn).rsplit("/", 1)[-1]
        if name in BROAD_MANAGED_POLICIES:
            yield Violation(f"{r.name}: attaches {name}; a compromised box would get far more than it needs",
                            "use inline policies with the Session Manager actions and the nomad's bucket prefix "
                            "only (stacks.aws.box does)")


def _items(value: Any) -> list[Any]:
    """A list input as a list; absent (or not a list at all) as empty."""
    return list(value) if isinstance(value, list | tuple) else []


# Canned ACLs that open an S3 bucket or object beyond the account (AWS's names; absent means "private").
AWS_PUBLIC_CANNED_ACLS = ("public-read", "public-read-write", "authenticated-read")
# The grantee groups behind them: everyone, and every AWS account in the world.
AWS_PUBLIC_GROUPS = ("acs.amazonaws.com/groups/global/allusers", "acs.amazonaws.com/groups/global/authenticatedusers")
AWS_PUBLIC_ACL_TYPES = (AWS_BUCKET_ACL_V2, AWS_BUCKET_ACL, AWS_BUCKET, AWS_BUCKET_V2, AWS_BUCKET_OBJECT,
                        AWS_BUCKET_OBJECT_V2, AWS_OBJECT_COPY)


def _aws_public_group(uri: Any) -> str | None:
    """The public group a grantee URI names (http or https, any case), or None."""
    text = str(uri or "").strip().rstrip("/").lower()
    for group in AWS_PUBLIC_GROUPS:
        if text.endswith("//" + group) or text == group:
            return group.rsplit("/", 1)[-1]
    return None


def aws_public_acl_findings(props: Mapping[str, Any]) -> list[str]:
    """What makes an S3 ACL input public: a public canned `acl`, or a grant to AllUsers/AuthenticatedUsers.

    Grants come as `accessControlPolicy.grants[].grantee.uri` (BucketAcl/BucketAclV2) or as the legacy
    `grants[].uri` (Bucket, BucketV2, ObjectCopy).
    """
    found = []
    acl = props.get("acl")
    if isinstance(acl, str) and acl.strip().lower() in AWS_PUBLIC_CANNED_ACLS:
        found.append(f"acl {acl.strip()!r}")
    policy_grants = [(dig(g, "grantee", "uri"), dig(g, "permission")) for g in
                     _items(dig(props, "accessControlPolicy", "grants"))]
    legacy_grants = [(dig(g, "uri"), ",".join(map(str, _items(dig(g, "permissions"))))) for g in
                     _items(props.get("grants"))]
    for uri, permission in policy_grants + legacy_grants:
        group = _aws_public_group(uri)
        if group:
            found.append(f"{permission or 'a'} grant to {group}")
    return found


@resource_rule(id="SEC-021", title="No public S3 ACL on buckets or objects (AWS)", severity=Severity.MANDATORY,
               applies_to=AWS_PUBLIC_ACL_TYPES)
def aws_no_public_acl(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    """An ACL that names AllUsers or AuthenticatedUsers hands the team's data to the whole internet."""
    for finding in aws_public_acl_findings(r.props):
        yield Violation(f"{r.name}: {finding}; anyone on the internet (or any AWS account) could reach the data",
                        "drop the ACL (keep acl absent or 'private') and share through IAM policies of named roles")


# GCS's principals for "everyone" and "anyone signed in to Google" (IAM members and ACL entities alike).
GCS_PUBLIC_PRINCIPALS = ("allusers", "allauthenticatedusers")
# Predefined ACLs that grant to them, in the JSON API's names (gsutil's dashed names fold to the same).
GCS_PUBLIC_PREDEFINED_ACLS = ("publicread", "publicreadwrite", "authenticatedread")
GCS_IAM_MEMBER_TYPES = (GCP_BUCKET_IAM_MEMBER, GCP_FOLDER_IAM_MEMBER)
GCS_IAM_BINDING_TYPES = (GCP_BUCKET_IAM_BINDING, GCP_FOLDER_IAM_BINDING)
GCS_IAM_POLICY_TYPES = (GCP_BUCKET_IAM_POLICY, GCP_FOLDER_IAM_POLICY)
GCS_ACL_TYPES = (GCP_BUCKET_ACL, GCP_DEFAULT_OBJECT_ACL, GCP_OBJECT_ACL)
GCS_ACCESS_CONTROL_TYPES = (GCP_BUCKET_ACCESS_CONTROL, GCP_DEFAULT_OBJECT_ACCESS_CONTROL, GCP_OBJECT_ACCESS_CONTROL)


def _gcs_public(principal: Any) -> bool:
    return str(principal or "").strip().lower() in GCS_PUBLIC_PRINCIPALS


def _policy_bindings(policy_data: Any) -> list[Mapping[str, Any]]:
    """The bindings of an IAM policy document (`policyData`, JSON text or already a mapping)."""
    if isinstance(policy_data, str):
        try:
            policy_data = json.loads(policy_data)
        except json.JSONDecodeError:
            return []  # the API refuses a document that does not parse: nothing would be granted
    if not isinstance(policy_data, Mapping):
        return []
    return [b for b in _items(policy_data.get("bindings")) if isinstance(b, Mapping)]


def gcs_public_findings(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every grant of a GCS IAM or ACL input to allUsers / allAuthenticatedUsers, as "<role> to <principal>"."""
    grants: list[tuple[Any, Any]] = []  # (role, principal)
    if resource_type in GCS_IAM_MEMBER_TYPES:
        grants.append((props.get("role"), props.get("member")))
    elif resource_type in GCS_IAM_BINDING_TYPES:
        grants += [(props.get("role"), m) for m in _items(props.get("members"))]
    elif resource_type in GCS_IAM_POLICY_TYPES:
        grants += [(b.get("role"), m) for b in _policy_bindings(props.get("policyData"))
                   for m in _items(b.get("members"))]
    elif resource_type in GCS_ACCESS_CONTROL_TYPES:
        grants.append((props.get("role"), props.get("entity")))
    elif resource_type in GCS_ACL_TYPES:
        for pair in _items(props.get("roleEntities")):
            role, _, entity = str(pair).partition(":")
            grants.append((role, entity))
    found = [f"{role or 'a role'} to {str(p).strip()}" for role, p in grants if _gcs_public(p)]
    for key in ("predefinedAcl", "defaultAcl"):
        canned = props.get(key)
        if isinstance(canned, str) and canned.replace("-", "").replace("_", "").lower() in GCS_PUBLIC_PREDEFINED_ACLS:
            found.append(f"{key} {canned!r}")
    return found


@resource_rule(id="SEC-022", title="No GCS grant to allUsers or allAuthenticatedUsers", severity=Severity.MANDATORY,
               applies_to=(*GCS_IAM_MEMBER_TYPES, *GCS_IAM_BINDING_TYPES, *GCS_IAM_POLICY_TYPES, *GCS_ACL_TYPES,
                           *GCS_ACCESS_CONTROL_TYPES))
def gcs_no_public_grant(r: PlannedResource, ctx: PolicyContext) -> Iterable[Violation]:
    """A bucket, managed folder or object granted to allUsers/allAuthenticatedUsers is public, whatever else holds."""
    for finding in gcs_public_findings(r.type, r.props):
        yield Violation(f"{r.name}: grants {finding}; anyone on the internet could reach the team's data",
                        "grant to named principals only (serviceAccount:, user:, group:), as the boxes' own "
                        "service accounts are")

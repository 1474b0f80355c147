"""The AWS team network: where every box of one team in one region lives.

Boxes get no inbound path at all (Session Manager needs none): by default they
sit in private subnets and leave through one NAT gateway; a team that allows
public IPs gets public subnets and no NAT (cheaper, still no ingress rule).
The dataset bucket is private, KMS-encrypted and versioned, as separate
pulumi-aws 7 resources so the policy can see each property.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

VPC_CIDR = "10.42.0.0/16"
PUBLIC_CIDRS = ("10.42.0.0/20", "10.42.16.0/20")
PRIVATE_CIDRS = ("10.42.128.0/20", "10.42.144.0/20")
BUDGET_ALERT_PERCENTS = (80, 100)


@dataclass(frozen=True)
class TeamNetworkArgs:
    """What the team network reads, and nothing else; `stacks.args.aws_network_args` makes it from the team.

    The component never sees the team file: what it declares follows from these values alone.
    """

    team: str  # the team's name, in the key's alias, the bucket's prefix and the budget's name
    region: str
    tags: Mapping[str, str]
    allow_public_ip: bool  # public subnets and no NAT gateway
    monthly_budget_usd: float
    alert_emails: tuple[str, ...]
    create_budget: bool  # budgets are account-wide: only the cloud's first team network makes one


@dataclass(frozen=True)
class AwsNetworkRef:
    """What a box needs from its team network: plain values or Outputs, whichever the caller has."""

    subnet_id: pulumi.Input[str]
    availability_zone: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]

    @classmethod
    def from_outputs(cls, get: Callable[[str], Any]) -> AwsNetworkRef:
        """Boxes go into the first subnet (and its zone); `get` reads one team-network output."""
        subnets, zones = get("subnet_ids"), get("availability_zones")
        return cls(subnet_id=pulumi.Output.from_input(subnets).apply(lambda s: s[0]),
                   availability_zone=pulumi.Output.from_input(zones).apply(lambda z: z[0]),
                   security_group_id=get("security_group_id"), kms_key_arn=get("kms_key_arn"),
                   bucket_name=get("bucket_name"), bucket_arn=get("bucket_arn"))


def _two_zones(region: str, names: list[str]) -> list[str]:
    if len(names) < 2:
        raise ValueError(f"{region} offers {len(names)} available zones; the team network needs 2")
    return list(names[:2])


SPOT_SERVICE_ROLE_PATH = "role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
KEY_USE_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                   "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey")


def spot_service_role_arn(account_id: str) -> str:
    """The service-linked role EC2 uses to start and stop spot boxes (AWSServiceRoleForEC2Spot)."""
    return f"arn:aws:iam::{account_id}:{SPOT_SERVICE_ROLE_PATH}"


def key_policy(account_id: str, region: str) -> str:
    """The account administers the key through IAM; beside that, only the spot service role may use it, via EC2.

    Every other principal (the person running `up`, the reaper, each box's role) gets the key only from its
    own IAM policy: a box role's reaches it through S3, for its bucket only (stacks.aws.box.role_policy).
    No statement is account-wide.

    A persistent spot box is restarted by EC2 as AWSServiceRoleForEC2Spot, which must be able to use the
    key and to create grants for the EBS volumes it attaches (kms:CreateGrant only with
    kms:GrantIsForAWSResource, as AWS documents for service-linked roles and customer managed keys:
    https://docs.aws.amazon.com/autoscaling/ec2/userguide/key-policy-requirements-EBS-encryption.html).
    The role may not exist yet when the key is made, and a key policy that names a missing principal is
    refused; so the statements match it by `aws:PrincipalArn`, which holds for nobody else.
    """
    through_ec2_as_spot = {
        "StringEquals": {"kms:CallerAccount": account_id, "kms:ViaService": f"ec2.{region}.amazonaws.com"},
        "ArnEquals": {"aws:PrincipalArn": spot_service_role_arn(account_id)},
    }
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountAdministersThroughIam", "Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "SpotServiceUsesTheKeyThroughEc2", "Effect": "Allow", "Principal": {"AWS": "*"},
             "Action": list(KEY_USE_ACTIONS), "Resource": "*", "Condition": through_ec2_as_spot},
            {"Sid": "SpotServiceGrantsOnlyToAwsResources", "Effect": "Allow", "Principal": {"AWS": "*"},
             "Action": ["kms:CreateGrant"], "Resource": "*",
             "Condition": {**through_ec2_as_spot, "Bool": {"kms:GrantIsForAWSResource": "true"}}},
        ],
    })


class TeamNetwork(pulumi.ComponentResource):
    """VPC in two zones, egress-only security group, KMS key, dataset bucket, budget alerts.

    Every child is an attribute, so a caller (a test, the plan) reaches any of them without searching
    the registrations; a child the args leave out (the NAT path where boxes may have public IPs, the
    budget outside the cloud's first region) is None.
    """

    def __init__(self, name: str, args: TeamNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nomadrig:aws:TeamNetwork", name, None, opts)
        self.provider = aws.Provider(f"{name}-aws", region=args.region, opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        invoke = pulumi.InvokeOptions(provider=self.provider)
        tags = dict(args.tags)

        # Output-returning look-ups: a synchronous invoke pumps the event loop re-entrantly, which turns
        # quadratic when the plan registers a hundred boxes in one run.
        zone_names = aws.get_availability_zones_output(state="available", opts=invoke).names.apply(
            lambda names: _two_zones(args.region, names))
        zones = [zone_names.apply(lambda names, i=i: names[i]) for i in range(2)]
        account_id = aws.get_caller_identity_output(opts=invoke).account_id

        self._network(name, args, zones, tags, child)
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-boxes", vpc_id=self.vpc.id, description="nomadrig boxes: no inbound rule, reached through SSM",
            ingress=[],
            egress=[aws.ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0,
                                                    cidr_blocks=["0.0.0.0/0"], description="updates, SSM, S3")],
            tags=tags, opts=child)
        self.key = aws.kms.Key(f"{name}-key", description=f"nomadrig {args.team} disks and datasets",
                               enable_key_rotation=True, deletion_window_in_days=30,
                               policy=account_id.apply(lambda account: key_policy(account, args.region)),
                               tags=tags, opts=child)
        self.key_alias = aws.kms.Alias(f"{name}-key", name=f"alias/nomadrig-{args.team}-{args.region}",
                                       target_key_id=self.key.key_id, opts=child)
        self._bucket(name, args, tags, child)
        self.budget = self._budget(name, args, tags, child) if args.create_budget else None

        self._outputs: dict[str, Any] = {
            "vpc_id": self.vpc.id,
            "subnet_ids": [s.id for s in self.box_subnets],
            "availability_zones": [s.availability_zone for s in self.box_subnets],
            "security_group_id": self.security_group.id,
            "kms_key_arn": self.key.arn,
            "bucket_name": self.bucket.bucket,
            "bucket_arn": self.bucket.arn,
        }
        self.register_outputs(self._outputs)

    def _network(self, name: str, args: TeamNetworkArgs, zones: list[pulumi.Output[str]], tags: dict[str, str],
                 opts: pulumi.ResourceOptions) -> None:
        """The VPC, its public subnets and the boxes' subnets: the public ones, or private ones behind a NAT."""
        self.vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=VPC_CIDR, enable_dns_hostnames=True,
                               enable_dns_support=True, tags={**tags, "Name": f"nomadrig-{name}"}, opts=opts)
        self.internet_gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags=tags, opts=opts)
        self.public_route_table = aws.ec2.RouteTable(
            f"{name}-public", vpc_id=self.vpc.id, tags=tags, opts=opts,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=self.internet_gateway.id)])
        self.route_table_associations: list[aws.ec2.RouteTableAssociation] = []
        self.public_subnets = self._subnets(name, "public", zones, PUBLIC_CIDRS, self.public_route_table, tags,
                                            opts)
        self.nat_address: aws.ec2.Eip | None = None
        self.nat_gateway: aws.ec2.NatGateway | None = None
        if args.allow_public_ip:
            self.box_subnets, self.box_route_table = self.public_subnets, self.public_route_table
        else:
            self.nat_address = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags=tags, opts=opts)
            self.nat_gateway = aws.ec2.NatGateway(
                f"{name}-nat", allocation_id=self.nat_address.id, subnet_id=self.public_subnets[0].id, tags=tags,
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[self.internet_gateway])))
            self.box_route_table = aws.ec2.RouteTable(
                f"{name}-private", vpc_id=self.vpc.id, tags=tags, opts=opts,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=self.nat_gateway.id)])
            self.box_subnets = self._subnets(name, "private", zones, PRIVATE_CIDRS, self.box_route_table, tags,
                                             opts)
        # Dataset traffic to S3 bypasses the NAT gateway (which bills per GB); gateway endpoints are free.
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway", route_table_ids=[self.box_route_table.id], tags=tags, opts=opts)

    def _subnets(self, name: str, kind: str, zones: list[pulumi.Output[str]], cidrs: tuple[str, ...],
                 route_table: aws.ec2.RouteTable, tags: Mapping[str, str],
                 opts: pulumi.ResourceOptions) -> list[aws.ec2.Subnet]:
        """One subnet per zone, routed through `route_table` (the associations join `route_table_associations`)."""
        subnets = []
        for i, (zone, cidr) in enumerate(zip(zones, cidrs, strict=False)):
            # Never map public IPs on launch: a box that may have one asks for it explicitly.
            subnet = aws.ec2.Subnet(f"{name}-{kind}-{i}", vpc_id=self.vpc.id, cidr_block=cidr, availability_zone=zone,
                                    map_public_ip_on_launch=False, tags={**tags, "Name": f"nomadrig-{name}-{kind}"},
                                    opts=opts)
            self.route_table_associations.append(aws.ec2.RouteTableAssociation(
                f"{name}-{kind}-{i}", subnet_id=subnet.id, route_table_id=route_table.id, opts=opts))
            subnets.append(subnet)
        return subnets

    def _bucket(self, name: str, args: TeamNetworkArgs, tags: dict[str, str], opts: pulumi.ResourceOptions) -> None:
        """The dataset bucket, with its public access block, encryption and versioning as resources of their own."""
        self.bucket = aws.s3.Bucket(f"{name}-datasets", bucket_prefix=f"nomadrig-{args.team}-"[:37],
                                    force_destroy=False, tags=tags, opts=opts)
        self.bucket_public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-datasets", bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=opts)
        self.bucket_encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-datasets", bucket=self.bucket.id, opts=opts,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=self.key.arn),
                bucket_key_enabled=True)])
        self.bucket_versioning = aws.s3.BucketVersioning(
            f"{name}-datasets", bucket=self.bucket.id, opts=opts,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"))

    @staticmethod
    def _budget(name: str, args: TeamNetworkArgs, tags: dict[str, str],
                opts: pulumi.ResourceOptions) -> aws.budgets.Budget:
        return aws.budgets.Budget(
            f"{name}-budget", name=f"nomadrig-{args.team}", budget_type="COST", time_unit="MONTHLY",
            limit_amount=f"{args.monthly_budget_usd:.2f}", limit_unit="USD", tags=tags, opts=opts,
            notifications=[aws.budgets.BudgetNotificationArgs(
                comparison_operator="GREATER_THAN", notification_type="ACTUAL", threshold=pct,
                threshold_type="PERCENTAGE", subscriber_email_addresses=list(args.alert_emails))
                for pct in BUDGET_ALERT_PERCENTS])

    def outputs(self) -> dict[str, Any]:
        """The values a box stack reads (keys: stacks.program.AWS_NETWORK_OUTPUTS)."""
        return dict(self._outputs)

    def ref(self) -> AwsNetworkRef:
        return AwsNetworkRef.from_outputs(self._outputs.__getitem__)

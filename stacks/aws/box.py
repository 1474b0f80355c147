"""One nomad's AWS box: a GPU instance from the Deep Learning AMI and a data volume that outlives it.

The instance is disposable (the reaper destroys it; spot may stop it); the data
volume is not: Pulumi retains it when the box stack is destroyed, so the next
box (or a person) can pick the data up again.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
from nomadrig.stacks.aws.network import AwsNetworkRef
from nomadrig.stacks.box_args import CommonBoxArgs

from nomadrig.userdata import gzip_user_data

# Deep Learning Base OSS NVIDIA Driver GPU AMI (Ubuntu 22.04): drivers preinstalled, so the box boots ready.
DLAMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
# What SSM Agent needs on the instance for Session Manager, and nothing else: AWS's "minimal Session Manager
# permissions" policy, from "Create a custom IAM role for Session Manager":
# https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-create-iam-instance-profile.html
# The managed AmazonSSMManagedInstanceCore it replaces also grants ssm:GetParameter(s) on every parameter of the
# account, Run Command and State Manager. nomadrig turns on neither session logs (which would add
# s3:GetEncryptionConfiguration) nor KMS-encrypted sessions (kms:Decrypt on the session key), so neither is here.
# None of these actions has a resource type in IAM (the Service Authorization Reference lists only the
# ssm:SourceInstanceARN / ec2:SourceInstanceARN condition keys), so "*" is the only resource they accept.
SESSION_MANAGER_ACTIONS = ("ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel",
                           "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel",
                           "ssmmessages:OpenDataChannel")
DATA_DEVICE_NAME = "/dev/sdf"


def data_device_path(volume_id: str) -> str:
    """The stable NVMe path of an EBS volume on Nitro instances (device names like /dev/sdf are not)."""
    return f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"


def packed_user_data(text: str) -> str:
    """gzip + base64: cloud-init unpacks it, and it keeps the agent bundle under EC2's 16 KB limit."""
    return base64.b64encode(gzip_user_data(text)).decode()


def own_prefix_list_condition(prefix: str) -> dict[str, dict[str, list[str]]]:
    """The `s3:prefix` values a box may list with: its nomad's folder and what lies below it, nothing beside it.

    The trailing slash matters: a bare "ada" (or "ada*") would let ada list "adam/..." too.
    """
    return {"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*"]}}


def session_manager_policy() -> str:
    """The inline policy that lets SSM Agent open Session Manager channels (the box's only way in)."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "SessionManagerOnly", "Effect": "Allow", "Action": list(SESSION_MANAGER_ACTIONS),
                       "Resource": ["*"]}],
    })


def role_policy(bucket_arn: str, kms_key_arn: str, prefix: str, region: str) -> str:
    """Read/write on the nomad's own prefix of the dataset bucket, and the team key only as S3 uses it there.

    The key statement names this box's role alone (an identity policy; the key policy delegates to IAM) and
    holds only through S3 in the box's region for objects of this bucket: the box cannot call KMS directly,
    nor through EC2 (its volumes are attached by EC2 under grants the launching principal made).
    """
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListOwnPrefix", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket_arn],
             "Condition": own_prefix_list_condition(prefix)},
            {"Sid": "ReadWriteOwnPrefix", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
             "Resource": [f"{bucket_arn}/{prefix}/*"]},
            # With S3 Bucket Keys the encryption context is the bucket's ARN; without, the object's.
            {"Sid": "TeamKeyOnlyThroughS3ForThisBucket", "Effect": "Allow",
             "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [kms_key_arn],
             "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                           "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket_arn,
                                                                               f"{bucket_arn}/{prefix}/*"]}}},
        ],
    })


@dataclass(frozen=True)
class BoxArgs(CommonBoxArgs):
    """What an AWS box reads, and nothing else; `stacks.args.aws_box_args` makes it from the nomad's spec."""

    spot_max_price: float | None  # the highest hourly bid, when spot
    tags: Mapping[str, str]
    ami_parameter: str  # the SSM parameter that holds the AMI id
    network: AwsNetworkRef


class Box(pulumi.ComponentResource):
    """GPU instance (IMDSv2, encrypted gp3 root, no inbound path but SSM) + retained encrypted data volume.

    Every child is an attribute, the data volume too, whether declared or read (`_data_volume`).
    """

    def __init__(self, name: str, args: BoxArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nomadrig:aws:Box", name, None, opts)
        self.provider = aws.Provider(f"{name}-aws", region=args.region, opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        tags = dict(args.tags)

        ami = aws.ssm.get_parameter_output(name=args.ami_parameter,
                                           opts=pulumi.InvokeOptions(provider=self.provider)).value
        self._identity(name, args, tags, child)
        self.data_volume = self._data_volume(name, args, tags, child)

        user_data = self.data_volume.id.apply(lambda vid: packed_user_data(args.user_data(data_device_path(vid))))
        market = None
        if args.spot:
            market = aws.ec2.InstanceInstanceMarketOptionsArgs(
                market_type="spot",
                spot_options=aws.ec2.InstanceInstanceMarketOptionsSpotOptionsArgs(
                    spot_instance_type="persistent", instance_interruption_behavior="stop",
                    max_price=f"{args.spot_max_price:.4f}" if args.spot_max_price is not None else None))
        network = args.network
        self.instance = aws.ec2.Instance(
            f"{name}-box", ami=ami, instance_type=args.machine_type, subnet_id=network.subnet_id,
            vpc_security_group_ids=[network.security_group_id], iam_instance_profile=self.instance_profile.name,
            associate_public_ip_address=args.allow_public_ip,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_tokens="required", http_endpoint="enabled", http_put_response_hop_limit=2),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=args.root_disk_gb, encrypted=True, kms_key_id=network.kms_key_arn,
                delete_on_termination=True, tags=tags),
            instance_initiated_shutdown_behavior="stop", instance_market_options=market,
            user_data_base64=user_data, tags={**tags, "Name": args.stack_name}, opts=child)
        self.attachment = aws.ec2.VolumeAttachment(
            f"{name}-data", device_name=DATA_DEVICE_NAME, volume_id=self.data_volume.id,
            instance_id=self.instance.id, stop_instance_before_detaching=True, opts=child)

        self._outputs: dict[str, Any] = {
            "instance_id": self.instance.id,
            "data_volume_id": self.data_volume.id,
            "availability_zone": self.data_volume.availability_zone,
            "private_ip": self.instance.private_ip,
            "role_name": self.role.name,
        }
        self.register_outputs(self._outputs)

    def _identity(self, name: str, args: BoxArgs, tags: dict[str, str], opts: pulumi.ResourceOptions) -> None:
        """The box's own role: Session Manager's channels and its nomad's prefix of the bucket, nothing else."""
        self.role = aws.iam.Role(
            f"{name}-box", description=f"nomadrig box of {args.nomad} ({args.team})", tags=tags, opts=opts,
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
        self.session_manager_policy = aws.iam.RolePolicy(f"{name}-session-manager", role=self.role.id,
                                                         policy=session_manager_policy(), opts=opts)
        self.datasets_policy = aws.iam.RolePolicy(
            f"{name}-datasets", role=self.role.id, opts=opts,
            policy=pulumi.Output.all(args.network.bucket_arn, args.network.kms_key_arn).apply(
                lambda keys: role_policy(keys[0], keys[1], args.nomad, args.region)))
        self.instance_profile = aws.iam.InstanceProfile(f"{name}-box", role=self.role.name, tags=tags, opts=opts)

    @staticmethod
    def _data_volume(name: str, args: BoxArgs, tags: dict[str, str], opts: pulumi.ResourceOptions) -> aws.ebs.Volume:
        """The box's data volume: the one an earlier box kept (read, not owned), else a new one.

        A new volume (empty, or from a snapshot) is retained on delete: destroying the box stack leaves
        the data (and the reaper snapshots it first). A kept volume is read by id: Pulumi attaches it
        and, the box stack never having created it, never deletes it.
        """
        data = args.data
        if data.kind == data.KEPT:
            return aws.ebs.Volume.get(f"{name}-data", data.ident, opts=opts)
        return aws.ebs.Volume(
            f"{name}-data", availability_zone=args.network.availability_zone, size=args.data_disk_gb, type="gp3",
            encrypted=True, kms_key_id=args.network.kms_key_arn, tags={**tags, "Name": f"{args.stack_name}-data"},
            snapshot_id=data.ident if data.kind == data.SNAPSHOT else None,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(retain_on_delete=True)))

    def outputs(self) -> dict[str, Any]:
        return dict(self._outputs)

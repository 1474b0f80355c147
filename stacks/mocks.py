"""Pulumi mocks that stand in for the engine and the clouds, so the real programs run offline.

`PlanMocks` answers look-ups (zones, the Deep Learning AMI parameter, the
caller's account, the GCP project number) with plausible values, echoes inputs
as state plus the outputs the programs read (ids, ARNs, self links, e-mails),
and records every resource with its inputs exactly as Pulumi serialised them
(camelCase wire names): that record is what the policy checks.

Like the engine, the mocks run stack transforms registered with
`pulumi.runtime.register_resource_transform` before "creating" a resource, so
a test can alter what a program passes without touching production code.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from nomadrig.stacks.record import RecordedResource
from pulumi.runtime import mocks as pulumi_mocks

MOCK_ACCOUNT_ID = "123456789012"


def _digits(seed: str, n: int) -> str:
    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16))[:n]


# EC2 ids are a prefix, '-0' and 16 hex digits; IAM names appear in their ARN after the resource kind.
_EC2_ID_PREFIXES = {"aws:ec2/subnet:Subnet": "subnet", "aws:ec2/vpc:Vpc": "vpc",
                    "aws:ec2/securityGroup:SecurityGroup": "sg"}
_IAM_ARN_KINDS = {"aws:iam/role:Role": "role", "aws:iam/instanceProfile:InstanceProfile": "instance-profile"}


def _physical_name(name: str, inputs: Mapping[str, Any]) -> str:
    """The name a cloud gives the resource: the one declared, else Pulumi's auto-name (logical name + suffix)."""
    return inputs.get("name") or f"{name}-{_hex(name, 7)}"


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


@dataclass
class MockScope:
    """The cloud facts the mocks answer with (one account / project for the whole run)."""

    account_id: str = MOCK_ACCOUNT_ID
    project: str = "mock-project"
    default_region: str = "us-east-1"
    # What `pulumi.StackReference(name)` reads: stack name -> its outputs (a box's team network).
    stack_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


class PlanMocks(pulumi_mocks.Mocks):
    """Answers look-ups, echoes inputs as state, records every resource."""

    def __init__(self, scope: MockScope | None = None) -> None:
        self.scope = scope or MockScope()
        self.resources: list[RecordedResource] = []
        self.transforms: list[Callable[..., Any]] = []
        self._parents: dict[str, str] = {}
        self._options: dict[str, tuple[bool, bool]] = {}  # URN -> (retain_on_delete, protect)
        self._provider_regions: dict[str, str] = {}
        self._current = threading.local()  # the URN being registered on this thread (set by the monitor)

    # -- engine-side behaviour ------------------------------------------------

    def register_transform(self, transform: Any) -> None:
        self.transforms.append(transform)

    def _transform(self, args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        props = dict(args.inputs)
        for transform in self.transforms:
            result = transform(pulumi.ResourceTransformArgs(custom=args.custom, type_=args.typ, name=args.name,
                                                            props=props, opts=pulumi.ResourceOptions()))
            if asyncio.iscoroutine(result):
                raise TypeError("PlanMocks runs transforms synchronously; make the transform a plain function")
            if result is not None:
                props = dict(result.props)
        return props

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = self._transform(args)
        urn = self._urn_of(args)
        retain, protect = self._options.get(urn, (False, False))
        read = bool(args.resource_id)  # a `Resource.get`: the monitor's ReadResource, with the id asked for
        self.resources.append(RecordedResource(args.typ, args.name, inputs, urn, self._parents.get(urn, ""),
                                               args.custom, retain, protect, read))
        if args.typ.startswith("pulumi:providers:"):
            if inputs.get("region"):
                self._provider_regions[urn] = str(inputs["region"])
            return f"{args.name}_id", inputs
        if args.typ == "pulumi:pulumi:StackReference":
            name = str(inputs.get("name", args.name))
            if name not in self.scope.stack_outputs:
                raise KeyError(f"no outputs mocked for stack {name}; put them in MockScope.stack_outputs")
            return name, {**inputs, "outputs": self.scope.stack_outputs[name], "secretOutputNames": []}
        if read:  # a stack reference is a read too, answered above
            return args.resource_id, {**inputs, **_read_outputs(args.typ, args.resource_id)}
        resource_id, extra = self._outputs(args.typ, args.name, inputs)
        return resource_id, {**inputs, **extra}

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
        token, a = args.token, args.args
        region = a.get("region") or self._region_of(args.provider)
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{region}{z}" for z in "abc"]
            return {"id": region, "names": names, "zoneIds": [f"{region[:3]}-az{i}" for i in (1, 2, 3)],
                    "groupNames": [region] * 3, "state": "available"}
        if token == "aws:ssm/getParameter:getParameter":
            name = a.get("name", "")
            value = f"ami-0{_hex(name + region, 16)}" if "/ami/" in name else f"mock-{_hex(name, 8)}"
            return {"id": name, "name": name, "value": value, "insecureValue": value, "type": "String",
                    "version": 1, "arn": f"arn:aws:ssm:{region}::parameter{name}", "withDecryption": True}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            account = self.scope.account_id
            return {"id": account, "accountId": account, "arn": f"arn:aws:iam::{account}:user/nomadrig-plan",
                    "userId": "AIDAMOCKNOMADRIGPLAN"}
        if token == "aws:index/getRegion:getRegion":
            return {"id": region, "name": region, "region": region, "endpoint": f"ec2.{region}.amazonaws.com",
                    "description": region}
        if token == "gcp:compute/getZones:getZones":
            return {"id": f"projects/{a.get('project')}/regions/{region}", "names": [f"{region}-{z}" for z in "abc"],
                    "project": a.get("project"), "region": region, "status": a.get("status")}
        if token == "gcp:organizations/getProject:getProject":
            project = a.get("projectId") or self.scope.project
            return {"id": f"projects/{project}", "projectId": project, "name": project,
                    "number": _digits(project, 12), "labels": {}}
        if token == "gcp:compute/getImage:getImage":
            family = a.get("family", "image")
            project = a.get("project", "deeplearning-platform-release")
            name = f"{family}-v20261101"
            return {"id": name, "name": name, "family": family, "project": project,
                    "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/global/images/{name}"}
        raise NotImplementedError(f"PlanMocks has no answer for the look-up {token}; add one to stacks/mocks.py")

    # -- helpers ------------------------------------------------------------

    def registering(self, urn: str, parent: str, retain_on_delete: bool = False, protect: bool = False) -> None:
        """Called by RecordingMonitor just before it hands a registration to `new_resource`."""
        self._parents[urn] = parent
        self._options[urn] = (retain_on_delete, protect)
        self._current.urn = urn

    def _urn_of(self, args: pulumi_mocks.MockResourceArgs) -> str:
        return getattr(self._current, "urn", "") or ""

    def _region_of(self, provider_ref: str) -> str:
        """Invokes name their provider as '<urn>::<id>'; the provider's region is the answer's region."""
        for urn, region in self._provider_regions.items():
            if provider_ref.startswith(urn + "::"):
                return region
        return self.scope.default_region

    def _outputs(self, typ: str, name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The id and the computed outputs a real create would return (only those the programs read)."""
        account, project = self.scope.account_id, inputs.get("project") or self.scope.project
        region = inputs.get("region") or "mock-region"
        rid = f"{name}_id"
        out: dict[str, Any] = {}
        if typ == "aws:ebs/volume:Volume":
            rid = f"vol-0{_hex(name, 16)}"
            out["arn"] = f"arn:aws:ec2:{region}:{account}:volume/{rid}"
        elif typ == "aws:ec2/instance:Instance":
            rid = f"i-0{_hex(name, 16)}"
            out.update(privateIp=f"10.42.128.{int(_hex(name, 2), 16) % 250 + 4}", arn=f"arn:aws:ec2::{account}:{rid}")
        elif typ in _EC2_ID_PREFIXES:
            rid = f"{_EC2_ID_PREFIXES[typ]}-0{_hex(name, 16)}"
        elif typ == "aws:kms/key:Key":
            key_id = str(uuid.UUID(_hex(name, 32)))
            rid = key_id
            out.update(keyId=key_id, arn=f"arn:aws:kms:mock-region:{account}:key/{key_id}")
        elif typ == "aws:s3/bucket:Bucket":
            # A bucket's id is its name; an auto-named one gets the `<name>_id` convention mocks use for ids.
            bucket = inputs.get("bucket") or rid
            rid = bucket
            out.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
        elif typ in _IAM_ARN_KINDS:
            rid = _physical_name(name, inputs)
            out.update(name=rid, arn=f"arn:aws:iam::{account}:{_IAM_ARN_KINDS[typ]}/{rid}")
        elif typ.startswith("gcp:"):
            gname = _physical_name(name, inputs)
            out["name"] = gname
            kind = typ.split(":")[-1]
            if typ.startswith("gcp:compute/"):
                where = (f"zones/{inputs['zone']}" if inputs.get("zone") else
                         f"regions/{inputs['region']}" if inputs.get("region") else "global")
                plural = {"Network": "networks", "Subnetwork": "subnetworks", "Disk": "disks",
                          "Instance": "instances", "Router": "routers", "Firewall": "firewalls"}.get(kind, kind.lower())
                rid = f"projects/{project}/{where}/{plural}/{gname}"
                out["selfLink"] = f"https://www.googleapis.com/compute/v1/{rid}"
            elif typ == "gcp:kms/keyRing:KeyRing":
                rid = f"projects/{project}/locations/{inputs.get('location')}/keyRings/{gname}"
            elif typ == "gcp:kms/cryptoKey:CryptoKey":
                rid = f"{inputs.get('keyRing')}/cryptoKeys/{gname}"
            elif typ == "gcp:serviceaccount/account:Account":
                email = f"{inputs.get('accountId')}@{project}.iam.gserviceaccount.com"
                out.update(email=email, member=f"serviceAccount:{email}")
                rid = f"projects/{project}/serviceAccounts/{email}"
            elif typ == "gcp:storage/bucket:Bucket":
                rid = gname
                out["url"] = f"gs://{gname}"
            elif typ == "gcp:monitoring/notificationChannel:NotificationChannel":
                rid = f"projects/{project}/notificationChannels/{_digits(name, 18)}"
        return rid, out


def _read_outputs(typ: str, resource_id: str) -> dict[str, Any]:
    """What reading an existing resource by id returns, as far as its id tells (the programs read no more).

    GCP compute ids are paths (``projects/<p>/zones/<z>/disks/<name>``): name, zone and self link follow.
    """
    out: dict[str, Any] = {"id": resource_id}
    if typ.startswith("gcp:compute/"):
        parts = resource_id.split("/")
        out.update(name=parts[-1], selfLink=f"https://www.googleapis.com/compute/v1/{resource_id}")
        if "zones" in parts[:-1]:
            out["zone"] = parts[parts.index("zones") + 1]
    return out


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, plus each resource's parent (its stack) and its retain/protect options."""

    mocks: PlanMocks

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        self.mocks.registering(self.make_urn(request.parent, request.type, request.name), request.parent,
                               bool(request.retainOnDelete), bool(request.protect))
        return super().RegisterResource(request)

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        """A `Resource.get`: recorded like a registration, so its URN and parent are its own."""
        self.mocks.registering(self.make_urn(request.parent, request.type, request.name), request.parent)
        return super().ReadResource(request)


def alter_inputs(type_token: str, alter: Callable[[dict[str, Any]], None]) -> Callable[..., Any]:
    """A resource transform that edits the inputs of every resource of one type (what-if checks, tests).

    Register it with `PlanMocks.register_transform` (the mocks run it as the
    engine runs a stack transform); `alter` changes the camelCase inputs in place.
    """

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        if args.type_ != type_token:
            return None
        props = copy.deepcopy(dict(args.props))
        alter(props)
        return pulumi.ResourceTransformResult(props=props, opts=args.opts)

    return transform

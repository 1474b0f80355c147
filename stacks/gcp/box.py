"""One nomad's GCP box: a GPU VM from a Deep Learning VM image and a CMEK data disk that outlives it.

N1 machines get their GPUs as guest accelerators; the accelerator-optimised
families (a2, a3, g2, ...) come with theirs attached and refuse the field.

Each box runs as its own service account, which may write logs and metrics
and use the objects under its nomad's prefix of the team's dataset bucket,
nothing else: what the box's AWS role allows, on GCP.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp
from nomadrig.stacks.box_args import CommonBoxArgs
from nomadrig.stacks.gcp.network import GcpNetworkRef

# Image families of the Deep Learning VM (project deeplearning-platform-release): CUDA and the NVIDIA
# driver preinstalled. A family (not a pinned image) keeps a new image from replacing running boxes.
DLVM_PROJECT = "deeplearning-platform-release"
DEFAULT_IMAGE_FAMILY = f"projects/{DLVM_PROJECT}/global/images/family/common-cu128-ubuntu-2204-nvidia-570"
# GCP resource names (images, families) and project ids (optionally domain-scoped, "example.com:proj").
_NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_PROJECT = r"(?:[a-z0-9][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]"
BARE_FAMILY_RE = re.compile(_NAME)
IMAGE_PATH_RE = re.compile(rf"projects/{_PROJECT}/global/images/(?:family/)?{_NAME}")
# Service account ids: project-wide, 6-30 characters, a letter first, no dash last.
ACCOUNT_ID_RE = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
ACCOUNT_ID_HASH_CHARS = 10
ACCOUNT_ID_STEM_CHARS = 30 - len("nr-") - 1 - ACCOUNT_ID_HASH_CHARS
BOX_PROJECT_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
BOX_BUCKET_ROLE = "roles/storage.objectUser"
ACCELERATOR_OPTIMISED = ("a2-", "a3-", "a4-", "g2-", "g4-")
DATA_DEVICE_NAME = "data"
KEPT_DISK_RE = re.compile(rf"projects/{_PROJECT}/zones/([a-z]+-[a-z]+[0-9]+-[a-z])/disks/{_NAME}")


def data_device_path(device_name: str = DATA_DEVICE_NAME) -> str:
    """GCP names attached disks by the device name we give them."""
    return f"/dev/disk/by-id/google-{device_name}"


def needs_guest_accelerators(machine_type: str, accelerator_type: str | None) -> bool:
    return bool(accelerator_type) and not machine_type.startswith(ACCELERATOR_OPTIMISED)


def _first_zone(nomad: str, region: str, names: list[str]) -> str:
    """Zones sort stably (a, b, c): the data disk and every later box of the nomad land in the same one."""
    if not names:
        raise ValueError(f"box {nomad}: no zone of {region} is up")
    return sorted(names)[0]


def box_account_id(team: str, nomad: str) -> str:
    """The id of the box's own service account, unique per (team, nomad) in a shared project.

    ``nr-<nomad, at most 16 characters>-<10 hex digits of sha256("<team>/<nomad>")>``: the name keeps it
    readable in the console, the hash of the whole pair keeps two teams' ada (or two long names that
    share their first 16 characters) apart. 15 to 30 characters, within GCP's 6-30 rule.
    """
    stem = re.sub(r"[^a-z0-9]+", "-", nomad.lower()).strip("-")[:ACCOUNT_ID_STEM_CHARS].rstrip("-") or "box"
    digest = hashlib.sha256(f"{team}/{nomad}".encode()).hexdigest()[:ACCOUNT_ID_HASH_CHARS]
    account_id = f"nr-{stem}-{digest}"
    if not ACCOUNT_ID_RE.fullmatch(account_id):  # unreachable by construction; a guard against edits above
        raise ValueError(f"box {nomad}: service account id {account_id!r} breaks GCP's 6-30 character rule")
    return account_id


def own_prefix_condition(bucket: str, nomad: str) -> str:
    """The IAM condition (CEL) that limits a grant on the bucket to the objects under ``<nomad>/``.

    Bucket-level calls (listing) name the bucket, not an object, so they fail it too: GCS cannot limit a
    listing to a prefix through IAM conditions, and a box lists nobody's names, its own included.
    """
    return f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{nomad}/")'


def kept_disk_zone(ident: str) -> str:
    """The zone in a disk's id (``projects/<p>/zones/<zone>/disks/<name>``, as the engine records kept disks)."""
    match = KEPT_DISK_RE.fullmatch(ident)
    if not match:
        raise ValueError(f"kept data disk {ident!r} is not projects/<project>/zones/<zone>/disks/<name>")
    return match.group(1)


@dataclass(frozen=True)
class BoxImage:
    """The boot image; a family path resolves to its newest image when the box is created."""

    image: str

    @classmethod
    def default(cls) -> BoxImage:
        return cls(DEFAULT_IMAGE_FAMILY)

    @classmethod
    def from_setting(cls, value: str) -> BoxImage:
        """`clouds.gcp.image_family` as a team file writes it; empty means the default.

        A bare family (``common-cu129-ubuntu-2204-nvidia-580``) is one of the Deep Learning VM project's;
        ``projects/<p>/global/images/family/<f>`` (or a pinned ``projects/<p>/global/images/<image>``)
        is taken as written. Anything else is refused rather than passed to the API.
        """
        value = value.strip()
        if not value:
            return cls.default()
        if BARE_FAMILY_RE.fullmatch(value):
            return cls(f"projects/{DLVM_PROJECT}/global/images/family/{value}")
        if IMAGE_PATH_RE.fullmatch(value):
            return cls(value)
        raise ValueError(f"clouds.gcp.image_family: {value!r} is neither an image family nor "
                         "projects/<project>/global/images/family/<family>; write one of those")


@dataclass(frozen=True)
class BoxArgs(CommonBoxArgs):
    """What a GCP box reads, and nothing else; `stacks.args.gcp_box_args` makes it from the nomad's spec."""

    project: str
    accelerator_type: str | None
    gpu_count: int
    labels: Mapping[str, str]
    image: str  # a `BoxImage`'s path: an image family or a pinned image
    network: GcpNetworkRef


class Box(pulumi.ComponentResource):
    """Shielded, OS Login, no external IP, TERMINATE on maintenance, spot stops; retained CMEK data disk.

    Every child is an attribute (the service account and its grants: `_identity`).
    """

    def __init__(self, name: str, args: BoxArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nomadrig:gcp:Box", name, None, opts)
        self.provider = gcp.Provider(f"{name}-gcp", project=args.project, region=args.region,
                                     opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self._identity(name, args, child)
        labels = dict(args.labels)
        network, data = args.network, args.data
        zone: pulumi.Input[str] = gcp.compute.get_zones_output(
            project=args.project, region=args.region, status="UP",
            opts=pulumi.InvokeOptions(provider=self.provider)).names.apply(
            lambda names: _first_zone(args.nomad, args.region, names))

        if data.kind == data.KEPT:
            # A disk an earlier box kept: read by id (attached, never owned, so never deleted), and the box
            # goes to the disk's zone, which the id names.
            zone = kept_disk_zone(data.ident)
            self.data_disk = gcp.compute.Disk.get(f"{name}-data", data.ident, opts=child)
        else:
            # Retained on delete: destroying the box stack leaves the data disk (the reaper snapshots it first).
            self.data_disk = gcp.compute.Disk(
                f"{name}-data", zone=zone, size=args.data_disk_gb, type="pd-balanced", labels=labels,
                disk_encryption_key=gcp.compute.DiskDiskEncryptionKeyArgs(kms_key_self_link=network.kms_key_id),
                snapshot=data.ident if data.kind == data.SNAPSHOT else None,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True)))

        scheduling = gcp.compute.InstanceSchedulingArgs(
            on_host_maintenance="TERMINATE", automatic_restart=not args.spot,
            provisioning_model="SPOT" if args.spot else "STANDARD", preemptible=args.spot,
            instance_termination_action="STOP" if args.spot else None)
        accelerators = ([gcp.compute.InstanceGuestAcceleratorArgs(type=args.accelerator_type, count=args.gpu_count)]
                        if needs_guest_accelerators(args.machine_type, args.accelerator_type) else None)
        self.instance = gcp.compute.Instance(
            f"{name}-box", name=args.stack_name, machine_type=args.machine_type, zone=zone,
            boot_disk=gcp.compute.InstanceBootDiskArgs(
                auto_delete=True, kms_key_self_link=network.kms_key_id,
                initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                    image=args.image, size=args.root_disk_gb, type="pd-balanced", labels=labels)),
            attached_disks=[gcp.compute.InstanceAttachedDiskArgs(
                source=self.data_disk.self_link, device_name=DATA_DEVICE_NAME, mode="READ_WRITE")],
            network_interfaces=[gcp.compute.InstanceNetworkInterfaceArgs(
                subnetwork=network.subnetwork_self_link,
                access_configs=[gcp.compute.InstanceNetworkInterfaceAccessConfigArgs()]
                if args.allow_public_ip else None)],
            guest_accelerators=accelerators, scheduling=scheduling,
            shielded_instance_config=gcp.compute.InstanceShieldedInstanceConfigArgs(
                enable_vtpm=True, enable_integrity_monitoring=True, enable_secure_boot=False),
            metadata={"enable-oslogin": "TRUE", "user-data": args.user_data(data_device_path())},
            service_account=gcp.compute.InstanceServiceAccountArgs(email=self.service_account.email,
                                                                   scopes=["cloud-platform"]),
            tags=[network.network_tag], labels=labels, allow_stopping_for_update=True, opts=child)

        self._outputs: dict[str, Any] = {
            "instance_name": self.instance.name,
            "zone": zone,
            "project": args.project,
            "data_disk_name": self.data_disk.name,
            "instance_self_link": self.instance.self_link,
            "service_account_email": self.service_account.email,
        }
        self.register_outputs(self._outputs)

    def _identity(self, name: str, args: BoxArgs, opts: pulumi.ResourceOptions) -> None:
        """The box's own service account: logs, metrics, and the objects under its nomad's prefix only."""
        self.service_account = gcp.serviceaccount.Account(
            f"{name}-box", account_id=box_account_id(args.team, args.nomad), project=args.project,
            display_name=f"nomadrig box of {args.nomad} ({args.team})",
            description=f"Runs {args.stack_name}: objects under {args.nomad}/ of the team bucket, logs, metrics",
            opts=opts)
        member = self.service_account.email.apply(lambda email: f"serviceAccount:{email}")
        self.project_members = [
            gcp.projects.IAMMember(f"{name}-{role.rsplit('.', 1)[-1]}", project=args.project, role=role,
                                   member=member, opts=opts)
            for role in BOX_PROJECT_ROLES]
        self.bucket_member = gcp.storage.BucketIAMMember(
            f"{name}-own-prefix", bucket=args.network.bucket_name, role=BOX_BUCKET_ROLE, member=member, opts=opts,
            condition=gcp.storage.BucketIAMMemberConditionArgs(
                title=f"only objects under {args.nomad}/",
                description=f"nomadrig: the box of {args.nomad} reaches its own prefix of the dataset bucket",
                expression=pulumi.Output.from_input(args.network.bucket_name).apply(
                    lambda bucket: own_prefix_condition(bucket, args.nomad))))

    def outputs(self) -> dict[str, Any]:
        return dict(self._outputs)

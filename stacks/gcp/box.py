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
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp
from nomadrig.stacks.gcp.network import GcpNetworkRef

from nomadrig.spec import BoxSpec
from nomadrig.userdata import render_user_data
from nomadrig.volumes import DataSource

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


def needs_guest_accelerators(spec: BoxSpec) -> bool:
    return bool(spec.accelerator_type) and not spec.machine_type.startswith(ACCELERATOR_OPTIMISED)


def _first_zone(spec: BoxSpec, names: list[str]) -> str:
    """Zones sort stably (a, b, c): the data disk and every later box of the nomad land in the same one."""
    if not names:
        raise ValueError(f"box {spec.nomad}: no zone of {spec.region} is up")
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


class Box(pulumi.ComponentResource):
    """Shielded, OS Login, no external IP, TERMINATE on maintenance, spot stops; retained CMEK data disk."""

    def __init__(self, name: str, spec: BoxSpec, network: GcpNetworkRef, image: BoxImage | None = None,
                 opts: pulumi.ResourceOptions | None = None, data: DataSource | None = None):
        super().__init__("nomadrig:gcp:Box", name, None, opts)
        if spec.cloud != "gcp":
            raise ValueError(f"box {spec.nomad}: spec is for {spec.cloud}, not gcp")
        if not spec.project:
            raise ValueError(f"box {spec.nomad}: no GCP project; set clouds.gcp.project in the team file")
        image = image or BoxImage.default()
        provider = gcp.Provider(f"{name}-gcp", project=spec.project, region=spec.region,
                                opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        labels = spec.labels()
        self.service_account = self._identity(name, spec, network, child)
        zone: pulumi.Input[str] = gcp.compute.get_zones_output(project=spec.project, region=spec.region, status="UP",
                                            opts=pulumi.InvokeOptions(provider=provider)).names.apply(
            lambda names: _first_zone(spec, names))

        if data is not None and data.kind == data.KEPT:
            # A disk an earlier box kept: read by id (attached, never owned, so never deleted), and the box
            # goes to the disk's zone, which the id names.
            zone = kept_disk_zone(data.ident)
            self.data_disk = gcp.compute.Disk.get(f"{name}-data", data.ident, opts=child)
        else:
            # Retained on delete: destroying the box stack leaves the data disk (the reaper snapshots it first).
            self.data_disk = gcp.compute.Disk(
                f"{name}-data", zone=zone, size=spec.data_disk_gb, type="pd-balanced", labels=labels,
                disk_encryption_key=gcp.compute.DiskDiskEncryptionKeyArgs(kms_key_self_link=network.kms_key_id),
                snapshot=data.ident if data is not None and data.kind == data.SNAPSHOT else None,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True)))

        scheduling = gcp.compute.InstanceSchedulingArgs(
            on_host_maintenance="TERMINATE", automatic_restart=not spec.spot,
            provisioning_model="SPOT" if spec.spot else "STANDARD", preemptible=spec.spot,
            instance_termination_action="STOP" if spec.spot else None)
        accelerators = ([gcp.compute.InstanceGuestAcceleratorArgs(type=spec.accelerator_type, count=spec.gpu_count)]
                        if needs_guest_accelerators(spec) else None)
        self.instance = gcp.compute.Instance(
            f"{name}-box", name=spec.stack_name, machine_type=spec.machine_type, zone=zone,
            boot_disk=gcp.compute.InstanceBootDiskArgs(
                auto_delete=True, kms_key_self_link=network.kms_key_id,
                initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                    image=image.image, size=spec.root_disk_gb, type="pd-balanced", labels=labels)),
            attached_disks=[gcp.compute.InstanceAttachedDiskArgs(
                source=self.data_disk.self_link, device_name=DATA_DEVICE_NAME, mode="READ_WRITE")],
            network_interfaces=[gcp.compute.InstanceNetworkInterfaceArgs(
                subnetwork=network.subnetwork_self_link,
                access_configs=[gcp.compute.InstanceNetworkInterfaceAccessConfigArgs()]
                if spec.allow_public_ip else None)],
            guest_accelerators=accelerators, scheduling=scheduling,
            shielded_instance_config=gcp.compute.InstanceShieldedInstanceConfigArgs(
                enable_vtpm=True, enable_integrity_monitoring=True, enable_secure_boot=False),
            metadata={"enable-oslogin": "TRUE", "user-data": render_user_data(spec, data_device_path())},
            service_account=gcp.compute.InstanceServiceAccountArgs(email=self.service_account.email,
                                                                   scopes=["cloud-platform"]),
            tags=[network.network_tag], labels=labels, allow_stopping_for_update=True, opts=child)

        self._outputs: dict[str, Any] = {
            "instance_name": self.instance.name,
            "zone": zone,
            "project": spec.project,
            "data_disk_name": self.data_disk.name,
            "instance_self_link": self.instance.self_link,
            "service_account_email": self.service_account.email,
        }
        self.register_outputs(self._outputs)

    @staticmethod
    def _identity(name: str, spec: BoxSpec, network: GcpNetworkRef,
                  opts: pulumi.ResourceOptions) -> gcp.serviceaccount.Account:
        """The box's own service account: logs, metrics, and the objects under its nomad's prefix only."""
        account = gcp.serviceaccount.Account(
            f"{name}-box", account_id=box_account_id(spec.team, spec.nomad), project=spec.project,
            display_name=f"nomadrig box of {spec.nomad} ({spec.team})",
            description=f"Runs {spec.stack_name}: objects under {spec.nomad}/ of the team bucket, logs, metrics",
            opts=opts)
        member = account.email.apply(lambda email: f"serviceAccount:{email}")
        for role in BOX_PROJECT_ROLES:
            gcp.projects.IAMMember(f"{name}-{role.rsplit('.', 1)[-1]}", project=spec.project, role=role,
                                   member=member, opts=opts)
        gcp.storage.BucketIAMMember(
            f"{name}-own-prefix", bucket=network.bucket_name, role=BOX_BUCKET_ROLE, member=member, opts=opts,
            condition=gcp.storage.BucketIAMMemberConditionArgs(
                title=f"only objects under {spec.nomad}/",
                description=f"nomadrig: the box of {spec.nomad} reaches its own prefix of the dataset bucket",
                expression=pulumi.Output.from_input(network.bucket_name).apply(
                    lambda bucket: own_prefix_condition(bucket, spec.nomad))))
        return account

    def outputs(self) -> dict[str, Any]:
        return dict(self._outputs)

"""One nomad's GCP box: a GPU VM from a Deep Learning VM image and a CMEK data disk that outlives it.

N1 machines get their GPUs as guest accelerators; the accelerator-optimised
families (a2, a3, g2, ...) come with theirs attached and refuse the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from nomadrig.spec import BoxSpec
from nomadrig.userdata import render_user_data

from .network import GcpNetworkRef

# Image families of the Deep Learning VM (project deeplearning-platform-release): CUDA and the NVIDIA
# driver preinstalled. A family (not a pinned image) keeps a new image from replacing running boxes.
DEFAULT_IMAGE_FAMILY = "projects/deeplearning-platform-release/global/images/family/common-cu128-ubuntu-2204-nvidia-570"
ACCELERATOR_OPTIMISED = ("a2-", "a3-", "a4-", "g2-", "g4-")
DATA_DEVICE_NAME = "data"


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


@dataclass(frozen=True)
class BoxImage:
    """The boot image; a family path resolves to its newest image when the box is created."""

    image: str

    @classmethod
    def default(cls) -> BoxImage:
        return cls(DEFAULT_IMAGE_FAMILY)


class Box(pulumi.ComponentResource):
    """Shielded, OS Login, no external IP, TERMINATE on maintenance, spot stops; retained CMEK data disk."""

    def __init__(self, name: str, spec: BoxSpec, network: GcpNetworkRef, image: BoxImage | None = None,
                 opts: pulumi.ResourceOptions | None = None):
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
        zone = gcp.compute.get_zones_output(project=spec.project, region=spec.region, status="UP",
                                            opts=pulumi.InvokeOptions(provider=provider)).names.apply(
            lambda names: _first_zone(spec, names))

        # Retained on delete: destroying the box stack leaves the data disk (the reaper snapshots it first).
        self.data_disk = gcp.compute.Disk(
            f"{name}-data", zone=zone, size=spec.data_disk_gb, type="pd-balanced", labels=labels,
            disk_encryption_key=gcp.compute.DiskDiskEncryptionKeyArgs(kms_key_self_link=network.kms_key_id),
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
            service_account=gcp.compute.InstanceServiceAccountArgs(email=network.service_account_email,
                                                                   scopes=["cloud-platform"]),
            tags=[network.network_tag], labels=labels, allow_stopping_for_update=True, opts=child)

        self._outputs: dict[str, Any] = {
            "instance_name": self.instance.name,
            "zone": zone,
            "project": spec.project,
            "data_disk_name": self.data_disk.name,
            "instance_self_link": self.instance.self_link,
        }
        self.register_outputs(self._outputs)

    def outputs(self) -> dict[str, Any]:
        return dict(self._outputs)

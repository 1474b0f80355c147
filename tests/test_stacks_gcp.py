"""The GCP team network and box programs, run for real under Pulumi mocks (examples/team.yaml)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from nomadrig.stacks.gcp.box import DEFAULT_IMAGE_FAMILY, BoxImage, data_device_path
from nomadrig.stacks.gcp.network import IAP_RANGE
from nomadrig.stacks.mocks import MockScope, PlanMocks, alter_inputs

from nomadrig.plan import PlanResult, StackPlan, attribute, plan_team, run_programs
from nomadrig.policy import mandatory
from nomadrig.spec import box_spec
from nomadrig.team.load import load_team
from nomadrig.team.model import Team

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "team.yaml"
INSTANCE = "gcp:compute/instance:Instance"
DISK = "gcp:compute/disk:Disk"
NETWORK_STACK = "vision-lab--net--gcp--us-central1"


@pytest.fixture(scope="module")
def team() -> Team:
    return load_team(EXAMPLE)


@pytest.fixture(scope="module")
def plan(team: Team) -> PlanResult:
    return plan_team(team)


def one(stack: StackPlan, type_token: str) -> dict[str, Any]:
    found = [r for r in stack.resources if r.type == type_token]
    assert len(found) == 1, f"{stack.stack}: expected one {type_token}, got {[r.name for r in found]}"
    return dict(found[0].props)


def test_example_team_satisfies_every_mandatory_rule_on_gcp(plan: PlanResult) -> None:
    gcp_stacks = [s for s in plan.stacks if s.cloud == "gcp"]
    assert {s.kind for s in gcp_stacks} == {"network", "box"}
    assert [v.as_dict() for s in gcp_stacks for v in mandatory(s.verdicts)] == []


def test_box_is_shielded_uses_os_login_and_has_no_external_ip(plan: PlanResult) -> None:
    instance = one(plan.stack("grace"), INSTANCE)
    shielded = instance["shieldedInstanceConfig"]
    assert shielded["enableVtpm"] is True and shielded["enableIntegrityMonitoring"] is True
    assert instance["metadata"]["enable-oslogin"] == "TRUE"
    assert all(not nic.get("accessConfigs") for nic in instance["networkInterfaces"])


def test_box_boots_a_deep_learning_vm_image_with_a_cmek_boot_disk(plan: PlanResult) -> None:
    instance = one(plan.stack("grace"), INSTANCE)
    boot = instance["bootDisk"]
    assert boot["initializeParams"]["image"] == DEFAULT_IMAGE_FAMILY
    assert boot["initializeParams"]["size"] == plan.stack("grace").spec.root_disk_gb
    assert "/cryptoKeys/" in boot["kmsKeySelfLink"]


def test_spot_box_stops_on_preemption_and_terminates_for_maintenance(plan: PlanResult) -> None:
    grace = plan.stack("grace")
    assert grace.spec.spot
    scheduling = one(grace, INSTANCE)["scheduling"]
    assert scheduling["provisioningModel"] == "SPOT"
    assert scheduling["instanceTerminationAction"] == "STOP"
    assert scheduling["onHostMaintenance"] == "TERMINATE"


def test_accelerator_optimised_machine_gets_no_guest_accelerators(plan: PlanResult) -> None:
    grace = plan.stack("grace")
    assert grace.spec.machine_type.startswith("g2-")
    assert not one(grace, INSTANCE).get("guestAccelerators")


def test_n1_machine_gets_its_gpus_as_guest_accelerators(team: Team) -> None:
    spec = dataclasses.replace(box_spec(team, "grace"), instance_type="n1-standard-8+t4",
                               machine_type="n1-standard-8", accelerator_type="nvidia-tesla-t4", gpu_count=2)
    box = next(s for s in attribute(team, [spec], run_programs(team, [spec]).resources) if s.kind == "box")
    instance = one(box, INSTANCE)
    assert instance["guestAccelerators"] == [{"type": "nvidia-tesla-t4", "count": 2}]
    assert instance["scheduling"]["onHostMaintenance"] == "TERMINATE"


def test_data_disk_is_cmek_encrypted_retained_and_labelled(plan: PlanResult) -> None:
    grace = plan.stack("grace")
    disk = one(grace, DISK)
    assert "/cryptoKeys/" in disk["diskEncryptionKey"]["kmsKeySelfLink"]
    assert disk["size"] == grace.spec.data_disk_gb
    assert disk["labels"] == grace.spec.labels()
    assert [r.type for r in grace.resources if grace.is_retained(r)] == [DISK]
    instance = one(grace, INSTANCE)
    assert instance["labels"] == grace.spec.labels()
    assert instance["attachedDisks"][0]["deviceName"] == "data"
    assert instance["zone"] == disk["zone"]


def test_user_data_mounts_the_data_disk_by_its_google_device_id(plan: PlanResult) -> None:
    grace = plan.stack("grace")
    config = yaml.safe_load(one(grace, INSTANCE)["metadata"]["user-data"])
    mount = next(f["content"] for f in config["write_files"] if f["path"] == "/etc/systemd/system/data.mount")
    assert data_device_path() == "/dev/disk/by-id/google-data"
    assert f"What={data_device_path()}\n" in mount and "Where=/data\n" in mount
    assert config["users"][1]["ssh_authorized_keys"] == [grace.spec.ssh_key]
    assert config["timezone"] == "America/New_York"


def test_firewall_admits_only_iap_on_ssh(plan: PlanResult) -> None:
    firewalls = [r.props for r in plan.stack(NETWORK_STACK).resources if r.type == "gcp:compute/firewall:Firewall"]
    assert len(firewalls) == 1
    rule = firewalls[0]
    assert rule["direction"] == "INGRESS" and rule["sourceRanges"] == [IAP_RANGE]
    assert rule["allows"] == [{"protocol": "tcp", "ports": ["22"]}]


def test_egress_through_cloud_nat_and_private_google_access(plan: PlanResult) -> None:
    network = plan.stack(NETWORK_STACK)
    assert one(network, "gcp:compute/subnetwork:Subnetwork")["privateIpGoogleAccess"] is True
    nat = one(network, "gcp:compute/routerNat:RouterNat")
    assert nat["sourceSubnetworkIpRangesToNat"] == "ALL_SUBNETWORKS_ALL_IP_RANGES"


def test_box_service_account_has_only_log_and_metric_writer_project_roles(plan: PlanResult) -> None:
    grace = plan.stack("grace")
    email = f"{one(grace, 'gcp:serviceaccount/account:Account')['accountId']}@vision-lab-research.iam.gserviceaccount.com"
    grants = [(r.props["role"], r.props["member"]) for r in grace.resources
              if r.type == "gcp:projects/iAMMember:IAMMember"]
    assert sorted(grants) == [("roles/logging.logWriter", f"serviceAccount:{email}"),
                              ("roles/monitoring.metricWriter", f"serviceAccount:{email}")]


def test_team_network_holds_no_box_identity(plan: PlanResult) -> None:
    network = plan.stack(NETWORK_STACK)
    identity = [r.type for r in network.resources if r.type.startswith(("gcp:serviceaccount/", "gcp:projects/"))
                or (r.type.startswith("gcp:storage/") and "IAM" in r.type)]
    assert identity == []


def test_compute_engine_service_agent_may_use_the_disk_key(plan: PlanResult) -> None:
    network = plan.stack(NETWORK_STACK)
    grant = one(network, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
    assert grant["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    assert grant["member"].endswith("@compute-system.iam.gserviceaccount.com")
    assert one(network, "gcp:kms/cryptoKey:CryptoKey")["rotationPeriod"] == "7776000s"


def test_dataset_bucket_is_uniform_private_and_versioned(plan: PlanResult) -> None:
    bucket = one(plan.stack(NETWORK_STACK), "gcp:storage/bucket:Bucket")
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": True}


def test_billing_budget_only_where_a_billing_account_is_configured(plan: PlanResult, team: Team) -> None:
    assert plan.resources("gcp:billing/budget:Budget") == []
    gcp_conf = team.clouds.gcp.model_copy(update={"billing_account": "01ABCD-23EF45-6789AB"})
    billed = team.model_copy(update={"clouds": team.clouds.model_copy(update={"gcp": gcp_conf})})
    budgets = plan_team(billed, "grace").resources("gcp:billing/budget:Budget")
    assert len(budgets) == 1
    budget = budgets[0].props
    assert budget["billingAccount"] == "01ABCD-23EF45-6789AB"
    assert sorted(r["thresholdPercent"] for r in budget["thresholdRules"]) == [0.8, 1.0]
    assert budget["amount"]["specifiedAmount"]["units"] == str(round(team.budgets.monthly_usd))


# -- each security default, flipped, is denied by its rule -----------------------------------------


def _no_shielding(props: dict[str, Any]) -> None:
    props["shieldedInstanceConfig"] = {"enableVtpm": False, "enableIntegrityMonitoring": False}


def _external_ip(props: dict[str, Any]) -> None:
    props["networkInterfaces"][0]["accessConfigs"] = [{}]


def _drop_label(props: dict[str, Any]) -> None:
    props["labels"].pop("nomadrig-owner")


def _world_firewall(props: dict[str, Any]) -> None:
    props["sourceRanges"] = ["0.0.0.0/0"]


def _no_os_login(props: dict[str, Any]) -> None:
    props["metadata"]["enable-oslogin"] = "FALSE"


def _google_managed_disk(props: dict[str, Any]) -> None:
    props.pop("diskEncryptionKey")


FLIPS: dict[str, tuple[str, str, Callable[[dict[str, Any]], None]]] = {
    "no shielded VM": ("SEC-013", INSTANCE, _no_shielding),
    "public IP": ("SEC-004", INSTANCE, _external_ip),
    "missing label": ("SEC-006", INSTANCE, _drop_label),
    "firewall from 0.0.0.0/0": ("SEC-003", "gcp:compute/firewall:Firewall", _world_firewall),
    "OS Login off": ("SEC-014", INSTANCE, _no_os_login),
    "data disk without CMEK": ("SEC-012", DISK, _google_managed_disk),
}


@pytest.mark.parametrize("flip", sorted(FLIPS))
def test_flipped_security_default_is_denied_by_its_rule(team: Team, flip: str) -> None:
    rule_id, type_token, alter = FLIPS[flip]
    mocks = PlanMocks(MockScope(project="vision-lab-research"))
    mocks.register_transform(alter_inputs(type_token, alter))
    result = plan_team(team, "grace", mocks)
    denied = {v.rule_id for v in result.mandatory}
    assert rule_id in denied, f"{flip}: expected {rule_id} among {denied}"


FAMILY = "common-cu129-ubuntu-2204-nvidia-580"


@pytest.mark.parametrize("setting, image", [
    (f"projects/deeplearning-platform-release/global/images/family/{FAMILY}",
     f"projects/deeplearning-platform-release/global/images/family/{FAMILY}"),
    (FAMILY, f"projects/deeplearning-platform-release/global/images/family/{FAMILY}"),
    (f"projects/vision-lab-images/global/images/family/{FAMILY}",
     f"projects/vision-lab-images/global/images/family/{FAMILY}"),
])
def test_team_can_pick_another_image_family_bare_or_as_a_full_path(team: Team, setting: str, image: str) -> None:
    # clouds.gcp.image_family is optional in the team file; model_copy stands in for a file that sets it.
    gcp_conf = team.clouds.gcp.model_copy(update={"image_family": setting})
    custom = team.model_copy(update={"clouds": team.clouds.model_copy(update={"gcp": gcp_conf})})
    instance = one(plan_team(custom, "grace").stack("grace"), INSTANCE)
    assert instance["bootDisk"]["initializeParams"]["image"] == image


@pytest.mark.parametrize("setting", ["https://evil.example/image", "projects/vision-lab-images/global/images/family/x\nfoo",
                                     "projects/x/global/images/family/Upper", "family/only", "-dash-first"])
def test_an_image_setting_of_no_known_shape_is_refused_naming_the_field(setting: str) -> None:
    with pytest.raises(ValueError, match="clouds.gcp.image_family"):
        BoxImage.from_setting(setting)

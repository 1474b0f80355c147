"""The GCP team network: where every box of one team in one region lives.

Boxes have no external address: they reach the internet through Cloud NAT and
Google APIs through private Google access; people reach them only through IAP
TCP forwarding, whose source range is the one ingress the firewall admits.
No identity lives here: each box makes its own service account, limited to
its nomad's prefix of the dataset bucket (stacks.gcp.box).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_gcp as gcp

from nomadrig import names

if TYPE_CHECKING:
    from nomadrig.team.model import Team

IAP_RANGE = "35.235.240.0/20"
SUBNET_CIDR = "10.43.0.0/20"
BOX_NETWORK_TAG = "nomadrig-box"
KEY_ROTATION = "7776000s"  # 90 days
BUDGET_ALERT_FRACTIONS = (0.8, 1.0)


@dataclass(frozen=True)
class TeamNetworkSettings:
    """Everything the team network needs, resolved from the validated team file."""

    team: str
    project: str
    region: str
    monthly_budget_usd: float
    alert_emails: tuple[str, ...]
    billing_account: str  # "" when the team configured none: no budget then

    @classmethod
    def from_team(cls, team: Team, region: str, primary: bool) -> TeamNetworkSettings:
        gcp_conf = team.clouds.gcp
        if gcp_conf is None:
            raise ValueError("clouds.gcp is not configured; add it to the team file to place boxes on GCP")
        return cls(team=team.name, project=gcp_conf.project, region=region,
                   monthly_budget_usd=team.budgets.monthly_usd, alert_emails=tuple(team.budgets.alert_emails),
                   billing_account=gcp_conf.billing_account if primary else "")

    def labels(self) -> dict[str, str]:
        return names.team_tags("gcp", self.team)


@dataclass(frozen=True)
class GcpNetworkRef:
    """What a box needs from its team network: plain values or Outputs."""

    subnetwork_self_link: pulumi.Input[str]
    kms_key_id: pulumi.Input[str]
    bucket_name: pulumi.Input[str]
    network_tag: pulumi.Input[str]

    @classmethod
    def from_outputs(cls, get: Callable[[str], Any]) -> GcpNetworkRef:
        return cls(subnetwork_self_link=get("subnetwork_self_link"), kms_key_id=get("kms_key_id"),
                   bucket_name=get("bucket_name"), network_tag=get("network_tag"))


class TeamNetwork(pulumi.ComponentResource):
    """VPC + subnet, Cloud NAT, IAP-only firewall, CMEK key, dataset bucket, budget."""

    def __init__(self, name: str, settings: TeamNetworkSettings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nomadrig:gcp:TeamNetwork", name, None, opts)
        provider = gcp.Provider(f"{name}-gcp", project=settings.project, region=settings.region,
                                opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        project_number = gcp.organizations.get_project_output(project_id=settings.project,
                                                              opts=pulumi.InvokeOptions(provider=provider)).number
        labels = settings.labels()

        network = gcp.compute.Network(f"{name}-net", auto_create_subnetworks=False,
                                      description=f"nomadrig {settings.team} boxes in {settings.region}", opts=child)
        subnet = gcp.compute.Subnetwork(f"{name}-boxes", network=network.id, region=settings.region,
                                        ip_cidr_range=SUBNET_CIDR, private_ip_google_access=True, opts=child)
        router = gcp.compute.Router(f"{name}-router", network=network.id, region=settings.region, opts=child)
        gcp.compute.RouterNat(f"{name}-nat", router=router.name, region=settings.region,
                              nat_ip_allocate_option="AUTO_ONLY",
                              source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
                              log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
                              opts=child)

        gcp.compute.Firewall(f"{name}-iap-ssh", network=network.id, direction="INGRESS", priority=1000,
                             source_ranges=[IAP_RANGE], target_tags=[BOX_NETWORK_TAG],
                             allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
                             description="SSH only through IAP TCP forwarding", opts=child)

        ring = gcp.kms.KeyRing(f"{name}-keys", location=settings.region, opts=child)
        self.key = gcp.kms.CryptoKey(f"{name}-disks", key_ring=ring.id, rotation_period=KEY_ROTATION,
                                     labels=labels, opts=child)
        # The Compute Engine service agent encrypts the disks; without this grant no CMEK disk can be made.
        gcp.kms.CryptoKeyIAMMember(
            f"{name}-compute-agent", crypto_key_id=self.key.id, role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
            member=pulumi.Output.from_input(project_number).apply(
                lambda n: f"serviceAccount:service-{n}@compute-system.iam.gserviceaccount.com"),
            opts=child)

        self.bucket = gcp.storage.Bucket(
            f"{name}-datasets", location=settings.region.upper(), uniform_bucket_level_access=True,
            public_access_prevention="enforced", versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            force_destroy=False, labels=labels, opts=child)

        if settings.billing_account:
            channels = [gcp.monitoring.NotificationChannel(
                f"{name}-alert-{i}", type="email", display_name=f"nomadrig budget alert {address}",
                labels={"email_address": address}, opts=child) for i, address in enumerate(settings.alert_emails)]
            gcp.billing.Budget(
                f"{name}-budget", billing_account=settings.billing_account,
                display_name=f"nomadrig {settings.team}", opts=child,
                budget_filter=gcp.billing.BudgetBudgetFilterArgs(
                    projects=[pulumi.Output.from_input(project_number).apply(lambda n: f"projects/{n}")]),
                amount=gcp.billing.BudgetAmountArgs(specified_amount=gcp.billing.BudgetAmountSpecifiedAmountArgs(
                    currency_code="USD", units=str(round(settings.monthly_budget_usd)))),
                threshold_rules=[gcp.billing.BudgetThresholdRuleArgs(threshold_percent=f)
                                 for f in BUDGET_ALERT_FRACTIONS],
                all_updates_rule=gcp.billing.BudgetAllUpdatesRuleArgs(
                    monitoring_notification_channels=[c.id for c in channels]))

        self._outputs: dict[str, Any] = {
            "network_self_link": network.self_link,
            "subnetwork_self_link": subnet.self_link,
            "kms_key_id": self.key.id,
            "bucket_name": self.bucket.name,
            "network_tag": BOX_NETWORK_TAG,
        }
        self.register_outputs(self._outputs)

    def outputs(self) -> dict[str, Any]:
        """The values a box stack reads (keys: stacks.program.GCP_NETWORK_OUTPUTS)."""
        return dict(self._outputs)

    def ref(self) -> GcpNetworkRef:
        return GcpNetworkRef.from_outputs(self._outputs.__getitem__)

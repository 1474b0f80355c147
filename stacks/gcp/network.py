"""The GCP team network: where every box of one team in one region lives.

Boxes have no external address: they reach the internet through Cloud NAT and
Google APIs through private Google access; people reach them only through IAP
TCP forwarding, whose source range is the one ingress the firewall admits.
No identity lives here: each box makes its own service account, limited to
its nomad's prefix of the dataset bucket (stacks.gcp.box).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

IAP_RANGE = "35.235.240.0/20"
SUBNET_CIDR = "10.43.0.0/20"
BOX_NETWORK_TAG = "nomadrig-box"
KEY_ROTATION = "7776000s"  # 90 days
BUDGET_ALERT_FRACTIONS = (0.8, 1.0)


@dataclass(frozen=True)
class TeamNetworkArgs:
    """What the team network reads, and nothing else; `stacks.args.gcp_network_args` makes it from the team.

    The component never sees the team file: what it declares follows from these values alone.
    """

    team: str  # the team's name, in descriptions and the budget's name
    project: str
    region: str
    labels: Mapping[str, str]
    monthly_budget_usd: float
    alert_emails: tuple[str, ...]
    billing_account: str  # "" when the team configured none or this is not the cloud's first region: no budget


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
    """VPC + subnet, Cloud NAT, IAP-only firewall, CMEK key, dataset bucket, budget.

    Every child is an attribute; the budget and its alert channels exist only where the args name a
    billing account (None and an empty list elsewhere).
    """

    def __init__(self, name: str, args: TeamNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nomadrig:gcp:TeamNetwork", name, None, opts)
        self.provider = gcp.Provider(f"{name}-gcp", project=args.project, region=args.region,
                                     opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        project_number = gcp.organizations.get_project_output(project_id=args.project,
                                                              opts=pulumi.InvokeOptions(provider=self.provider)).number
        labels = dict(args.labels)

        self._network(name, args, child)
        self.key_ring = gcp.kms.KeyRing(f"{name}-keys", location=args.region, opts=child)
        self.key = gcp.kms.CryptoKey(f"{name}-disks", key_ring=self.key_ring.id, rotation_period=KEY_ROTATION,
                                     labels=labels, opts=child)
        # The Compute Engine service agent encrypts the disks; without this grant no CMEK disk can be made.
        self.key_user = gcp.kms.CryptoKeyIAMMember(
            f"{name}-compute-agent", crypto_key_id=self.key.id, role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
            member=pulumi.Output.from_input(project_number).apply(
                lambda n: f"serviceAccount:service-{n}@compute-system.iam.gserviceaccount.com"),
            opts=child)

        self.bucket = gcp.storage.Bucket(
            f"{name}-datasets", location=args.region.upper(), uniform_bucket_level_access=True,
            public_access_prevention="enforced", versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            force_destroy=False, labels=labels, opts=child)
        self._budget(name, args, project_number, child)

        self._outputs: dict[str, Any] = {
            "network_self_link": self.network.self_link,
            "subnetwork_self_link": self.subnetwork.self_link,
            "kms_key_id": self.key.id,
            "bucket_name": self.bucket.name,
            "network_tag": BOX_NETWORK_TAG,
        }
        self.register_outputs(self._outputs)

    def _network(self, name: str, args: TeamNetworkArgs, opts: pulumi.ResourceOptions) -> None:
        """The VPC and the boxes' subnet, their way out (Cloud NAT) and their one way in (IAP's SSH)."""
        self.network = gcp.compute.Network(f"{name}-net", auto_create_subnetworks=False,
                                           description=f"nomadrig {args.team} boxes in {args.region}", opts=opts)
        self.subnetwork = gcp.compute.Subnetwork(f"{name}-boxes", network=self.network.id, region=args.region,
                                                 ip_cidr_range=SUBNET_CIDR, private_ip_google_access=True, opts=opts)
        self.router = gcp.compute.Router(f"{name}-router", network=self.network.id, region=args.region, opts=opts)
        self.nat = gcp.compute.RouterNat(
            f"{name}-nat", router=self.router.name, region=args.region, nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"), opts=opts)
        self.firewall = gcp.compute.Firewall(
            f"{name}-iap-ssh", network=self.network.id, direction="INGRESS", priority=1000,
            source_ranges=[IAP_RANGE], target_tags=[BOX_NETWORK_TAG],
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
            description="SSH only through IAP TCP forwarding", opts=opts)

    def _budget(self, name: str, args: TeamNetworkArgs, project_number: pulumi.Output[str],
                opts: pulumi.ResourceOptions) -> None:
        """A billing budget with an e-mail channel per address, where the args name a billing account."""
        self.alert_channels: list[gcp.monitoring.NotificationChannel] = []
        self.budget: gcp.billing.Budget | None = None
        if not args.billing_account:
            return
        self.alert_channels = [gcp.monitoring.NotificationChannel(
            f"{name}-alert-{i}", type="email", display_name=f"nomadrig budget alert {address}",
            labels={"email_address": address}, opts=opts) for i, address in enumerate(args.alert_emails)]
        self.budget = gcp.billing.Budget(
            f"{name}-budget", billing_account=args.billing_account, display_name=f"nomadrig {args.team}", opts=opts,
            budget_filter=gcp.billing.BudgetBudgetFilterArgs(
                projects=[pulumi.Output.from_input(project_number).apply(lambda n: f"projects/{n}")]),
            amount=gcp.billing.BudgetAmountArgs(specified_amount=gcp.billing.BudgetAmountSpecifiedAmountArgs(
                currency_code="USD", units=str(round(args.monthly_budget_usd)))),
            threshold_rules=[gcp.billing.BudgetThresholdRuleArgs(threshold_percent=f)
                             for f in BUDGET_ALERT_FRACTIONS],
            all_updates_rule=gcp.billing.BudgetAllUpdatesRuleArgs(
                monitoring_notification_channels=[c.id for c in self.alert_channels]))

    def outputs(self) -> dict[str, Any]:
        """The values a box stack reads (keys: stacks.program.GCP_NETWORK_OUTPUTS)."""
        return dict(self._outputs)

    def ref(self) -> GcpNetworkRef:
        return GcpNetworkRef.from_outputs(self._outputs.__getitem__)

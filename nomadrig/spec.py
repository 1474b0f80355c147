"""What one box, team network or tower should be, resolved from the team file and the catalog.

The stacks, the policy, the cost model and the reaper all need the same facts
about a box (its type, GPUs, prices, tags). Resolving them once, as a frozen
value, keeps every path agreeing and lets the policy run before any resource
exists. The Pulumi programs (`nomadrig.stacks`) take these specs and nothing
else: no program sees the `Team`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from nomadrig import names
from nomadrig.catalog import Catalog, load_catalog
from nomadrig.errors import BadInputError
from nomadrig.power import GpuDraw, PowerBudget
from nomadrig.team.model import Nomad, Team, Tower

if TYPE_CHECKING:
    from nomadrig.compat import InstallPlan


@dataclass(frozen=True)
class BoxSpec:
    team: str
    nomad: str
    cloud: str
    region: str
    instance_type: str  # catalog key
    machine_type: str  # what the cloud API takes
    accelerator_type: str | None
    gpu_model: str
    gpu_count: int
    gpu_vram_gb: float
    vcpu: int
    ram_gb: float
    root_disk_gb: int
    data_disk_gb: int
    spot: bool
    ttl_hours: int
    idle_minutes: int
    ssh_key: str
    timezone: str
    email: str
    allow_public_ip: bool
    on_demand_usd_hr: float | None
    spot_usd_hr: float | None
    account_id: str = ""
    project: str = ""
    #: The team file's image for the box's cloud: ``clouds.aws.ami_parameter`` (an SSM parameter) or
    #: ``clouds.gcp.image_family``; empty: the stacks' default image.
    image: str = ""
    # When the box was first created (`names.format_created`): the TTL counts from here. A box stack that
    # exists already passes its own `created` output back in (`box_spec(created=...)`), so `up` never
    # restarts the TTL nor shows a diff for it.
    created: str = field(default_factory=names.created_now)

    @property
    def stack_name(self) -> str:
        """The box's stack (also its ssh Host alias and its GCE instance name): ``<team>--<nomad>``."""
        return names.box_stack_name(self.team, self.nomad)

    @property
    def hourly_usd(self) -> float | None:
        """What an hour of this box costs as requested (spot price when spot, where known)."""
        if self.spot and self.spot_usd_hr is not None:
            return self.spot_usd_hr
        return self.on_demand_usd_hr

    @property
    def spot_max_price(self) -> float | None:
        """Bid no more than on-demand: paying more for spot would be absurd."""
        return self.on_demand_usd_hr if self.spot else None

    def tags(self) -> dict[str, str]:
        """The `nomadrig:*` tags every resource of the box carries (AWS keys)."""
        return self._tags("aws")

    def labels(self) -> dict[str, str]:
        """The same facts as GCP labels (``nomadrig-*``, values in the labels' alphabet)."""
        return self._tags("gcp")

    def _tags(self, cloud: str) -> dict[str, str]:
        return names.box_tags(cloud, team=self.team, owner=self.nomad, ttl_hours=self.ttl_hours,
                              idle_minutes=self.idle_minutes, created=self.created)


@dataclass(frozen=True)
class NetworkSpec:
    """A team network stack: one per cloud and region some nomad uses (`network_specs`)."""

    team: str
    cloud: str
    region: str
    #: The cloud's first region a nomad uses: account-wide things (the budget) live in this network only.
    primary: bool
    allow_public_ip: bool
    monthly_budget_usd: float
    alert_emails: tuple[str, ...]
    project: str = ""  # GCP: clouds.gcp.project; empty where the team file configures no GCP
    billing_account: str = ""  # GCP: clouds.gcp.billing_account, as the team file writes it (maybe empty)

    @property
    def stack_name(self) -> str:
        """``<team>--net--<cloud>--<region>``."""
        return names.network_stack_name(self.team, self.cloud, self.region)

    def tags(self) -> dict[str, str]:
        """The team's `nomadrig:*` tags (AWS keys) every resource of the network carries."""
        return names.team_tags("aws", self.team)

    def labels(self) -> dict[str, str]:
        """The same as GCP labels."""
        return names.team_tags("gcp", self.team)


@dataclass(frozen=True)
class TowerGpuSpec:
    model: str
    count: int
    tdp_w: int | None
    vram_gb: float | None


@dataclass(frozen=True)
class TowerSpec:
    team: str
    name: str
    address: str
    ssh_user: str
    ssh_port: int
    os: str
    gpus: tuple[TowerGpuSpec, ...]
    cpu_tdp_w: int
    psu_watts: int
    ram_gb: int | None
    disk_gb: int | None
    root_on_ssd: bool | None
    data_encrypted: bool | None
    driver_channel: str
    driver_branch: str  # resolved: the team file's, else the one `install` chose from the GPUs
    cuda_version: str  # resolved, as driver_branch
    frameworks: tuple[str, ...]
    gpu_containers: bool
    nomads: tuple[str, ...]
    wireguard_port: int
    #: The per-GPU power cap the team file sets (``gpu_power_limit_watts``); None: the cards run at their TDP.
    gpu_power_limit_w: int | None = None
    #: The whole resolved install plan (branch, flavour, module options, toolkit, wheels, Python); None for a
    #: spec built without a team file (a catalog build judged by the tower rules).
    install: InstallPlan | None = None
    #: The whole team file as JSON (`Team.model_dump(mode="json")`): the `Tower` resource runs the playbook
    #: from it in another process, and a change to it is a change Pulumi sees. Empty for a spec built without
    #: a team file.
    team_json: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    @property
    def stack_name(self) -> str:
        return names.tower_stack_name(self.team, self.name)

    def power_budget(self, margin_pct: int) -> PowerBudget | None:
        """The supply against the GPUs (at their cap, if any) and the CPU; None when a GPU's TDP is unknown."""
        if any(gpu.tdp_w is None for gpu in self.gpus):
            return None
        return PowerBudget(psu_w=self.psu_watts, cpu_w=self.cpu_tdp_w, margin_pct=margin_pct,
                           gpus=tuple(GpuDraw(g.model, g.count, g.tdp_w or 0) for g in self.gpus),
                           cap_w=self.gpu_power_limit_w)


def box_spec(team: Team, nomad: Nomad | str, catalog: Catalog | None = None,
             created: str | datetime | None = None) -> BoxSpec:
    """Resolve a nomad's box; the team was validated, so every name resolves.

    `created`: when the box was first created (its stack's ``created``
    output); None for a box not created yet, which is created now. Raises
    ValueError when it is not a time (`names.parse_time` says which).
    """
    catalog = catalog or load_catalog()
    if isinstance(nomad, str):
        nomad = team.nomad(nomad)
    cloud = team.nomad_cloud(nomad)
    region = team.nomad_region(nomad)
    if nomad.gpu_profile:
        profile = catalog.profile(nomad.gpu_profile, cloud)
        assert profile is not None, "validated team files resolve their profiles"
        type_name = profile.instance_type
    else:
        type_name = nomad.instance_type or ""
    instance = catalog.instance(cloud, type_name)
    assert instance is not None, "validated team files resolve their instance types"
    price = catalog.price(cloud, type_name, region)
    return BoxSpec(
        team=team.name,
        nomad=nomad.name,
        cloud=cloud,
        region=region,
        instance_type=type_name,
        machine_type=instance.machine_type,
        accelerator_type=instance.accelerator_type,
        gpu_model=instance.gpu_model,
        gpu_count=instance.gpu_count,
        gpu_vram_gb=instance.gpu_vram_gb,
        vcpu=instance.vcpu,
        ram_gb=instance.ram_gb,
        root_disk_gb=nomad.root_disk_gb,
        data_disk_gb=nomad.data_disk_gb,
        spot=nomad.spot,
        ttl_hours=nomad.ttl_hours,
        idle_minutes=nomad.idle_minutes,
        ssh_key=nomad.ssh_key,
        timezone=nomad.timezone,
        email=nomad.email,
        allow_public_ip=team.policy.allow_public_ip,
        on_demand_usd_hr=price.on_demand_usd_hr if price else None,
        spot_usd_hr=price.spot_usd_hr if price else None,
        account_id=team.clouds.aws.account_id if cloud == "aws" and team.clouds.aws else "",
        project=team.clouds.gcp.project if cloud == "gcp" and team.clouds.gcp else "",
        image=_image_setting(team, cloud),
        **({"created": _created(created)} if created is not None else {}),
    )


def _image_setting(team: Team, cloud: str) -> str:
    """The image the team file sets for `cloud`'s boxes; empty: the stacks' default."""
    if cloud == "aws":
        return team.clouds.aws.ami_parameter if team.clouds.aws else ""
    return team.clouds.gcp.image_family if cloud == "gcp" and team.clouds.gcp else ""


def _created(value: str | datetime) -> str:
    """A creation time in the canonical form the tags and outputs carry."""
    moment = names.parse_time(value) if isinstance(value, str) else value
    if moment is None:
        raise ValueError("an empty creation time")
    return names.format_created(moment)


def box_specs(team: Team, catalog: Catalog | None = None) -> list[BoxSpec]:
    catalog = catalog or load_catalog()
    return [box_spec(team, nomad, catalog) for nomad in team.nomads]


def network_spec(team: Team, cloud: str, region: str) -> NetworkSpec:
    """The team network of `cloud`/`region`: primary when it is the first of the cloud's regions a nomad uses."""
    return _network_spec(team, cloud, region, _used_networks(team))


def _network_spec(team: Team, cloud: str, region: str, used_networks: list[tuple[str, str]]) -> NetworkSpec:
    gcp = team.clouds.gcp
    used = [r for c, r in used_networks if c == cloud]
    return NetworkSpec(
        team=team.name,
        cloud=cloud,
        region=region,
        primary=bool(used) and used[0] == region,
        allow_public_ip=team.policy.allow_public_ip,
        monthly_budget_usd=team.budgets.monthly_usd,
        alert_emails=tuple(team.budgets.alert_emails),
        project=gcp.project if cloud == "gcp" and gcp else "",
        billing_account=gcp.billing_account if cloud == "gcp" and gcp else "",
    )


def network_specs(team: Team) -> list[NetworkSpec]:
    """One team network per (cloud, region) some nomad uses, in team-file order.

    None for a region nobody uses: its NAT would cost money for nothing.
    """
    used = _used_networks(team)
    return [_network_spec(team, cloud, region, used) for cloud, region in used]


def _used_networks(team: Team) -> list[tuple[str, str]]:
    """Each (cloud, region) the nomads use, once, in the order they first appear."""
    seen: dict[tuple[str, str], None] = {}
    for nomad in team.nomads:
        seen.setdefault((team.nomad_cloud(nomad), team.nomad_region(nomad)), None)
    return list(seen)


def tower_spec(team: Team, tower: Tower | str, catalog: Catalog | None = None) -> TowerSpec:
    catalog = catalog or load_catalog()
    if isinstance(tower, str):
        tower = team.tower(tower)
    gpus = []
    for gpu in tower.gpus:
        known = catalog.gpu(gpu.model)
        gpus.append(TowerGpuSpec(known.model if known else gpu.model, gpu.count,
                                 known.tdp_w if known else None, known.vram_gb if known else None))
    install = install_plan(team, tower)
    return TowerSpec(
        team=team.name,
        name=tower.name,
        address=tower.address,
        ssh_user=tower.ssh_user,
        ssh_port=tower.ssh_port,
        os=tower.os,
        gpus=tuple(gpus),
        cpu_tdp_w=tower.cpu_tdp_watts,
        psu_watts=tower.psu_watts,
        ram_gb=tower.ram_gb,
        disk_gb=tower.disk_gb,
        root_on_ssd=tower.root_on_ssd,
        data_encrypted=tower.data_encrypted,
        driver_channel=tower.driver_channel,
        driver_branch=install.driver_branch,
        cuda_version=install.cuda_toolkit,
        frameworks=tuple(tower.frameworks),
        gpu_containers=tower.gpu_containers,
        nomads=tuple(tower.nomads or [n.name for n in team.nomads]),
        wireguard_port=tower.wireguard_port,
        gpu_power_limit_w=tower.gpu_power_limit_watts,
        install=install,
        team_json=team.model_dump(mode="json"),
    )


def install_plan(team: Team, tower: Tower) -> InstallPlan:
    """What the tower's GPUs and OS get: the team file's choices, the rest chosen by `compat.decide`.

    A loaded team file has been through the same decision (`config.tower_install_problems`), so a refusal
    here means the team was built without `load_team`; it is reported the same way.
    """
    from nomadrig.compat import Refusal, decide

    index = team.towers.index(tower)
    decision = decide(tower.install_request(f"towers[{index}]"))
    if isinstance(decision, Refusal):
        raise BadInputError("team file", list(decision.problems))
    return decision

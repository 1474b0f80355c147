"""The catalog's records: one frozen dataclass per CSV file.

They are plain values so the policy, cost and spec code can compare and hash them
without caring where the figures came from; `source` and `date` travel with every
record so any number a user sees can be traced back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

#: A price or rate whose effective date is older than this (or unknown) is shown as stale.
STALE_AFTER_DAYS = 90


def age_days(effective_date: str | None, today: dt.date) -> int | None:
    """Days since the figure took effect or was last observed; None when no date is known."""
    if not effective_date:
        return None
    return (today - dt.date.fromisoformat(effective_date)).days


def is_stale(effective_date: str | None, today: dt.date) -> bool:
    """Stale: no known date, or older than STALE_AFTER_DAYS. A list price can change any day."""
    days = age_days(effective_date, today)
    return days is None or days > STALE_AFTER_DAYS


@dataclass(frozen=True)
class InstanceType:
    """A cloud GPU configuration a box can be: an instance type, or an N1 machine plus GPUs."""

    cloud: str
    instance_type: str  # the catalog key, e.g. "g5.xlarge" or "n1-standard-8+1xt4"
    machine_type: str  # what the cloud API calls the machine, e.g. "n1-standard-8"
    accelerator_type: str | None  # GCP accelerator id ("nvidia-tesla-t4"); None on AWS
    gpu_model: str  # normalised model name as in gpus.csv, e.g. "A10G"
    gpu_count: int
    gpu_vram_gb: float  # per GPU
    vcpu: int
    ram_gb: float
    source: str
    date: str

    @property
    def total_vram_gb(self) -> float:
        """VRAM of all GPUs together: what bounds the model size a box can hold."""
        return self.gpu_vram_gb * self.gpu_count


class DatedFigure:
    """A sourced figure's two dates: when it took effect at its source, and when nomadrig read it."""

    effective_date: str | None
    read_date: str

    @property
    def date(self) -> str:
        """The day the figure was read: what `catalog_date` and older callers mean by a row's date."""
        return self.read_date

    def stale(self, today: dt.date) -> bool:
        return is_stale(self.effective_date, today)


@dataclass(frozen=True)
class Price(DatedFigure):
    """Hourly price of one instance type in one region; None means no price is known.

    Two dates travel with it: when the price took effect or was last observed at its
    source (None: not known), and when the source was read for the catalog.
    """

    cloud: str
    instance_type: str
    region: str
    on_demand_usd_hr: float | None
    spot_usd_hr: float | None
    source: str
    effective_date: str | None
    read_date: str

    def usd_hr(self, spot: bool = False) -> float | None:
        """The price a box pays: spot when asked for, otherwise on-demand."""
        return self.spot_usd_hr if spot else self.on_demand_usd_hr


@dataclass(frozen=True)
class Rate(DatedFigure):
    """A recurring non-compute charge (disk GB-month, NAT hour, egress GB, key-month) in one region.

    `region` is "*" where the provider states one price for every region.
    """

    cloud: str
    item: str
    region: str
    usd: float
    unit: str
    source: str
    effective_date: str | None
    read_date: str


@dataclass(frozen=True)
class GpuModel:
    """A GPU model's memory and board power (TDP, None where no source gave it)."""

    model: str
    vram_gb: float
    tdp_w: int | None
    source: str
    date: str


@dataclass(frozen=True)
class TowerBuild:
    """A reference on-prem build: what it costs to buy and what it draws, for `nomadrig advise`.

    The hardware fields are those nomadrig's tower rules check (RAM, disk, PSU against GPU and CPU
    TDP), so every shipped build is held to the same rules as a team's own tower.
    """

    name: str
    gpu_model: str
    gpu_count: int
    gpu_vram_gb: float  # per GPU
    gpu_tdp_w: int  # per GPU
    gpu_price_usd: float  # per GPU
    platform_price_usd: float  # CPU, cooler, board, RAM, SSD, PSU, case
    cpu_tdp_w: int
    platform_w: int  # board, RAM, SSD and fans under load (assumption, see towers.csv)
    idle_w: int  # the whole tower idle, at the wall (assumption)
    psu_w: int
    psu_efficiency_pct: float
    ram_gb: int
    disk_gb: int
    source: str
    date: str

    @property
    def parts_cost_usd(self) -> float:
        return round(self.gpu_count * self.gpu_price_usd + self.platform_price_usd, 2)

    @property
    def load_w(self) -> float:
        """Wall power while training: GPUs and CPU at their TDP plus the platform, over PSU efficiency."""
        return (self.gpu_count * self.gpu_tdp_w + self.cpu_tdp_w + self.platform_w) / (self.psu_efficiency_pct / 100)


@dataclass(frozen=True)
class Notebook:
    """A notebook for the field guide's setups: a thin one (no GPU of its own) or one that trains on its dGPU."""

    name: str
    kind: str  # "thin" or "dgpu"
    gpu_model: str | None
    gpu_count: int
    price_usd: float
    load_w: float  # whole notebook at the wall while training (dgpu); 0 for a thin one (its draw cancels out)
    thunderbolt: bool  # can drive an eGPU
    ram_gb: int
    life_months: int
    source: str
    date: str


@dataclass(frozen=True)
class EgpuEnclosure:
    """An external GPU box: its price, PSU and the link that slows the card down (`speed_factor`)."""

    name: str
    price_usd: float
    psu_w: int
    link_gbps: float
    pcie: str
    speed_factor: float  # training speed behind the link / the same card in a desktop x16 slot
    source: str
    date: str


@dataclass(frozen=True)
class Throughput:
    """Training throughput of a GPU relative to one RTX 3090, with its benchmark source."""

    gpu_model: str
    train_rel_3090: float
    source: str
    date: str


@dataclass(frozen=True)
class Profile:
    """A named GPU choice ("a10g-24gb") that maps to one instance type per cloud."""

    profile: str
    cloud: str
    instance_type: str
    description: str

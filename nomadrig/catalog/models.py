"""The catalog's records: one frozen dataclass per CSV file.

They are plain values so the policy, cost and spec code can compare and hash them
without caring where the figures came from; `source` and `date` travel with every
record so any number a user sees can be traced back.
"""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class Price:
    """Hourly price of one instance type in one region; None means no price is known."""

    cloud: str
    instance_type: str
    region: str
    on_demand_usd_hr: float | None
    spot_usd_hr: float | None
    source: str
    date: str

    def usd_hr(self, spot: bool = False) -> float | None:
        """The price a box pays: spot when asked for, otherwise on-demand."""
        return self.spot_usd_hr if spot else self.on_demand_usd_hr


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
    """A reference on-prem build: what it costs to buy and what it draws, for break-even math."""

    name: str
    gpu_model: str
    gpu_count: int
    gpu_vram_gb: float
    gpu_tdp_w: int | None
    cpu_tdp_w: int | None
    typical_power_w: int | None
    parts_cost_usd: float | None
    source: str
    date: str


@dataclass(frozen=True)
class Profile:
    """A named GPU choice ("a10g-24gb") that maps to one instance type per cloud."""

    profile: str
    cloud: str
    instance_type: str
    description: str

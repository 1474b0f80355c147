"""Cost math: what a box costs per hour and month, what the team projects, and cloud vs tower.

Pure functions over catalog figures, so the cost policy, `nomadrig cost` and
`nomadrig advise` all agree. Formulas are documented in the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Usage
    from .spec import BoxSpec

HOURS_PER_MONTH = 730.0  # the clouds' own billing convention (8,760 h / 12)
# NAT gateway: fixed hourly charge per gateway in us-east-1, eu-west-1 and us-west-2
# (aws.amazon.com/vpc/pricing, "NAT Gateway Pricing", $0.045 per hour; data processing extra), 2026.
AWS_NAT_GATEWAY_USD_HR = 0.045


@dataclass(frozen=True)
class BoxCost:
    nomad: str
    cloud: str
    region: str
    instance_type: str
    spot: bool
    hourly_usd: float | None
    monthly_usd: float | None
    hours_per_month: float
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"nomad": self.nomad, "cloud": self.cloud, "region": self.region,
                "instance_type": self.instance_type, "spot": self.spot, "hourly_usd": self.hourly_usd,
                "monthly_usd": self.monthly_usd, "hours_per_month": self.hours_per_month, "note": self.note}


def billed_hours_per_month(usage: Usage) -> float:
    """Hours a box runs per month when the idle agent stops it outside working hours."""
    return usage.hours_per_day * usage.days_per_month


def box_cost(spec: BoxSpec, usage: Usage) -> BoxCost:
    hours = billed_hours_per_month(usage)
    hourly = spec.hourly_usd
    note = ""
    if hourly is None:
        note = f"no {'spot ' if spec.spot else ''}price known for {spec.instance_type} in {spec.region}"
    elif spec.spot and spec.spot_usd_hr is None:
        note = "spot price unknown: on-demand used"
    return BoxCost(spec.nomad, spec.cloud, spec.region, spec.instance_type, spec.spot, hourly,
                   round(hourly * hours, 2) if hourly is not None else None, hours, note)


def fixed_monthly_usd(specs: list[BoxSpec], allow_public_ip: bool) -> dict[str, float]:
    """Fixed network costs per team stack, keyed 'cloud/region/item': one NAT gateway per AWS region in use.

    GCP's Cloud NAT is billed per VM-hour and per GB, which the box estimate does not model."""
    fixed: dict[str, float] = {}
    if allow_public_ip:
        return fixed
    for region in sorted({s.region for s in specs if s.cloud == "aws"}):
        fixed[f"aws/{region}/nat-gateway"] = round(AWS_NAT_GATEWAY_USD_HR * HOURS_PER_MONTH, 2)
    return fixed


@dataclass(frozen=True)
class TeamProjection:
    boxes: tuple[BoxCost, ...]
    fixed: dict[str, float]
    budget_usd: float | None

    @property
    def total_usd(self) -> float:
        return round(sum(b.monthly_usd or 0.0 for b in self.boxes) + sum(self.fixed.values()), 2)

    @property
    def unknown(self) -> list[str]:
        return [b.nomad for b in self.boxes if b.monthly_usd is None]

    @property
    def budget_used_pct(self) -> float | None:
        return round(100 * self.total_usd / self.budget_usd, 1) if self.budget_usd else None

    def as_dict(self) -> dict[str, object]:
        return {"boxes": [b.as_dict() for b in self.boxes], "fixed": self.fixed, "total_usd": self.total_usd,
                "budget_usd": self.budget_usd, "budget_used_pct": self.budget_used_pct,
                "unknown_prices": self.unknown}


def team_projection(specs: list[BoxSpec], usage: Usage, budget_usd: float | None,
                    allow_public_ip: bool = False) -> TeamProjection:
    return TeamProjection(tuple(box_cost(s, usage) for s in specs), fixed_monthly_usd(specs, allow_public_ip),
                          budget_usd)

"""Cloud or tower? The field guide's central question, answered with the catalog's prices.

Compares, for one GPU class and a weekly usage, a notebook + cloud box
(on-demand or spot) with a notebook + tower. The notebook is common to both,
so it cancels out. Formulas (also in the README):

- cloud, per month: hours_per_week x 52/12 x hourly price
- tower, cumulative cash to month m: parts + electricity x m, less the resale
  value (resale_pct of the parts) once the tower is sold at the end of its life,
  with electricity = (typical W x used h + idle W x the other hours the tower
  is on) / 1000 x price per kWh
- break-even: the first month where cloud's cumulative cost reaches the tower's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import Catalog, InstanceType, Price, TowerBuild
from .errors import BadInputError, InputProblem

WEEKS_PER_MONTH = 52 / 12
HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class AdviceInputs:
    hours_per_week: float
    electricity_usd_kwh: float = 0.30
    life_months: int = 36
    resale_pct: float = 30.0
    idle_watts: float = 60.0
    tower_always_on: bool = False
    horizon_months: int = 36


@dataclass(frozen=True)
class Option:
    name: str
    upfront_usd: float
    monthly_usd: float
    cumulative: tuple[float, ...]  # cash spent by month 0..horizon
    note: str = ""


@dataclass(frozen=True)
class Advice:
    instance: InstanceType
    price: Price
    tower: TowerBuild
    inputs: AdviceInputs
    options: tuple[Option, ...]
    break_even_month: dict[str, int | None]  # cloud option name -> month the tower becomes cheaper

    def as_dict(self) -> dict[str, object]:
        return {
            "cloud_type": f"{self.instance.cloud}:{self.instance.instance_type}",
            "region": self.price.region,
            "tower": self.tower.name,
            "inputs": self.inputs.__dict__,
            "options": [
                {"name": o.name, "upfront_usd": o.upfront_usd, "monthly_usd": round(o.monthly_usd, 2),
                 "cumulative_usd": [round(c, 2) for c in o.cumulative], "note": o.note}
                for o in self.options
            ],
            "break_even_month": self.break_even_month,
            "sources": {"cloud_price": self.price.source, "cloud_price_date": self.price.date,
                        "tower": self.tower.source, "tower_date": self.tower.date},
        }


def tower_electricity_usd_month(tower: TowerBuild, inputs: AdviceInputs) -> float:
    used_h = min(inputs.hours_per_week * WEEKS_PER_MONTH, HOURS_PER_MONTH)
    idle_h = HOURS_PER_MONTH - used_h if inputs.tower_always_on else 0.0
    kwh = (tower.typical_power_w * used_h + inputs.idle_watts * idle_h) / 1000
    return kwh * inputs.electricity_usd_kwh


def tower_cumulative(tower: TowerBuild, parts: float, inputs: AdviceInputs) -> tuple[float, ...]:
    elec = tower_electricity_usd_month(tower, inputs)
    resale = parts * inputs.resale_pct / 100
    return tuple(parts + elec * m - (resale if m >= inputs.life_months else 0.0)
                 for m in range(inputs.horizon_months + 1))


def advise(catalog: Catalog, instance: InstanceType, region: str, tower: TowerBuild,
           inputs: AdviceInputs) -> Advice:
    price = catalog.price(instance.cloud, instance.instance_type, region)
    problems = []
    if inputs.hours_per_week <= 0 or inputs.hours_per_week > 168:
        problems.append(InputProblem("--hours-per-week", f"{inputs.hours_per_week} is not in 0-168.",
                                     "Give the GPU hours a week you expect to use."))
    if price is None or price.on_demand_usd_hr is None:
        problems.append(InputProblem("--region", f"no on-demand price for {instance.instance_type} in {region}.",
                                     "Pick a region the catalog prices (see `nomadrig catalog`)."))
    if tower.parts_cost_usd is None:
        problems.append(InputProblem("--tower", f"no parts cost is known for tower build {tower.name}.",
                                     "Pick a build with a known cost (see `nomadrig catalog --towers`)."))
    if problems:
        raise BadInputError("advise", problems)
    assert price is not None and price.on_demand_usd_hr is not None and tower.parts_cost_usd is not None
    hours_month = inputs.hours_per_week * WEEKS_PER_MONTH
    horizon = range(inputs.horizon_months + 1)
    options = [Option("cloud on-demand", 0.0, hours_month * price.on_demand_usd_hr,
                      tuple(hours_month * price.on_demand_usd_hr * m for m in horizon))]
    if price.spot_usd_hr is not None:
        options.append(Option("cloud spot", 0.0, hours_month * price.spot_usd_hr,
                              tuple(hours_month * price.spot_usd_hr * m for m in horizon),
                              "interruptions stop the box; the data volume survives"))
    tower_costs = tower_cumulative(tower, tower.parts_cost_usd, inputs)
    options.append(Option(f"tower ({tower.name})", tower.parts_cost_usd,
                          tower_electricity_usd_month(tower, inputs), tower_costs,
                          f"resold at {inputs.resale_pct:g}% after {inputs.life_months} months"))
    break_even: dict[str, int | None] = {}
    for option in options[:-1]:
        break_even[option.name] = next(
            (m for m in horizon if m > 0 and option.cumulative[m] >= tower_costs[m]), None)
    return Advice(instance, price, tower, inputs, tuple(options), break_even)


def pick_tower(catalog: Catalog, min_vram_gb: float) -> TowerBuild:
    """The smallest known build with at least as much GPU memory as the cloud GPU class, cheapest first."""
    fits = [t for t in catalog.towers() if t.parts_cost_usd is not None
            and t.gpu_vram_gb * t.gpu_count >= min_vram_gb]
    if not fits:
        raise BadInputError("advise", [InputProblem("--tower", f"no tower build has {min_vram_gb:g} GB of VRAM.",
                                                     "Name a build with --tower (see `nomadrig catalog --towers`).")])
    return min(fits, key=lambda t: (t.gpu_vram_gb * t.gpu_count, t.parts_cost_usd or 0.0))


def render_chart(advice: Advice, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for option in advice.options:
        ax.plot(range(len(option.cumulative)), option.cumulative, label=option.name, linewidth=2)
    for name, month in advice.break_even_month.items():
        if month is not None:
            ax.axvline(month, linestyle=":", color="grey")
            ax.annotate(f"tower cheaper than {name}\nfrom month {month}", (month, 0), xytext=(4, 10),
                        textcoords="offset points", fontsize=8)
    ax.set_xlabel("months")
    ax.set_ylabel("cumulative cost (USD)")
    ax.set_title(f"{advice.inputs.hours_per_week:g} GPU h/week: {advice.instance.instance_type} "
                 f"({advice.price.region}) vs {advice.tower.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

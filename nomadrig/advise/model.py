"""Cloud or tower? The field guide's central question, answered like for like with the catalog's figures.

A notebook + cloud box is compared with a notebook + tower of the same GPU count (the notebook is
common to both, so it cancels out). Formulas (also in the README, "Cost formulas"):

- cloud hours a month  h = min(hours_per_week x 52/12, 730)
- cloud, per month     h x hourly price + (root_gb + data_gb) x disk GB-month rate (the disks bill 24/7);
                       spot hours are h x (1 + spot_overhead_pct/100), as in `nomadrig cost`
- tower hours a month  t = min(h x speed of the cloud GPU / speed of the tower GPU, 730), speeds from
                       throughput.csv (equal when either is unknown, said in the caveats)
- tower power          load W = (GPUs x GPU TDP + CPU TDP + platform W) / PSU efficiency; idle W per build;
                       kWh a month = (load W x t + idle W x idle h) / 1000, idle h = 730 - t when the tower
                       stays on (a remote tower does, the default), else 0
- tower cash to month m = parts + electricity x m + for each replacement at months L, 2L, ... below the
                       horizon: parts - resale (the old tower sold at resale_pct, a new one bought)
- tower book value     straight-line from parts to resale_pct x parts over the life L (smooth, no step)
- break-even           every month m where the cloud's cumulative cost reaches the tower's cash after
                       being below it. The tower's cash never falls, so no break-even can come from
                       selling the tower; a replacement can push the tower back above the cloud, which
                       gives a second break-even later.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from nomadrig.catalog import Catalog, InstanceType, Price, TowerBuild
from nomadrig.cost import DISK_RATE, HOURS_PER_MONTH, SPOT_INTERRUPTION_OVERHEAD_PCT
from nomadrig.errors import BadInputError, InputProblem

WEEKS_PER_MONTH = 52 / 12


@dataclass(frozen=True)
class AdviceInputs:
    """What the user assumes; every figure is checked by `problems` before any is used."""

    hours_per_week: float
    electricity_usd_kwh: float = 0.30
    life_months: int = 36
    resale_pct: float = 30.0
    horizon_months: int = 36
    always_on: bool = True  # a remote tower stays on so it can be reached
    root_gb: float = 100.0  # the cloud box's root disk, as in examples/team.yaml
    data_gb: float = 500.0  # the cloud box's data disk, kept 24/7
    tower_price_usd: float | None = None  # overrides the build's parts cost (e.g. a street price)
    idle_watts: float | None = None  # overrides the build's idle draw
    platform_watts: float | None = None  # overrides the build's board/RAM/SSD/fans draw
    speed_ratio: float | None = None  # tower GPU speed / cloud GPU speed; overrides throughput.csv
    spot_overhead_pct: float = SPOT_INTERRUPTION_OVERHEAD_PCT  # spot hours re-run or restarting, as `nomadrig cost`

    def problems(self) -> list[InputProblem]:
        """Every out-of-range input at once, each naming its option and the range it accepts."""
        checks = [
            ("--hours-per-week", self.hours_per_week, 0, 168, False, "GPU hours a week, more than 0 and at most 168"),
            ("--electricity", self.electricity_usd_kwh, 0, 5, True, "USD per kWh, 0 to 5 (e.g. 0.30)"),
            ("--life-months", self.life_months, 1, 120, True, "months, 1 to 120"),
            ("--resale-pct", self.resale_pct, 0, 100, True, "percent of the parts cost, 0 to 100"),
            ("--months", self.horizon_months, 1, 240, True, "months, 1 to 240"),
            ("--root-gb", self.root_gb, 0, 100_000, True, "GB, 0 or more"),
            ("--data-gb", self.data_gb, 0, 100_000, True, "GB, 0 or more"),
            ("--tower-price", self.tower_price_usd, 0, 1_000_000, False, "USD, more than 0"),
            ("--idle-watts", self.idle_watts, 0, 5_000, True, "watts, 0 to 5000"),
            ("--platform-watts", self.platform_watts, 0, 5_000, True, "watts, 0 to 5000"),
            ("--speed-ratio", self.speed_ratio, 0, 100, False, "tower GPU speed / cloud GPU speed, more than 0"),
            ("--spot-overhead-pct", self.spot_overhead_pct, 0, 100, True, "percent of spot hours, 0 to 100"),
        ]
        found = []
        for option, value, low, high, low_ok, accepts in checks:
            if value is None:
                continue
            bad = (not math.isfinite(value) or value > high or value < low or (value == low and not low_ok))
            if bad:
                found.append(InputProblem(option, f"{value:g} is out of range.", f"Give {accepts}."))
        return found


@dataclass(frozen=True)
class Option:
    """One way to get the GPU hours: its monthly cost, cumulative cost by month 0..horizon, and notes."""

    name: str
    upfront_usd: float
    monthly_usd: float
    cumulative: tuple[float, ...]
    note: str = ""
    steps: tuple[int, ...] = ()  # months where the cumulative cost jumps (a tower replaced)
    lines: dict[str, float] = field(default_factory=dict)  # the monthly cost by item


@dataclass(frozen=True)
class Advice:
    instance: InstanceType
    price: Price
    tower: TowerBuild
    inputs: AdviceInputs
    options: tuple[Option, ...]
    break_evens: dict[str, tuple[int, ...]]  # cloud option -> every month the tower becomes the cheaper one
    tower_value: tuple[float, ...]  # book value of the tower in service by month
    speed_ratio: float
    caveats: tuple[str, ...]

    @property
    def break_even_month(self) -> dict[str, int | None]:
        """The first break-even per cloud option (None: the tower is not cheaper within the horizon)."""
        return {name: (months[0] if months else None) for name, months in self.break_evens.items()}

    def as_dict(self) -> dict[str, object]:
        tower = self.options[-1]
        return {
            "cloud_type": f"{self.instance.cloud}:{self.instance.instance_type}",
            "region": self.price.region,
            "gpus_compared": f"{self.instance.gpu_count}x {self.instance.gpu_model} vs "
                             f"{self.tower.gpu_count}x {self.tower.gpu_model}",
            "tower": self.tower.name,
            "inputs": asdict(self.inputs),
            "speed_ratio_tower_to_cloud": self.speed_ratio,
            "options": [{"name": o.name, "upfront_usd": o.upfront_usd, "monthly_usd": round(o.monthly_usd, 2),
                         "monthly_lines_usd": {k: round(v, 2) for k, v in o.lines.items()},
                         "cumulative_usd": [round(c, 2) for c in o.cumulative], "note": o.note,
                         "step_months": list(o.steps)} for o in self.options],
            "break_even_month": self.break_even_month,
            "break_even_months": {k: list(v) for k, v in self.break_evens.items()},
            "tower_value_usd": [round(v, 2) for v in self.tower_value],
            "tower_cost_net_of_value_at_horizon_usd": round(tower.cumulative[-1] - self.tower_value[-1], 2),
            "caveats": list(self.caveats),
            "sources": {"cloud_price": self.price.source, "cloud_price_effective_date": self.price.effective_date,
                        "cloud_price_read_date": self.price.read_date, "tower": self.tower.source,
                        "tower_date": self.tower.date},
        }


def cloud_hours(inputs: AdviceInputs) -> float:
    return min(inputs.hours_per_week * WEEKS_PER_MONTH, HOURS_PER_MONTH)


def tower_hours(inputs: AdviceInputs, speed_ratio: float) -> float:
    """Hours the tower runs for the same work: fewer when its GPU is faster than the cloud's."""
    return min(cloud_hours(inputs) / speed_ratio, HOURS_PER_MONTH)


def tower_power_usd_month(tower: TowerBuild, inputs: AdviceInputs, speed_ratio: float) -> float:
    """Whole-system electricity: load at the wall while training, idle draw for the rest when always on."""
    used = tower_hours(inputs, speed_ratio)
    idle_h = HOURS_PER_MONTH - used if inputs.always_on else 0.0
    platform = tower.platform_w if inputs.platform_watts is None else inputs.platform_watts
    load_w = (tower.gpu_count * tower.gpu_tdp_w + tower.cpu_tdp_w + platform) / (tower.psu_efficiency_pct / 100)
    idle_w = tower.idle_w if inputs.idle_watts is None else inputs.idle_watts
    return (load_w * used + idle_w * idle_h) / 1000 * inputs.electricity_usd_kwh


def replacement_months(inputs: AdviceInputs) -> tuple[int, ...]:
    """Ends of life inside the horizon: the tower is sold at resale value and a new one bought."""
    return tuple(range(inputs.life_months, inputs.horizon_months, inputs.life_months))


def tower_cash(parts: float, power_month: float, inputs: AdviceInputs) -> tuple[float, ...]:
    """Cash spent on the tower by month 0..horizon (never falls: a sale only lowers a replacement's cost)."""
    net_replacement = parts * (1 - inputs.resale_pct / 100)
    swaps = replacement_months(inputs)
    return tuple(parts + power_month * m + net_replacement * sum(1 for s in swaps if s <= m)
                 for m in range(inputs.horizon_months + 1))


def tower_book_value(parts: float, inputs: AdviceInputs) -> tuple[float, ...]:
    """Straight-line value of the tower in service, from parts to resale_pct x parts over its life."""
    loss = parts * (1 - inputs.resale_pct / 100)
    swaps = replacement_months(inputs)
    values = []
    for m in range(inputs.horizon_months + 1):
        bought = max((s for s in swaps if s <= m), default=0)
        values.append(parts - loss * (m - bought) / inputs.life_months)
    return tuple(values)


def crossings(cloud: tuple[float, ...], tower: tuple[float, ...]) -> tuple[int, ...]:
    """Months where the cloud's cumulative cost reaches the tower's after being below it."""
    return tuple(m for m in range(1, len(cloud)) if cloud[m] >= tower[m] and cloud[m - 1] < tower[m - 1])


def speed(catalog: Catalog, instance: InstanceType, tower: TowerBuild, inputs: AdviceInputs) -> tuple[float, str]:
    """Tower GPU speed / cloud GPU speed and, when it is assumed, the caveat that says so."""
    if inputs.speed_ratio is not None:
        return inputs.speed_ratio, f"speed ratio {inputs.speed_ratio:g} given with --speed-ratio"
    cloud_speed, tower_speed = catalog.throughput(instance.gpu_model), catalog.throughput(tower.gpu_model)
    if cloud_speed is None or tower_speed is None:
        unknown = [m for m, s in ((instance.gpu_model, cloud_speed), (tower.gpu_model, tower_speed)) if s is None]
        return 1.0, (f"no training benchmark for {' and '.join(unknown)}: equal speed assumed "
                     "(set --speed-ratio)")
    return tower_speed.train_rel_3090 / cloud_speed.train_rel_3090, ""


def advise(catalog: Catalog, instance: InstanceType, region: str, tower: TowerBuild,
           inputs: AdviceInputs) -> Advice:
    """Cloud (on-demand, spot) against a tower with as many GPUs, month by month over the horizon."""
    price = catalog.price(instance.cloud, instance.instance_type, region)
    problems = inputs.problems()
    if price is None or price.on_demand_usd_hr is None:
        problems.append(InputProblem("--region", f"no on-demand price for {instance.instance_type} in {region}.",
                                     "Pick a region the catalog prices (see `nomadrig catalog`)."))
    if tower.gpu_count != instance.gpu_count:
        problems.append(InputProblem("--tower", f"{tower.name} has {tower.gpu_count} GPU(s), "
                                     f"{instance.instance_type} has {instance.gpu_count}.",
                                     "Compare builds with as many GPUs as the cloud type (see `catalog --towers`)."))
    if problems:
        raise BadInputError("advise", problems)
    assert price is not None and price.on_demand_usd_hr is not None
    ratio, speed_note = speed(catalog, instance, tower, inputs)
    hours, horizon = cloud_hours(inputs), range(inputs.horizon_months + 1)
    disk = catalog.rate(instance.cloud, DISK_RATE[instance.cloud], region)
    storage = (inputs.root_gb + inputs.data_gb) * disk.usd if disk else 0.0
    caveats = [note for note in (speed_note,) if note]
    if disk is None:
        caveats.append(f"no disk rate for {region}: cloud disks left out")
    options = [_cloud_option("cloud on-demand", hours, price.on_demand_usd_hr, storage, horizon)]
    if price.spot_usd_hr is not None:
        spot_hours = hours * (1 + inputs.spot_overhead_pct / 100)
        options.append(_cloud_option("cloud spot", spot_hours, price.spot_usd_hr, storage, horizon,
                                     f"+{inputs.spot_overhead_pct:g}% hours re-run or restarting after interruptions"))
    else:
        caveats.append("no spot price known: spot not compared")
    parts = inputs.tower_price_usd if inputs.tower_price_usd is not None else tower.parts_cost_usd
    power = tower_power_usd_month(tower, inputs, ratio)
    cash = tower_cash(parts, power, inputs)
    swaps = replacement_months(inputs)
    options.append(Option(f"tower ({tower.name})", parts, power, cash,
                          f"replaced every {inputs.life_months} months, old one sold at {inputs.resale_pct:g}%",
                          swaps, {"electricity": power}))
    caveats.append(f"tower electricity at ${inputs.electricity_usd_kwh:g}/kWh, "
                   + ("on 24/7 (idle draw counted)" if inputs.always_on else "off when unused"))
    breaks = {o.name: crossings(o.cumulative, cash) for o in options[:-1]}
    return Advice(instance, price, tower, inputs, tuple(options), breaks, tower_book_value(parts, inputs), ratio,
                  tuple(caveats))


def _cloud_option(name: str, hours: float, hourly: float, storage: float, horizon: range,
                  note: str = "") -> Option:
    monthly = hours * hourly + storage
    return Option(name, 0.0, monthly, tuple(monthly * m for m in horizon), note,
                  lines={"compute": hours * hourly, "disks": storage})


def pick_tower(catalog: Catalog, instance: InstanceType) -> TowerBuild:
    """The cheapest build with as many GPUs as the cloud type and at least its memory per GPU."""
    fits = [t for t in catalog.towers()
            if t.gpu_count == instance.gpu_count and t.gpu_vram_gb >= instance.gpu_vram_gb]
    if not fits:
        counts = sorted({t.gpu_count for t in catalog.towers()})
        raise BadInputError("advise", [InputProblem(
            "--gpu-class", f"no tower build has {instance.gpu_count} GPU(s) with {instance.gpu_vram_gb:g} GB each "
            f"({instance.instance_type}).",
            f"Tower builds have {', '.join(map(str, counts))} GPU(s): pick a profile with as many, or name one "
            "with --tower and the same GPU count.")])
    return min(fits, key=lambda t: (t.parts_cost_usd, t.gpu_vram_gb, t.name))


def cheapest_region(catalog: Catalog, instance: InstanceType, allowed: list[str] | None = None) -> str | None:
    """The cheapest on-demand region for the type, among the team's allowed regions when given."""
    priced = [p for p in catalog.prices() if p.cloud == instance.cloud and p.instance_type == instance.instance_type
              and p.on_demand_usd_hr is not None and (allowed is None or p.region in allowed)]
    return min(priced, key=lambda p: (p.on_demand_usd_hr, p.region)).region if priced else None


def hours_per_week_from_usage(hours_per_day: float, days_per_month: float) -> float:
    """A team's usage (hours a day x days a month) as GPU hours a week."""
    return hours_per_day * days_per_month / WEEKS_PER_MONTH

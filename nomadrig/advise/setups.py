"""The field guide's five setups, ranked by what they cost a remote deep-learning engineer over the horizon.

tower only, notebook only (trains on its own GPU), notebook + tower, notebook + eGPU, notebook + cloud.
Each setup is a set of lines, USD over the horizon (formulas also in the README, "The five setups"):

- hardware     every device bought, net of what it is still worth at the horizon: price x (1 + replacements
               within the horizon) - resale x price for each replaced one - its straight-line book value at
               the horizon (model.tower_cash / tower_book_value with no power; --life-months, --resale-pct)
- electricity  tower: model.tower_power_usd_month (load while training, idle draw while on) x months;
               notebook: load_w x its GPU hours / 1000 x $/kWh x months; eGPU: card TDP / 0.9 PSU efficiency
               (assumed) x its GPU hours / 1000 x $/kWh x months
- cloud        the like-for-like comparison's on-demand option (compute + root and data disks 24/7) x months
- admin        admin hours a month (per setup, ADMIN_HOURS_MONTH) x the hourly rate x months
- data         a backup copy of the data set (--data-gb) in the cloud region's object storage, x months: every
               setup keeps its working copy on its own disk (bought with it, or the cloud data disk) and one
               copy off the machine
- travel       setups with a tower: trips a year to move, ship or fix it x the cost of one x months / 12

The week's work is the user's GPU hours on the cloud GPU; a setup whose GPU is slower needs more hours
(work / speed relative to the cloud GPU, throughput.csv; an eGPU also loses its link's speed_factor). A
setup that would need more than 168 hours a week cannot do the work and is ranked last, whatever it costs.
The hidden-cost figures are assumptions, not measurements: each is overridable and shown in the output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from nomadrig.advise.model import WEEKS_PER_MONTH, Advice, AdviceInputs, tower_book_value, tower_cash
from nomadrig.catalog import Catalog, EgpuEnclosure, Notebook
from nomadrig.cost import BUCKET_RATE
from nomadrig.errors import BadInputError, InputProblem

SETUPS = ("tower only", "notebook only", "notebook + tower", "notebook + eGPU", "notebook + cloud")
LINE_ITEMS = ("hardware", "electricity", "cloud", "admin", "data", "travel")
HOURS_PER_WEEK = 168.0
EGPU_PSU_EFFICIENCY = 0.90  # assumed: the enclosures list their PSU's watts, not its efficiency

#: Administration hours a month per setup: OS and driver/CUDA upgrades, backups, hardware faults, remote
#: access. Assumptions (no survey found), ordered by what each setup has to keep working: a remote tower
#: also needs its VPN, power and a person on site; the cloud box is rebuilt from code by nomadrig.
ADMIN_HOURS_MONTH: dict[str, float] = {"tower only": 3.0, "notebook only": 1.0, "notebook + tower": 4.0,
                                       "notebook + eGPU": 2.0, "notebook + cloud": 1.0}
ADMIN_USD_HOUR = 50.0  # assumed value of an engineer's hour; set your own with --admin-rate
TOWER_TRIPS_PER_YEAR = 1.0  # a tower abroad: one move, shipment or repair trip a year (assumption)
TRIP_USD = 300.0  # one such trip or shipment (assumption: no sourced figure; set --trip-usd)


@dataclass(frozen=True)
class HiddenCosts:
    """The hidden costs' assumptions: every one has a documented default and a command-line override."""

    admin_usd_hour: float = ADMIN_USD_HOUR
    admin_hours_month: Mapping[str, float] = field(default_factory=lambda: dict(ADMIN_HOURS_MONTH))
    tower_trips_per_year: float = TOWER_TRIPS_PER_YEAR
    trip_usd: float = TRIP_USD
    notebook_price_usd: float | None = None  # overrides the dGPU notebook's catalog price
    notebook_watts: float | None = None  # overrides its load_w
    notebook_speed: float | None = None  # its GPU speed / the cloud GPU's; overrides throughput.csv
    egpu_speed: float | None = None  # overrides the enclosure's speed_factor

    def problems(self) -> list[InputProblem]:
        """Every out-of-range figure at once, each naming its option."""
        checks: list[tuple[str, float | None, float, bool, str]] = [
            ("--admin-rate", self.admin_usd_hour, 10_000, True, "USD an hour, 0 to 10000"),
            ("--tower-trips", self.tower_trips_per_year, 52, True, "trips a year, 0 to 52"),
            ("--trip-usd", self.trip_usd, 100_000, True, "USD, 0 to 100000"),
            ("--notebook-price", self.notebook_price_usd, 100_000, False, "USD, more than 0"),
            ("--notebook-watts", self.notebook_watts, 2_000, True, "watts, 0 to 2000"),
            ("--notebook-speed", self.notebook_speed, 100, False, "notebook GPU speed / cloud GPU speed, above 0"),
            ("--egpu-speed", self.egpu_speed, 1, False, "speed behind the link / in a slot, above 0, at most 1"),
        ]
        found = [InputProblem(option, f"{value:g} is out of range.", f"Give {accepts}.")
                 for option, value, high, zero_ok, accepts in checks
                 if value is not None and (not math.isfinite(value) or value > high or value < 0
                                           or (value == 0 and not zero_ok))]
        for name, hours in self.admin_hours_month.items():
            if name not in SETUPS:
                found.append(InputProblem("--admin-hours", f"{name!r} is not a setup.",
                                          f"Use SETUP=HOURS with one of: {', '.join(SETUPS)}."))
            elif not (math.isfinite(hours) and 0 <= hours <= 730):
                found.append(InputProblem("--admin-hours", f"{name}={hours:g} is out of range.",
                                          "Give 0 to 730 hours a month."))
        return found


@dataclass(frozen=True)
class Setup:
    """One setup's cost lines over the horizon, what it buys and how long its GPU runs for the week's work."""

    name: str
    bought: tuple[str, ...]
    gpu: str  # e.g. "1x RTX 3090 24 GB (tower)"
    vram_gb: float
    gpu_hours_week: float
    lines: dict[str, float]
    upfront_usd: float
    notes: tuple[str, ...] = ()

    @property
    def feasible(self) -> bool:
        """The setup can do the week's work within the week."""
        return self.gpu_hours_week <= HOURS_PER_WEEK

    @property
    def total_usd(self) -> float:
        return round(sum(self.lines.values()), 2)

    def as_dict(self, rank: int) -> dict[str, object]:
        return {"rank": rank, "setup": self.name, "bought": list(self.bought), "gpu": self.gpu,
                "vram_gb_per_gpu": self.vram_gb, "gpu_hours_per_week": round(self.gpu_hours_week, 2),
                "feasible": self.feasible, "upfront_usd": round(self.upfront_usd, 2),
                "lines_usd": {k: round(v, 2) for k, v in self.lines.items()}, "total_usd": self.total_usd,
                "notes": list(self.notes)}


@dataclass(frozen=True)
class FieldGuide:
    """The five setups ranked (cheapest feasible first) for the user's hours, data and horizon."""

    setups: tuple[Setup, ...]
    hours_per_week: float
    data_gb: float
    horizon_months: int
    hidden: HiddenCosts
    caveats: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"hours_per_week": self.hours_per_week, "data_gb": self.data_gb,
                "horizon_months": self.horizon_months,
                "assumptions": {"admin_usd_hour": self.hidden.admin_usd_hour,
                                "admin_hours_month": dict(self.hidden.admin_hours_month),
                                "tower_trips_per_year": self.hidden.tower_trips_per_year,
                                "trip_usd": self.hidden.trip_usd},
                "ranking": [s.as_dict(i) for i, s in enumerate(self.setups, 1)], "caveats": list(self.caveats)}


def rank(setups: list[Setup]) -> tuple[Setup, ...]:
    """Feasible setups by total cost, then those that cannot do the week's work (by total cost too)."""
    return tuple(sorted(setups, key=lambda s: (not s.feasible, s.total_usd, SETUPS.index(s.name))))


def hardware_net_usd(price: float, inputs: AdviceInputs) -> float:
    """Cash spent on a device over the horizon (replacements at end of life included) minus its value then."""
    return tower_cash(price, 0.0, inputs)[-1] - tower_book_value(price, inputs)[-1]


def gpu_hours_week(work_hours_week: float, speed_vs_cloud: float) -> float:
    """Hours a GPU runs for the week's work, given as hours on the cloud GPU."""
    return work_hours_week / speed_vs_cloud


def speed_vs_cloud(catalog: Catalog, gpu_model: str, advice: Advice) -> tuple[float, str]:
    """A GPU's training speed relative to the cloud GPU, through the tower GPU the comparison already rates.

    advice.speed_ratio is tower / cloud (from throughput.csv, or assumed 1 and said so); a GPU with a
    benchmark row is scaled from the tower's; one without is assumed as fast as the tower GPU, and said so.
    """
    mine, tower = catalog.throughput(gpu_model), catalog.throughput(advice.tower.gpu_model)
    if mine is None or tower is None:
        return advice.speed_ratio, f"no training benchmark for {gpu_model}: as fast as the tower GPU assumed"
    return mine.train_rel_3090 / tower.train_rel_3090 * advice.speed_ratio, ""


def _common_lines(name: str, months: int, hidden: HiddenCosts, backup_month: float) -> dict[str, float]:
    admin = hidden.admin_hours_month.get(name, ADMIN_HOURS_MONTH[name]) * hidden.admin_usd_hour * months
    return {"admin": admin, "data": backup_month * months}


def _tower_setups(advice: Advice, thin: Notebook, months: int, hidden: HiddenCosts,
                  backup_month: float) -> list[Setup]:
    inputs, tower = advice.inputs, advice.tower
    parts = inputs.tower_price_usd if inputs.tower_price_usd is not None else tower.parts_cost_usd
    power = advice.options[-1].monthly_usd * months
    travel = hidden.tower_trips_per_year * hidden.trip_usd * months / 12
    gpu = f"{tower.gpu_count}x {tower.gpu_model} {tower.gpu_vram_gb:g} GB (tower)"
    hours = gpu_hours_week(inputs.hours_per_week, advice.speed_ratio)
    out = []
    for name, with_notebook in (("tower only", False), ("notebook + tower", True)):
        hardware = hardware_net_usd(parts, inputs) + (hardware_net_usd(thin.price_usd, inputs) if with_notebook else 0)
        lines = {"hardware": hardware, "electricity": power, "cloud": 0.0,
                 **_common_lines(name, months, hidden, backup_month), "travel": travel}
        bought = (tower.name, thin.name) if with_notebook else (tower.name,)
        upfront = parts + (thin.price_usd if with_notebook else 0.0)
        note = () if with_notebook else ("a desk you work at: no mobility (the guide's baseline)",)
        out.append(Setup(name, bought, gpu, tower.gpu_vram_gb, hours, lines, upfront, note))
    return out


def _notebook_only(catalog: Catalog, advice: Advice, notebook: Notebook, months: int, hidden: HiddenCosts,
                   backup_month: float) -> tuple[Setup, str]:
    inputs = advice.inputs
    assert notebook.gpu_model is not None
    gpu = catalog.gpu(notebook.gpu_model)
    speed, caveat = speed_vs_cloud(catalog, notebook.gpu_model, advice)
    if hidden.notebook_speed is not None:
        speed, caveat = hidden.notebook_speed, ""
    hours = gpu_hours_week(inputs.hours_per_week, speed)
    watts = hidden.notebook_watts if hidden.notebook_watts is not None else notebook.load_w
    price = hidden.notebook_price_usd if hidden.notebook_price_usd is not None else notebook.price_usd
    running = min(hours, HOURS_PER_WEEK) * WEEKS_PER_MONTH
    lines = {"hardware": hardware_net_usd(price, inputs),
             "electricity": watts * running / 1000 * inputs.electricity_usd_kwh * months, "cloud": 0.0,
             **_common_lines("notebook only", months, hidden, backup_month), "travel": 0.0}
    vram = gpu.vram_gb if gpu else 0.0
    label = f"{notebook.gpu_count}x {notebook.gpu_model} {vram:g} GB (notebook)"
    return Setup("notebook only", (notebook.name,), label, vram, hours, lines, price), caveat


def _notebook_egpu(advice: Advice, thin: Notebook, egpu: EgpuEnclosure, months: int, hidden: HiddenCosts,
                   backup_month: float) -> Setup:
    inputs, tower = advice.inputs, advice.tower
    factor = hidden.egpu_speed if hidden.egpu_speed is not None else egpu.speed_factor
    hours = gpu_hours_week(inputs.hours_per_week, advice.speed_ratio * factor)
    card = tower.gpu_price_usd * tower.gpu_count
    running = min(hours, HOURS_PER_WEEK) * WEEKS_PER_MONTH
    watts = tower.gpu_count * tower.gpu_tdp_w / EGPU_PSU_EFFICIENCY
    lines = {"hardware": sum(hardware_net_usd(p, inputs) for p in (thin.price_usd, egpu.price_usd, card)),
             "electricity": watts * running / 1000 * inputs.electricity_usd_kwh * months, "cloud": 0.0,
             **_common_lines("notebook + eGPU", months, hidden, backup_month), "travel": 0.0}
    notes = [f"{egpu.pcie} behind a {egpu.link_gbps:g} Gb/s link: {factor:g}x the card's desktop speed"]
    if tower.gpu_count * tower.gpu_tdp_w * 1.2 > egpu.psu_w:
        notes.append(f"{tower.gpu_model} ({tower.gpu_tdp_w} W) leaves under 20% headroom on the "
                     f"{egpu.psu_w} W enclosure PSU")
    gpu = f"{tower.gpu_count}x {tower.gpu_model} {tower.gpu_vram_gb:g} GB (eGPU)"
    return Setup("notebook + eGPU", (thin.name, egpu.name, f"{tower.gpu_count}x {tower.gpu_model}"), gpu,
                 tower.gpu_vram_gb, hours, lines, thin.price_usd + egpu.price_usd + card, tuple(notes))


def _notebook_cloud(advice: Advice, thin: Notebook, months: int, hidden: HiddenCosts, backup_month: float) -> Setup:
    on_demand = advice.options[0]
    inst = advice.instance
    lines = {"hardware": hardware_net_usd(thin.price_usd, advice.inputs), "electricity": 0.0,
             "cloud": on_demand.monthly_usd * months, **_common_lines("notebook + cloud", months, hidden,
                                                                     backup_month), "travel": 0.0}
    gpu = f"{inst.gpu_count}x {inst.gpu_model} {inst.gpu_vram_gb:g} GB ({inst.instance_type} on demand)"
    return Setup("notebook + cloud", (thin.name, f"{inst.instance_type} in {advice.price.region}"), gpu,
                 inst.gpu_vram_gb, advice.inputs.hours_per_week, lines, thin.price_usd)


def field_guide(catalog: Catalog, advice: Advice, hidden: HiddenCosts | None = None) -> FieldGuide:
    """The five setups for the comparison's hours, data size (its data disk) and horizon, ranked."""
    hidden = hidden or HiddenCosts()
    problems = hidden.problems()
    thin = next((n for n in catalog.notebooks() if n.kind == "thin" and n.thunderbolt), None)
    dgpu = next((n for n in catalog.notebooks() if n.kind == "dgpu"), None)
    egpu = next(iter(catalog.egpus()), None)
    if thin is None or dgpu is None or egpu is None:
        problems.append(InputProblem("catalog", "the catalog has no thin notebook with Thunderbolt, no dGPU notebook "
                                     "or no eGPU enclosure.", "Restore notebooks.csv and egpus.csv."))
    if problems:
        raise BadInputError("advise", problems)
    assert thin is not None and dgpu is not None and egpu is not None
    inputs, inst = advice.inputs, advice.instance
    months = inputs.horizon_months
    object_rate = catalog.rate(inst.cloud, BUCKET_RATE[inst.cloud], advice.price.region)
    backup_month = inputs.data_gb * object_rate.usd if object_rate else 0.0
    caveats = list(advice.caveats)
    if object_rate is None:
        caveats.append(f"no object storage rate for {advice.price.region}: data backups left out")
    notebook_only, speed_note = _notebook_only(catalog, advice, dgpu, months, hidden, backup_month)
    caveats += [note for note in (speed_note,) if note]
    setups = [*_tower_setups(advice, thin, months, hidden, backup_month), notebook_only,
              _notebook_egpu(advice, thin, egpu, months, hidden, backup_month),
              _notebook_cloud(advice, thin, months, hidden, backup_month)]
    for setup in setups:
        if setup.vram_gb < inst.gpu_vram_gb:
            caveats.append(f"{setup.name}: {setup.vram_gb:g} GB per GPU, less than the cloud GPU's "
                           f"{inst.gpu_vram_gb:g} GB (a model that needs it does not fit)")
    return FieldGuide(rank(setups), inputs.hours_per_week, inputs.data_gb, months, hidden, tuple(caveats))


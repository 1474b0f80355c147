"""Read and validate the catalog CSV files into a queryable `Catalog`.

The files are edited by hand (and rewritten by the price refresh), so every row is
checked on load: a typo must stop the program with file:line:column, not turn into a
wrong price inside a cost projection.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nomadrig.catalog.errors import CatalogError
from nomadrig.catalog.gpu_names import gpu_key, gpu_keys
from nomadrig.catalog.models import (
    EgpuEnclosure,
    GpuModel,
    InstanceType,
    Notebook,
    Price,
    Profile,
    Rate,
    Throughput,
    TowerBuild,
)

DEFAULT_DATA_DIR = Path(__file__).parent / "data"
CLOUDS = ("aws", "gcp")

INSTANCE_COLUMNS = ("cloud", "instance_type", "machine_type", "accelerator_type", "gpu_model", "gpu_count",
                    "gpu_vram_gb", "vcpu", "ram_gb", "source", "date")
PRICE_COLUMNS = ("cloud", "instance_type", "region", "on_demand_usd_hr", "spot_usd_hr", "source", "effective_date",
                 "read_date")
RATE_COLUMNS = ("cloud", "item", "region", "usd", "unit", "source", "effective_date", "read_date")
RATE_UNITS = ("GB-month", "h", "GB", "key-month", "version-month", "VM-h")
#: Bumped whenever a catalog file's columns change; a refreshed catalog of another format is not used.
CATALOG_FORMAT = 2
GPU_COLUMNS = ("gpu_model", "vram_gb", "tdp_w", "source", "date")
TOWER_COLUMNS = ("name", "gpu_model", "gpu_count", "gpu_vram_gb", "gpu_tdp_w", "gpu_price_usd", "platform_price_usd",
                 "cpu_tdp_w", "platform_w", "idle_w", "psu_w", "psu_efficiency_pct", "ram_gb", "disk_gb", "source",
                 "date")
THROUGHPUT_COLUMNS = ("gpu_model", "train_rel_3090", "source", "date")
PROFILE_COLUMNS = ("profile", "cloud", "instance_type", "description")
REGION_COLUMNS = ("cloud", "region", "source", "date")
NOTEBOOK_COLUMNS = ("name", "kind", "gpu_model", "gpu_count", "price_usd", "load_w", "thunderbolt", "ram_gb",
                    "life_months", "source", "date")
EGPU_COLUMNS = ("name", "price_usd", "psu_w", "link_gbps", "pcie", "speed_factor", "source", "date")


@dataclass
class Row:
    """One CSV data row with where it came from, so every error can point at it."""

    file: str
    line: int
    values: dict[str, str]

    def fail(self, column: str, message: str, fix: str = "") -> CatalogError:
        return CatalogError(self.file, self.line, column, message, fix)

    def text(self, column: str, required: bool = True) -> str:
        value = self.values[column].strip()
        if required and not value:
            raise self.fail(column, f"{column} is empty", f"Fill in {column}; every row needs one.")
        return value

    def optional_text(self, column: str) -> str | None:
        return self.text(column, required=False) or None

    def number(self, column: str, *, required: bool = True, integer: bool = False) -> float | None:
        raw = self.text(column, required=required)
        if not raw:
            return None
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            example = "8" if integer else "1.006"
            fix = f"Write {column} as {kind} (e.g. {example})"
            fix += ", or leave it empty if no source gives it." if not required else "."
            raise self.fail(column, f"{column} is {raw!r}, not {kind}", fix) from None
        if not math.isfinite(value) or value < 0:
            raise self.fail(column, f"{column} is {raw}, which is negative or not finite",
                            f"Write {column} as a figure of zero or more.")
        return value

    def integer(self, column: str, *, required: bool = True) -> int | None:
        value = self.number(column, required=required, integer=True)
        return None if value is None else int(value)

    def date(self, column: str = "date", *, required: bool = True) -> str | None:
        """An ISO date cell; empty is allowed only where `required` is False (the date is not known)."""
        raw = self.text(column, required=required)
        if not raw:
            return None
        try:
            dt.date.fromisoformat(raw)
        except ValueError:
            raise self.fail(column, f"{column} is {raw!r}, not an ISO date",
                            "Write the date the figure was published or observed as YYYY-MM-DD.") from None
        return raw

    def required_date(self, column: str = "date") -> str:
        value = self.date(column)
        assert value is not None
        return value


def read_rows(path: Path, columns: tuple[str, ...]) -> Iterator[Row]:
    """Yield the data rows of a catalog CSV, skipping `#` comment lines at the top."""
    name = path.name
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CatalogError(name, 0, "-", f"{path} does not exist",
                           "Restore it from the repository, or point load_catalog() at a complete "
                           "catalog folder.") from None
    first = 0
    while first < len(lines) and lines[first].lstrip().startswith("#"):
        first += 1
    reader = csv.reader(lines[first:])
    header = next(reader, None)
    header_line = first + 1
    if header is None:
        raise CatalogError(name, header_line, "-", "the file has no header row",
                           f"Add the header: {','.join(columns)}")
    if tuple(h.strip() for h in header) != columns:
        raise CatalogError(name, header_line, "-", f"header is {','.join(header)}",
                           f"The header must be exactly: {','.join(columns)}")
    for cells in reader:
        line = first + reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if cells[0].lstrip().startswith("#"):
            raise CatalogError(name, line, columns[0], "comment line below the header",
                               "Comments are allowed only at the top of the file; move or delete this line.")
        if len(cells) != len(columns):
            raise CatalogError(name, line, "-", f"row has {len(cells)} cells, the header has {len(columns)}",
                               "Quote cells that contain commas, and give every column a cell "
                               "(empty is fine).")
        yield Row(name, line, dict(zip(columns, cells, strict=True)))


@functools.lru_cache(maxsize=4)
def region_names(data_dir: Path = DEFAULT_DATA_DIR) -> dict[str, frozenset[str]]:
    """Every region name each cloud accepts, from `regions.csv`: the one region list nomadrig has.

    Read on its own (not through `load_catalog`) because team-file validation needs it before, and
    without, the prices; a duplicate or an unknown cloud stops the program with file:line like any row.
    """
    names: dict[str, set[str]] = {cloud: set() for cloud in CLOUDS}
    for row in read_rows(data_dir / "regions.csv", REGION_COLUMNS):
        cloud, region = _cloud(row), row.text("region")
        row.required_date()
        row.text("source")
        if region in names[cloud]:
            raise row.fail("region", f"duplicate region {cloud} {region}", "List each region once.")
        names[cloud].add(region)
    return {cloud: frozenset(found) for cloud, found in names.items()}


def check_region(cloud: str, region: str, row: Row, known: dict[str, frozenset[str]] | None = None) -> None:
    """A price or rate row must name a region of its cloud that regions.csv lists (`*` = every region)."""
    names = known if known is not None else region_names()
    if region != "*" and region not in names.get(cloud, frozenset()):
        raise row.fail("region", f"{region!r} is not a {cloud} region listed in regions.csv",
                       "Fix the region name, or add the region (with its source) to regions.csv.")


def _cloud(row: Row) -> str:
    cloud = row.text("cloud")
    if cloud not in CLOUDS:
        raise row.fail("cloud", f"cloud is {cloud!r}", f"Use one of: {', '.join(CLOUDS)}.")
    return cloud


def _instance(row: Row) -> InstanceType:
    item = InstanceType(
        cloud=_cloud(row),
        instance_type=row.text("instance_type"),
        machine_type=row.text("machine_type"),
        accelerator_type=row.optional_text("accelerator_type"),
        gpu_model=row.text("gpu_model"),
        gpu_count=row.integer("gpu_count") or 0,
        gpu_vram_gb=row.number("gpu_vram_gb") or 0.0,
        vcpu=row.integer("vcpu") or 0,
        ram_gb=row.number("ram_gb") or 0.0,
        source=row.text("source"),
        date=row.required_date(),
    )
    if item.gpu_count < 1:
        raise row.fail("gpu_count", "gpu_count is 0",
                       "The catalog lists GPU configurations only; give 1 or more.")
    if item.cloud == "aws" and item.accelerator_type:
        raise row.fail("accelerator_type", "AWS rows have no accelerator_type",
                       "Leave accelerator_type empty: the AWS instance type implies its GPUs.")
    if item.cloud == "gcp":
        if not item.accelerator_type:
            raise row.fail("accelerator_type", "GCP rows need the accelerator id",
                           "Give the GPU type GCP uses, e.g. nvidia-tesla-t4 or nvidia-l4.")
        if item.instance_type != item.machine_type:
            short = item.accelerator_type.rsplit("-", 1)[-1]
            expected = f"{item.machine_type}+{item.gpu_count}x{short}"
            if item.instance_type != expected:
                raise row.fail("instance_type", f"instance_type is {item.instance_type!r}",
                               f"An N1 machine with attached GPUs is keyed {expected!r}; "
                               "accelerator-optimised types use the machine type itself.")
    return item


def price_from_row(row: Row) -> Price:
    """A validated Price from a prices.csv row (also used by the refresh to read earlier output)."""
    return Price(
        cloud=_cloud(row),
        instance_type=row.text("instance_type"),
        region=row.text("region"),
        on_demand_usd_hr=row.number("on_demand_usd_hr", required=False),
        spot_usd_hr=row.number("spot_usd_hr", required=False),
        source=row.text("source"),
        effective_date=row.date("effective_date", required=False),
        read_date=row.required_date("read_date"),
    )


def rate_from_row(row: Row) -> Rate:
    """A validated Rate from a rates.csv row."""
    unit = row.text("unit")
    if unit not in RATE_UNITS:
        raise row.fail("unit", f"unit is {unit!r}", f"Use one of: {', '.join(RATE_UNITS)}.")
    usd = row.number("usd")
    assert usd is not None
    return Rate(cloud=_cloud(row), item=row.text("item"), region=row.text("region"), usd=usd, unit=unit,
                source=row.text("source"), effective_date=row.date("effective_date", required=False),
                read_date=row.required_date("read_date"))


def _gpu(row: Row) -> GpuModel:
    return GpuModel(model=row.text("gpu_model"), vram_gb=row.number("vram_gb") or 0.0,
                    tdp_w=row.integer("tdp_w", required=False), source=row.text("source"), date=row.required_date())


def _tower(row: Row) -> TowerBuild:
    def whole(column: str) -> int:
        value = row.integer(column)
        assert value is not None
        return value

    def figure(column: str) -> float:
        value = row.number(column)
        assert value is not None
        return value

    tower = TowerBuild(
        name=row.text("name"), gpu_model=row.text("gpu_model"), gpu_count=whole("gpu_count"),
        gpu_vram_gb=figure("gpu_vram_gb"), gpu_tdp_w=whole("gpu_tdp_w"), gpu_price_usd=figure("gpu_price_usd"),
        platform_price_usd=figure("platform_price_usd"), cpu_tdp_w=whole("cpu_tdp_w"), platform_w=whole("platform_w"),
        idle_w=whole("idle_w"), psu_w=whole("psu_w"), psu_efficiency_pct=figure("psu_efficiency_pct"),
        ram_gb=whole("ram_gb"), disk_gb=whole("disk_gb"), source=row.text("source"), date=row.required_date())
    if tower.gpu_count < 1:
        raise row.fail("gpu_count", "gpu_count is 0", "A tower build has 1 or more GPUs.")
    if not 50 <= tower.psu_efficiency_pct <= 100:
        raise row.fail("psu_efficiency_pct", f"psu_efficiency_pct is {tower.psu_efficiency_pct:g}",
                       "Give the PSU's efficiency at 50 % load as a percentage between 50 and 100 (80 PLUS Gold: 90).")
    return tower


def _throughput(row: Row) -> Throughput:
    factor = row.number("train_rel_3090")
    assert factor is not None
    if factor <= 0:
        raise row.fail("train_rel_3090", "train_rel_3090 is 0", "Give the measured ratio to one RTX 3090 (> 0).")
    return Throughput(row.text("gpu_model"), factor, row.text("source"), row.required_date())


def _notebook(row: Row) -> Notebook:
    """A notebooks.csv row: a thin notebook has no GPU, a dgpu one names a GPU gpus.csv knows (checked in _load)."""
    kind = row.text("kind")
    if kind not in ("thin", "dgpu"):
        raise row.fail("kind", f"kind is {kind!r}", "Use thin (no discrete GPU) or dgpu.")
    thunderbolt = row.text("thunderbolt")
    if thunderbolt not in ("yes", "no"):
        raise row.fail("thunderbolt", f"thunderbolt is {thunderbolt!r}", "Write yes or no.")
    gpu_count = row.integer("gpu_count") or 0
    gpu_model = row.optional_text("gpu_model")
    if (kind == "dgpu") != (gpu_model is not None and gpu_count > 0):
        raise row.fail("gpu_model", f"a {kind} notebook with gpu_model {gpu_model or 'empty'} x {gpu_count}",
                       "A dgpu notebook names its GPU and a count of 1 or more; a thin one leaves gpu_model empty, 0.")
    life = row.integer("life_months") or 0
    if life < 1:
        raise row.fail("life_months", "life_months is 0", "Give the months the notebook is kept (e.g. 36).")
    return Notebook(row.text("name"), kind, gpu_model, gpu_count, row.number("price_usd") or 0.0,
                    row.number("load_w") or 0.0, thunderbolt == "yes", row.integer("ram_gb") or 0, life,
                    row.text("source"), row.required_date())


def _egpu(row: Row) -> EgpuEnclosure:
    factor = row.number("speed_factor") or 0.0
    if not 0 < factor <= 1:
        raise row.fail("speed_factor", f"speed_factor is {factor:g}",
                       "Give the training speed behind the link relative to a desktop slot, above 0 and at most 1.")
    return EgpuEnclosure(row.text("name"), row.number("price_usd") or 0.0, row.integer("psu_w") or 0,
                         row.number("link_gbps") or 0.0, row.text("pcie"), factor, row.text("source"),
                         row.required_date())


def _profile(row: Row) -> Profile:
    return Profile(profile=row.text("profile"), cloud=_cloud(row), instance_type=row.text("instance_type"),
                   description=row.text("description"))


@dataclass
class Catalog:
    """All catalog records, indexed for the lookups the CLI, policy and cost code make."""

    _instances: dict[tuple[str, str], InstanceType]
    _prices: dict[tuple[str, str, str], Price]
    _gpus: dict[str, GpuModel]
    _towers: list[TowerBuild]
    _profiles: dict[tuple[str, str], Profile]
    data_dir: Path
    _rates: dict[tuple[str, str, str], Rate] = field(default_factory=dict)
    _throughput: dict[str, Throughput] = field(default_factory=dict)
    _notebooks: list[Notebook] = field(default_factory=list)
    _egpus: list[EgpuEnclosure] = field(default_factory=list)
    #: Where refreshed prices came from (None: the packaged catalog only), and why a refreshed
    #: catalog was not used, when one exists but does not fit this nomadrig.
    refreshed_dir: Path | None = None
    refreshed_note: str = ""
    _gpu_index: dict[str, GpuModel] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._gpu_index = {}
        for gpu in self._gpus.values():
            for key in gpu_keys(gpu.model, gpu.vram_gb):
                self._gpu_index.setdefault(key, gpu)

    @property
    def catalog_date(self) -> str:
        """The newest date among all rows: how fresh the catalog is at best."""
        dates = [r.date for r in (*self._instances.values(), *self._prices.values(), *self._gpus.values(),
                                  *self._towers)]
        return max(dates, default="")

    def instance(self, cloud: str, instance_type: str) -> InstanceType | None:
        return self._instances.get((cloud, instance_type))

    def instance_types(self, cloud: str | None = None) -> list[InstanceType]:
        return [i for i in self._instances.values() if cloud is None or i.cloud == cloud]

    def price(self, cloud: str, instance_type: str, region: str) -> Price | None:
        return self._prices.get((cloud, instance_type, region))

    def prices(self) -> list[Price]:
        return list(self._prices.values())

    def rate(self, cloud: str, item: str, region: str) -> Rate | None:
        """The region's own rate, else the one the provider states for every region ("*"), else None."""
        return self._rates.get((cloud, item, region)) or self._rates.get((cloud, item, "*"))

    def rates(self) -> list[Rate]:
        return list(self._rates.values())

    def throughput(self, gpu_model: str) -> Throughput | None:
        """Training throughput relative to an RTX 3090, by any spelling of the GPU; None when no benchmark is known."""
        known = self.gpu(gpu_model)
        return self._throughput.get(gpu_key(known.model)) if known else None

    def regions(self, cloud: str) -> set[str]:
        """Regions with any price row for the cloud."""
        return {p.region for p in self._prices.values() if p.cloud == cloud}

    def gpu(self, model: str) -> GpuModel | None:
        """Look a GPU up by any common spelling: "rtx4090", "NVIDIA GeForce RTX 4090", "nvidia-l4"."""
        return self._gpu_index.get(gpu_key(model))

    def gpu_models(self) -> list[GpuModel]:
        return list(self._gpus.values())

    def towers(self) -> list[TowerBuild]:
        return list(self._towers)

    def notebooks(self) -> list[Notebook]:
        return list(self._notebooks)

    def egpus(self) -> list[EgpuEnclosure]:
        return list(self._egpus)

    def profile(self, name: str, cloud: str) -> Profile | None:
        return self._profiles.get((name, cloud))

    def profiles(self) -> list[Profile]:
        return list(self._profiles.values())

    def search(self, *, cloud: str | None = None, region: str | None = None, gpu_model: str | None = None,
               min_vram_gb: float | None = None, max_usd_hr: float | None = None,
               spot: bool = False) -> list[tuple[InstanceType, Price]]:
        """Instance types with a price row that match every filter given, cheapest first.

        `min_vram_gb` is per GPU (what decides whether a model fits on one card).
        With `spot`, prices compare on the spot price and rows without one are left out;
        with `max_usd_hr`, rows without a known price are left out (we cannot say they fit).
        """
        wanted_gpu = self.gpu(gpu_model) if gpu_model else None
        if gpu_model and wanted_gpu is None:
            return []
        found: list[tuple[InstanceType, Price]] = []
        for price in self._prices.values():
            if (cloud and price.cloud != cloud) or (region and price.region != region):
                continue
            item = self._instances[(price.cloud, price.instance_type)]
            if wanted_gpu and self.gpu(item.gpu_model) != wanted_gpu:
                continue
            if min_vram_gb is not None and item.gpu_vram_gb < min_vram_gb:
                continue
            usd = price.usd_hr(spot)
            if spot and usd is None:
                continue
            if max_usd_hr is not None and (usd is None or usd > max_usd_hr):
                continue
            found.append((item, price))

        def order(pair: tuple[InstanceType, Price]) -> tuple[bool, float, str, str, str]:
            usd = pair[1].usd_hr(spot)
            return (usd is None, usd or 0.0, pair[0].cloud, pair[0].instance_type, pair[1].region)

        return sorted(found, key=order)


def _index(rows: Iterator[Row], build: Callable[[Row], object], key: Callable[[object], tuple],
           what: str) -> dict:
    items: dict = {}
    for row in rows:
        item = build(row)
        k = key(item)
        if k in items:
            raise row.fail("-", f"duplicate {what} {' / '.join(map(str, k))}",
                           "Each key may appear once; merge or delete one of the rows.")
        items[k] = (item, row)
    return items


def read_catalog(data_dir: Path) -> Catalog:
    gpus = _index(read_rows(data_dir / "gpus.csv", GPU_COLUMNS), _gpu, lambda g: (gpu_key(g.model),),
                  "GPU model")
    instances = _index(read_rows(data_dir / "instance_types.csv", INSTANCE_COLUMNS), _instance,
                       lambda i: (i.cloud, i.instance_type), "instance type")
    prices = _index(read_rows(data_dir / "prices.csv", PRICE_COLUMNS), price_from_row,
                    lambda p: (p.cloud, p.instance_type, p.region), "price row")
    towers = _index(read_rows(data_dir / "towers.csv", TOWER_COLUMNS), _tower, lambda t: (t.name,), "tower")
    profiles = _index(read_rows(data_dir / "profiles.csv", PROFILE_COLUMNS), _profile,
                      lambda p: (p.profile, p.cloud), "profile")
    # rates.csv is optional in a hand-made catalog folder: without it every non-compute line is "no rate known".
    rates = (_index(read_rows(data_dir / "rates.csv", RATE_COLUMNS), rate_from_row,
                    lambda r: (r.cloud, r.item, r.region), "rate") if (data_dir / "rates.csv").exists() else {})
    throughput = (_index(read_rows(data_dir / "throughput.csv", THROUGHPUT_COLUMNS), _throughput,
                         lambda t: (gpu_key(t.gpu_model),), "GPU") if (data_dir / "throughput.csv").exists() else {})

    # notebooks.csv and egpus.csv are optional in a hand-made catalog folder: advise then has no such setups.
    notebooks = (_index(read_rows(data_dir / "notebooks.csv", NOTEBOOK_COLUMNS), _notebook, lambda n: (n.name,),
                        "notebook") if (data_dir / "notebooks.csv").exists() else {})
    egpus = (_index(read_rows(data_dir / "egpus.csv", EGPU_COLUMNS), _egpu, lambda e: (e.name,), "eGPU enclosure")
             if (data_dir / "egpus.csv").exists() else {})

    known_gpus = {key for g, _ in gpus.values() for key in gpu_keys(g.model, g.vram_gb)}
    gpu_fix = "Add the model to gpus.csv or use a name from it."
    for item, row in (*instances.values(), *towers.values(), *throughput.values()):
        if gpu_key(item.gpu_model) not in known_gpus:
            raise row.fail("gpu_model", f"gpu_model {item.gpu_model!r} is not in gpus.csv", gpu_fix)
    for notebook, row in notebooks.values():
        if notebook.gpu_model and gpu_key(notebook.gpu_model) not in known_gpus:
            raise row.fail("gpu_model", f"gpu_model {notebook.gpu_model!r} is not in gpus.csv", gpu_fix)
    by_key = {gpu_key(g.model): g for g, _ in gpus.values()}
    for tower, row in towers.values():
        gpu = by_key.get(gpu_key(tower.gpu_model))
        if gpu is not None and (gpu.vram_gb, gpu.tdp_w) != (tower.gpu_vram_gb, tower.gpu_tdp_w):
            raise row.fail("gpu_tdp_w", f"{tower.gpu_model} is {tower.gpu_vram_gb:g} GB / {tower.gpu_tdp_w} W here but "
                           f"{gpu.vram_gb:g} GB / {gpu.tdp_w} W in gpus.csv", "Make the two files agree.")
    for price, row in prices.values():
        check_price_type(price, row, instances)
    for rate, row in rates.values():
        check_region(rate.cloud, rate.region, row)
    for profile, row in profiles.values():
        if (profile.cloud, profile.instance_type) not in instances:
            raise row.fail("instance_type", f"profile {profile.profile!r} points at unknown "
                           f"{profile.cloud} type {profile.instance_type!r}",
                           "Point the profile at a type listed in instance_types.csv.")

    def values(index: dict) -> dict:
        return {k: item for k, (item, _) in index.items()}

    return Catalog(
        _instances=values(instances),
        _prices=values(prices),
        _gpus={k[0]: g for k, g in values(gpus).items()},
        _towers=[t for t, _ in towers.values()],
        _profiles=values(profiles),
        data_dir=data_dir,
        _rates=values(rates),
        _throughput={k[0]: t for k, t in values(throughput).items()},
        _notebooks=list(values(notebooks).values()),
        _egpus=list(values(egpus).values()),
    )


def check_price_type(price: Price, row: Row, instances: dict, fix: str = "") -> None:
    """A price row must name a known type in a known region: a typo would otherwise price nothing."""
    check_region(price.cloud, price.region, row)
    if (price.cloud, price.instance_type) not in instances:
        raise row.fail("instance_type", f"{price.cloud} {price.instance_type!r} is not in instance_types.csv",
                       fix or "Add the type to instance_types.csv first, or fix the name.")

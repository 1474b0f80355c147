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
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CatalogError
from .gpu_names import gpu_key, gpu_keys
from .models import GpuModel, InstanceType, Price, Profile, TowerBuild

DEFAULT_DATA_DIR = Path(__file__).parent / "data"
CLOUDS = ("aws", "gcp")

INSTANCE_COLUMNS = ("cloud", "instance_type", "machine_type", "accelerator_type", "gpu_model", "gpu_count",
                    "gpu_vram_gb", "vcpu", "ram_gb", "source", "date")
PRICE_COLUMNS = ("cloud", "instance_type", "region", "on_demand_usd_hr", "spot_usd_hr", "source", "date")
GPU_COLUMNS = ("gpu_model", "vram_gb", "tdp_w", "source", "date")
TOWER_COLUMNS = ("name", "gpu_model", "gpu_count", "gpu_vram_gb", "gpu_tdp_w", "cpu_tdp_w", "typical_power_w",
                 "parts_cost_usd", "source", "date")
PROFILE_COLUMNS = ("profile", "cloud", "instance_type", "description")


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

    def date(self) -> str:
        raw = self.text("date")
        try:
            dt.date.fromisoformat(raw)
        except ValueError:
            raise self.fail("date", f"date is {raw!r}, not an ISO date",
                            "Write the date the figure was published or observed as YYYY-MM-DD.") from None
        return raw


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
        date=row.date(),
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
        date=row.date(),
    )


def _gpu(row: Row) -> GpuModel:
    return GpuModel(model=row.text("gpu_model"), vram_gb=row.number("vram_gb") or 0.0,
                    tdp_w=row.integer("tdp_w", required=False), source=row.text("source"), date=row.date())


def _tower(row: Row) -> TowerBuild:
    return TowerBuild(
        name=row.text("name"),
        gpu_model=row.text("gpu_model"),
        gpu_count=row.integer("gpu_count") or 0,
        gpu_vram_gb=row.number("gpu_vram_gb") or 0.0,
        gpu_tdp_w=row.integer("gpu_tdp_w", required=False),
        cpu_tdp_w=row.integer("cpu_tdp_w", required=False),
        typical_power_w=row.integer("typical_power_w", required=False),
        parts_cost_usd=row.number("parts_cost_usd", required=False),
        source=row.text("source"),
        date=row.date(),
    )


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


def refreshed_data_dir() -> Path:
    """Where `nomadrig catalog refresh` writes: $NOMADRIG_CATALOG, else ~/.nomadrig/catalog."""
    env = os.environ.get("NOMADRIG_CATALOG")
    return Path(env).expanduser() if env else Path.home() / ".nomadrig" / "catalog"


def load_catalog(data_dir: Path | None = None) -> Catalog:
    """Load and validate the catalog, read once per process.

    The default is the last refreshed catalog where one exists (so a refresh takes effect for
    every command), else the packaged one.
    """
    if data_dir is None:
        refreshed = refreshed_data_dir()
        return _load_default(refreshed if (refreshed / "prices.csv").exists() else DEFAULT_DATA_DIR)
    return _load(Path(data_dir))


@functools.lru_cache(maxsize=2)
def _load_default(data_dir: Path) -> Catalog:
    return _load(data_dir)


def _load(data_dir: Path) -> Catalog:
    gpus = _index(read_rows(data_dir / "gpus.csv", GPU_COLUMNS), _gpu, lambda g: (gpu_key(g.model),),
                  "GPU model")
    instances = _index(read_rows(data_dir / "instance_types.csv", INSTANCE_COLUMNS), _instance,
                       lambda i: (i.cloud, i.instance_type), "instance type")
    prices = _index(read_rows(data_dir / "prices.csv", PRICE_COLUMNS), price_from_row,
                    lambda p: (p.cloud, p.instance_type, p.region), "price row")
    towers = _index(read_rows(data_dir / "towers.csv", TOWER_COLUMNS), _tower, lambda t: (t.name,), "tower")
    profiles = _index(read_rows(data_dir / "profiles.csv", PROFILE_COLUMNS), _profile,
                      lambda p: (p.profile, p.cloud), "profile")

    known_gpus = {key for g, _ in gpus.values() for key in gpu_keys(g.model, g.vram_gb)}
    gpu_fix = "Add the model to gpus.csv or use a name from it."
    for item, row in (*instances.values(), *towers.values()):
        if gpu_key(item.gpu_model) not in known_gpus:
            raise row.fail("gpu_model", f"gpu_model {item.gpu_model!r} is not in gpus.csv", gpu_fix)
    for price, row in prices.values():
        if (price.cloud, price.instance_type) not in instances:
            raise row.fail("instance_type",
                           f"{price.cloud} {price.instance_type!r} is not in instance_types.csv",
                           "Add the type to instance_types.csv first, or fix the name.")
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
    )

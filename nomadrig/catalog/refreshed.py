"""Where a refreshed catalog lives, what it records, and how it is laid over the packaged one.

`nomadrig catalog refresh` writes only prices: `<dir>/prices.csv` (every row the refresh
started from plus what the APIs returned) and `<dir>/manifest.json` (the nomadrig version and
file format it was made for, when, which clouds and regions). The file it replaces moves to
`<dir>/previous/`, so one bad refresh can be undone with `nomadrig catalog reset`.

`<dir>` is `$NOMADRIG_CATALOG`, else `<NOMADRIG_HOME>/catalog` (the home the engine uses).

Every command reads the packaged catalog and lays the refreshed prices over it, row by row:
a refreshed row wins unless the packaged row was read later (a nomadrig upgrade brings newer
figures). A refreshed catalog made for another nomadrig version or file format is not used
(its prices may name types this version no longer has); `Catalog.refreshed_note` says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomadrig import __version__
from nomadrig.catalog.errors import CatalogError
from nomadrig.catalog.loader import (
    CATALOG_FORMAT,
    DEFAULT_DATA_DIR,
    PRICE_COLUMNS,
    Catalog,
    check_price_type,
    price_from_row,
    read_catalog,
    read_rows,
)
from nomadrig.catalog.models import Price
from nomadrig.paths import refreshed_catalog_dir

Key = tuple[str, str, str]  # (cloud, instance_type, region)

MANIFEST = "manifest.json"
PREVIOUS = "previous"
RESET_HINT = "Or run `nomadrig catalog reset` to go back to the packaged catalog."


def refreshed_data_dir() -> Path:
    """`$NOMADRIG_CATALOG`, else `<NOMADRIG_HOME>/catalog`: one home for everything nomadrig keeps locally."""
    return refreshed_catalog_dir()


@dataclass(frozen=True)
class Manifest:
    """What a refreshed catalog was made for: checked before its prices are used."""

    format: int
    nomadrig_version: str
    made_at: str
    clouds: tuple[str, ...]
    regions: dict[str, list[str]]
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "clouds": list(self.clouds)}


def read_manifest(folder: Path) -> Manifest | None:
    """The folder's manifest; None for a hand-made folder without one (its prices are used as they are)."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(format=int(raw["format"]), nomadrig_version=str(raw["nomadrig_version"]),
                        made_at=str(raw.get("made_at", "")), clouds=tuple(raw.get("clouds", ())),
                        regions=dict(raw.get("regions", {})), rows=int(raw.get("rows", 0)))
    except (ValueError, KeyError, TypeError) as error:
        raise CatalogError(str(path), 1, "-", f"the refreshed catalog's manifest is unreadable ({error})",
                           "Run `nomadrig catalog refresh` again. " + RESET_HINT) from None


def overlay_key(folder: Path) -> tuple[int, ...]:
    """Modification stamps of the refreshed files: a new refresh in the same process is read again."""
    return tuple((folder / name).stat().st_mtime_ns if (folder / name).exists() else 0
                 for name in ("prices.csv", MANIFEST))


def unusable_reason(manifest: Manifest | None, folder: Path) -> str:
    """Why a refreshed catalog must not be used by this nomadrig ("" when it may)."""
    if manifest is None or (manifest.format == CATALOG_FORMAT and manifest.nomadrig_version == __version__):
        return ""
    return (f"the refreshed catalog in {folder} was made for nomadrig {manifest.nomadrig_version} "
            f"(catalog format {manifest.format}); this is nomadrig {__version__} (format {CATALOG_FORMAT}), "
            "so the packaged prices are used. Run `nomadrig catalog refresh` to refresh them for this version, "
            "or `nomadrig catalog reset` to remove it.")


def refreshed_prices(folder: Path, base: Catalog) -> list[Price]:
    """The refreshed prices.csv, validated against the base catalog's instance types."""
    path = folder / "prices.csv"
    instances = {(i.cloud, i.instance_type): i for i in base.instance_types()}
    prices: list[Price] = []
    try:
        for row in read_rows(path, PRICE_COLUMNS):
            price = price_from_row(row)
            check_price_type(price, row, instances,
                             "This nomadrig does not know that type. " + RESET_HINT)
            prices.append(price)
    except CatalogError as error:
        fix = error.fix if RESET_HINT in error.fix else f"{error.fix} {RESET_HINT}".strip()
        raise CatalogError(str(path), error.line, error.column, error.message, fix) from None
    return prices


def overlay(base: Catalog, folder: Path) -> Catalog:
    """The base catalog with the folder's refreshed prices laid over it (see the module docstring)."""
    if not (folder / "prices.csv").exists():
        return base
    reason = unusable_reason(read_manifest(folder), folder)
    if reason:
        return dataclasses.replace(base, refreshed_note=reason)
    merged = {(p.cloud, p.instance_type, p.region): p for p in base.prices()}
    for price in refreshed_prices(folder, base):
        key = (price.cloud, price.instance_type, price.region)
        packaged = merged.get(key)
        if packaged is None or price.read_date >= packaged.read_date:
            merged[key] = price
    return dataclasses.replace(base, _prices=merged, refreshed_dir=folder)


def load_refreshed(folder: Path, base: Catalog | None = None) -> Catalog:
    """The catalog a command would see with `folder` as the refreshed catalog."""
    return overlay(base or read_catalog(DEFAULT_DATA_DIR), Path(folder))


def atomic_write(target: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def keep_previous(folder: Path) -> list[str]:
    """Copy the current refreshed files into `previous/` (atomically each); the current ones stay in place."""
    kept = []
    for name in ("prices.csv", MANIFEST):
        current = folder / name
        if current.exists():
            atomic_write(folder / PREVIOUS / name, current.read_text(encoding="utf-8"))
            kept.append(name)
    if kept and "manifest.json" not in kept:
        (folder / PREVIOUS / MANIFEST).unlink(missing_ok=True)
    return kept


def write_refreshed(folder: Path, prices_text: str, manifest: Manifest) -> None:
    """Keep the previous refresh, then replace prices and manifest, each by an atomic rename."""
    keep_previous(folder)
    atomic_write(folder / "prices.csv", prices_text)
    atomic_write(folder / MANIFEST, json.dumps(manifest.as_dict(), indent=2) + "\n")


def reset(folder: Path) -> list[str]:
    """Return to the packaged catalog: the refreshed files move to `previous/` (nothing is deleted)."""
    moved = []
    for name in ("prices.csv", MANIFEST):
        current = folder / name
        if current.exists():
            (folder / PREVIOUS).mkdir(parents=True, exist_ok=True)
            os.replace(current, folder / PREVIOUS / name)
            moved.append(name)
    return moved


def new_manifest(clouds: list[str], regions: dict[str, list[str]], rows: int, now: dt.datetime) -> Manifest:
    return Manifest(format=CATALOG_FORMAT, nomadrig_version=__version__,
                    made_at=now.replace(microsecond=0).isoformat(), clouds=tuple(clouds),
                    regions={c: list(r) for c, r in regions.items()}, rows=rows)



"""What `nomadrig catalog` prints: prices with their dates and staleness, rates, towers, refresh results.

Kept apart from the CLI module so the command functions stay a few lines each, and apart from
the loader so importing the catalog stays free of rich and typer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nomadrig.catalog.loader import CLOUDS, Catalog
from nomadrig.catalog.models import STALE_AFTER_DAYS, InstanceType, Price, Rate, TowerBuild, age_days
from nomadrig.catalog.refresh import RefreshReport
from nomadrig.errors import BadInputError, InputProblem
from nomadrig.tables import DataTable


def _when(effective_date: str | None, stale: bool) -> str:
    return f"{effective_date or 'undated'}{' stale' if stale else ''}"


def _money(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "unknown"


def price_dict(item: InstanceType, price: Price, today: dt.date) -> dict[str, Any]:
    return {**item.__dict__, "total_vram_gb": item.total_vram_gb, "region": price.region,
            "on_demand_usd_hr": price.on_demand_usd_hr, "spot_usd_hr": price.spot_usd_hr,
            "price_source": price.source, "price_date": price.read_date,
            "price_effective_date": price.effective_date, "price_read_date": price.read_date,
            "price_age_days": age_days(price.effective_date, today), "price_stale": price.stale(today)}


def prices_table(found: list[tuple[InstanceType, Price]], today: dt.date, catalog_date: str) -> DataTable:
    table = DataTable(title=f"GPU instance types (catalog read {catalog_date}; stale = price older than "
                            f"{STALE_AFTER_DAYS} days or undated)")
    for col in ("cloud", "type", "GPUs", "VRAM GB", "region", "$/h", "spot $/h", "price date"):
        table.add_column(col, justify="right" if col in ("VRAM GB", "$/h", "spot $/h") else "left")
    for it, p in found:
        table.add_row(it.cloud, it.instance_type, f"{it.gpu_count}x {it.gpu_model}", f"{it.total_vram_gb:g}",
                      p.region, _money(p.on_demand_usd_hr), _money(p.spot_usd_hr),
                      _when(p.effective_date, p.stale(today)))
    return table


def footer(catalog: Catalog, prices: list[Price], today: dt.date) -> list[str]:
    """Where the prices come from and how many are stale: the lines under the price table."""
    lines = []
    if catalog.refreshed_note:
        lines.append(f"note: {catalog.refreshed_note}")
    elif catalog.refreshed_dir is not None:
        lines.append(f"prices: packaged catalog with the refresh in {catalog.refreshed_dir} laid over it")
    stale = [p for p in prices if p.stale(today)]
    if stale:
        lines.append(f"{len(stale)} of {len(prices)} prices are stale (older than {STALE_AFTER_DAYS} days or "
                     "undated): run `nomadrig catalog refresh` where credentials exist")
    return lines


def rate_dict(rate: Rate, today: dt.date) -> dict[str, Any]:
    return {**rate.__dict__, "age_days": age_days(rate.effective_date, today), "stale": rate.stale(today)}


def rates_table(rates: Iterable[Rate], today: dt.date) -> DataTable:
    table = DataTable(title=f"storage, network and key rates (stale = older than {STALE_AFTER_DAYS} days or undated)")
    for col in ("cloud", "item", "region", "USD", "unit", "date"):
        table.add_column(col, justify="right" if col == "USD" else "left")
    for r in rates:
        table.add_row(r.cloud, r.item, r.region, f"{r.usd:g}", r.unit, _when(r.effective_date, r.stale(today)))
    return table


def tower_dict(tower: TowerBuild) -> dict[str, Any]:
    return dataclasses.asdict(tower)


def towers_table(towers: list[TowerBuild], catalog_date: str) -> DataTable:
    table = DataTable(title=f"tower builds (catalog {catalog_date})")
    for col in ("build", "GPUs", "VRAM/GPU GB", "parts $", "source"):
        table.add_column(col)
    for t in towers:
        table.add_row(t.name, f"{t.gpu_count}x {t.gpu_model}", f"{t.gpu_vram_gb:g}",
                      f"{t.parts_cost_usd:,.0f}" if t.parts_cost_usd is not None else "unknown", t.source)
    return table


def refresh_targets(clouds: list[str] | None, regions: list[str] | None,
                    team_file: Path | None) -> tuple[list[str], dict[str, list[str]]]:
    """The clouds and regions to refresh: --region exactly, else every priced region plus the team's allowed ones.

    The team file is read only for its `clouds.<cloud>.regions`, without validating the rest: a team
    that allows a region the catalog does not price yet must be able to refresh it before it validates.
    """
    from nomadrig.catalog.active import load_catalog
    from nomadrig.regions import REGIONS_BY_CLOUD

    chosen = list(dict.fromkeys(clouds or CLOUDS))
    for cloud in chosen:
        if cloud not in CLOUDS:
            raise BadInputError("catalog refresh", [InputProblem("--cloud", f"{cloud!r} is not a cloud.",
                                                                 f"Use one of: {', '.join(CLOUDS)}.")])
    if regions:
        wanted: dict[str, list[str]] = {cloud: [] for cloud in chosen}
        for region in regions:
            owners = [c for c in chosen if region in REGIONS_BY_CLOUD[c]]
            if not owners:
                raise BadInputError("catalog refresh", [InputProblem(
                    "--region", f"{region!r} is not a {' or '.join(chosen)} region.",
                    "Use a region name as the cloud writes it, e.g. eu-central-1 (AWS) or asia-northeast1 (GCP).")])
            wanted[owners[0]].append(region)
        return chosen, wanted
    catalog = load_catalog()
    team_regions = _team_regions(team_file) if team_file else {}
    return chosen, {cloud: sorted(catalog.regions(cloud) | set(team_regions.get(cloud, ()))) for cloud in chosen}


def _team_regions(path: Path) -> dict[str, list[str]]:
    """`clouds.<cloud>.regions` of a team file, read leniently (see refresh_targets); names must be real regions."""
    from nomadrig.regions import REGIONS_BY_CLOUD
    from nomadrig.yamlmap import load_located

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(str(path), [InputProblem("", f"cannot read it: {exc.__class__.__name__}.",
                                                     "Pass a readable UTF-8 team file.")]) from None
    document = load_located(text, str(path))
    if document.problems:
        raise BadInputError(str(path), document.problems[:1])
    clouds = document.data.get("clouds") if isinstance(document.data, dict) else None
    found: dict[str, list[str]] = {}
    for cloud, known in REGIONS_BY_CLOUD.items():
        entry = clouds.get(cloud) if isinstance(clouds, dict) else None
        listed = entry.get("regions") if isinstance(entry, dict) else None
        if isinstance(listed, list):
            found[cloud] = [r for r in listed if isinstance(r, str) and r in known]
    return found


def refresh_lines(report: RefreshReport) -> list[str]:
    """A refresh's summary and, for a dry run, every row it would add or change."""
    verb = "would write" if report.dry_run else "wrote"
    lines = [f"{verb} {report.path}: {len(report.refreshed)} prices refreshed, {len(report.changes)} added or "
             f"changed, {len(report.kept)} kept (no API price), {report.untouched} other rows carried over unchanged"]
    if report.dry_run:
        lines += [change.describe() for change in report.changes] or ["no price would change"]
    return lines

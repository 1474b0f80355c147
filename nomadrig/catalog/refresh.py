"""Rebuild the catalog's cloud prices from the providers' price APIs.

`refresh` fetches every price first and writes only when all fetches succeeded, through
a temporary file renamed into place, so a failed or interrupted refresh leaves the old
`prices.csv` as it was. Only the regions the team allows are written (data residency):
a refreshed cloud's rows for any other region are dropped from the output.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import aws_prices, gcp_prices
from .errors import CatalogRefreshError
from .loader import CLOUDS, PRICE_COLUMNS, Catalog, load_catalog, price_from_row, read_rows
from .models import InstanceType, Price

Key = tuple[str, str, str]  # (cloud, instance_type, region)

AWS_SOURCE = ("AWS Price List Query API GetProducts (AmazonEC2, Linux, Shared, preInstalledSw NA, "
              "capacitystatus Used) + EC2 DescribeSpotPriceHistory "
              "(Linux/UNIX, latest per AZ, regional minimum)")
GCP_SOURCE = ("GCP Cloud Billing Catalog API services/6F81-5844-456A/skus: "
              "vCPU x core SKU + RAM GB x RAM SKU + GPUs x GPU SKU (OnDemand; spot from Preemptible SKUs)")
STATIC_FILES = ("instance_types.csv", "gpus.csv", "towers.csv", "profiles.csv")


@dataclass(frozen=True)
class RefreshReport:
    """What a refresh wrote, so the CLI can tell the user exactly what changed."""

    path: Path  # the prices.csv written
    refreshed: tuple[Key, ...]  # rows with prices fresh from the APIs
    kept: tuple[Key, ...]  # the APIs had no price: the previous row was kept as it was
    dropped: tuple[Key, ...]  # previous rows in regions the team does not allow: not written
    fetched_on: str  # ISO date written into the refreshed rows


def refresh(clouds: Iterable[str], regions: Mapping[str, Iterable[str]], out_dir: Path, *,
            aws_client: aws_prices.AwsClientFactory | None = None,
            gcp_client: gcp_prices.JsonSession | None = None,
            catalog: Catalog | None = None,
            instance_types: Mapping[str, Iterable[str]] | None = None,
            now: dt.datetime | None = None) -> RefreshReport:
    """Fetch current prices for `clouds` in their allowed `regions` and write `out_dir/prices.csv`.

    `aws_client` is a factory `(service, region) -> boto3 client`; `gcp_client` is a session
    with `get_json(url, params)`. Both default to real clients from the environment and raise
    CatalogRefreshError naming the missing credential. `instance_types` narrows the types per
    cloud (default: every catalog type of that cloud). `out_dir` becomes a complete catalog
    folder (the other CSV files are copied there if missing) that `load_catalog(out_dir)` reads.
    """
    catalog = catalog or load_catalog()
    now = now or dt.datetime.now(dt.UTC)
    clouds = list(dict.fromkeys(clouds))
    for cloud in clouds:
        if cloud not in CLOUDS:
            raise CatalogRefreshError(f"unknown cloud {cloud!r}; refresh one of: {', '.join(CLOUDS)}.")
    allowed = {cloud: sorted(set(regions.get(cloud, ()))) for cloud in clouds}
    types = {cloud: _selected_types(catalog, cloud, instance_types) for cloud in clouds}

    fresh: dict[Key, Price] = {}
    today = now.date().isoformat()
    if "aws" in clouds and allowed["aws"]:
        factory = aws_client or aws_prices.default_client_factory()
        fresh.update(_fetch_aws(types["aws"], allowed["aws"], factory, now, today))
    if "gcp" in clouds and allowed["gcp"]:
        session = gcp_client or gcp_prices.default_session()
        fresh.update(_fetch_gcp(types["gcp"], allowed["gcp"], session, today))

    out_dir = Path(out_dir)
    previous = _previous_prices(out_dir, catalog)
    rows, refreshed, kept, dropped = _merge(previous, fresh, clouds, allowed, types)
    _write_catalog_dir(out_dir, catalog, rows)
    return RefreshReport(path=out_dir / "prices.csv", refreshed=tuple(refreshed), kept=tuple(kept),
                         dropped=tuple(dropped), fetched_on=today)


def _selected_types(catalog: Catalog, cloud: str,
                    instance_types: Mapping[str, Iterable[str]] | None) -> list[InstanceType]:
    if instance_types is None or cloud not in instance_types:
        return catalog.instance_types(cloud)
    selected = []
    for name in instance_types[cloud]:
        item = catalog.instance(cloud, name)
        if item is None:
            raise CatalogRefreshError(f"{cloud} type {name!r} is not in the catalog; add it to "
                                      "instance_types.csv before refreshing its price.")
        selected.append(item)
    return selected


def _fetch_aws(types: list[InstanceType], regions: list[str], factory: aws_prices.AwsClientFactory,
               now: dt.datetime, today: str) -> dict[Key, Price]:
    from botocore.exceptions import BotoCoreError, ClientError

    found: dict[Key, Price] = {}
    pricing = factory("pricing", aws_prices.PRICING_REGION)
    for region in regions:
        ec2 = factory("ec2", region)
        for item in types:
            try:
                on_demand = aws_prices.on_demand_usd_hr(pricing, item.machine_type, region)
                spot = aws_prices.spot_usd_hr(ec2, item.machine_type, now)
            except (BotoCoreError, ClientError) as error:
                raise CatalogRefreshError(f"AWS price lookup for {item.instance_type} in {region} failed: "
                                          f"{error}. Nothing was written.") from error
            if on_demand is not None or spot is not None:
                found[("aws", item.instance_type, region)] = Price(
                    "aws", item.instance_type, region, on_demand, spot, AWS_SOURCE, today)
    return found


def _fetch_gcp(types: list[InstanceType], regions: list[str], session: gcp_prices.JsonSession,
               today: str) -> dict[Key, Price]:
    try:
        skus = gcp_prices.fetch_skus(session)
    except (OSError, ValueError, KeyError) as error:
        raise CatalogRefreshError(f"GCP Cloud Billing Catalog request failed: {error}. "
                                  "Nothing was written.") from error
    found: dict[Key, Price] = {}
    for region in regions:
        for item in types:
            on_demand = gcp_prices.instance_usd_hr(item, region, skus, spot=False)
            spot = gcp_prices.instance_usd_hr(item, region, skus, spot=True)
            if on_demand is not None or spot is not None:
                found[("gcp", item.instance_type, region)] = Price(
                    "gcp", item.instance_type, region, on_demand, spot, GCP_SOURCE, today)
    return found


def _previous_prices(out_dir: Path, catalog: Catalog) -> list[Price]:
    """The prices a refresh starts from: an earlier refresh in out_dir, else the catalog's."""
    target = out_dir / "prices.csv"
    if not target.exists():
        return catalog.prices()
    return [price_from_row(row) for row in read_rows(target, PRICE_COLUMNS)]


def _merge(previous: list[Price], fresh: dict[Key, Price], clouds: list[str], allowed: dict[str, list[str]],
           types: dict[str, list[InstanceType]]) -> tuple[list[Price], list[Key], list[Key], list[Key]]:
    rows: dict[Key, Price] = {}
    kept: list[Key] = []
    dropped: list[Key] = []
    for price in previous:
        key = (price.cloud, price.instance_type, price.region)
        if price.cloud in clouds and price.region not in allowed[price.cloud]:
            dropped.append(key)
            continue
        rows[key] = price
    for cloud in clouds:
        for item in types[cloud]:
            for region in allowed[cloud]:
                key = (cloud, item.instance_type, region)
                if key in fresh:
                    rows[key] = fresh[key]
                elif key in rows:
                    kept.append(key)
    refreshed = sorted(fresh)
    ordered = sorted(rows.values(), key=lambda p: (p.cloud, p.instance_type, p.region))
    return ordered, refreshed, sorted(kept), sorted(dropped)


def _render(rows: list[Price]) -> str:
    buffer = io.StringIO()
    buffer.write("# Hourly USD prices, Linux, shared tenancy. Empty cell = no price known.\n")
    buffer.write("# Written by nomadrig.catalog.refresh; rows not refreshed keep their earlier "
                 "source and date.\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PRICE_COLUMNS)
    for p in rows:
        writer.writerow([p.cloud, p.instance_type, p.region, _cell(p.on_demand_usd_hr), _cell(p.spot_usd_hr),
                         p.source, p.date])
    return buffer.getvalue()


def _cell(value: float | None) -> Any:
    return "" if value is None else round(value, 5)


def _atomic_write(target: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_catalog_dir(out_dir: Path, catalog: Catalog, rows: list[Price]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in STATIC_FILES:
        target = out_dir / name
        if not target.exists():
            source = catalog.data_dir / name
            _atomic_write(target, source.read_text(encoding="utf-8"))
    _atomic_write(out_dir / "prices.csv", _render(rows))
    if (catalog.data_dir / "SOURCES.md").exists() and not (out_dir / "SOURCES.md").exists():
        shutil.copyfile(catalog.data_dir / "SOURCES.md", out_dir / "SOURCES.md")

"""Rebuild the catalog's cloud prices from the providers' price APIs, without ever losing a row.

`refresh` fetches every price first and writes only when all fetches succeeded. It starts from
the prices every command sees now (packaged rows with any earlier refresh laid over them), lays
the fetched prices over those and keeps every other row as it was: a refresh of one cloud, of a
few regions or of a few types leaves the rest byte for byte. A type the API cannot price keeps
its previous row. The files are written by atomic renames after the previous refresh was copied
to `previous/` (see `refreshed`), and `dry_run` only reports what would change.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nomadrig.catalog import aws_prices, gcp_prices
from nomadrig.catalog.errors import CatalogRefreshError
from nomadrig.catalog.loader import CLOUDS, DEFAULT_DATA_DIR, PRICE_COLUMNS, Catalog, read_catalog
from nomadrig.catalog.models import InstanceType, Price
from nomadrig.catalog.refreshed import Key, new_manifest, overlay, write_refreshed

AWS_SOURCE = ("AWS Price List Query API GetProducts (AmazonEC2, Linux, Shared, preInstalledSw NA, "
              "capacitystatus Used) + EC2 DescribeSpotPriceHistory "
              "(Linux/UNIX, latest per AZ, mean over the region's AZs)")
GCP_SOURCE = ("GCP Cloud Billing Catalog API services/6F81-5844-456A/skus: "
              "vCPU x core SKU + RAM GB x RAM SKU + GPUs x GPU SKU (OnDemand; spot from Preemptible SKUs)")


@dataclass(frozen=True)
class Change:
    """One row a refresh adds or changes: what a dry run prints."""

    key: Key
    before: Price | None
    after: Price

    def describe(self) -> str:
        name = " ".join(self.key)
        if self.before is None:
            return f"+ {name}: {_usd(self.after.on_demand_usd_hr)} on-demand, {_usd(self.after.spot_usd_hr)} spot"
        return (f"~ {name}: on-demand {_usd(self.before.on_demand_usd_hr)} -> {_usd(self.after.on_demand_usd_hr)}, "
                f"spot {_usd(self.before.spot_usd_hr)} -> {_usd(self.after.spot_usd_hr)}")


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:g}/h"


@dataclass(frozen=True)
class RefreshReport:
    """What a refresh wrote (or, in a dry run, would write), so the CLI can say exactly what changed."""

    path: Path  # the prices.csv written (or that a dry run would write)
    refreshed: tuple[Key, ...]  # rows with prices fresh from the APIs
    kept: tuple[Key, ...]  # asked for, but the APIs had no price: the previous row was kept as it was
    untouched: int  # rows of other clouds, regions or types, carried over unchanged
    changes: tuple[Change, ...]  # rows added or whose figures changed
    fetched_on: str  # ISO date written into the refreshed rows
    dry_run: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "dry_run": self.dry_run, "refreshed": len(self.refreshed),
                "kept": len(self.kept), "untouched": self.untouched, "fetched_on": self.fetched_on,
                "changes": [{"key": list(c.key), "before": _figures(c.before), "after": _figures(c.after)}
                            for c in self.changes]}


def _figures(price: Price | None) -> dict[str, float | None] | None:
    if price is None:
        return None
    return {"on_demand_usd_hr": price.on_demand_usd_hr, "spot_usd_hr": price.spot_usd_hr}


def refresh(clouds: Iterable[str], regions: Mapping[str, Iterable[str]], out_dir: Path, *,
            aws_client: aws_prices.AwsClientFactory | None = None,
            gcp_client: gcp_prices.JsonSession | None = None,
            catalog: Catalog | None = None,
            instance_types: Mapping[str, Iterable[str]] | None = None,
            now: dt.datetime | None = None,
            dry_run: bool = False) -> RefreshReport:
    """Fetch current prices for `clouds` in `regions` and merge them into `out_dir/prices.csv`.

    `aws_client` is a factory `(service, region) -> boto3 client`; `gcp_client` is a session
    with `get_json(url, params)`. Both default to real clients from the environment and raise
    CatalogRefreshError naming the missing credential. `catalog` is the packaged catalog the
    refresh builds on (default: the one installed); `instance_types` narrows the types per cloud
    (default: every catalog type of that cloud).
    """
    base = catalog or read_catalog(DEFAULT_DATA_DIR)
    now = now or dt.datetime.now(dt.UTC)
    clouds = list(dict.fromkeys(clouds))
    for cloud in clouds:
        if cloud not in CLOUDS:
            raise CatalogRefreshError(f"unknown cloud {cloud!r}; refresh one of: {', '.join(CLOUDS)}.")
    wanted = {cloud: sorted(set(regions.get(cloud, ()))) for cloud in clouds}
    types = {cloud: _selected_types(base, cloud, instance_types) for cloud in clouds}

    today = now.date().isoformat()
    fresh = _fetch(clouds, wanted, types, aws_client, gcp_client, now, today)

    out_dir = Path(out_dir)
    previous = {(p.cloud, p.instance_type, p.region): p for p in overlay(base, out_dir).prices()}
    merged = {**previous, **fresh}
    asked = {(c, i.instance_type, r) for c in clouds for i in types[c] for r in wanted[c]}
    changes = tuple(Change(k, previous.get(k), p) for k, p in sorted(fresh.items())
                    if previous.get(k) is None or _figures(previous[k]) != _figures(p))
    report = RefreshReport(
        path=out_dir / "prices.csv", refreshed=tuple(sorted(fresh)),
        kept=tuple(sorted(k for k in asked if k not in fresh and k in previous)),
        untouched=len([k for k in previous if k not in asked]), changes=changes, fetched_on=today,
        dry_run=dry_run)
    if not dry_run:
        rows = sorted(merged.values(), key=lambda p: (p.cloud, p.instance_type, p.region))
        write_refreshed(out_dir, render(rows), new_manifest(clouds, wanted, len(fresh), now))
    return report


def _fetch(clouds: list[str], wanted: dict[str, list[str]], types: dict[str, list[InstanceType]],
           aws_client: aws_prices.AwsClientFactory | None, gcp_client: gcp_prices.JsonSession | None,
           now: dt.datetime, today: str) -> dict[Key, Price]:
    """Every price asked for, or an exception: nothing is written from a partial fetch."""
    fresh: dict[Key, Price] = {}
    if "aws" in clouds and wanted["aws"]:
        factory = aws_client or aws_prices.default_client_factory()
        fresh.update(_fetch_aws(types["aws"], wanted["aws"], factory, now, today))
    if "gcp" in clouds and wanted["gcp"]:
        session = gcp_client or gcp_prices.default_session()
        fresh.update(_fetch_gcp(types["gcp"], wanted["gcp"], session, today))
    return fresh


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
                    "aws", item.instance_type, region, on_demand, spot, AWS_SOURCE, today, today)
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
                    "gcp", item.instance_type, region, on_demand, spot, GCP_SOURCE, today, today)
    return found


def render(rows: list[Price]) -> str:
    """prices.csv text; figures at full precision (repr), so a row carried over is written as it was read."""
    buffer = io.StringIO()
    buffer.write("# Hourly USD prices, Linux, shared tenancy. Empty cell = no price known.\n")
    buffer.write("# Written by nomadrig.catalog.refresh: rows not refreshed keep their earlier "
                 "source and dates.\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PRICE_COLUMNS)
    for p in rows:
        writer.writerow([p.cloud, p.instance_type, p.region, _cell(p.on_demand_usd_hr), _cell(p.spot_usd_hr),
                         p.source, p.effective_date or "", p.read_date])
    return buffer.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)

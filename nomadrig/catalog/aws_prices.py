"""Hourly AWS prices from the Price List Query API and EC2 spot price history.

Pure parsing lives here; the boto3 clients come from the caller (a factory), so the
tests drive the same code with botocore's Stubber and no network.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

# The Price List Query API is served from us-east-1 (also ap-south-1, eu-central-1).
PRICING_REGION = "us-east-1"

AwsClientFactory = Callable[[str, str], Any]  # (service, region) -> boto3 client


def product_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """The Price List filters that select the one on-demand Linux price a box pays.

    `regionCode` is the location filter (the `location` attribute holds long names
    like "US East (N. Virginia)"); Shared tenancy, no pre-installed software and
    `capacitystatus=Used` exclude dedicated hosts, SQL images and reservations.
    """
    wanted = (("instanceType", instance_type), ("regionCode", region), ("operatingSystem", "Linux"),
              ("tenancy", "Shared"), ("preInstalledSw", "NA"), ("capacitystatus", "Used"))
    return [{"Type": "TERM_MATCH", "Field": name, "Value": value} for name, value in wanted]


def hourly_on_demand_prices(price_list_item: str) -> Iterator[float]:
    """USD per hour in one `PriceList` entry (a JSON string), from its OnDemand terms."""
    product = json.loads(price_list_item)
    attributes = product.get("product", {}).get("attributes", {})
    if "BoxUsage" not in attributes.get("usagetype", "BoxUsage"):
        return  # e.g. dedicated-host or reservation usage types slipping through the filters
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if dimension.get("unit") == "Hrs" and usd is not None and float(usd) > 0:
                yield float(usd)


def on_demand_usd_hr(pricing: Any, instance_type: str, region: str) -> float | None:
    """The on-demand hourly price, following `NextToken` across pages.

    Should several products still match, the lowest hourly price wins: that is the
    one a plain Linux launch is billed at (the others carry licences or add-ons).
    """
    prices: list[float] = []
    token = ""
    while True:
        request: dict[str, Any] = {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1",
                                   "Filters": product_filters(instance_type, region), "MaxResults": 100}
        if token:
            request["NextToken"] = token
        page = pricing.get_products(**request)
        for item in page.get("PriceList", []):
            prices.extend(hourly_on_demand_prices(item))
        token = page.get("NextToken", "")
        if not token:
            return min(prices) if prices else None


def spot_usd_hr(ec2: Any, instance_type: str, now: dt.datetime) -> float | None:
    """The region's spot price: the latest price of each AZ, then the mean over AZs.

    A box goes to the first zone of the team network, and which AZ that zone name is differs per
    account, so the mean over the region's AZs is the price a box can expect (the minimum would be
    the cheapest zone, where the box is not placed). The shipped catalog's spot figures mean the
    same thing (SOURCES.md), so refreshed and shipped figures compare.
    """
    latest: dict[str, tuple[dt.datetime, float]] = {}
    token = ""
    while True:
        request: dict[str, Any] = {"InstanceTypes": [instance_type], "ProductDescriptions": ["Linux/UNIX"],
                                   "StartTime": now}
        if token:
            request["NextToken"] = token
        page = ec2.describe_spot_price_history(**request)
        for record in page.get("SpotPriceHistory", []):
            zone, stamp, usd = record["AvailabilityZone"], record["Timestamp"], float(record["SpotPrice"])
            if zone not in latest or stamp > latest[zone][0]:
                latest[zone] = (stamp, usd)
        token = page.get("NextToken", "")
        if not token:
            return round(sum(usd for _, usd in latest.values()) / len(latest), 6) if latest else None


def default_client_factory() -> AwsClientFactory:
    """boto3 clients from the default credential chain; a clear error when there is none."""
    from nomadrig.catalog.errors import CatalogRefreshError

    try:
        import boto3
    except ImportError:
        raise CatalogRefreshError("boto3 is not installed; install it with `pip install boto3`.") from None
    session = boto3.Session()
    if session.get_credentials() is None:
        raise CatalogRefreshError(
            "AWS credentials not found, so AWS prices cannot be refreshed.\n"
            "  Set AWS_PROFILE (after `aws configure` or `aws sso login`), or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY. The identity needs pricing:GetProducts and ec2:DescribeSpotPriceHistory.")
    return lambda service, region: session.client(service, region_name=region)

"""The price refresh against recorded API responses (tests/fixtures/pricing, see its README).

AWS runs through real botocore clients with a Stubber (no network); GCP through a fake
HTTP session. The catalog written is read back with load_catalog, as the CLI would.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from nomadrig.catalog import CatalogRefreshError, load_catalog
from nomadrig.catalog.aws_prices import product_filters
from nomadrig.catalog.gcp_prices import SKUS_URL
from nomadrig.catalog.refresh import refresh

FIXTURES = Path(__file__).parent / "fixtures" / "pricing"
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
# the example team's regions, narrowed: us-west-2 and europe-west4 are not allowed here
TEAM_REGIONS = {"aws": ["us-east-1", "eu-west-1"], "gcp": ["us-central1"]}


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def products(name: str) -> dict[str, Any]:
    """A GetProducts response as the API sends it: PriceList entries are JSON strings."""
    body = fixture(name)
    body["PriceList"] = [json.dumps(item) for item in body["PriceList"]]
    return body


def spot_history(name: str) -> dict[str, Any]:
    body = fixture(name)
    for record in body["SpotPriceHistory"]:
        record["Timestamp"] = dt.datetime.fromisoformat(record["Timestamp"].replace("Z", "+00:00"))
    return body


def client(service: str, region: str) -> Any:
    session = botocore.session.get_session()
    return session.create_client(
        service, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


class AwsStubs:
    """Stubbed pricing + per-region EC2 clients, handed to refresh() as its client factory."""

    def __init__(self) -> None:
        self.clients = {
            ("pricing", "us-east-1"): client("pricing", "us-east-1"),
            ("ec2", "eu-west-1"): client("ec2", "eu-west-1"),
            ("ec2", "us-east-1"): client("ec2", "us-east-1"),
        }
        self.stubs = {key: Stubber(c) for key, c in self.clients.items()}
        for stub in self.stubs.values():
            stub.activate()

    def __call__(self, service: str, region: str) -> Any:
        return self.clients[(service, region)]

    def stub(self, service: str, region: str) -> Stubber:
        return self.stubs[(service, region)]

    def assert_all_used(self) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


def queue_g5_responses(aws: AwsStubs) -> None:
    """Responses in call order: regions sorted (eu-west-1, us-east-1), price pages then spot."""
    base = {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1", "MaxResults": 100}
    pricing = aws.stub("pricing", "us-east-1")
    pricing.add_response(
        "get_products",
        products("aws_get_products_g5.xlarge_eu-west-1_page1.json"),
        {**base, "Filters": product_filters("g5.xlarge", "eu-west-1")},
    )
    pricing.add_response(
        "get_products",
        products("aws_get_products_g5.xlarge_eu-west-1_page2.json"),
        {**base, "Filters": product_filters("g5.xlarge", "eu-west-1"), "NextToken": "eu-west-1-page-2"},
    )
    pricing.add_response(
        "get_products",
        products("aws_get_products_g5.xlarge_us-east-1.json"),
        {**base, "Filters": product_filters("g5.xlarge", "us-east-1")},
    )
    spot_request = {"InstanceTypes": ["g5.xlarge"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": NOW}
    aws.stub("ec2", "eu-west-1").add_response(
        "describe_spot_price_history", spot_history("aws_spot_g5.xlarge_eu-west-1.json"), spot_request
    )
    aws.stub("ec2", "us-east-1").add_response(
        "describe_spot_price_history", spot_history("aws_spot_g5.xlarge_us-east-1.json"), spot_request
    )


class FakeBillingSession:
    """Serves the recorded SKU pages by pageToken and records every request."""

    def __init__(self, pages: dict[str, str]) -> None:
        self.pages = pages
        self.requests: list[tuple[str, dict[str, str]]] = []

    def get_json(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        self.requests.append((url, dict(params)))
        return fixture(self.pages[params.get("pageToken", "")])


def billing() -> FakeBillingSession:
    return FakeBillingSession({"": "gcp_skus_page1.json", "page-2": "gcp_skus_page2.json"})


def run_refresh(out_dir: Path, aws: AwsStubs, gcp: FakeBillingSession, **kwargs: Any):
    return refresh(
        ["aws", "gcp"],
        TEAM_REGIONS,
        out_dir,
        aws_client=aws,
        gcp_client=gcp,
        now=NOW,
        instance_types={"aws": ["g5.xlarge"], "gcp": ["g2-standard-8", "n1-standard-8+1xt4"]},
        **kwargs,
    )


def test_refresh_writes_api_prices_that_load_catalog_reads_back(tmp_path):
    aws, gcp = AwsStubs(), billing()
    queue_g5_responses(aws)

    report = run_refresh(tmp_path, aws, gcp)
    catalog = load_catalog(tmp_path)

    eu = catalog.price("aws", "g5.xlarge", "eu-west-1")
    assert (eu.on_demand_usd_hr, eu.spot_usd_hr) == (1.234, 0.52)  # latest price per AZ, then the minimum
    us = catalog.price("aws", "g5.xlarge", "us-east-1")
    assert (us.on_demand_usd_hr, us.spot_usd_hr) == (1.011, 0.39)
    g2 = catalog.price("gcp", "g2-standard-8", "us-central1")
    assert (g2.on_demand_usd_hr, g2.spot_usd_hr) == (0.8416, 0.332)  # 8 x core + 32 GB x RAM + 1 x L4
    assert "Price List" in eu.source and eu.date == "2026-11-26"
    assert ("gcp", "g2-standard-8", "us-central1") in report.refreshed
    aws.assert_all_used()


def test_gcp_price_with_no_spot_sku_is_written_without_spot(tmp_path):
    aws, gcp = AwsStubs(), billing()
    queue_g5_responses(aws)

    run_refresh(tmp_path, aws, gcp)

    t4 = load_catalog(tmp_path).price("gcp", "n1-standard-8+1xt4", "us-central1")
    # 8 x N1 core + 30 GB x N1 RAM + 1 x T4; the virtual-workstation T4 SKU is not picked
    assert t4.on_demand_usd_hr == 0.73
    assert t4.spot_usd_hr is None


def test_all_pages_are_followed(tmp_path):
    aws, gcp = AwsStubs(), billing()
    queue_g5_responses(aws)

    run_refresh(tmp_path, aws, gcp)

    aws.assert_all_used()  # the eu-west-1 price sits on the second GetProducts page
    assert [params.get("pageToken") for _, params in gcp.requests] == [None, "page-2"]
    assert all(url == SKUS_URL for url, _ in gcp.requests)


def test_regions_outside_the_team_allowed_list_are_not_written(tmp_path):
    aws, gcp = AwsStubs(), billing()
    queue_g5_responses(aws)

    report = run_refresh(tmp_path, aws, gcp)
    catalog = load_catalog(tmp_path)

    assert catalog.regions("aws") == {"us-east-1", "eu-west-1"}
    assert catalog.regions("gcp") == {"us-central1"}
    assert ("aws", "g5.xlarge", "us-west-2") in report.dropped
    assert "us-west-2" not in (tmp_path / "prices.csv").read_text()


def test_types_not_refreshed_keep_their_shipped_prices(tmp_path):
    aws, gcp = AwsStubs(), billing()
    queue_g5_responses(aws)

    run_refresh(tmp_path, aws, gcp)

    shipped = load_catalog().price("aws", "g4dn.xlarge", "us-east-1")
    assert load_catalog(tmp_path).price("aws", "g4dn.xlarge", "us-east-1") == shipped


def test_type_the_api_cannot_price_keeps_its_previous_row(tmp_path):
    gcp = billing()  # has no A2 or A100 SKUs

    report = refresh(
        ["gcp"], TEAM_REGIONS, tmp_path, gcp_client=gcp, now=NOW, instance_types={"gcp": ["a2-highgpu-1g"]}
    )

    assert report.kept == (("gcp", "a2-highgpu-1g", "us-central1"),)
    assert load_catalog(tmp_path).price("gcp", "a2-highgpu-1g", "us-central1") == load_catalog().price(
        "gcp", "a2-highgpu-1g", "us-central1"
    )


def test_failed_refresh_leaves_the_old_file_untouched(tmp_path):
    aws, gcp = AwsStubs(), billing()
    queue_g5_responses(aws)
    run_refresh(tmp_path, aws, gcp)
    before = (tmp_path / "prices.csv").read_bytes()

    failing = AwsStubs()
    failing.stub("pricing", "us-east-1").add_response(
        "get_products", products("aws_get_products_g5.xlarge_eu-west-1_page1.json")
    )
    failing.stub("pricing", "us-east-1").add_client_error("get_products", "ThrottlingException", "Rate exceeded")
    with pytest.raises(CatalogRefreshError, match="g5.xlarge in eu-west-1 failed.*Nothing was written"):
        run_refresh(tmp_path, failing, billing())

    assert (tmp_path / "prices.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_missing_aws_credentials_say_which_and_how(tmp_path, monkeypatch):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup off this host

    with pytest.raises(CatalogRefreshError, match="(?s)AWS credentials not found.*AWS_PROFILE"):
        refresh(["aws"], TEAM_REGIONS, tmp_path / "out", now=NOW)
    assert not (tmp_path / "out").exists()


def test_missing_gcp_api_key_says_how_to_supply_it(tmp_path, monkeypatch):
    monkeypatch.delenv("NOMADRIG_GCP_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)

    with pytest.raises(CatalogRefreshError, match="(?s)GCP API key not found.*NOMADRIG_GCP_API_KEY"):
        refresh(["gcp"], TEAM_REGIONS, tmp_path / "out", now=NOW)
    assert not (tmp_path / "out").exists()


def test_unknown_cloud_is_refused(tmp_path):
    with pytest.raises(CatalogRefreshError, match="unknown cloud 'azure'"):
        refresh(["azure"], {}, tmp_path, now=NOW)

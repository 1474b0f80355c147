"""The price refresh against constructed API responses (tests/fixtures/pricing, see its README).

AWS runs through real botocore clients with a Stubber (no network); GCP through a fake
HTTP session. The refreshed catalog is read back the way every command reads it: the packaged
catalog with the refreshed prices laid over it. A refresh merges and never drops a row.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from nomadrig import __version__
from nomadrig.catalog import DEFAULT_DATA_DIR, CatalogRefreshError, gcp_prices, load_catalog
from nomadrig.catalog.aws_prices import product_filters
from nomadrig.catalog.gcp_prices import SKUS_URL
from nomadrig.catalog.refresh import refresh
from nomadrig.catalog.refreshed import PREVIOUS, load_refreshed, read_manifest, reset
from nomadrig.catalog.report import refresh_targets
from nomadrig.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "pricing"
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)  # after the packaged rows were read
# regions to refresh, narrowed: us-west-2 and europe-west4 are not refreshed here (and must survive)
TEAM_REGIONS = {"aws": ["us-east-1", "eu-west-1"], "gcp": ["us-central1"]}
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"


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


def lines_of(path: Path, cloud: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith(f"{cloud},")]


def refresh_gcp_only(out_dir: Path, **kwargs: Any):
    return refresh(["gcp"], TEAM_REGIONS, out_dir, gcp_client=billing(), now=NOW,
                   instance_types={"gcp": ["g2-standard-8", "n1-standard-8+1xt4"]}, **kwargs)


def test_refresh_writes_api_prices_that_later_commands_read(tmp_path):
    aws, gcp = AwsStubs(), billing()
    queue_g5_responses(aws)

    report = run_refresh(tmp_path, aws, gcp)
    catalog = load_refreshed(tmp_path)

    eu = catalog.price("aws", "g5.xlarge", "eu-west-1")
    assert (eu.on_demand_usd_hr, eu.spot_usd_hr) == (1.234, 0.535)  # latest per AZ (0.52, 0.55), then the mean
    us = catalog.price("aws", "g5.xlarge", "us-east-1")
    assert (us.on_demand_usd_hr, us.spot_usd_hr) == (1.011, 0.4)  # mean of 0.41 and 0.39
    g2 = catalog.price("gcp", "g2-standard-8", "us-central1")
    assert (g2.on_demand_usd_hr, g2.spot_usd_hr) == (0.8416, 0.332)  # 8 x core + 32 GB x RAM + 1 x L4
    assert "Price List" in eu.source and eu.effective_date == eu.read_date == "2026-12-02"
    assert ("gcp", "g2-standard-8", "us-central1") in report.refreshed
    aws.assert_all_used()


def test_load_catalog_reads_the_refreshed_prices_from_its_folder(tmp_path, monkeypatch):
    refresh_gcp_only(tmp_path)
    monkeypatch.setenv("NOMADRIG_CATALOG", str(tmp_path))

    catalog = load_catalog()

    assert catalog.price("gcp", "g2-standard-8", "us-central1").on_demand_usd_hr == 0.8416
    assert catalog.refreshed_dir == tmp_path


def test_gcp_price_with_no_spot_sku_is_written_without_spot(tmp_path):
    refresh_gcp_only(tmp_path)

    t4 = load_refreshed(tmp_path).price("gcp", "n1-standard-8+1xt4", "us-central1")
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


def test_regions_not_refreshed_keep_every_row(tmp_path):
    aws, gcp = AwsStubs(), billing()
    queue_g5_responses(aws)

    report = run_refresh(tmp_path, aws, gcp)
    catalog = load_refreshed(tmp_path)

    shipped = load_catalog()
    assert catalog.regions("aws") == shipped.regions("aws") and catalog.regions("gcp") == shipped.regions("gcp")
    assert catalog.price("aws", "g5.xlarge", "us-west-2") == shipped.price("aws", "g5.xlarge", "us-west-2")
    assert report.untouched == len(shipped.prices()) - len(report.refreshed) - len(report.kept)


def test_refresh_of_one_cloud_leaves_the_other_clouds_rows_byte_identical(tmp_path):
    shipped = DEFAULT_DATA_DIR / "prices.csv"
    refresh_gcp_only(tmp_path)
    gcp_before = lines_of(tmp_path / "prices.csv", "gcp")
    aws = AwsStubs()
    queue_g5_responses(aws)

    refresh(["aws"], TEAM_REGIONS, tmp_path, aws_client=aws, now=NOW, instance_types={"aws": ["g5.xlarge"]})

    assert lines_of(tmp_path / "prices.csv", "gcp") == gcp_before
    untouched = [line for line in lines_of(shipped, "aws") if not line.startswith("aws,g5.xlarge,")]
    assert set(untouched) <= set(lines_of(tmp_path / "prices.csv", "aws"))


def test_types_not_refreshed_keep_their_shipped_prices(tmp_path):
    aws, gcp = AwsStubs(), billing()
    queue_g5_responses(aws)

    run_refresh(tmp_path, aws, gcp)

    shipped = load_catalog().price("aws", "g4dn.xlarge", "us-east-1")
    assert load_refreshed(tmp_path).price("aws", "g4dn.xlarge", "us-east-1") == shipped


def test_type_the_api_cannot_price_keeps_its_previous_row(tmp_path):
    gcp = billing()  # has no A2 or A100 SKUs

    report = refresh(
        ["gcp"], TEAM_REGIONS, tmp_path, gcp_client=gcp, now=NOW, instance_types={"gcp": ["a2-highgpu-1g"]}
    )

    assert report.kept == (("gcp", "a2-highgpu-1g", "us-central1"),)
    assert load_refreshed(tmp_path).price("gcp", "a2-highgpu-1g", "us-central1") == load_catalog().price(
        "gcp", "a2-highgpu-1g", "us-central1"
    )


def test_failed_refresh_leaves_the_previous_catalog_in_place(tmp_path):
    aws, gcp = AwsStubs(), billing()
    queue_g5_responses(aws)
    run_refresh(tmp_path, aws, gcp)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    failing = AwsStubs()
    failing.stub("pricing", "us-east-1").add_response(
        "get_products", products("aws_get_products_g5.xlarge_eu-west-1_page1.json")
    )
    failing.stub("pricing", "us-east-1").add_client_error("get_products", "ThrottlingException", "Rate exceeded")
    with pytest.raises(CatalogRefreshError, match="g5.xlarge in eu-west-1 failed.*Nothing was written"):
        run_refresh(tmp_path, failing, billing())

    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # prices, manifest and previous/ as they were, and no temporary file left


def test_a_refresh_keeps_the_one_before_it_and_reset_returns_to_the_packaged_catalog(tmp_path):
    refresh_gcp_only(tmp_path)
    first = (tmp_path / "prices.csv").read_bytes()
    aws = AwsStubs()
    queue_g5_responses(aws)
    refresh(["aws"], TEAM_REGIONS, tmp_path, aws_client=aws, now=NOW, instance_types={"aws": ["g5.xlarge"]})

    assert (tmp_path / PREVIOUS / "prices.csv").read_bytes() == first
    assert reset(tmp_path) == ["prices.csv", "manifest.json"]
    assert load_refreshed(tmp_path).prices() == load_catalog().prices()


def test_the_manifest_records_the_nomadrig_version_and_what_was_refreshed(tmp_path):
    refresh_gcp_only(tmp_path)

    manifest = read_manifest(tmp_path)

    assert (manifest.nomadrig_version, manifest.clouds, manifest.regions) == (
        __version__, ("gcp",), {"gcp": ["us-central1"]})
    assert manifest.made_at.startswith("2026-12-02")


def test_a_refresh_made_for_another_version_is_not_used_and_says_why(tmp_path):
    refresh_gcp_only(tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(manifest.read_text().replace(f'"{__version__}"', '"0.0.9"'))

    catalog = load_refreshed(tmp_path)

    assert catalog.price("gcp", "g2-standard-8", "us-central1") == load_catalog().price(
        "gcp", "g2-standard-8", "us-central1")
    assert "made for nomadrig 0.0.9" in catalog.refreshed_note and "catalog reset" in catalog.refreshed_note


def test_a_packaged_row_read_later_than_the_refreshed_one_wins(tmp_path):
    refresh_gcp_only(tmp_path)
    prices = tmp_path / "prices.csv"
    prices.write_text(prices.read_text().replace(",2026-12-02,2026-12-02", ",2020-01-01,2020-01-01"))

    g2 = load_refreshed(tmp_path).price("gcp", "g2-standard-8", "us-central1")

    assert g2 == load_catalog().price("gcp", "g2-standard-8", "us-central1")


def test_dry_run_reports_the_changes_and_writes_nothing(tmp_path):
    report = refresh_gcp_only(tmp_path / "out", dry_run=True)

    changed = {c.key: c for c in report.changes}
    g2 = changed[("gcp", "g2-standard-8", "us-central1")]
    assert (g2.before.on_demand_usd_hr, g2.after.on_demand_usd_hr) == (0.85362, 0.8416)
    assert "g2-standard-8 us-central1: on-demand $0.85362/h -> $0.8416/h" in g2.describe()
    assert not (tmp_path / "out").exists()


def test_cli_dry_run_prints_the_diff(tmp_path, monkeypatch):
    monkeypatch.setattr(gcp_prices, "default_session", billing)
    out = tmp_path / "catalog"

    result = CliRunner().invoke(app, ["catalog", "refresh", "--cloud", "gcp", "--region", "us-central1",
                                      "--out", str(out), "--dry-run"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert "would write" in result.output
    assert "~ gcp g2-standard-8 us-central1: on-demand $0.85362/h -> $0.8416/h, spot unknown -> $0.332/h" \
        in result.output
    assert not out.exists()


def test_cli_refresh_reads_regions_from_a_team_file_that_does_not_validate_yet(tmp_path):
    team = tmp_path / "team.yaml"
    team.write_text(EXAMPLE.read_text().replace("regions: [us-east-1, us-west-2, eu-west-1]",
                                                "regions: [us-east-1, eu-central-1]"))

    clouds, regions = refresh_targets(["aws"], None, team)

    assert clouds == ["aws"] and "eu-central-1" in regions["aws"]
    assert set(load_catalog().regions("aws")) <= set(regions["aws"])


def test_cli_refuses_a_region_no_chosen_cloud_has(tmp_path):
    result = CliRunner().invoke(app, ["catalog", "refresh", "--cloud", "aws", "--region", "us-central1",
                                      "--out", str(tmp_path)])

    assert result.exit_code == 2
    assert "--region: 'us-central1' is not a aws region" in result.output


def test_cli_refresh_failure_exits_3_and_keeps_the_catalog(tmp_path, monkeypatch):
    monkeypatch.delenv("NOMADRIG_GCP_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    shutil.copytree(DEFAULT_DATA_DIR, tmp_path / "catalog")
    before = (tmp_path / "catalog" / "prices.csv").read_bytes()

    result = CliRunner().invoke(app, ["catalog", "refresh", "--cloud", "gcp", "--out", str(tmp_path / "catalog")])

    assert result.exit_code == 3 and "NOMADRIG_GCP_API_KEY" in result.output
    assert (tmp_path / "catalog" / "prices.csv").read_bytes() == before


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


def test_the_refreshed_catalog_lives_under_nomadrig_home(tmp_path, monkeypatch):
    from nomadrig.catalog.refreshed import refreshed_data_dir

    monkeypatch.delenv("NOMADRIG_CATALOG", raising=False)
    monkeypatch.setenv("NOMADRIG_HOME", str(tmp_path / "home"))
    assert refreshed_data_dir() == tmp_path / "home" / "catalog"

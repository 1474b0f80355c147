"""The shipped catalog's data and the loader's behaviour a user relies on.

Data tests read the packaged CSVs; behaviour tests (filters, validation errors) use a
small catalog written into a temporary folder so their expectations are exact.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from nomadrig.catalog import DEFAULT_DATA_DIR, CatalogError, load_catalog

REPO = Path(__file__).resolve().parents[1]
REQUIRED_REGIONS = {"aws": {"us-east-1", "us-west-2", "eu-west-1"}, "gcp": {"us-central1", "europe-west4"}}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


# --- the shipped data -------------------------------------------------------------------


def test_every_row_names_its_source_and_date(catalog):
    rows = [*catalog.instance_types(), *catalog.prices(), *catalog.gpu_models(), *catalog.towers()]
    unsourced = [r for r in rows if not r.source.strip() or not r.date]
    assert unsourced == []


def test_every_instance_type_has_a_known_price_in_a_required_region(catalog):
    unpriced = [
        i.instance_type
        for i in catalog.instance_types()
        if not any(
            catalog.price(i.cloud, i.instance_type, r)
            and catalog.price(i.cloud, i.instance_type, r).on_demand_usd_hr is not None
            for r in REQUIRED_REGIONS[i.cloud]
        )
    ]
    assert unpriced == []


def test_aws_covers_the_gpu_families_teams_ask_for(catalog):
    aws = catalog.instance_types("aws")
    families = {i.instance_type.split(".")[0] for i in aws}
    assert len(aws) >= 20
    assert {"g4dn", "g5", "g6", "g6e", "p3", "p4d", "p5"} <= families
    assert all(i.machine_type == i.instance_type and i.accelerator_type is None for i in aws)


def test_gcp_covers_attached_and_accelerator_optimised_configurations(catalog):
    gcp = {i.instance_type: i for i in catalog.instance_types("gcp")}
    assert len(gcp) >= 10
    t4 = gcp["n1-standard-8+1xt4"]
    assert (t4.machine_type, t4.accelerator_type, t4.gpu_count) == ("n1-standard-8", "nvidia-tesla-t4", 1)
    assert gcp["n1-standard-8+1xv100"].accelerator_type == "nvidia-tesla-v100"
    expected = {
        "g2-standard-8": "nvidia-l4",
        "a2-highgpu-1g": "nvidia-tesla-a100",
        "a2-ultragpu-1g": "nvidia-a100-80gb",
        "a3-highgpu-8g": "nvidia-h100-80gb",
    }
    assert {name: gcp[name].accelerator_type for name in expected} == expected


def test_gcp_prices_say_they_add_machine_and_gpu(catalog):
    priced = [p for p in catalog.prices() if p.cloud == "gcp" and p.on_demand_usd_hr is not None]
    assert priced and all("machine" in p.source and "GPU" in p.source for p in priced)


def test_every_gpu_model_in_use_is_known(catalog):
    used = {i.gpu_model for i in catalog.instance_types()} | {t.gpu_model for t in catalog.towers()}
    assert [m for m in used if catalog.gpu(m) is None] == []
    assert {"RTX 3090", "RTX 4090", "RTX 5090", "RTX A6000", "RTX 6000 Ada", "L40S"} <= {
        g.model for g in catalog.gpu_models()
    }


def test_towers_have_enough_builds_and_sourced_costs(catalog):
    towers = catalog.towers()
    assert len(towers) >= 4
    costed = [t for t in towers if t.parts_cost_usd is not None]
    assert costed and all("$" in t.source for t in costed)  # the cost figure is quoted from its page


def test_every_profile_points_at_a_known_type(catalog):
    assert [p for p in catalog.profiles() if catalog.instance(p.cloud, p.instance_type) is None] == []


def test_example_team_choices_resolve_to_priced_types(catalog):
    team = yaml.safe_load((REPO / "examples" / "team.yaml").read_text())
    for nomad in team["nomads"]:
        cloud, region = nomad["cloud"], nomad["region"]
        if nomad.get("gpu_profile"):
            profile = catalog.profile(nomad["gpu_profile"], cloud)
            assert profile is not None, nomad["name"]
            type_name = profile.instance_type
        else:
            type_name = nomad["instance_type"]
        price = catalog.price(cloud, type_name, region)
        assert price is not None and price.on_demand_usd_hr is not None, (nomad["name"], type_name, region)


def test_catalog_date_is_the_newest_row_date(catalog):
    dates = {r.date for r in [*catalog.instance_types(), *catalog.prices(), *catalog.gpu_models()]}
    assert catalog.catalog_date == max(dates)


def test_default_catalog_is_loaded_once(catalog):
    assert load_catalog() is catalog


def test_importing_the_catalog_pulls_in_no_cloud_sdk():
    code = "import sys, nomadrig.catalog; print(sorted(m for m in ('boto3', 'botocore', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


# --- GPU names --------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["RTX 4090", "rtx4090", "NVIDIA GeForce RTX 4090", "rtx-4090"])
def test_gpu_lookup_tolerates_common_spellings(catalog, spelling):
    assert catalog.gpu(spelling).model == "RTX 4090"


@pytest.mark.parametrize(
    ("cloud_name", "model"),
    [
        ("nvidia-tesla-t4", "T4"),
        ("nvidia-l4", "L4"),
        ("nvidia-h100-80gb", "H100"),
        ("nvidia-a100-80gb", "A100 80GB"),
        ("nvidia-tesla-a100", "A100 40GB"),
        ("NVIDIA A10G", "A10G"),
    ],
)
def test_gpu_lookup_understands_cloud_accelerator_ids(catalog, cloud_name, model):
    assert catalog.gpu(cloud_name).model == model


def test_unknown_gpu_is_none(catalog):
    assert catalog.gpu("Voodoo 5 6000") is None


# --- search filters (small catalog with exact expectations) ------------------------------

SMALL = {
    "gpus.csv": """\
        gpu_model,vram_gb,tdp_w,source,date
        T4,16,70,test,2026-01-01
        L4,24,,test,2026-01-02
        """,
    "instance_types.csv": """\
        # a comment line the loader skips
        cloud,instance_type,machine_type,accelerator_type,gpu_model,gpu_count,gpu_vram_gb,vcpu,ram_gb,source,date
        aws,t.small,t.small,,T4,1,16,4,16,test,2026-01-01
        aws,l.big,l.big,,L4,4,24,48,192,test,2026-01-01
        gcp,n1-standard-8+1xt4,n1-standard-8,nvidia-tesla-t4,T4,1,16,8,30,test,2026-01-01
        """,
    "prices.csv": """\
        cloud,instance_type,region,on_demand_usd_hr,spot_usd_hr,source,effective_date,read_date
        aws,t.small,us-east-1,0.5,0.2,test,2026-01-01,2026-01-02
        aws,t.small,eu-west-1,0.6,,test,,2026-01-02
        aws,l.big,us-east-1,5.0,2.0,test,2026-01-03,2026-01-03
        gcp,n1-standard-8+1xt4,us-central1,0.7,0.25,test,2026-01-01,2026-01-02
        """,
    "towers.csv": """\
        name,gpu_model,gpu_count,gpu_vram_gb,gpu_tdp_w,gpu_price_usd,platform_price_usd,cpu_tdp_w,platform_w,idle_w,psu_w,psu_efficiency_pct,ram_gb,disk_gb,source,date
        one-t4,T4,1,16,70,900,1000,65,40,50,650,90,32,1000,test,2026-01-01
        """,
    "profiles.csv": """\
        profile,cloud,instance_type,description
        t4-16gb,aws,t.small,test
        """,
    "rates.csv": """\
        cloud,item,region,usd,unit,source,effective_date,read_date
        aws,disk,us-east-1,0.08,GB-month,test,2026-01-01,2026-01-02
        aws,disk,*,0.1,GB-month,test,,2026-01-02
        """,
}


def write_catalog(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def small(tmp_path):
    return load_catalog(write_catalog(tmp_path / "small", SMALL))


def names(results):
    return [(i.instance_type, p.region) for i, p in results]


def test_search_without_filters_lists_every_price_cheapest_first(small):
    assert names(small.search()) == [
        ("t.small", "us-east-1"),
        ("t.small", "eu-west-1"),
        ("n1-standard-8+1xt4", "us-central1"),
        ("l.big", "us-east-1"),
    ]


def test_search_by_cloud_and_region(small):
    assert names(small.search(cloud="aws", region="us-east-1")) == [("t.small", "us-east-1"), ("l.big", "us-east-1")]


def test_search_by_gpu_model_accepts_cloud_ids(small):
    assert names(small.search(gpu_model="nvidia-tesla-t4", cloud="gcp")) == [("n1-standard-8+1xt4", "us-central1")]


def test_search_min_vram_is_per_gpu(small):
    assert names(small.search(min_vram_gb=20)) == [("l.big", "us-east-1")]


def test_search_spot_compares_spot_prices_and_skips_rows_without_one(small):
    assert names(small.search(spot=True, max_usd_hr=0.25)) == [
        ("t.small", "us-east-1"),
        ("n1-standard-8+1xt4", "us-central1"),
    ]


def test_search_price_cap_uses_on_demand_by_default(small):
    assert names(small.search(max_usd_hr=0.6)) == [("t.small", "us-east-1"), ("t.small", "eu-west-1")]


def test_search_for_an_unknown_gpu_finds_nothing(small):
    assert small.search(gpu_model="Voodoo 5") == []


def test_regions_are_those_with_a_price_row(small):
    assert small.regions("aws") == {"us-east-1", "eu-west-1"}


def test_total_vram_multiplies_per_gpu_memory(small):
    assert small.instance("aws", "l.big").total_vram_gb == 96


def test_a_rate_for_the_region_wins_over_the_every_region_rate(small):
    assert small.rate("aws", "disk", "us-east-1").usd == 0.08
    assert small.rate("aws", "disk", "eu-west-1").usd == 0.1
    assert small.rate("gcp", "disk", "us-central1") is None


def test_a_price_without_an_effective_date_is_stale_and_a_recent_one_is_not(small):
    import datetime as dt

    today = dt.date(2026, 2, 1)
    assert small.price("aws", "t.small", "eu-west-1").stale(today)  # undated
    assert not small.price("aws", "t.small", "us-east-1").stale(today)  # 31 days old
    assert small.price("aws", "t.small", "us-east-1").stale(dt.date(2026, 4, 2))  # 91 days old


# --- validation errors name file, line and column ----------------------------------------


def broken(tmp_path: Path, name: str, old: str, new: str) -> Path:
    files = dict(SMALL)
    assert old in files[name]
    files[name] = files[name].replace(old, new)
    return write_catalog(tmp_path / "broken", files)


def test_non_numeric_price_names_file_line_and_column(tmp_path):
    folder = broken(tmp_path, "prices.csv", "eu-west-1,0.6,", "eu-west-1,cheap,")
    with pytest.raises(CatalogError) as error:
        load_catalog(folder)
    assert (error.value.file, error.value.line, error.value.column) == ("prices.csv", 3, "on_demand_usd_hr")
    assert str(error.value).startswith("prices.csv:3:on_demand_usd_hr: on_demand_usd_hr is 'cheap'")


def test_line_numbers_count_the_comment_lines(tmp_path):
    folder = broken(tmp_path, "instance_types.csv", "aws,l.big,l.big,,L4,4,", "aws,l.big,l.big,,L4,four,")
    with pytest.raises(CatalogError, match=r"^instance_types\.csv:4:gpu_count: "):
        load_catalog(folder)


def test_missing_source_is_refused(tmp_path):
    folder = broken(tmp_path, "gpus.csv", "T4,16,70,test,", "T4,16,70,,")
    with pytest.raises(CatalogError, match=r"^gpus\.csv:2:source: source is empty"):
        load_catalog(folder)


def test_bad_date_is_refused(tmp_path):
    folder = broken(tmp_path, "towers.csv", "test,2026-01-01", "test,26/11/2026")
    with pytest.raises(CatalogError, match=r"(?s)^towers\.csv:2:date: .*YYYY-MM-DD"):
        load_catalog(folder)


def test_wrong_header_is_refused(tmp_path):
    folder = broken(tmp_path, "profiles.csv", "profile,cloud,", "name,cloud,")
    with pytest.raises(CatalogError, match=r"^profiles\.csv:1:-: header is name,cloud"):
        load_catalog(folder)


def test_price_for_an_unknown_type_is_refused(tmp_path):
    folder = broken(tmp_path, "prices.csv", "aws,l.big,us-east-1", "aws,l.huge,us-east-1")
    with pytest.raises(CatalogError, match=r"^prices\.csv:4:instance_type: aws 'l\.huge' is not in"):
        load_catalog(folder)


def test_profile_pointing_at_an_unknown_type_is_refused(tmp_path):
    folder = broken(tmp_path, "profiles.csv", "t4-16gb,aws,t.small", "t4-16gb,aws,t.tiny")
    with pytest.raises(CatalogError, match=r"^profiles\.csv:2:instance_type: profile 't4-16gb' points at"):
        load_catalog(folder)


def test_duplicate_price_rows_are_refused(tmp_path):
    folder = broken(tmp_path, "prices.csv", "aws,t.small,eu-west-1", "aws,t.small,us-east-1")
    with pytest.raises(CatalogError, match=r"^prices\.csv:3:-: duplicate price row"):
        load_catalog(folder)


def test_gcp_attached_gpu_key_must_follow_the_naming_rule(tmp_path):
    folder = broken(tmp_path, "instance_types.csv", "gcp,n1-standard-8+1xt4", "gcp,n1-standard-8-t4")
    folder_prices = folder / "prices.csv"
    folder_prices.write_text(folder_prices.read_text().replace("n1-standard-8+1xt4", "n1-standard-8-t4"))
    with pytest.raises(CatalogError, match=r"keyed 'n1-standard-8\+1xt4'"):
        load_catalog(folder)


def test_unknown_rate_unit_is_refused(tmp_path):
    folder = broken(tmp_path, "rates.csv", "0.08,GB-month", "0.08,GB/month")
    with pytest.raises(CatalogError, match=r"^rates\.csv:2:unit: unit is 'GB/month'"):
        load_catalog(folder)


def test_bad_effective_date_is_refused(tmp_path):
    folder = broken(tmp_path, "prices.csv", "test,2026-01-01,2026-01-02", "test,Sep 2026,2026-01-02")
    with pytest.raises(CatalogError, match=r"^prices\.csv:2:effective_date: effective_date is 'Sep 2026'"):
        load_catalog(folder)


def test_every_rate_names_its_source_and_read_date(catalog):
    assert catalog.rates() and all(r.source.strip() and r.read_date for r in catalog.rates())


def test_unknown_cloud_is_refused(tmp_path):
    folder = broken(tmp_path, "prices.csv", "gcp,n1-standard-8+1xt4,us-central1", "azure,x,eastus")
    with pytest.raises(CatalogError, match=r"^prices\.csv:5:cloud: cloud is 'azure'"):
        load_catalog(folder)


def test_a_corrupted_shipped_file_is_reported_with_its_line(tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(DEFAULT_DATA_DIR, folder)
    lines = (folder / "prices.csv").read_text().splitlines()
    target = next(n for n, line in enumerate(lines) if line.startswith("aws,g5.xlarge,eu-west-1,"))
    lines[target] = lines[target].replace("aws,g5.xlarge,eu-west-1,", "aws,g5.xlarge,eu-west-1,-1")
    (folder / "prices.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(CatalogError) as error:
        load_catalog(folder)
    assert (error.value.file, error.value.line) == ("prices.csv", target + 1)


# Per-region storage/network rates added 2026-12-02 (SOURCES.md "Storage, network and key rates"), held against
# the figures as read from their sources:
# CYC = Cyclenerd/google-cloud-pricing-cost-calculator pricing.yml at commit 0166a59e (generated 2025-03-06 from the
# Cloud Billing Catalog API); ANN = cloud.google.com/compute/pricing-announce (US multi-region snapshots, 2023-04-01);
# BILL = an AWS bill for May 2025 transcribed in rahmat-ullah/DocParser backend/sample_full_document.md at d890afd0.
# Added 2026-12-03: CX = cortexlabs/cortex pkg/lib/aws/resource_metadata.go at commit 09582a10 (generated from the
# AWS Price List AmazonEC2 offer files, undated); AWSI = awsi.click/en/articles/nat-gateway-cost-structure-avoidance/;
# ABICKY = abicky.net/2022/02/13/184039 (S3 Standard, Tokyo).
# Also added 2026-12-03: EBSCALC = AWS's EBS calculator data of 2021-05-13 kept in ligoj/plugin-prov-aws
# src/test/resources/mock-server/aws/ebs-calculator.json at commit 4cd06dde ("Storage Snapshot Amazon S3 GB Mo");
# SKY = skyplane-project/skyplane skyplane/data/aws_transfer_costs.csv at commit 68b3867e (row <region>,internet).
# LIGOJ-S3 = ligoj/plugin-prov-aws src/test/resources/mock-server/aws/pricing-storage-s3.js at commit df87d126.
# Added 2026-12-03 (third pass): S3CALC = AWS's S3 pricing-calculator data of 2025-10-22 kept in lamngockhuong/aws-price
# lib/data/pricing/s3.json at commit 6e8bf8ce ("Standard Storage First 50 TB per GB Mo" of each region; its other
# regions were read in a fourth pass the same day). NATCALC = AWS's NAT Gateway calculator data of 2025-10-28 kept in
# lamngockhuong/aws-price lib/data/pricing/natgateway.json at commit ce57d15e ("Charge for per GB data processed by
# NatGateways" and "Hourly charge for NAT Gateways" of each region).
# Added 2026-12-03 (fifth pass): EBSCALC24 = AWS's EBS pricing-calculator data of 2024-07-18 kept in yeo/ec2.shop
# data/ebs/ebs.json at commit 576c890f ("Storage General Purpose gp3 GB Mo" and "Storage Snapshot Amazon S3 GB Mo" of
# each region).
REGIONAL_RATES = [
    ("gcp", "pd-balanced", "asia-northeast1", 0.13, "CYC compute.storage.balanced"),
    ("gcp", "gcs-standard", "southamerica-east1", 0.035, "CYC storage.bucket.standard"),
    ("gcp", "snapshot-multiregional", "us-east4", 0.065, "ANN / CYC us-multi (nearest multi-region rule)"),
    ("gcp", "snapshot-multiregional", "asia-south1", 0.083, "CYC asia-multi (nearest multi-region rule)"),
    ("gcp", "egress-internet", "australia-southeast1", 0.19, "CYC egress.internet, first TiB"),
    ("aws", "ebs-gp3", "ap-southeast-1", 0.096, "BILL, gp3 Asia Pacific (Singapore)"),
    ("aws", "nat-gateway", "ap-southeast-1", 0.059, "BILL, per NAT Gateway Hour"),
    ("aws", "s3-standard", "eu-central-1", 0.0245, "BILL, EUC1 first 50 TB"),
    ("aws", "ebs-gp3", "eu-north-1", 0.0836, "CX EBSMetadatas[eu-north-1][gp3] PriceGB"),
    ("aws", "ebs-gp3", "ap-south-1", 0.0912, "CX EBSMetadatas[ap-south-1][gp3] PriceGB"),
    ("aws", "nat-gateway", "ap-northeast-1", 0.062, "CX NATMetadatas[ap-northeast-1]; AWSI the same per hour"),
    ("aws", "nat-gateway", "me-south-1", 0.0528, "CX NATMetadatas[me-south-1]"),
    ("aws", "nat-data", "ap-northeast-1", 0.062, "AWSI, data processing per GB"),
    ("aws", "s3-standard", "ap-northeast-1", 0.025, "ABICKY, first 50 TB / month"),
    ("aws", "ebs-snapshot", "eu-central-1", 0.054, "EBSCALC EU (Frankfurt)"),
    ("aws", "ebs-snapshot", "af-south-1", 0.0595, "EBSCALC Africa (Cape Town)"),
    ("aws", "ebs-snapshot", "eu-north-1", 0.0475, "EBSCALC EU (Stockholm)"),
    ("aws", "egress-internet", "ap-south-1", 0.1093, "SKY ap-south-1,internet"),
    ("aws", "egress-internet", "ap-northeast-2", 0.126, "SKY ap-northeast-2,internet"),
    ("aws", "egress-internet", "me-central-1", 0.11, "SKY me-central-1,internet"),
    ("aws", "s3-standard", "eu-west-2", 0.024, "LIGOJ-S3 eu-west-2 first50TBstorage"),
    ("aws", "ebs-snapshot", "ca-central-1", 0.055, "EBSCALC Canada (Central); aryounce/aws-pricing test the same"),
    ("aws", "s3-standard", "us-west-1", 0.026, "S3CALC US West (N. California)"),
    ("aws", "s3-standard", "me-central-1", 0.025, "S3CALC Middle East (UAE)"),
    ("aws", "s3-standard", "me-south-1", 0.025, "S3CALC Middle East (Bahrain)"),
    ("aws", "s3-standard", "af-south-1", 0.0274, "S3CALC Africa (Cape Town)"),
    ("aws", "s3-standard", "eu-west-3", 0.024, "S3CALC EU (Paris)"),
    ("aws", "s3-standard", "ap-southeast-3", 0.025, "S3CALC Asia Pacific (Jakarta)"),
    ("aws", "nat-data", "eu-south-2", 0.048, "NATCALC EU (Spain), data processed per GB"),
    ("aws", "nat-data", "ap-south-1", 0.056, "NATCALC Asia Pacific (Mumbai), data processed per GB"),
    ("aws", "nat-gateway", "me-central-1", 0.0528, "NATCALC Middle East (UAE), hourly"),
    ("aws", "nat-gateway", "ap-southeast-3", 0.059, "NATCALC Asia Pacific (Jakarta), hourly"),
    ("aws", "ebs-gp3", "ap-southeast-3", 0.096, "EBSCALC24 Asia Pacific (Jakarta), gp3"),
    ("aws", "ebs-gp3", "eu-south-2", 0.088, "EBSCALC24 EU (Spain), gp3"),
    ("aws", "ebs-gp3", "me-central-1", 0.0968, "EBSCALC24 Middle East (UAE), gp3"),
    ("aws", "ebs-snapshot", "ap-southeast-3", 0.05, "EBSCALC24 Asia Pacific (Jakarta), snapshot"),
    ("aws", "ebs-snapshot", "eu-south-2", 0.05, "EBSCALC24 EU (Spain), snapshot"),
    ("aws", "ebs-snapshot", "me-central-1", 0.055, "EBSCALC24 Middle East (UAE), snapshot"),
]


@pytest.mark.parametrize(("cloud", "item", "region", "usd", "source"), REGIONAL_RATES,
                         ids=[f"{c}-{i}-{r}" for c, i, r, _, _ in REGIONAL_RATES])
def test_regional_rates_match_their_sources(catalog, cloud, item, region, usd, source):
    rate = catalog.rate(cloud, item, region)
    assert rate is not None and rate.region == region, f"no {region} row ({source})"
    assert rate.usd == pytest.approx(usd), source


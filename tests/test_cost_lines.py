"""Every line of the example team's bill, recomputed here from the catalog files and the README formulas.

The expected figures are written out in this file: the catalog CSVs are read with the csv module
(not the loader), the team file with yaml, and each line is quantity x rate rounded to cents as
the README's "Cost formulas" section states it. `nomadrig cost --json` must agree line by line.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nomadrig.cli import app
from nomadrig.cost import team_projection
from nomadrig.spec import box_specs
from nomadrig.team.load import load_team

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "team.yaml"
DATA = ROOT / "nomadrig" / "catalog" / "data"
HOURS = 8 * 21  # examples/team.yaml usage: 8 h/day x 21 days/month
# Documented defaults (README "Cost formulas"): per nomad 50 GB through NAT, 10 GB out; one full snapshot of the
# data disk; 100 GB in each team bucket plus 20 % noncurrent versions.
NAT_GB, EGRESS_GB, SNAPSHOT_SHARE, BUCKET_GB = 50, 10, 1.0, 100 * 1.2
# README "Spot interruption overhead": spot hours are billed x (1 + 10/100) unless usage says otherwise.
SPOT_OVERHEAD_PCT = 10


def csv_rows(name: str) -> list[dict[str, str]]:
    lines = [line for line in (DATA / name).read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


RATES = {(r["cloud"], r["item"], r["region"]): float(r["usd"]) for r in csv_rows("rates.csv")}
PRICES = {(r["cloud"], r["instance_type"], r["region"]): r for r in csv_rows("prices.csv")}
PROFILES = {(r["profile"], r["cloud"]): r["instance_type"] for r in csv_rows("profiles.csv")}


def rate(cloud: str, item: str, region: str) -> float:
    return RATES.get((cloud, item, region), RATES.get((cloud, item, "*")))


def expected_lines() -> dict[tuple[str, str, str], float]:
    """(who, region, item) -> monthly USD, by the README formulas."""
    team = yaml.safe_load(EXAMPLE.read_text())
    out: dict[tuple[str, str, str], float] = {}
    for n in team["nomads"]:
        cloud, region = n["cloud"], n["region"]
        kind = n.get("instance_type") or PROFILES[(n["gpu_profile"], cloud)]
        row = PRICES[(cloud, kind, region)]
        spot_priced = bool(n["spot"] and row["spot_usd_hr"])
        hourly = float(row["spot_usd_hr"]) if spot_priced else float(row["on_demand_usd_hr"])
        billed = HOURS * (1 + SPOT_OVERHEAD_PCT / 100) if spot_priced else HOURS
        disk = "ebs-gp3" if cloud == "aws" else "pd-balanced"
        snap = "ebs-snapshot" if cloud == "aws" else "snapshot-multiregional"
        who = n["name"]
        out[(who, region, "compute")] = round(billed * hourly, 2)
        out[(who, region, "root-disk")] = round(n["root_disk_gb"] * rate(cloud, disk, region), 2)
        out[(who, region, "data-disk")] = round(n["data_disk_gb"] * rate(cloud, disk, region), 2)
        out[(who, region, "snapshot")] = round(n["data_disk_gb"] * SNAPSHOT_SHARE * rate(cloud, snap, region), 2)
        nat = "nat-data" if cloud == "aws" else "cloud-nat-data"
        out[(who, region, "nat-data")] = round(NAT_GB * rate(cloud, nat, region), 2)
        if cloud == "gcp":
            out[(who, region, "cloud-nat-vm")] = round(HOURS * rate(cloud, "cloud-nat-vm", region), 2)
        out[(who, region, "egress")] = round(EGRESS_GB * rate(cloud, "egress-internet", region), 2)
    stacks = sorted({(n["cloud"], n["region"]) for n in team["nomads"]})
    for cloud, region in stacks:
        if cloud == "aws":
            out[("(team)", region, "nat-gateway")] = round(730 * rate(cloud, "nat-gateway", region), 2)
            out[("(team)", region, "nat-ip")] = round(730 * rate(cloud, "public-ipv4", region), 2)
            out[("(team)", region, "kms")] = round(1 * rate(cloud, "kms-key", region), 2)
            out[("(team)", region, "bucket")] = round(BUCKET_GB * rate(cloud, "s3-standard", region), 2)
        else:
            out[("(team)", region, "nat-ip")] = round(730 * rate(cloud, "cloud-nat-ip", region), 2)
            out[("(team)", region, "kms")] = round(1 * rate(cloud, "kms-key-version", region), 2)
            out[("(team)", region, "bucket")] = round(BUCKET_GB * rate(cloud, "gcs-standard", region), 2)
    return out


@pytest.fixture(scope="module")
def cost_json() -> dict[str, Any]:
    result = CliRunner().invoke(app, ["cost", "--team", str(EXAMPLE), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def reported_lines(data: dict[str, Any]) -> dict[tuple[str, str, str], float]:
    lines = [line for box in data["boxes"] for line in box["lines"]] + data["team_lines"]
    return {(line["scope"], line["region"], line["item"]): line["monthly_usd"] for line in lines}


def test_every_line_matches_the_formulas_and_catalog_rows(cost_json):
    assert reported_lines(cost_json) == expected_lines()


def test_the_bill_has_every_kind_of_line_the_issue_lists(cost_json):
    items = {item for _, _, item in reported_lines(cost_json)}
    assert {"compute", "root-disk", "data-disk", "snapshot", "nat-gateway", "nat-ip", "nat-data", "egress",
            "kms", "bucket"} <= items


def test_nomad_and_team_totals_add_up_to_the_lines(cost_json):
    expected = expected_lines()
    for box in cost_json["boxes"]:
        mine = [usd for (who, _, _), usd in expected.items() if who == box["nomad"]]
        assert box["monthly_usd"] == pytest.approx(sum(mine), abs=0.005)
    assert cost_json["total_usd"] == pytest.approx(sum(expected.values()), abs=0.005)
    assert sum(cost_json["by_item"].values()) == pytest.approx(cost_json["total_usd"], abs=0.01)


def test_disks_outweigh_grace_spot_hours_as_the_issue_found(cost_json):
    grace = next(b for b in cost_json["boxes"] if b["nomad"] == "grace")
    by_item = {line["item"]: line["monthly_usd"] for line in grace["lines"]}
    assert by_item["root-disk"] + by_item["data-disk"] > 0.5 * by_item["compute"]


def test_a_spot_box_without_a_spot_price_is_costed_on_demand_and_says_so(cost_json):
    grace = next(b for b in cost_json["boxes"] if b["nomad"] == "grace")
    assert grace["note"] == "spot price unknown: on-demand used"
    assert "on-demand" in next(line["basis"] for line in grace["lines"] if line["item"] == "compute")


def test_each_line_names_its_source_and_dates(cost_json):
    for line in [ln for box in cost_json["boxes"] for ln in box["lines"]] + cost_json["team_lines"]:
        assert line["source"] and line["read_date"], line


def test_text_output_shows_the_lines_and_the_total():
    result = CliRunner().invoke(app, ["cost", "--team", str(EXAMPLE)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    total = sum(expected_lines().values())
    assert f"total ${total:,.2f}/month" in result.output
    for item in ("root-disk", "data-disk", "snapshot", "nat-gateway", "nat-ip", "nat-data", "egress", "kms"):
        assert f"  {item}" in result.output


def test_public_ip_teams_pay_per_box_addresses_and_no_nat():
    team = load_team(EXAMPLE)
    specs = [s.__class__(**{**s.__dict__, "allow_public_ip": True}) for s in box_specs(team)]
    projection = team_projection(specs, team.usage, 6000, allow_public_ip=True)
    items = {(line.scope, line.item): line.monthly_usd for line in projection.lines}
    assert not [key for key in items if key[1] in ("nat-gateway", "nat-ip", "nat-data", "cloud-nat-vm")]
    assert items[("ada", "public-ip")] == round(HOURS * 0.005, 2)
    assert items[("grace", "public-ip")] == round(HOURS * 0.005, 2)


def test_team_usage_settings_change_the_traffic_and_bucket_lines():
    team = load_team(EXAMPLE)
    usage = SimpleNamespace(hours_per_day=4, days_per_month=20, nat_gb_per_month=200, egress_gb_per_month=40,
                            bucket_gb=1000, bucket_noncurrent_pct=0, snapshot_pct_of_data_disk=50, snapshots_kept=2)
    lines = {(line.scope, line.region, line.item): line.monthly_usd
             for line in team_projection(box_specs(team), usage, 6000).lines}
    assert lines[("ada", "eu-west-1", "nat-data")] == round(200 * 0.048, 2)
    assert lines[("ada", "eu-west-1", "egress")] == round(40 * 0.09, 2)
    assert lines[("ada", "eu-west-1", "snapshot")] == round(500 * 0.5 * 2 * 0.05, 2)
    assert lines[("ada", "eu-west-1", "compute")] == round(80 * float(PRICES[("aws", "g5.xlarge", "eu-west-1")]
                                                                      ["on_demand_usd_hr"]), 2)
    assert lines[("(team)", "us-central1", "bucket")] == round(1000 * 0.02, 2)


def test_a_region_without_a_rate_is_listed_as_unknown_and_left_out_of_the_total():
    team = load_team(EXAMPLE)
    grace = next(s for s in box_specs(team) if s.nomad == "grace")
    moved = grace.__class__(**{**grace.__dict__, "region": "australia-southeast1"})
    projection = team_projection([moved], team.usage, 6000)
    assert "grace snapshot" in projection.unknown  # no source says which multi-region is nearest to Sydney
    snapshot = next(line for line in projection.lines if line.item == "snapshot")
    assert snapshot.monthly_usd is None and "no rate known" in snapshot.basis


# --- the cost model prices what the stacks create ----------------------------------------------


@pytest.fixture(scope="module")
def planned():
    from nomadrig.plan import plan_team

    return plan_team(load_team(EXAMPLE))


def test_the_disk_types_priced_are_the_ones_the_stacks_create(planned):
    from nomadrig.cost import DISK_RATE

    types = {"aws": set(), "gcp": set()}
    for stack in (s for s in planned.stacks if s.kind == "box"):
        for res in stack.resources:
            if res.type == "aws:ebs/volume:Volume":
                types["aws"].add(res.props["type"])
            if res.type == "aws:ec2/instance:Instance":
                types["aws"].add(res.props["rootBlockDevice"]["volumeType"])
            if res.type == "gcp:compute/disk:Disk":
                types["gcp"].add(res.props["type"])
            if res.type == "gcp:compute/instance:Instance":
                types["gcp"].add(res.props["bootDisk"]["initializeParams"]["type"])
    assert types == {"aws": {"gp3"}, "gcp": {"pd-balanced"}}
    assert DISK_RATE == {"aws": "ebs-gp3", "gcp": "pd-balanced"}


def test_one_nat_gateway_key_and_bucket_line_per_team_stack_that_has_them(planned, cost_json):
    counted: dict[tuple[str, str], int] = {}
    for stack in (s for s in planned.stacks if s.kind == "network"):
        for res in stack.resources:
            item = {"aws:ec2/natGateway:NatGateway": "nat-gateway", "aws:ec2/eip:Eip": "nat-ip",
                    "gcp:compute/routerNat:RouterNat": "nat-ip", "aws:kms/key:Key": "kms",
                    "gcp:kms/cryptoKey:CryptoKey": "kms", "aws:s3/bucket:Bucket": "bucket",
                    "gcp:storage/bucket:Bucket": "bucket"}.get(res.type)
            if item:
                counted[(stack.region, item)] = counted.get((stack.region, item), 0) + 1
    lines = {(line["region"], line["item"]) for line in cost_json["team_lines"]}
    assert set(counted) == lines and set(counted.values()) == {1}


def test_a_spot_box_pays_the_interruption_overhead_on_its_spot_hours(cost_json):
    linus = next(b for b in cost_json["boxes"] if b["nomad"] == "linus")
    compute = next(line for line in linus["lines"] if line["item"] == "compute")
    assert compute["quantity"] == pytest.approx(HOURS * 1.1)
    assert "interruption overhead" in compute["basis"] and "spot" in compute["basis"]


def test_the_overhead_is_the_team_file_s_when_it_states_one(tmp_path):
    text = EXAMPLE.read_text()
    assert "usage:" in text
    team_file = tmp_path / "team.yaml"
    team_file.write_text(text.replace("usage:", "usage:\n  spot_interruption_overhead_pct: 25", 1))
    team = load_team(team_file)
    projection = team_projection(box_specs(team), team.usage, None)
    linus = next(b for b in projection.boxes if b.nomad == "linus")
    compute = next(line for line in linus.lines if line.item == "compute")
    assert compute.quantity == pytest.approx(HOURS * 1.25)


def test_plan_stack_summaries_add_up_to_the_bill_the_formulas_give():
    """`cost.stack_summaries` (what plan prints per stack): one line per box and team network, summing to the total."""
    import re

    from nomadrig.cost import stack_summaries

    team = load_team(EXAMPLE)
    projection = team_projection(box_specs(team), team.usage, None, team.policy.allow_public_ip)
    lines = stack_summaries(projection)
    stacks = {(n["name"]) for n in yaml.safe_load(EXAMPLE.read_text())["nomads"]}
    totals = [float(re.search(r": \$([\d,]+\.\d\d)/month", line).group(1).replace(",", "")) for line in lines]
    assert sum(totals) == pytest.approx(sum(expected_lines().values()), abs=0.05)
    for who in stacks:
        assert sum(line.startswith(f"{who} (") for line in lines) == 1
    assert sum(line.startswith("team network ") for line in lines) == len({(s.cloud, s.region) for s in box_specs(team)})

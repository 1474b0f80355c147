"""`nomadrig advise`: like for like, whole-system power, smooth depreciation, replacement, checked inputs.

The break-even months are recomputed here by hand from the catalog figures the comparison uses,
written out below; the model is not called to produce an expected value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nomadrig.advise import AdviceInputs, advise, pick_tower, tower_spec
from nomadrig.catalog import load_catalog
from nomadrig.cli import app
from nomadrig.policy import PolicyContext, check_tower

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "team.yaml"
runner = CliRunner()

# The default comparison (a10g-24gb on AWS, the example team's cheapest allowed region), as the catalog has it:
G5_ON_DEMAND, G5_SPOT = 1.006, 0.4824  # prices.csv aws g5.xlarge us-east-1 (spot: mean over its 5 AZs)
SPOT_OVERHEAD = 1.10  # README "Spot interruption overhead": spot hours x (1 + 10/100)
GP3 = 0.08  # rates.csv aws ebs-gp3 us-east-1; root 100 GB + data 500 GB billed 24/7
TOWER_PARTS = 800 + 1395.37  # towers.csv 1x-rtx3090-used: used RTX 3090 + AM5-1000 platform
LOAD_W = (350 + 170 + 60) / 0.90  # (GPU TDP + CPU TDP + platform) / 80 PLUS Gold efficiency
IDLE_W, KWH_USD = 70, 0.30


def by_hand(hours_per_week: float, hourly: float, overhead: float = 1.0) -> int | None:
    """First month the cloud's cumulative cost reaches the tower's cash (no replacement within 36 months)."""
    hours = hours_per_week * 52 / 12
    cloud = hours * overhead * hourly + 600 * GP3
    power = (LOAD_W * hours + IDLE_W * (730 - hours)) / 1000 * KWH_USD
    if cloud <= power:
        return None
    month = math.ceil(TOWER_PARTS / (cloud - power))
    return month if month <= 36 else None


def run_json(*args: str) -> dict:
    result = runner.invoke(app, ["advise", "--team", str(EXAMPLE), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("hours", [10, 40, 80])
def test_break_even_months_match_the_hand_computation(hours):
    data = run_json("--hours-per-week", str(hours))
    assert data["gpus_compared"] == "1x A10G vs 1x RTX 3090" and data["region"] == "us-east-1"
    assert data["break_even_month"] == {"cloud on-demand": by_hand(hours, G5_ON_DEMAND),
                                        "cloud spot": by_hand(hours, G5_SPOT, SPOT_OVERHEAD)}


def test_the_hand_computation_gives_the_months_the_issue_asks_about():
    assert [by_hand(h, G5_ON_DEMAND) for h in (10, 40, 80)] == [32, 13, 7]


def test_default_hours_come_from_the_team_usage():
    data = run_json()
    assert data["inputs"]["hours_per_week"] == pytest.approx(8 * 21 * 12 / 52)


def test_default_region_is_the_cheapest_the_team_allows(tmp_path):
    team = tmp_path / "team.yaml"
    team.write_text(EXAMPLE.read_text().replace("regions: [us-east-1, us-west-2, eu-west-1]", "regions: [eu-west-1]")
                    .replace("region: us-east-1", "region: eu-west-1"))
    result = runner.invoke(app, ["advise", "--team", str(team), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["region"] == "eu-west-1"


def test_multi_gpu_cloud_types_are_compared_with_a_tower_of_as_many_gpus():
    data = run_json("--cloud", "gcp", "--gpu-class", "a100-40gb", "--tower", "1x-rtx3090-used")
    assert data["gpus_compared"] == "1x A100 40GB vs 1x RTX 3090"
    catalog = load_catalog()
    two_l4 = catalog.instance("gcp", "g2-standard-24")
    assert pick_tower(catalog, two_l4).gpu_count == 2


def test_a_tower_with_another_gpu_count_is_refused():
    result = runner.invoke(app, ["advise", "--team", str(EXAMPLE), "--tower", "2x-rtx5090"])
    assert result.exit_code == 2
    assert "2x-rtx5090 has 2 GPU(s), g5.xlarge has 1" in result.output


def test_no_build_for_eight_gpus_says_what_exists():
    result = runner.invoke(app, ["advise", "--team", str(EXAMPLE), "--gpu-class", "a100-40gb"])
    assert result.exit_code == 2
    assert "no tower build has 8 GPU(s)" in result.output and "Tower builds have 1, 2 GPU(s)" in result.output


@pytest.mark.parametrize(("option", "value"), [("--electricity", "-0.1"), ("--resale-pct", "120"),
                                               ("--hours-per-week", "0"), ("--hours-per-week", "169"),
                                               ("--life-months", "0"), ("--months", "0"), ("--data-gb", "-1"),
                                               ("--idle-watts", "-5"), ("--speed-ratio", "0")])
def test_every_input_is_checked_and_a_bad_one_exits_2(option, value):
    result = runner.invoke(app, ["advise", "--team", str(EXAMPLE), option, value])
    assert result.exit_code == 2, result.output
    assert f"{option}: {float(value):g} is out of range." in result.output
    assert "Traceback" not in result.output


def test_every_shipped_tower_build_passes_the_tower_rules():
    for build in load_catalog().towers():
        verdicts = check_tower(tower_spec(build), PolicyContext.default())
        assert verdicts == [], (build.name, [(v.rule_id, v.message) for v in verdicts])


def test_whole_system_power_and_idle_draw_count():
    catalog = load_catalog()
    g5 = catalog.instance("aws", "g5.xlarge")
    build = next(t for t in catalog.towers() if t.name == "1x-rtx3090-used")
    on = advise(catalog, g5, "us-east-1", build, AdviceInputs(hours_per_week=40))
    off = advise(catalog, g5, "us-east-1", build, AdviceInputs(hours_per_week=40, always_on=False))
    hours = 40 * 52 / 12
    assert on.options[-1].monthly_usd == pytest.approx((LOAD_W * hours + IDLE_W * (730 - hours)) / 1000 * 0.30)
    assert off.options[-1].monthly_usd == pytest.approx(LOAD_W * hours / 1000 * 0.30)


def test_a_faster_tower_gpu_runs_fewer_hours_for_the_same_work():
    catalog = load_catalog()
    g5 = catalog.instance("aws", "g5.xlarge")
    build = next(t for t in catalog.towers() if t.name == "1x-rtx4090")
    advice = advise(catalog, g5, "us-east-1", build, AdviceInputs(hours_per_week=40, speed_ratio=2.0,
                                                                  always_on=False))
    assert advice.options[-1].monthly_usd == pytest.approx(build.load_w * 40 * 52 / 12 / 2 / 1000 * 0.30)


def test_replacement_at_end_of_life_is_a_step_up_and_the_value_depreciates_smoothly():
    catalog = load_catalog()
    g5 = catalog.instance("aws", "g5.xlarge")
    build = next(t for t in catalog.towers() if t.name == "1x-rtx3090-used")
    advice = advise(catalog, g5, "us-east-1", build, AdviceInputs(hours_per_week=40, life_months=12,
                                                                  resale_pct=30, horizon_months=36))
    tower = advice.options[-1]
    assert tower.steps == (12, 24)
    jump = tower.cumulative[12] - tower.cumulative[11] - tower.monthly_usd
    assert jump == pytest.approx(TOWER_PARTS * 0.7)
    value = advice.tower_value
    assert value[0] == value[12] == value[24] == pytest.approx(TOWER_PARTS)
    assert value[6] == pytest.approx(TOWER_PARTS * (1 - 0.7 * 6 / 12)) and value[36] == pytest.approx(TOWER_PARTS * 0.3)


@settings(max_examples=60, deadline=None)
@given(hours=st.floats(min_value=0.5, max_value=168), resale=st.floats(min_value=0, max_value=100),
       life=st.integers(min_value=1, max_value=48), horizon=st.integers(min_value=1, max_value=60))
def test_no_break_even_comes_from_selling_the_tower(hours, resale, life, horizon):
    catalog = load_catalog()
    g5 = catalog.instance("aws", "g5.xlarge")
    build = next(t for t in catalog.towers() if t.name == "1x-rtx3090-used")
    advice = advise(catalog, g5, "us-east-1", build, AdviceInputs(hours_per_week=hours, resale_pct=resale,
                                                                  life_months=life, horizon_months=horizon))
    tower = advice.options[-1].cumulative
    assert all(b >= a for a, b in zip(tower, tower[1:], strict=False))  # the tower's cash never falls
    for option in advice.options[:-1]:
        for month in advice.break_evens[option.name]:
            # the cloud caught up by growing faster than the tower that month, never by the tower getting cheaper
            assert option.cumulative[month] - option.cumulative[month - 1] > tower[month] - tower[month - 1]


def test_json_carries_the_lines_caveats_and_sources():
    data = run_json("--hours-per-week", "40")
    cloud = data["options"][0]
    assert cloud["monthly_lines_usd"] == {"compute": round(40 * 52 / 12 * G5_ON_DEMAND, 2), "disks": 48.0}
    assert any("equal speed assumed" in c for c in data["caveats"])
    assert data["sources"]["cloud_price_read_date"] == "2026-12-01"

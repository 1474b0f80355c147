"""Cost math the budget policy and `nomadrig advise` rely on."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomadrig.advise import AdviceInputs, tower_cumulative, tower_electricity_usd_month
from nomadrig.catalog import TowerBuild
from nomadrig.config import Usage
from nomadrig.cost import box_cost, team_projection

from .test_policy_rules import BOX

TOWER = TowerBuild(
    name="t",
    gpu_model="RTX 4090",
    gpu_count=1,
    gpu_vram_gb=24,
    gpu_tdp_w=450,
    cpu_tdp_w=125,
    typical_power_w=500,
    parts_cost_usd=3000.0,
    source="test",
    date="2026-11-26",
)


def test_box_cost_is_hourly_times_billed_hours():
    cost = box_cost(BOX, Usage(hours_per_day=8, days_per_month=20))
    assert cost.hourly_usd == 1.1 and cost.monthly_usd == pytest.approx(1.1 * 160)


def test_spot_box_uses_spot_price():
    assert box_cost(dataclasses.replace(BOX, spot=True), Usage()).hourly_usd == 0.45


def test_unknown_price_is_reported_not_guessed():
    cost = box_cost(dataclasses.replace(BOX, on_demand_usd_hr=None, spot_usd_hr=None), Usage())
    assert cost.monthly_usd is None and "no price known" in cost.note


def test_projection_adds_one_nat_per_aws_region_unless_public():
    boxes = [BOX, dataclasses.replace(BOX, nomad="b"), dataclasses.replace(BOX, nomad="c", region="us-east-1")]
    private = team_projection(boxes, Usage(), 1000)
    assert len(private.fixed) == 2
    assert team_projection(boxes, Usage(), 1000, allow_public_ip=True).fixed == {}


def test_tower_electricity():
    inputs = AdviceInputs(hours_per_week=10 * 12 / 52, electricity_usd_kwh=0.5)  # 10 h a month
    assert tower_electricity_usd_month(TOWER, inputs) == pytest.approx(500 * 10 / 1000 * 0.5)


@given(st.floats(min_value=1, max_value=168), st.floats(min_value=0.01, max_value=1.0))
def test_tower_cash_only_grows_until_it_is_sold(hours, price):
    inputs = AdviceInputs(hours_per_week=hours, electricity_usd_kwh=price, life_months=24, horizon_months=36)
    costs = tower_cumulative(TOWER, 3000.0, inputs)
    assert costs[0] == 3000.0
    assert all(b >= a for a, b in zip(costs[:24], costs[1:24], strict=False))
    assert costs[24] < costs[23]  # resale at end of life

"""Cost math the budget policy relies on: the compute line, unknown prices, the team networks' lines.

Every line of the example team is recomputed from the catalog files in test_cost_lines.py; these
tests pin the behaviours around it with a spec whose prices are made up (1.10/h, spot 0.45/h).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomadrig.cost import Assumptions, box_cost, fixed_monthly_usd, team_projection
from nomadrig.team.model import Usage

from .test_policy_rules import BOX


def compute(cost):
    return next(line for line in cost.lines if line.item == "compute")


def test_compute_is_hourly_times_billed_hours():
    cost = box_cost(BOX, Usage(hours_per_day=8, days_per_month=20))
    assert cost.hourly_usd == 1.1 and compute(cost).monthly_usd == pytest.approx(1.1 * 160)


def test_box_month_adds_every_line_not_only_the_hours():
    cost = box_cost(BOX, Usage(hours_per_day=8, days_per_month=20))
    assert cost.monthly_usd == pytest.approx(sum(line.monthly_usd for line in cost.lines), abs=0.005)
    assert cost.monthly_usd > compute(cost).monthly_usd + 50  # 600 GB of gp3 alone is about $53


def test_spot_box_uses_spot_price():
    cost = box_cost(dataclasses.replace(BOX, spot=True), Usage())
    assert cost.hourly_usd == 0.45 and "spot" in compute(cost).basis


def test_unknown_price_is_reported_not_guessed():
    cost = box_cost(dataclasses.replace(BOX, on_demand_usd_hr=None, spot_usd_hr=None), Usage())
    assert compute(cost).monthly_usd is None and "no price known" in cost.note
    assert cost.monthly_usd == pytest.approx(sum(line.monthly_usd for line in cost.lines[1:]), abs=0.005)


def test_unknown_lines_are_named_and_left_out_of_the_total():
    unpriced = dataclasses.replace(BOX, on_demand_usd_hr=None, spot_usd_hr=None)
    projection = team_projection([unpriced], Usage(), 1000)
    assert projection.unknown == ["ada compute"]
    assert projection.total_usd == pytest.approx(sum(ln.monthly_usd for ln in projection.lines
                                                     if ln.monthly_usd is not None), abs=0.005)


def test_projection_adds_one_nat_gateway_per_aws_region_unless_public():
    boxes = [BOX, dataclasses.replace(BOX, nomad="b"), dataclasses.replace(BOX, nomad="c", region="us-east-1")]
    private = team_projection(boxes, Usage(), 1000)
    assert [k for k in private.fixed if k.endswith("/nat-gateway")] == ["aws/eu-west-1/nat-gateway",
                                                                         "aws/us-east-1/nat-gateway"]
    public = [dataclasses.replace(b, allow_public_ip=True) for b in boxes]
    assert not [k for k in team_projection(public, Usage(), 1000, allow_public_ip=True).fixed if "nat" in k]


def test_fixed_monthly_usd_is_what_the_projection_calls_fixed():
    assert fixed_monthly_usd([BOX], False, Usage()) == team_projection([BOX], Usage(), 1000).fixed


def test_assumptions_come_from_usage_with_documented_defaults():
    assumptions = Assumptions.from_usage(Usage(hours_per_day=6, days_per_month=10))
    assert (assumptions.running_hours, assumptions.nat_gb_per_month, assumptions.egress_gb_per_month) == (60, 50, 10)


@given(st.floats(min_value=0.5, max_value=24), st.floats(min_value=1, max_value=31))
def test_more_hours_never_cost_less(hours, days):
    base = box_cost(BOX, Usage(hours_per_day=hours, days_per_month=days))
    more = box_cost(BOX, Usage(hours_per_day=min(24, hours + 1), days_per_month=days))
    assert more.monthly_usd >= base.monthly_usd

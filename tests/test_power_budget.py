"""A tower's power budget: the policy rule, the preflight role and the cap the driver role applies agree.

The arithmetic is checked against an independent computation with fractions; the seam is checked by
feeding the variables `tower_vars` renders from a real team file to the real preflight role.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomadrig.policy import PolicyContext, check_tower
from nomadrig.power import GpuDraw, PowerBudget
from nomadrig.spec import tower_spec
from nomadrig.team.load import load_team
from nomadrig.team.model import PolicySettings, Team, TowerGpu
from nomadrig.towers.variables import tower_vars
from tests.test_preflight import run_preflight

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"
TWO_4090 = (GpuDraw("RTX 4090", 2, 450),)


def test_two_rtx_4090_on_a_1000_w_supply_need_a_cap_of_354_w() -> None:
    budget = PowerBudget(psu_w=1000, cpu_w=125, margin_pct=20, gpus=TWO_4090)
    assert (budget.needed_w(), budget.fits) == (1230, False)  # (900 + 125) * 1.2
    assert budget.largest_cap_that_fits() == 354  # (708 + 125) * 1.2 = 999.6 -> 1000 W; 355 W needs 1002 W
    assert dataclasses.replace(budget, cap_w=354).fits
    assert not dataclasses.replace(budget, cap_w=355).fits


def test_a_cap_above_a_cards_tdp_leaves_that_card_at_its_tdp() -> None:
    budget = PowerBudget(psu_w=850, cpu_w=65, margin_pct=20,
                         gpus=(GpuDraw("RTX 4090", 1, 450), GpuDraw("RTX 3060", 1, 170)), cap_w=300)
    assert budget.gpu_w() == 300 + 170
    assert budget.describe() == ("1 x RTX 4090 at 450 W + 1 x RTX 3060 at 170 W (capped at 300 W each: 470 W) "
                                 "+ CPU 65 W = 535 W, plus 20% margin = 642 W")


def test_no_cap_helps_where_the_gpus_are_not_the_problem() -> None:
    assert PowerBudget(psu_w=400, cpu_w=125, margin_pct=20, gpus=()).largest_cap_that_fits() is None
    cpu_alone_too_much = PowerBudget(psu_w=300, cpu_w=280, margin_pct=20, gpus=TWO_4090)
    assert cpu_alone_too_much.largest_cap_that_fits() is None


@given(psu=st.integers(100, 10_000), cpu=st.integers(1, 2000), margin=st.integers(0, 100),
       cards=st.lists(st.tuples(st.integers(1, 8), st.integers(30, 1000)), min_size=1, max_size=3))
def test_the_largest_cap_is_the_last_whole_watt_that_fits(
    psu: int, cpu: int, margin: int, cards: list[tuple[int, int]]
) -> None:
    gpus = tuple(GpuDraw(f"gpu{i}", count, tdp) for i, (count, tdp) in enumerate(cards))
    budget = PowerBudget(psu_w=psu, cpu_w=cpu, margin_pct=margin, gpus=gpus)

    def fits(cap: int) -> bool:  # independent: exact fractions, no integer trick
        load = cpu + sum(count * min(tdp, cap) for count, tdp in cards)
        return math.ceil(Fraction(load * (100 + margin), 100)) <= psu

    cap = budget.largest_cap_that_fits()
    highest = max(tdp for _, tdp in cards)
    if cap is None:
        assert not fits(1)
    elif cap == highest:
        assert fits(highest)
    else:
        assert fits(cap) and not fits(cap + 1)


def _team_with_tower(psu_watts: int, cap: int | None) -> Team:
    team = load_team(EXAMPLE)
    tower = team.towers[0].model_copy(update={
        "gpus": [TowerGpu(model="RTX 4090", count=2)], "cpu_tdp_watts": 125, "psu_watts": psu_watts,
        "gpu_power_limit_watts": cap})
    return team.model_copy(update={"towers": [tower], "policy": PolicySettings(psu_margin_pct=20)})


def _twr_003(team: Team) -> list[str]:
    ctx = PolicyContext(team.policy)
    return [v.message + " | " + v.fix for v in check_tower(tower_spec(team, team.towers[0]), ctx)
            if v.rule_id == "TWR-003"]


def test_the_policy_names_the_cap_that_fits_and_accepts_it() -> None:
    refused = _twr_003(_team_with_tower(1000, None))
    assert len(refused) == 1 and "gpu_power_limit_watts: 354" in refused[0] and "at least 1230 W" in refused[0]
    assert _twr_003(_team_with_tower(1000, 354)) == []
    assert len(_twr_003(_team_with_tower(1000, 355))) == 1


@pytest.mark.parametrize(("cap", "passes"), [(354, True), (355, False)])
def test_the_preflight_role_judges_the_rendered_cap_as_the_policy_does(
    tmp_path: Path, cap: int, passes: bool
) -> None:
    team = _team_with_tower(1000, cap)
    rendered = tower_vars(team, team.towers[0])
    assert rendered["nvidia_driver_power_limit_w"] == cap  # what the driver role applies
    power = ("preflight_gpus", "preflight_cpu_tdp_w", "preflight_psu_watts", "preflight_psu_margin_pct",
             "preflight_gpu_power_limit_w")
    preflight = {name: rendered[name] for name in power}
    run = run_preflight(tmp_path, **preflight)
    assert (_twr_003(team) == []) is passes
    if passes:
        assert run.rc == 0, run.output
    else:
        assert run.rc == 2 and "Power supply too small" in (run.failure or ""), run.output
        assert "capped at 355 W" in (run.failure or ""), run.output

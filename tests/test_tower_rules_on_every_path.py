"""Tower rules run wherever a team is judged: `validate`, `plan`, `cost` and before `tower apply`/`check`.

A tower with 8 GB of RAM and a 400 W supply for an RTX 4090 breaks TWR-002 and TWR-003 (mandatory):
every command exits 1 naming the rule and its fix, and `tower apply` runs nothing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nomadrig.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "team.yaml"
runner = CliRunner()


def write_team(tmp_path: Path, nomads: bool = True, **tower: Any) -> Path:
    """The example team with its tower changed; without nomads `plan` runs no cloud program (fast)."""
    data = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    data["towers"][0].update(tower)
    if not nomads:
        data["nomads"] = []
        data["towers"][0].update(nomads=[], admins=[], docker_users=[])
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def weak_tower(tmp_path: Path) -> Path:
    return write_team(tmp_path, nomads=False, ram_gb=8, psu_watts=400)


@pytest.fixture
def sound_tower(tmp_path: Path) -> Path:
    return write_team(tmp_path, nomads=False)


def assert_refused_by_tower_rules(result: Any) -> None:
    assert result.exit_code == 1, result.output
    for rule, fix in (("TWR-002", "fit at least 32 GB"), ("TWR-003", "fit a PSU of at least")):
        assert rule in result.output and fix in result.output, result.output


def test_validate_fails_a_tower_the_rules_reject(weak_tower: Path) -> None:
    assert_refused_by_tower_rules(runner.invoke(app, ["validate", "--team", str(weak_tower)]))


def test_validate_json_lists_the_tower_verdicts(weak_tower: Path) -> None:
    result = runner.invoke(app, ["validate", "--team", str(weak_tower), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["policy_ok"] is False
    assert {"TWR-002", "TWR-003"} <= {v["rule"] for v in report["verdicts"] if v["severity"] == "mandatory"}


def test_plan_fails_a_tower_the_rules_reject(weak_tower: Path) -> None:
    assert_refused_by_tower_rules(runner.invoke(app, ["plan", "--team", str(weak_tower)]))


def test_plan_json_carries_the_tower_verdicts(weak_tower: Path) -> None:
    result = runner.invoke(app, ["plan", "--team", str(weak_tower), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {"TWR-002", "TWR-003"} <= {v["rule"] for v in report["tower_verdicts"]}


def test_cost_exits_1_where_plan_does(weak_tower: Path) -> None:
    assert_refused_by_tower_rules(runner.invoke(app, ["cost", "--team", str(weak_tower)]))


@pytest.mark.parametrize("mode", ["apply", "check"])  # check is apply's dry run: it says what apply would say
def test_tower_apply_and_check_check_the_rules_and_run_nothing(weak_tower: Path, tmp_path: Path, mode: str) -> None:
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["tower", mode, "basement", "--team", str(weak_tower), "--runs-dir", str(runs)])
    assert_refused_by_tower_rules(result)
    assert "nothing was run" in result.output
    assert not runs.exists() or not any(runs.iterdir()), "a run dir was made: ansible was started"


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["cost"]])
def test_a_sound_tower_passes(sound_tower: Path, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--team", str(sound_tower)])
    assert result.exit_code == 0, result.output


def test_a_mixed_generation_tower_is_flagged_but_not_refused(tmp_path: Path) -> None:
    team = write_team(tmp_path, nomads=False, psu_watts=1600,
                      gpus=[{"model": "RTX 3090", "count": 1}, {"model": "RTX 4090", "count": 1}])
    result = runner.invoke(app, ["validate", "--team", str(team), "--json"])
    assert result.exit_code == 0, result.output
    [mixed] = [v for v in json.loads(result.stdout)["verdicts"] if v["rule"] == "TWR-007"]
    assert mixed["severity"] == "advisory"
    assert "Ampere (RTX 3090), Ada (RTX 4090)" in mixed["message"]


def test_mixed_volta_and_ada_is_flagged_with_the_plan_for_both(tmp_path: Path) -> None:
    team = write_team(tmp_path, nomads=False, os="debian-12", driver_branch="535", cuda_version="11.8",
                      gpus=[{"model": "V100", "count": 1}, {"model": "RTX 4090", "count": 1}])
    result = runner.invoke(app, ["validate", "--team", str(team), "--json"])
    report = json.loads(result.stdout)
    [mixed] = [v for v in report["verdicts"] if v["rule"] == "TWR-007"]
    assert "Volta (V100), Ada (RTX 4090)" in mixed["message"]
    assert "proprietary kernel modules" in mixed["message"]


def test_an_impossible_install_exits_2_before_any_rule_runs(tmp_path: Path) -> None:
    team = write_team(tmp_path, nomads=False, driver_channel="cuda_repo", driver_branch="550", cuda_version="13.0")
    result = runner.invoke(app, ["validate", "--team", str(team)])
    assert result.exit_code == 2, result.output
    assert "towers[0].cuda_version" in result.output and 'set driver_branch: "580"' in result.output


def test_cost_exits_1_on_a_box_rule_as_plan_does(tmp_path: Path) -> None:
    """SPEC-002 (allowed instance types) is a box rule: `cost` judges by the same spec rules as `plan`."""
    data = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    data["policy"]["allowed_instance_types"] = ["g4dn.xlarge"]
    team = tmp_path / "team.yaml"
    team.write_text(yaml.safe_dump(data, sort_keys=False))
    result = runner.invoke(app, ["cost", "--team", str(team), "--json"])
    assert result.exit_code == 1, result.output
    blocking = {v["rule"] for v in json.loads(result.stdout)["verdicts"] if v["severity"] == "mandatory"}
    assert blocking == {"SPEC-002"}

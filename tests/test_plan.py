"""`nomadrig plan`: the real programs under mocks, every rule, costs, exit codes; offline and fast to start."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nomadrig.stacks.mocks import PlanMocks, alter_inputs
from typer.testing import CliRunner

import nomadrig.plan.planner
from nomadrig.cli import app
from nomadrig.cost import team_projection
from nomadrig.spec import box_specs
from nomadrig.team.load import load_team
from tests.test_stacks_aws import FLIPS as AWS_FLIPS
from tests.test_stacks_gcp import FLIPS as GCP_FLIPS

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "team.yaml"
runner = CliRunner()


def run_plan(*args: str) -> Any:
    return runner.invoke(app, ["plan", "--team", str(EXAMPLE), *args])


@pytest.fixture(scope="module")
def example_json() -> dict[str, Any]:
    result = run_plan("--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_example_team_plans_clean_and_exits_0() -> None:
    result = run_plan()
    assert result.exit_code == 0, result.output
    for stack in ("vision-lab--ada", "vision-lab--grace", "vision-lab--linus", "vision-lab--net--aws--eu-west-1",
                  "vision-lab--net--aws--us-east-1", "vision-lab--net--gcp--us-central1"):
        assert stack in result.stdout
    assert "no mandatory violation" in result.stdout


def test_json_lists_one_team_stack_per_cloud_region_and_one_box_stack_per_nomad(example_json: dict) -> None:
    kinds = [(s["kind"], s["cloud"], s["region"]) for s in example_json["stacks"]]
    assert sorted(k for k in kinds if k[0] == "network") == [
        ("network", "aws", "eu-west-1"), ("network", "aws", "us-east-1"), ("network", "gcp", "us-central1")]
    assert sorted(s["nomad"] for s in example_json["stacks"] if s["kind"] == "box") == ["ada", "grace", "linus"]
    assert example_json["ok"] is True and example_json["mandatory_violations"] == 0


def test_json_resources_carry_camel_case_wire_names(example_json: dict) -> None:
    ada = next(s for s in example_json["stacks"] if s["nomad"] == "ada")
    instance = next(r for r in ada["resources"] if r["type"] == "aws:ec2/instance:Instance")
    assert instance["props"]["metadataOptions"]["httpTokens"] == "required"
    assert instance["props"]["userDataBase64"].startswith("<")  # bulky: size + digest only


def test_json_costs_match_the_cost_model(example_json: dict) -> None:
    team = load_team(EXAMPLE)
    expected = team_projection(box_specs(team), team.usage, team.budgets.monthly_usd, team.policy.allow_public_ip)
    assert example_json["cost"]["total_usd"] == expected.total_usd
    ada = next(s for s in example_json["stacks"] if s["nomad"] == "ada")
    assert ada["cost"]["hourly_usd"] == next(b.hourly_usd for b in expected.boxes if b.nomad == "ada")


def test_one_nomad_plans_only_their_box_and_its_network() -> None:
    result = run_plan("--nomad", "grace", "--json")
    assert result.exit_code == 0, result.output
    stacks = [s["stack"] for s in json.loads(result.stdout)["stacks"]]
    assert stacks == ["vision-lab--net--gcp--us-central1", "vision-lab--grace"]


def test_unknown_nomad_is_bad_input_naming_the_choices() -> None:
    result = run_plan("--nomad", "nobody")
    assert result.exit_code == 2
    assert "nobody" in result.output and "ada, grace, linus" in result.output


def test_invalid_team_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "team.yaml"
    bad.write_text(EXAMPLE.read_text().replace("team: vision-lab", "team: Vision Lab!"))
    result = runner.invoke(app, ["plan", "--team", str(bad)])
    assert result.exit_code == 2, result.output


def test_team_rule_violation_exits_1(tmp_path: Path) -> None:
    poor = tmp_path / "team.yaml"
    poor.write_text(EXAMPLE.read_text().replace("monthly_usd: 6000", "monthly_usd: 100"))
    result = runner.invoke(app, ["plan", "--team", str(poor), "--json"])
    assert result.exit_code == 1, result.output
    team_rules = {v["rule"] for v in json.loads(result.stdout)["team_verdicts"] if v["severity"] == "mandatory"}
    assert "COST-004" in team_rules


FLIPS = {f"aws {name}": (*flip, "ada") for name, flip in AWS_FLIPS.items()}
FLIPS.update({f"gcp {name}": (*flip, "grace") for name, flip in GCP_FLIPS.items()})


@pytest.mark.parametrize("flip", sorted(FLIPS))
def test_flipped_security_default_makes_nomadrig_plan_exit_1(flip: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rule_id, type_token, alter, nomad = FLIPS[flip]
    original: Callable[..., PlanMocks] = nomadrig.plan.planner.new_mocks

    def mocks_with_flip(team: Any) -> PlanMocks:
        mocks = original(team)
        mocks.register_transform(alter_inputs(type_token, alter))
        return mocks

    monkeypatch.setattr(nomadrig.plan.planner, "new_mocks", mocks_with_flip)
    result = run_plan("--nomad", nomad)
    assert result.exit_code == 1, result.output
    assert rule_id in result.stdout


def test_plan_opens_no_network_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network connection attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(variable, raising=False)
    result = run_plan("--nomad", "ada")
    assert result.exit_code == 0, result.output


def test_cli_start_up_imports_no_pulumi() -> None:
    code = "import sys, nomadrig.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('pulumi', 'pulumi_aws', 'pulumi_gcp', 'boto3', 'jinja2')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def _by_urn(resources: list[Any]) -> dict[str, Any]:
    return {r.urn: r for r in resources}


def test_plan_in_worker_processes_records_exactly_what_one_process_records() -> None:
    team = load_team(EXAMPLE)
    specs = box_specs(team)
    alone = _by_urn(nomadrig.plan.planner.run_programs(team, specs).resources)
    split = nomadrig.plan.planner.record_resources(team, specs, workers=2)
    assert len(split) == len(alone), "a team network registered by two workers must count once"
    assert _by_urn(split) == alone
    assert {r.type for r in split} >= {"aws:ec2/instance:Instance", "gcp:compute/instance:Instance"}


def test_a_plan_after_another_program_in_the_same_process_parents_its_boxes_to_its_own_stack() -> None:
    """Another program ran first in this process (a test, or an earlier plan): its root stack must not adopt ours."""
    import pulumi

    team = load_team(EXAMPLE)
    pulumi.runtime.set_mocks(nomadrig.plan.planner.new_mocks(team), project="nomadrig", stack="another-program")
    resources = nomadrig.plan.planner.run_programs(team, box_specs(team)).resources
    stack = f"urn:pulumi:{team.name}-plan::nomadrig::pulumi:pulumi:Stack::nomadrig-{team.name}-plan"
    top_level = [r for r in resources if r.urn.split("::")[2] == f"pulumi:pulumi:Stack${r.type}"]
    assert {r.type for r in top_level} >= {"nomadrig:aws:Box", "nomadrig:gcp:Box"}, top_level
    assert {r.parent for r in top_level} == {stack}


def test_a_failure_in_a_plan_worker_reaches_the_caller_as_itself() -> None:
    team = load_team(EXAMPLE)
    good, *_ = box_specs(team)
    lost = dataclasses.replace(good, nomad="lost", cloud="gcp", region="mars-north1")  # no network to stand in
    with pytest.raises(KeyError, match="mars-north1"):
        nomadrig.plan.planner.run_programs(team, [lost])
    with pytest.raises(KeyError, match="mars-north1"):
        nomadrig.plan.planner.record_resources(team, [good, lost], workers=2)


def _specs(*clouds_and_counts: tuple[str, str, int]) -> list[Any]:
    team = load_team(EXAMPLE)
    template = box_specs(team)[0]
    return [dataclasses.replace(template, nomad=f"{cloud}-{region}-{i}", cloud=cloud, region=region)
            for cloud, region, count in clouds_and_counts for i in range(count)]


def test_split_keeps_each_box_once_and_never_uses_more_runs_than_workers() -> None:
    specs = _specs(("aws", "eu-west-1", 40), ("aws", "us-east-1", 35), ("gcp", "us-central1", 25))
    for workers in (1, 2, 3, 4):
        runs = nomadrig.plan.planner.split_specs(specs, workers)
        assert 1 <= len(runs) <= workers
        assert sorted(s.nomad for run in runs for s in run) == sorted(s.nomad for s in specs)


def test_split_gives_each_cloud_its_own_worker_rather_than_loading_both_sdks_twice() -> None:
    specs = _specs(("aws", "eu-west-1", 34), ("aws", "us-east-1", 33), ("gcp", "us-central1", 33))
    runs = nomadrig.plan.planner.split_specs(specs, 2)
    assert [sorted({s.cloud for s in run}) for run in runs] == [["aws"], ["gcp"]]


def test_a_small_one_cloud_team_plans_in_one_process() -> None:
    specs = _specs(("aws", "eu-west-1", 3))
    assert nomadrig.plan.planner.split_specs(specs, 4) == [specs]


def test_a_big_one_cloud_team_is_shared_among_workers() -> None:
    specs = _specs(("aws", "us-east-1", 120))
    runs = nomadrig.plan.planner.split_specs(specs, 2)
    assert [len(run) for run in runs] == [60, 60]


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare(1)")
def test_whole_team_plan_with_workers_runs_without_any_network() -> None:
    # Not even loopback is up in a fresh network namespace: the plan and its worker processes need none.
    done = subprocess.run(["unshare", "--net", sys.executable, "-m", "nomadrig.cli", "plan", "--team", str(EXAMPLE),
                           "--json"], capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["ok"] and sorted(s["nomad"] for s in plan["stacks"] if s["kind"] == "box") == ["ada", "grace", "linus"]

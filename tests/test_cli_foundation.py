"""The foundation commands a user runs offline: validate, catalog, policy list, cost, advise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nomadrig.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "team.yaml"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_validate_example_exits_0():
    result = run("validate", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "team vision-lab, 3 nomads, 1 towers" in result.output


def test_validate_bad_file_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "team.yaml"
    bad.write_text(EXAMPLE.read_text().replace("idle_minutes: 60", "idle_minuts: 60"))
    proc = subprocess.run(
        [sys.executable, "-m", "nomadrig.cli", "validate", str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2
    assert "nomads[0].idle_minuts: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_validate_json(tmp_path):
    result = run("validate", str(EXAMPLE), "--json")
    assert json.loads(result.stdout) == {
        "file": str(EXAMPLE),
        "valid": True,
        "team": "vision-lab",
        "nomads": 3,
        "towers": 1,
        "policy_ok": True,
        "verdicts": [],
    }


def test_catalog_json_filters_by_gpu_and_price():
    result = run("catalog", "--json", "--gpu", "L4", "--max-price", "2")
    rows = json.loads(result.stdout)
    assert rows, "the catalog has L4 types under $2/h"
    assert all(r["gpu_model"] == "L4" and r["on_demand_usd_hr"] <= 2 for r in rows)
    assert all(r["price_source"] and r["price_date"] for r in rows)


def test_catalog_json_filters_by_cloud_region_and_vram():
    rows = json.loads(run("catalog", "--json", "--cloud", "aws", "--region", "us-east-1", "--min-vram", "80").stdout)
    assert rows and all(r["cloud"] == "aws" and r["region"] == "us-east-1" and r["total_vram_gb"] >= 80 for r in rows)


def test_catalog_rejects_unknown_cloud():
    result = runner.invoke(app, ["catalog", "--cloud", "azure"])
    assert result.exit_code == 2


def test_catalog_towers_json():
    rows = json.loads(run("catalog", "--towers", "--json").stdout)
    assert len(rows) >= 4 and all(r["source"] for r in rows)


def test_policy_list_json_has_every_rule():
    rows = json.loads(run("policy", "list", "--json").stdout)
    ids = {r["id"] for r in rows}
    assert {"SEC-002", "COST-004", "TWR-003"} <= ids
    assert all(r["severity"] in ("mandatory", "advisory") for r in rows)


def test_policy_list_shows_team_overrides():
    rows = json.loads(run("policy", "list", "--json", "--team", str(EXAMPLE)).stdout)
    assert next(r for r in rows if r["id"] == "COST-004")["severity"] == "mandatory"


def test_cost_json_breaks_down_per_nomad_and_adds_nat():
    result = run("cost", "--team", str(EXAMPLE), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [b["nomad"] for b in data["boxes"]] == ["ada", "grace", "linus"]
    monthly = sum(b["monthly_usd"] for b in data["boxes"]) + sum(data["fixed"].values())
    assert data["total_usd"] == pytest.approx(monthly, abs=0.01)
    assert {"aws/eu-west-1/nat-gateway", "aws/us-east-1/nat-gateway"} <= set(data["fixed"])


def test_cost_over_budget_exits_1_when_the_team_makes_it_mandatory(tmp_path):
    team = tmp_path / "team.yaml"
    team.write_text(EXAMPLE.read_text().replace("monthly_usd: 6000", "monthly_usd: 100"))
    result = runner.invoke(app, ["cost", "--team", str(team)])
    assert result.exit_code == 1
    assert "exceeds budgets.monthly_usd" in result.output


def test_advise_reports_break_even_and_writes_a_chart(tmp_path):
    chart = tmp_path / "advice.png"
    result = run("advise", "--hours-per-week", "40", "--json", "--chart", str(chart))
    data = json.loads(result.stdout)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = [o["name"] for o in data["options"]]
    assert names[0] == "cloud on-demand" and names[-1].startswith("tower")
    month = data["break_even_month"]["cloud on-demand"]
    ondemand, tower = data["options"][0]["cumulative_usd"], data["options"][-1]["cumulative_usd"]
    assert month is not None and ondemand[month] >= tower[month] and ondemand[month - 1] < tower[month - 1]


def test_advise_rejects_unknown_gpu_class():
    result = runner.invoke(app, ["advise", "--gpu-class", "tpu-v5"])
    assert result.exit_code == 2


def test_help_lists_exit_codes():
    assert "Exit codes: 0 ok, 1 policy violation, 2 bad input, 3 cloud/engine failure" in run("--help").output


def test_cli_start_up_imports_no_cloud_sdk():
    code = (
        "import sys; import nomadrig.cli; "
        "bad = [m for m in ('pulumi', 'pulumi_aws', 'pulumi_gcp', 'boto3', 'ansible_runner', 'matplotlib') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stdout.strip() == ""


def test_catalog_refresh_without_credentials_exits_3_and_writes_nothing(tmp_path, monkeypatch):
    for var in ("NOMADRIG_GCP_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "catalog"
    result = runner.invoke(app, ["catalog", "refresh", "--team", str(EXAMPLE), "--cloud", "gcp", "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert "NOMADRIG_GCP_API_KEY" in result.output
    assert not (out / "prices.csv").exists()


def test_refreshed_catalog_is_what_later_commands_read(tmp_path, monkeypatch):
    import shutil

    from nomadrig.catalog import DEFAULT_DATA_DIR, load_catalog

    refreshed = tmp_path / "catalog"
    shutil.copytree(DEFAULT_DATA_DIR, refreshed)
    prices = refreshed / "prices.csv"
    prices.write_text(prices.read_text().replace("aws,g4dn.xlarge,us-east-1,0.526,", "aws,g4dn.xlarge,us-east-1,0.5,"))
    monkeypatch.setenv("NOMADRIG_CATALOG", str(refreshed))
    assert load_catalog().price("aws", "g4dn.xlarge", "us-east-1").on_demand_usd_hr == 0.5
    monkeypatch.delenv("NOMADRIG_CATALOG")



def test_a_team_file_path_with_markup_is_printed_as_written(tmp_path):
    path = tmp_path / "[bold red]team[" / "]x.yaml"  # the path reads .../[bold red]team[/]x.yaml
    path.parent.mkdir()
    path.write_text(EXAMPLE.read_text())
    result = runner.invoke(app, ["validate", str(path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert f"{tmp_path}/[bold red]team[/]x.yaml: ok: team vision-lab" in result.stdout


# -- one command line: --team everywhere, --version, completion, errors on stderr, JSON errors, 130 -----------


def test_version_prints_the_package_version():
    from nomadrig import __version__

    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"nomadrig {__version__}"


def test_validate_takes_the_team_file_as_team_like_every_command():
    result = run("validate", "--team", str(EXAMPLE), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["team"] == "vision-lab"
    assert f"team file: {EXAMPLE}" in result.stderr, "every command says which team file it read, on stderr"


def test_validate_positional_file_still_works_with_a_deprecation_note():
    result = run("validate", str(EXAMPLE))
    assert result.exit_code == 0
    assert "deprecated; use `nomadrig validate --team FILE`" in result.stderr
    assert "(the positional file still works)" in run("validate", "--help").stdout


def test_validate_refuses_two_different_team_files(tmp_path):
    other = tmp_path / "team.yaml"
    other.write_text(EXAMPLE.read_text())
    result = runner.invoke(app, ["validate", str(other), "--team", str(EXAMPLE)])
    assert result.exit_code == 2
    assert "two team files given" in result.stderr


def test_a_failed_command_with_json_prints_the_error_object_on_stdout(tmp_path):
    bad = tmp_path / "team.yaml"
    bad.write_text(EXAMPLE.read_text().replace("idle_minutes: 60", "idle_minuts: 60"))
    result = runner.invoke(app, ["validate", "--team", str(bad), "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == 2 and "unknown key" in error["message"]
    assert any(p["path"] == "nomads[0].idle_minuts" and p["file"] == str(bad) for p in error["problems"])
    assert "nomads[0].idle_minuts: unknown key" in result.stderr, "the message a person reads stays on stderr"


def test_a_usage_error_with_json_prints_the_error_object_and_exits_2():
    proc = subprocess.run([sys.executable, "-m", "nomadrig.cli", "validate", "--bogus", "--json"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {"error": {"code": 2, "message": "No such option: --bogus", "problems": []}}
    assert "No such option: --bogus" in proc.stderr


def test_ctrl_c_exits_130_with_json_saying_so(monkeypatch):
    import nomadrig.team.load

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(nomadrig.team.load, "load_team", interrupted)
    result = runner.invoke(app, ["validate", "--team", str(EXAMPLE), "--json"])
    assert result.exit_code == 130
    assert json.loads(result.stdout) == {"error": {"code": 130, "message": "interrupted", "problems": []}}


def test_shell_completion_is_offered(monkeypatch):
    # typer's --show-completion is a flag: it detects the shell from the process tree, which under a test runner
    # started from `sh` (nohup, cron) is not bash. The user's shell here is bash, whatever started the tests.
    import typer.completion

    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    assert "--install-completion" in run("--help").stdout
    result = run("--show-completion")
    assert result.exit_code == 0, result.output
    assert "complete -o default -F _nomadrig_completion nomadrig" in result.stdout

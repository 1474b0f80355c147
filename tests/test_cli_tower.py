"""`nomadrig tower apply|check|verify`: exit codes, --all in parallel, errors on stderr, --json error objects.

The runs themselves are `nomadrig.towers.run`'s business (tested against booted containers); here a stand-in
for it, patched in, returns reports or raises, so each test states what the CLI makes of an outcome.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nomadrig import towers
from nomadrig.cli import app
from nomadrig.errors import BadInputError, InputProblem

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "team.yaml"
TOWER = "basement"  # the example team's tower


def team_with_towers(tmp_path: Path, *names: str) -> Path:
    """The example team file with its tower repeated under each name (addresses from TEST-NET-1)."""
    data = yaml.safe_load(EXAMPLE.read_text())
    template = data["towers"][0]
    data["towers"] = [dict(template, name=name, address=f"192.0.2.{20 + i}") for i, name in enumerate(names)]
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def report(tower: str, mode: str, status: str = "successful", failed: int = 0) -> towers.RunReport:
    return towers.RunReport(tower=tower, host="192.0.2.1", mode=mode, started="2026-12-01T00:00:00+00:00",  # type: ignore[arg-type]
                            status=status, failed=failed, ok=5, run_dir=f"/runs/{tower}")


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NOMADRIG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_failed_run_exits_3_with_its_report_on_stdout_and_the_error_on_stderr(monkeypatch):
    monkeypatch.setattr(towers, "run", lambda team, name, mode, options: report(name, mode, "failed", failed=1))

    result = invoke("tower", "apply", TOWER, "--team", str(EXAMPLE))

    assert result.exit_code == 3, result.output
    assert f"tower {TOWER} (192.0.2.1), apply: FAILED" in result.stdout
    assert f"error: tower {TOWER}: the apply run failed; its report is in /runs/{TOWER}" in result.stderr


def test_a_successful_run_exits_0_and_its_reports_go_under_nomadrig_home(monkeypatch, home):
    seen: list[towers.RunOptions] = []

    def run(team, name, mode, options):
        seen.append(options)
        return report(name, mode)

    monkeypatch.setattr(towers, "run", run)
    result = invoke("tower", "check", TOWER, "--team", str(EXAMPLE))

    assert result.exit_code == 0, result.output
    assert [o.runs_dir for o in seen] == [home / "runs"]


@pytest.mark.parametrize(("args", "upgrade"), [(["apply"], False), (["apply", "--upgrade"], True),
                                             (["check", "--upgrade"], True)])
def test_upgrade_reaches_the_gpu_stack_roles_and_only_when_asked(monkeypatch, args, upgrade):
    """--upgrade becomes the three roles' upgrade variables; without it they keep what is installed."""
    from nomadrig.towers.variables import find_tower, tower_vars

    seen: list[dict[str, Any]] = []

    def run(team, name, mode, options):
        seen.append(tower_vars(team, find_tower(team, name), overrides=options.overrides, upgrade=options.upgrade))
        return report(name, mode)

    monkeypatch.setattr(towers, "run", run)
    result = invoke("tower", *args, TOWER, "--team", str(EXAMPLE))

    assert result.exit_code == 0, result.output
    assert [{k: v[k] for k in ("nvidia_driver_upgrade", "cuda_upgrade", "gpu_containers_upgrade")} for v in seen] == [
        {"nvidia_driver_upgrade": upgrade, "cuda_upgrade": upgrade, "gpu_containers_upgrade": upgrade}
    ]


def test_verify_takes_no_upgrade(monkeypatch):
    monkeypatch.setattr(towers, "run", lambda *a: pytest.fail("nothing may run"))
    result = CliRunner().invoke(app, ["tower", "verify", TOWER, "--team", str(EXAMPLE), "--upgrade"])
    assert result.exit_code == 2
    assert "No such option: --upgrade" in result.output


def test_ctrl_c_during_a_run_exits_130_and_json_says_interrupted(monkeypatch):
    def interrupted(team, name, mode, options):
        raise KeyboardInterrupt

    monkeypatch.setattr(towers, "run", interrupted)
    result = invoke("tower", "apply", TOWER, "--team", str(EXAMPLE), "--json")

    assert result.exit_code == 130, result.output
    assert "interrupted" in result.stderr
    assert json.loads(result.stdout) == {"error": {"code": 130, "message": "interrupted", "problems": []}}


SIGINT_SCRIPT = """
import pathlib, sys, threading, time
from nomadrig import towers
from nomadrig.cli import main

started = threading.Semaphore(0)
cancelled = pathlib.Path(sys.argv[2])

def run(team, name, mode, options):
    started.release()
    while not options.cancel():  # a playbook that ends only when cancelled, as ansible-runner polls
        time.sleep(0.05)
    (cancelled / name).write_text("cancelled")
    return towers.RunReport(tower=name, host="h", mode=mode, started="now", status="canceled")

def announce():
    started.acquire(); started.acquire()
    print("running", flush=True)

threading.Thread(target=announce, daemon=True).start()
towers.run = run
sys.argv = ["nomadrig", "tower", "apply", "--all", "--team", sys.argv[1]]
main()
"""


def test_a_real_sigint_stops_tower_apply_all_with_exit_130(tmp_path):
    team_file = team_with_towers(tmp_path, "basement", "attic")
    cancelled = tmp_path / "cancelled"
    cancelled.mkdir()
    process = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT, str(team_file), str(cancelled)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                               env=dict(os.environ, NOMADRIG_HOME=str(tmp_path / "home")))
    try:
        assert process.stdout.readline().strip() == "running", process.stderr.read()  # type: ignore[union-attr]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)  # a guard against a hang, not a measurement
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted: stopping 2 running tower run(s)" in err and "Traceback" not in err
    assert sorted(p.name for p in cancelled.iterdir()) == ["attic", "basement"], "each run was cancelled, none left"


def test_an_interrupt_in_one_tower_cancels_the_others_before_exiting_130(tmp_path, monkeypatch):
    cancelled: list[str] = []
    ready = threading.Event()

    def run(team, name, mode, options):
        if name == "basement":
            ready.wait(timeout=60)
            raise KeyboardInterrupt
        ready.set()
        while not options.cancel():
            threading.Event().wait(0.05)
        cancelled.append(name)
        return report(name, mode, "canceled")

    monkeypatch.setattr(towers, "run", run)
    result = invoke("tower", "apply", "--all", "--team", str(team_with_towers(tmp_path, "basement", "attic")))

    assert result.exit_code == 130, result.output
    assert cancelled == ["attic"]


def test_apply_all_runs_every_tower_at_once_and_exits_with_the_worst_outcome(tmp_path, monkeypatch):
    names = ("basement", "attic", "garage")
    together = threading.Barrier(len(names), timeout=60)  # passes only if all runs are in flight at the same time

    def run(team, name, mode, options):
        together.wait()
        return report(name, mode, "failed" if name == "attic" else "successful", failed=int(name == "attic"))

    monkeypatch.setattr(towers, "run", run)
    result = invoke("tower", "apply", "--all", "--team", str(team_with_towers(tmp_path, *names)))

    assert result.exit_code == 3, result.output
    table = result.stdout[result.stdout.index("tower runs"):]
    for name in names:
        assert name in table
    assert table.count("FAILED") == 1 and table.count("OK") == 2
    assert "error: tower attic: the apply run failed" in result.stderr


def test_apply_all_json_lists_every_report_and_one_error_object(tmp_path, monkeypatch):
    def run(team, name, mode, options):
        if name == "attic":
            raise BadInputError("team file", [InputProblem("towers[1].gpus[0].model", "'RTX 9999' is not in the "
                                                                                      "GPU catalog.", "Use a model.")])
        return report(name, mode)

    monkeypatch.setattr(towers, "run", run)
    result = invoke("tower", "check", "--all", "--json", "--team", str(team_with_towers(tmp_path, "basement", "attic")))

    assert result.exit_code == 2, result.output
    out = json.loads(result.stdout)
    basement, attic = out["reports"]
    assert basement["tower"] == "basement" and basement["status"] == "successful" and "error" not in basement
    assert attic["tower"] == "attic" and attic["error"]["code"] == 2
    assert attic["error"]["problems"][0]["path"] == "towers[1].gpus[0].model"
    assert out["error"]["code"] == 2 and "1 of 2 towers did not succeed: attic" in out["error"]["message"]


def test_a_failed_run_under_json_carries_an_error_object_beside_its_report(monkeypatch):
    monkeypatch.setattr(towers, "run", lambda team, name, mode, options: report(name, mode, "failed", failed=2))

    result = invoke("tower", "verify", TOWER, "--json", "--team", str(EXAMPLE))

    assert result.exit_code == 3
    out = json.loads(result.stdout)
    assert out["tower"] == TOWER and out["failed"] == 2
    assert out["error"]["code"] == 3 and f"see /runs/{TOWER}" in out["error"]["message"]


@pytest.mark.parametrize("args, problem", [
    (["--all", TOWER], f"TOWER: both '{TOWER}' and --all given."),
    ([], f"TOWER: no tower named (towers: {TOWER})."),
])
def test_naming_no_tower_or_a_tower_and_all_is_bad_input_and_runs_nothing(monkeypatch, args, problem):
    monkeypatch.setattr(towers, "run", lambda *a: pytest.fail("nothing may run"))

    result = invoke("tower", "apply", *args, "--team", str(EXAMPLE), "--json")

    assert result.exit_code == 2
    assert f"command line: {problem}" in result.stderr
    assert json.loads(result.stdout)["error"]["code"] == 2


def test_an_unknown_tower_is_bad_input_with_the_known_ones_and_one_json_error(monkeypatch):
    result = invoke("tower", "check", "cellar", "--team", str(EXAMPLE), "--json")

    assert result.exit_code == 2
    assert "no tower named 'cellar' (towers: basement)" in result.stderr
    assert json.loads(result.stdout)["error"]["code"] == 2  # exactly one JSON document on stdout


def test_peers_without_a_key_anywhere_is_an_error_on_stderr(monkeypatch):
    result = invoke("tower", "peers", TOWER, "--offline", "--team", str(EXAMPLE))

    assert result.exit_code == 3
    assert f"no WireGuard public key for tower {TOWER}" in result.stderr and result.stdout == ""

"""`up` (and `down` of a box with data) says what it will do and what it costs, then asks.

Through the Pulumi CLI double, as a user runs it: on a pipe without --yes the
command refuses (exit 2) before the double runs anything; on a terminal (a
tmux pane) it shows the monthly price and waits, and the answer decides.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nomadrig.cli import app
from nomadrig.cost import box_cost, fixed_monthly_usd
from nomadrig.spec import box_spec
from nomadrig.team.load import load_team
from tests.fake_pulumi import FakePulumi, flag_value

REPO = Path(__file__).resolve().parent.parent
TEAM_FILE = REPO / "examples" / "team.yaml"
ANSWER_WAIT_S = 120.0


@pytest.fixture
def fake(monkeypatch, tmp_path) -> FakePulumi:
    return FakePulumi.install(monkeypatch, tmp_path)


def nomadrig(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point's code path (`main`), with stdin a pipe: no terminal to ask on."""
    return subprocess.run([sys.executable, "-c", "from nomadrig.cli import main; main()", *args,
                           "--team", str(TEAM_FILE)], input="", capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "COLUMNS": "250"}, timeout=300)


def monthly_price(nomad: str) -> str:
    """The figure `up` must show, from the cost model itself."""
    team = load_team(TEAM_FILE)
    return f"${box_cost(box_spec(team, nomad), team.usage).monthly_usd:,.2f}/month"


def test_up_on_a_pipe_without_yes_exits_2_and_runs_nothing(fake):
    result = nomadrig("up", "ada")
    assert result.returncode == 2, result.stderr
    assert monthly_price("ada") in result.stderr, "the refusal still says what it would have cost"
    assert "Add --yes" in result.stderr
    assert fake.calls() == [], "not one Pulumi CLI call: nothing read, nothing created"


def test_up_json_on_a_pipe_prints_the_error_object(fake):
    result = nomadrig("up", "ada", "--json")
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == 2 and error["problems"][0]["path"] == "--yes"
    assert fake.calls_of("up") == []


def test_up_with_yes_shows_the_price_and_goes_ahead(fake):
    result = CliRunner().invoke(app, ["up", "ada", "--yes", "--team", str(TEAM_FILE)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    team = load_team(TEAM_FILE)
    nat = sum(fixed_monthly_usd([box_spec(team, "ada")], team.policy.allow_public_ip).values())
    assert monthly_price("ada") in result.output
    assert f"${nat:,.2f}/month fixed" in result.output, "a new team network's fixed cost is shown too"
    assert [flag_value(a, "--stack") for a in fake.argvs() if a[0] == "up"] == [
        "vision-lab--net--aws--eu-west-1", "vision-lab--ada"]


def test_down_of_a_box_on_a_pipe_without_yes_exits_2_and_destroys_nothing(fake):
    assert CliRunner().invoke(app, ["up", "ada", "--yes", "--team", str(TEAM_FILE)]).exit_code == 0
    result = nomadrig("down", "ada")
    assert result.returncode == 2, result.stderr
    volume = fake.state()["stacks"]["vision-lab--ada"]["outputs"]["data_volume_id"]
    assert f"keeps {volume} (500 GB)" in result.stderr
    assert fake.calls_of("destroy") == []


# ---------------------------------------------------------------- on a terminal


class Pane:
    """One command in a pane of a private tmux server (its own socket), read as a person would see it."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.socket = name
        line = f"{shlex.join(command)}; echo \"EXIT=$?\"; sleep 600"
        self.tmux("new-session", "-d", "-x", "250", "-y", "60", "-s", "main", "-c", str(REPO), line)

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], capture_output=True,
                              text=True, check=True, timeout=30)
        return done.stdout

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "main")

    def wait_for(self, pattern: str) -> str:
        deadline = time.monotonic() + ANSWER_WAIT_S
        while time.monotonic() < deadline:
            shown = self.text()
            if re.search(pattern, shown):
                return shown
            time.sleep(0.3)
        raise AssertionError(f"{pattern!r} never appeared:\n{self.text()}")

    def type(self, keys: str) -> None:
        self.tmux("send-keys", "-t", "main", keys, "Enter")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False, timeout=30)


@pytest.fixture
def pane(fake, tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    opened: list[Pane] = []

    def open_pane(*args: str) -> Pane:
        command = [sys.executable, "-c", "from nomadrig.cli import main; main()", *args, "--team", str(TEAM_FILE)]
        opened.append(Pane(f"nomadrig-test-{os.getpid()}-{len(opened)}-{tmp_path.name}", command))
        return opened[-1]

    yield open_pane
    for each in opened:
        each.close()


def test_up_on_a_terminal_shows_the_monthly_price_and_no_leaves_everything_as_it_was(fake, pane):
    up = pane("up", "ada")
    shown = up.wait_for(r"Create the box of ada\? \[y/N\]")
    assert monthly_price("ada") in shown
    assert fake.calls_of("up") == [], "nothing runs while the question waits"
    up.type("n")
    shown = up.wait_for(r"EXIT=\d+")
    assert "nothing was changed." in shown and "EXIT=0" in shown
    assert fake.calls_of("up") == []


def test_up_on_a_terminal_answered_yes_creates_the_box(fake, pane):
    up = pane("up", "ada")
    up.wait_for(r"Create the box of ada\? \[y/N\]")
    up.type("y")
    shown = up.wait_for(r"EXIT=\d+")
    assert "EXIT=0" in shown and "vision-lab--ada is up:" in shown
    assert [flag_value(a, "--stack") for a in fake.argvs() if a[0] == "up"] == [
        "vision-lab--net--aws--eu-west-1", "vision-lab--ada"]

"""The engine against the real Pulumi CLI and a real cloud account (previews only: nothing is created).

Runs only where `pulumi` is on PATH and cloud credentials exist; everywhere
else (CI here) it is skipped with that reason. State goes to a file backend in
a tmp dir, never the user's ~/.nomadrig.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from nomadrig.config import load_team
from nomadrig.engine import Engine
from nomadrig.spec import box_spec

REPO = Path(__file__).resolve().parent.parent
TEAM_FILE = REPO / "examples" / "team.yaml"

HAS_AWS = bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
HAS_GCP = bool(os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))

pytestmark = pytest.mark.skipif(
    shutil.which("pulumi") is None or not (HAS_AWS or HAS_GCP),
    reason="needs the pulumi CLI on PATH and cloud credentials "
    "(AWS_ACCESS_KEY_ID or AWS_PROFILE, or GOOGLE_APPLICATION_CREDENTIALS)",
)


@pytest.fixture
def engine_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NOMADRIG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NOMADRIG_PASSPHRASE", "real-cli-test-passphrase")
    monkeypatch.delenv("NOMADRIG_PULUMI_ROOT", raising=False)
    return tmp_path


def _nomad() -> str:
    return "ada" if HAS_AWS else "grace"


def test_real_cli_version_is_accepted(engine_env):
    engine = Engine(load_team(TEAM_FILE), console=Console(file=io.StringIO()))
    command = engine.pulumi_command()
    assert command.version is not None and command.version.major == 3


def test_real_preview_of_a_fresh_team_network_plans_creates_with_the_policy_pack(engine_env):
    team = load_team(TEAM_FILE)
    out = io.StringIO()
    engine = Engine(team, console=Console(file=out, width=200))
    stack, changes = engine.preview_box(box_spec(team, _nomad()))
    assert stack.startswith(f"{team.team}-net-")
    assert changes.get("create", 0) > 0, out.getvalue()
    statuses = {s.name: s for s in engine.list_stacks()}
    assert statuses[stack].state == "never deployed"

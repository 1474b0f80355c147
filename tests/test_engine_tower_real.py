"""A tower through the real Pulumi engine, end to end: the design's central shape, run for real.

`nomadrig up basement` (the installed CLI, stdin /dev/null, `--yes`) creates
the tower's stack through the Automation API and the Pulumi CLI built by
scripts/build-engine.sh; the stack's `Tower` dynamic provider runs the tower
playbook over SSH against the session's converged Debian 12 container
(`converged_tower`). Then `ls --json` and `outputs` read the state the engine
wrote, a second `up` changes nothing, a change of the tower in the team file
shows in `preview` and `up` applies it, and `down` removes the stack.

The container is shared: the test puts the team file's tower back (an `up`
of the original file, or the fixture's own re-apply when the test failed
before) so the machine ends converged to the fixture's baseline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nomadrig import towers
from nomadrig.names import tower_stack_name
from nomadrig.team.model import Team
from tests.fake_pulumi.real import RealPulumi
from tests.harness.towers import ConvergedTower

NOMADRIG = Path(sys.executable).parent / "nomadrig"
CLI_TIMEOUT_S = 2400  # a full playbook run on a busy machine; the guard of a hung run, not a figure


def write_team(team: Team, path: Path) -> Path:
    """The team as a user's file (what `load_team_file` reads back), as the other CLI tower tests write it."""
    path.write_text(yaml.safe_dump(team.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    return path


def tower_args(tower: ConvergedTower) -> list[str]:
    """`--ssh-key` and the container's variables as `-e KEY=VALUE` (YAML values), as `tower apply` takes them."""
    args = ["--ssh-key", str(tower.ssh_key)]
    for key, value in tower.options.overrides.items():
        args += ["-e", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
    return args


def nomadrig(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed nomadrig command, with no terminal (as in CI)."""
    return subprocess.run([str(NOMADRIG), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, env=dict(os.environ))


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def summary(result: subprocess.CompletedProcess[str], stack: str) -> str:
    """The change summary the engine printed for the stack (``3 same``, ``1 update, 2 same``)."""
    found = re.findall(rf"^up {re.escape(stack)}: (.*)$", result.stderr, re.MULTILINE)
    assert len(found) == 1, result.stderr
    return found[0]


def groups_of(tower: ConvergedTower, account: str) -> set[str]:
    return set(tower.sh(f"id -nG {account}").split())


@pytest.fixture
def engine_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RealPulumi:
    """The built CLI, a file backend under tmp_path, and SSH that accepts the container's per-boot host key."""
    real = RealPulumi.install(monkeypatch, tmp_path)
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "False")  # as the fixture's own runs (strict_host_keys=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the tower's run reports (~/.nomadrig/runs) stay here
    return real


@pytest.mark.container
@pytest.mark.slow
def test_up_ls_outputs_no_change_preview_update_and_down_of_a_tower_through_the_real_engine(
    converged_tower: ConvergedTower, engine_env: RealPulumi, tmp_path: Path
) -> None:
    tower, name = converged_tower, converged_tower.name
    team_file = write_team(tower.team, tmp_path / "team.yaml")
    stack = tower_stack_name(tower.team.name, name)
    common = ["--team", str(team_file), *tower_args(tower)]
    baseline_groups = groups_of(tower, "ada")
    changed_team = tower.team.model_copy(update={"towers": [
        tower.team.towers[0].model_copy(update={"admins": []})]})  # ada loses sudo: one group, cheap to undo
    changed_file = write_team(changed_team, tmp_path / "team-changed.yaml")
    restored = False
    try:
        first = ok(nomadrig("up", name, "--yes", "--json", *common))
        created: dict[str, Any] = json.loads(first.stdout)
        assert created["stack"] == stack
        assert summary(first, stack).endswith("create")
        on_tower = tower.sh(f"cat {towers.TOWER_PUBLIC_KEY_FILE}").strip()
        assert created["outputs"]["tower_public_key"] == on_tower  # the provider's run read it over SSH
        assert created["outputs"]["changed_tasks"] == 0  # the fixture converged it with the same roles and vars
        recorded = towers.latest_report(name, engine_env.home / "runs")  # the provider's run kept its report
        assert recorded is not None and recorded.succeeded and recorded.run_dir == created["outputs"]["run_dir"]

        listed = json.loads(ok(nomadrig("ls", "--json", "--no-live", "--team", str(team_file))).stdout)
        mine = {s["stack"]: s for s in listed["stacks"]}[stack]
        assert (mine["kind"], mine["subject"], mine["state"]) == ("tower", name, "deployed")
        shown = json.loads(ok(nomadrig("outputs", name, "--json", "--team", str(team_file))).stdout)
        assert shown["outputs"]["address"] == tower.container.ip
        assert shown["outputs"]["tower_public_key"] == on_tower

        again = ok(nomadrig("up", name, "--yes", *common))
        assert re.fullmatch(r"\d+ same", summary(again, stack)), "an unchanged tower is not configured again"

        preview = json.loads(ok(nomadrig("preview", name, "--json", *common)).stdout)
        assert {op: n for op, n in preview["changes"].items() if n and op not in ("same", "read")} == {}
        common_changed = ["--team", str(changed_file), *tower_args(tower)]
        preview = json.loads(ok(nomadrig("preview", name, "--json", *common_changed)).stdout)
        assert preview["changes"].get("update") == 1, preview
        assert groups_of(tower, "ada") == baseline_groups, "preview changed the tower"

        changed = ok(nomadrig("up", name, "--yes", "--json", *common_changed))
        assert "1 update" in summary(changed, stack)
        assert json.loads(changed.stdout)["outputs"]["changed_tasks"] > 0
        assert groups_of(tower, "ada") < baseline_groups  # the admins' group is gone from ada's

        back = ok(nomadrig("up", name, "--yes", *common))  # the original file: the fixture's baseline again
        assert "1 update" in summary(back, stack)
        assert groups_of(tower, "ada") == baseline_groups
        restored = True

        ok(nomadrig("down", name, "--yes", "--team", str(team_file)))
        listed = json.loads(ok(nomadrig("ls", "--json", "--no-live", "--team", str(team_file))).stdout)
        assert stack not in {s["stack"] for s in listed["stacks"]}
        assert not (engine_env.backend / "stacks" / "nomadrig" / f"{stack}.json").exists()
        assert groups_of(tower, "ada") == baseline_groups  # down forgets the tower; its configuration stays
    finally:
        if not restored:
            tower.reapply()

"""The Tower dynamic provider re-runs the playbook exactly when roles or variables change.

These tests need no container. The provider's create, no-change and update against a real tower run in
test_engine_tower_real.py, through the real engine that calls them (one converged Debian 12 tower is shared,
and each full playbook run on it costs minutes of CI).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from nomadrig.stacks.args import tower_args
from nomadrig.stacks.tower import TowerProvider, roles_content_hash

from nomadrig.spec import tower_spec
from nomadrig.team.load import load_team

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE = PROJECT / "examples" / "team.yaml"


def copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(PROJECT / "roles", root / "roles", symlinks=True)
    shutil.copytree(PROJECT / "playbooks", root / "playbooks", symlinks=True)
    return root


def test_content_hash_changes_when_a_role_file_changes(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    before = roles_content_hash(root)
    assert roles_content_hash(root) == before  # stable
    defaults = next(root.glob("roles/*/defaults/main.yml"))
    defaults.write_text(defaults.read_text() + "\n# edited\n")
    assert roles_content_hash(root) != before


def test_content_hash_changes_when_a_playbook_changes(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    before = roles_content_hash(root)
    (root / "playbooks" / "tower.yml").write_text((root / "playbooks" / "tower.yml").read_text() + "\n")
    assert roles_content_hash(root) != before


def test_diff_reports_a_change_only_for_roles_or_variables() -> None:
    team = load_team(EXAMPLE)
    spec = tower_spec(team, team.towers[0])
    olds = tower_args(spec).inputs()
    provider = TowerProvider()
    assert not provider.diff("id", olds, tower_args(spec).inputs()).changes
    changed_vars = tower_args(spec, overrides={"hardening_extra_tcp_ports": [8080]}).inputs()
    assert provider.diff("id", olds, changed_vars).changes
    assert provider.diff("id", olds, {**olds, "content_hash": "0" * 64}).changes

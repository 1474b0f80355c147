"""The Tower dynamic provider re-runs the playbook exactly when roles or variables change.

The container test calls the provider's create, diff and update directly (as
the Pulumi engine would) against the session's converged Debian 12 tower
(``converged_tower``); the hash tests need no container. One release is
enough here: the roles' behaviour on both is the business of
test_tower_container.py, this is about the provider.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from nomadrig.stacks.tower import TowerProvider, roles_content_hash, tower_inputs

from nomadrig import tower as towers
from nomadrig.config import load_team
from tests.harness.towers import ConvergedTower

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
    name = team.towers[0].name
    olds = tower_inputs(team, name)
    provider = TowerProvider()
    assert not provider.diff("id", olds, tower_inputs(team, name)).changes
    changed_vars = tower_inputs(team, name, overrides={"hardening_extra_tcp_ports": [8080]})
    assert provider.diff("id", olds, changed_vars).changes
    assert provider.diff("id", olds, {**olds, "content_hash": "0" * 64}).changes


@pytest.mark.container
@pytest.mark.slow
def test_provider_creates_skips_unchanged_and_updates_a_changed_tower(
    converged_tower: ConvergedTower, tmp_path: Path
) -> None:
    """On the session's converged Debian 12 tower: create, no-op diff, update on a changed variable.

    The machine was configured by the shared fixture's first apply, so create
    (a new Pulumi resource for a tower that already exists, as when a team
    adopts a configured tower) runs the playbook, records the run and returns
    outputs that describe the machine, with nothing left to change. The update
    opens a port, so the test ends by putting the baseline back.
    """
    tower, name = converged_tower, converged_tower.name
    overrides = dict(tower.options.overrides)
    common = {"ssh_key_file": str(tower.ssh_key), "runs_dir": str(tmp_path / "runs"), "strict_host_keys": False}
    provider = TowerProvider()

    created = provider.create(tower_inputs(tower.team, name, overrides=overrides, **common))
    assert created.id == f"tower-{name}"
    assert created.outs["changed_tasks"] == 0  # the same roles and variables as the machine's last apply
    on_tower = tower.sh(f"cat {towers.TOWER_PUBLIC_KEY_FILE}").strip()
    assert created.outs["tower_public_key"] == on_tower
    recorded = towers.latest_report(name, tmp_path / "runs")
    assert recorded is not None and recorded.succeeded and recorded.run_dir == created.outs["run_dir"]

    same = tower_inputs(tower.team, name, overrides=overrides, **common)
    assert not provider.diff(created.id, created.outs, same).changes

    opened = tower_inputs(tower.team, name, overrides={**overrides, "hardening_extra_tcp_ports": [8080]}, **common)
    assert provider.diff(created.id, created.outs, opened).changes
    assert "8080" not in tower.sh("nft list ruleset")
    try:
        updated = provider.update(created.id, created.outs, opened)
        assert updated.outs["changed_tasks"] > 0
        assert "8080" in tower.sh("nft list ruleset")  # e.g. `tcp dport { 22, 8080 }` over WireGuard
        assert not provider.diff(created.id, updated.outs, opened).changes
    finally:
        restored = provider.update(created.id, created.outs, same)  # the fixture's contract: leave the baseline
    assert restored.outs["changed_tasks"] > 0
    assert "8080" not in tower.sh("nft list ruleset")

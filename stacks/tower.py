"""A tower as a Pulumi resource: `pulumi up` configures it, and only when something changed.

``Tower`` (type ``nomadrig:tower:Tower``) is a component whose child
``TowerConfiguration`` is a dynamic resource backed by ``TowerProvider``, a
pure-Python provider that runs the tower playbook through ``nomadrig.towers``.
Its ``diff`` compares two hashes, the roles' content (every file under roles/
and playbooks/) and the tower's rendered variables and inventory, so an
unchanged tower is not re-run and editing a role or the team file is enough
to have the next ``up`` apply it.

Deleting the resource does not unconfigure the machine: a tower is hardware
a team owns, not something Pulumi created, so ``delete`` only forgets it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from nomadrig import paths, towers
from nomadrig.team.model import Team

#: What decides whether a tower needs another run; anything else is bookkeeping.
TRIGGERS = ("content_hash", "vars_hash")


def roles_content_hash(project_root: Path = towers.PROJECT_ROOT) -> str:
    """SHA-256 over every file under roles/ and playbooks/ (path and bytes), in a stable order.

    Symbolic links are hashed by their target text, not followed, so the
    playbooks/roles link does not count the roles twice.
    """
    digest = hashlib.sha256()
    for top in ("roles", "playbooks"):
        base = project_root / top
        for path in sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink()):
            if "__pycache__" in path.parts:
                continue
            digest.update(path.relative_to(project_root).as_posix().encode() + b"\0")
            data = str(path.readlink()).encode() if path.is_symlink() else path.read_bytes()
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def tower_vars_hash(team: Team, tower_name: str, options: Mapping[str, Any]) -> str:
    """SHA-256 of the variables and inventory a run would use for the tower."""
    tower = towers.find_tower(team, tower_name)
    material = {
        "vars": towers.tower_vars(team, tower, overrides=options.get("overrides") or {}),
        "inventory": towers.inventory(
            tower,
            ssh_key_file=Path(options["ssh_key_file"]) if options.get("ssh_key_file") else None,
            strict_host_keys=bool(options.get("strict_host_keys", True)),
        ),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def tower_inputs(
    team: Team,
    tower_name: str,
    *,
    ssh_key_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    runs_dir: str | None = None,
    strict_host_keys: bool = True,
    project_root: Path = towers.PROJECT_ROOT,
) -> dict[str, Any]:
    """The dynamic resource's inputs: plain JSON values, hashes included."""
    options = {
        "ssh_key_file": ssh_key_file,
        "overrides": dict(overrides or {}),
        "runs_dir": runs_dir or str(paths.runs_dir()),
        "strict_host_keys": strict_host_keys,
        "project_root": str(project_root),
    }
    return {
        "tower": tower_name,
        "team": team.model_dump(mode="json"),
        **options,
        "content_hash": roles_content_hash(project_root),
        "vars_hash": tower_vars_hash(team, tower_name, options),
    }


class TowerApplyFailed(Exception):
    """The playbook failed on the tower; Pulumi shows this message."""


class TowerProvider(ResourceProvider):
    """Runs `nomadrig tower apply` for create and update; diff decides whether to."""

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        team = Team.model_validate(props["team"])
        options = towers.RunOptions(
            ssh_key_file=Path(props["ssh_key_file"]) if props.get("ssh_key_file") else None,
            overrides=props.get("overrides") or {},
            runs_dir=Path(props["runs_dir"]),
            project_root=Path(props["project_root"]),
            strict_host_keys=bool(props.get("strict_host_keys", True)),
        )
        report = towers.run_in_child(team, props["tower"], "apply", options)  # not forked from this gRPC process
        if not report.succeeded:
            raise TowerApplyFailed(report.summary())
        return {
            **props,
            "tower_public_key": report.tower_public_key or "",
            "changed_tasks": len(report.changed_tasks),
            "run_dir": report.run_dir,
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._apply(props)
        return CreateResult(id_=f"tower-{props['tower']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in TRIGGERS if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=[], stables=["tower"], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._apply(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Forget the tower; its configuration stays on the machine (see the module docstring)."""


class TowerConfiguration(pulumi.dynamic.Resource):
    """The configured state of one tower, as the dynamic provider last applied it."""

    tower_public_key: pulumi.Output[str]
    changed_tasks: pulumi.Output[int]
    run_dir: pulumi.Output[str]

    def __init__(self, name: str, inputs: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            TowerProvider(),
            name,
            {**inputs, "tower_public_key": None, "changed_tasks": None, "run_dir": None},
            opts,
        )


class Tower(pulumi.ComponentResource):
    """One on-prem tower from the team file, configured by the tower playbook."""

    def __init__(
        self,
        name: str,
        team: Team,
        tower_name: str,
        *,
        ssh_key_file: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        strict_host_keys: bool = True,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("nomadrig:tower:Tower", name, None, opts)
        inputs = tower_inputs(team, tower_name, ssh_key_file=ssh_key_file, overrides=overrides,
                              strict_host_keys=strict_host_keys)
        self.configuration = TowerConfiguration(f"{name}-configuration", inputs, pulumi.ResourceOptions(parent=self))
        self.tower_public_key = self.configuration.tower_public_key
        self.register_outputs({"tower_public_key": self.tower_public_key, "content_hash": inputs["content_hash"]})


def tower_program(team: Team, spec: Any, *, ssh_key_file: str | None = None,
                  overrides: Mapping[str, Any] | None = None, strict_host_keys: bool = True) -> Callable[[], None]:
    """The inline program of one tower stack: the `Tower` component and what `ls`/`outputs` show of it.

    `spec` is the tower's `nomadrig.spec.TowerSpec`; `ssh_key_file` and
    `overrides` are what `nomadrig up TOWER --ssh-key KEY -e VAR=VALUE` passed.
    """

    def program() -> None:
        tower = Tower(spec.name, team, spec.name, ssh_key_file=ssh_key_file, overrides=overrides,
                      strict_host_keys=strict_host_keys)
        pulumi.export("tower_public_key", tower.tower_public_key)
        pulumi.export("changed_tasks", tower.configuration.changed_tasks)
        pulumi.export("run_dir", tower.configuration.run_dir)  # where the last run's report.json and logs are
        for key, value in (("team", spec.team), ("tower", spec.name), ("address", spec.address)):
            pulumi.export(key, value)

    return program

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

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from nomadrig import towers

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


@dataclass(frozen=True)
class TowerArgs:
    """What the Tower reads: its configuration's inputs, hashes included (`stacks.args.tower_args` makes them).

    The team travels as its JSON (`TowerSpec.team_json`), not as a `Team`: the provider runs the playbook
    from it in another process, and the whole of it is an input, so a change to the team file is a change
    Pulumi sees.
    """

    tower: str
    team: Mapping[str, Any]  # Team.model_dump(mode="json")
    ssh_key_file: str | None
    overrides: Mapping[str, Any]
    runs_dir: str
    strict_host_keys: bool
    project_root: str
    content_hash: str  # roles_content_hash
    vars_hash: str  # nomadrig.towers.tower_vars_hash

    def inputs(self) -> dict[str, Any]:
        """The dynamic resource's inputs: plain JSON values."""
        return dataclasses.asdict(self)


class TowerApplyFailed(Exception):
    """The playbook failed on the tower; Pulumi shows this message."""


class TowerProvider(ResourceProvider):
    """Runs `nomadrig tower apply` for create and update; diff decides whether to."""

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        options = towers.RunOptions(
            ssh_key_file=Path(props["ssh_key_file"]) if props.get("ssh_key_file") else None,
            overrides=props.get("overrides") or {},
            runs_dir=Path(props["runs_dir"]),
            project_root=Path(props["project_root"]),
            strict_host_keys=bool(props.get("strict_host_keys", True)),
        )
        # Not forked from this gRPC process; run_in_child validates the team's JSON before it starts the run.
        report = towers.run_in_child(props["team"], props["tower"], "apply", options)
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
    """One on-prem tower from the team file, configured by the tower playbook; its one child: `configuration`."""

    def __init__(self, name: str, args: TowerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("nomadrig:tower:Tower", name, None, opts)
        self.configuration = TowerConfiguration(f"{name}-configuration", args.inputs(),
                                                pulumi.ResourceOptions(parent=self))
        self.tower_public_key = self.configuration.tower_public_key
        self.register_outputs({"tower_public_key": self.tower_public_key, "content_hash": args.content_hash})

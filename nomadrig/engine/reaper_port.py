"""The reaper's port onto the box stacks (`nomadrig.reaper.ports.BoxStacks`), over the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from nomadrig.engine.operations import Engine
from nomadrig.errors import CloudError
from nomadrig.names import box_stack_name
from nomadrig.volumes import DATA_VOLUME_TYPES

if TYPE_CHECKING:
    from nomadrig.reaper.ports import StackRef
    from nomadrig.team.model import Team

__all__ = ["EngineBoxStacks", "box_stacks"]


class EngineBoxStacks:
    """`nomadrig.reaper.ports.BoxStacks` over the engine: the team's box stacks, and destroy."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def list(self) -> list[StackRef]:
        from nomadrig.reaper.ports import StackRef

        refs = []
        for status in self.engine.list_stacks():
            if status.kind != "box":
                continue
            instance = status.outputs.get("instance_id") or status.outputs.get("instance_name")
            refs.append(StackRef(name=status.name, nomad=status.subject, cloud=status.cloud,
                                 region=status.region, instance_id=str(instance) if instance else None))
        return refs

    def record_snapshot(self, name: str, snapshot_id: str) -> None:
        """The reaper's snapshot of the box's data, kept in the box stack's tags for `nomadrig restore`."""
        self.engine.record_snapshot(name, snapshot_id)

    def destroy(self, name: str) -> None:
        """Destroy one box stack; where it runs comes from the team file, else from its outputs."""
        from nomadrig.spec import box_spec

        team = self.engine.team
        for nomad in team.nomads:
            if box_stack_name(team.name, nomad.name) == name:
                spec = box_spec(team, nomad)
                self.engine.destroy(name, spec.cloud, spec.region, spec.project)
                return
        outputs = self.engine.outputs(name)
        if outputs is None:
            raise CloudError(f"stack {name} does not exist in {self.engine.settings.backend_url}")
        cloud, region = str(outputs.get("cloud", "")), str(outputs.get("region", ""))
        project = str(outputs.get("project", ""))
        self.engine.destroy(name, cloud if cloud in DATA_VOLUME_TYPES else "", region, project)


def box_stacks(team: Team, *, console: Console | None = None) -> EngineBoxStacks:
    """The reaper's `BoxStacks` for a team."""
    return EngineBoxStacks(Engine(team, console=console))

"""What the engine's stacks are: their names, provider config and programs, and what they report.

Plain values and small pure functions, kept apart from `engine.py` (which runs
the Pulumi CLI) so the CLI, the reaper and the tests can name stacks and read
their results without starting Pulumi.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from . import names
from .errors import CloudError

# Stack names live in `nomadrig.names` (writer and parser side by side); the engine imports them from here.
from .names import network_stack_name as network_stack_name
from .names import purge_stack_name as purge_stack_name
from .names import tower_stack_name as tower_stack_name

if TYPE_CHECKING:
    from .config import Team
    from .spec import BoxSpec, TowerSpec

PulumiFn = Callable[[], None]

# Resource types of a box's data volume: retained on delete, purged only on request.
DATA_VOLUME_TYPES = {"aws": "aws:ebs/volume:Volume", "gcp": "gcp:compute/disk:Disk"}


# ---------------------------------------------------------------- provider config


def gcp_zone(region: str) -> str:
    """The zone boxes of a GCP region go to: the region's ``-a`` zone, one fixed choice per region."""
    return f"{region}-a"


def cloud_config(cloud: str, region: str, project: str = "") -> dict[str, str]:
    """Provider config set on every stack of a cloud/region (the programs read no other provider config)."""
    if cloud == "aws":
        return {"aws:region": region}
    if cloud == "gcp":
        return {"gcp:project": project, "gcp:region": region, "gcp:zone": gcp_zone(region)}
    raise CloudError(f"unknown cloud {cloud!r}: nomadrig provisions on aws or gcp")


# ---------------------------------------------------------------- programs


class Programs(Protocol):
    """Where the inline Pulumi programs come from (the `stacks` package; tests pass their own)."""

    def network(self, team: Team, cloud: str, region: str) -> PulumiFn: ...

    def box(self, team: Team, spec: BoxSpec, network: Mapping[str, Any]) -> PulumiFn: ...

    def tower(self, team: Team, spec: TowerSpec) -> PulumiFn: ...


class StackPrograms:
    """The real programs from ``stacks/``; imported on first use (they pull in the cloud SDKs)."""

    def network(self, team: Team, cloud: str, region: str) -> PulumiFn:
        from nomadrig.stacks.program import team_program

        return team_program(team, cloud, region)

    def box(self, team: Team, spec: BoxSpec, network: Mapping[str, Any]) -> PulumiFn:
        from nomadrig.stacks.program import box_program

        return box_program(team, spec, network=network)

    def tower(self, team: Team, spec: TowerSpec) -> PulumiFn:
        """A tower stack's program: `stacks` may ship one; otherwise wrap the `Tower` component."""
        import importlib

        for module in ("nomadrig.stacks.program", "nomadrig.stacks.tower"):
            func = getattr(importlib.import_module(module), "tower_program", None)
            if func is not None:
                return func(team, spec)

        def program() -> None:
            import pulumi

            from nomadrig.stacks.tower import Tower

            tower = Tower(spec.name, team, spec.name)
            pulumi.export("tower_public_key", tower.tower_public_key)
            for key, value in (("team", spec.team), ("tower", spec.name), ("address", spec.address)):
                pulumi.export(key, value)

        return program


def empty_program() -> None:
    """The purge stack's program: it declares nothing, so `destroy` removes what was imported."""


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class RetainedVolume:
    """A data volume the box stack kept on delete (its data survives the box)."""

    stack: str
    cloud: str
    region: str
    type: str
    id: str
    project: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"stack": self.stack, "cloud": self.cloud, "region": self.region, "type": self.type,
                "id": self.id, "project": self.project}


@dataclass(frozen=True)
class StackStatus:
    """One stack of the team as `ls` shows it."""

    name: str
    kind: str  # box | tower | network | other
    subject: str  # nomad, tower or "<cloud>/<region>"
    state: str  # deployed | destroyed | never deployed | failed | updating
    cloud: str
    region: str
    instance_type: str
    hourly_usd: float | None
    last_update: datetime | None
    created: str | None
    resource_count: int | None
    outputs: dict[str, Any] = field(default_factory=dict)

    def created_at(self) -> datetime | None:
        """When the box was created (its `created` output); None when absent or not a time."""
        try:
            return names.parse_time(str(self.created)) if self.created else None
        except ValueError:
            return None

    def age(self, now: datetime | None = None) -> str:
        """How long the box has existed (from its `created` output), else since its last update."""
        start = self.created_at() or self.last_update
        if start is None:
            return ""
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        hours = ((now or datetime.now(UTC)) - start).total_seconds() / 3600
        return f"{hours:.0f}h" if hours < 48 else f"{hours / 24:.0f}d"

    def ttl_hours_left(self, now: datetime | None = None) -> float | None:
        """Hours until the reaper may destroy the box for its TTL (negative: overdue); None if unknown.

        From the box's own `created` and `ttl_hours` outputs: what the stack
        wrote into its tags, which is what the reaper reads.
        """
        created = self.created_at()
        ttl = self.outputs.get("ttl_hours")
        if created is None or isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
            return None
        elapsed = ((now or datetime.now(UTC)) - created).total_seconds() / 3600
        return round(float(ttl) - elapsed, 1)

    def as_dict(self) -> dict[str, Any]:
        return {"stack": self.name, "kind": self.kind, "subject": self.subject, "state": self.state,
                "cloud": self.cloud, "region": self.region, "instance_type": self.instance_type,
                "hourly_usd": self.hourly_usd, "age": self.age(), "ttl_hours_left": self.ttl_hours_left(),
                "last_update": self.last_update.isoformat() if self.last_update else None,
                "resource_count": self.resource_count, "outputs": self.outputs}


def retained_volumes(stack: str, cloud: str, region: str, outputs: Mapping[str, Any],
                     project: str = "") -> list[RetainedVolume]:
    """The data volume a box stack retains on delete, as Pulumi import ids, from the box's outputs.

    AWS boxes export ``data_volume_id`` (``vol-...``); GCP boxes export
    ``data_disk_name``, ``zone`` and ``project``, which make the disk's id.
    """
    if cloud == "aws" and outputs.get("data_volume_id"):
        ident = str(outputs["data_volume_id"])
    elif cloud == "gcp" and outputs.get("data_disk_name") and outputs.get("zone"):
        project = str(outputs.get("project") or project)
        ident = f"projects/{project}/zones/{outputs['zone']}/disks/{outputs['data_disk_name']}"
    else:
        return []
    return [RetainedVolume(stack, cloud, region, DATA_VOLUME_TYPES[cloud], ident, project)]

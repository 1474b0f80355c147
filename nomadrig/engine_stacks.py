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


# Operations of a preview or up that change nothing: a read re-reads a resource the stack does not own.
NO_CHANGE_OPS = frozenset({"same", "read"})


# ---------------------------------------------------------------- the data volume between boxes


@dataclass(frozen=True)
class DataSource:
    """Where the data volume of a nomad's next box comes from: new and empty, kept by a `down`, or a snapshot.

    The design, and why. A box stack owns its data volume while the box
    lives (``retain_on_delete``, so destroying the stack leaves the volume).
    `down` and the reaper's destroy then write the kept volume's id into a
    stack tag of the box stack (`names.DATA_VOLUME_STACK_TAG`), and the reaper
    writes the snapshot it took before destroying into another
    (`names.DATA_SNAPSHOT_STACK_TAG`). Stack tags live in the backend beside
    the state, so a teammate's `up` and a reaper run on another machine read
    the same record. The next `up` hands the box program ``kept``: it declares
    the volume with ``Volume.get`` / ``Disk.get``, a read resource, which
    Pulumi reads and attaches but never creates, updates or deletes (so the
    next `down` leaves it again). `nomadrig restore` hands it ``snapshot``:
    a new volume made from the snapshot.

    Not chosen: a ``import_`` of the kept volume, which fails unless every
    declared input equals the volume's real state (its tags carry the first
    box's creation time, a user may have grown it) and would make it owned
    again; and a third stack per nomad holding the volume, which would make
    every existing box stack give up its volume in place, and the reaper,
    `ls` and purge follow three stacks per box. The read resource keeps one
    stack per box and works alike on AWS (``aws.ebs.Volume.get``) and GCP
    (``gcp.compute.Disk.get``).

    A live box exports its source (``data_source`` output, `as_output`), and
    every later `up` passes the same one back: a box made from a snapshot
    keeps declaring that snapshot, so nothing is replaced and nothing shows
    as a diff.
    """

    kind: str  # NEW | KEPT | SNAPSHOT
    ident: str = ""  # the kept volume's import id (AWS vol-..., GCP projects/../disks/..) or the snapshot id

    NEW = "new"
    KEPT = "kept"
    SNAPSHOT = "snapshot"

    def __post_init__(self) -> None:
        if self.kind not in (self.NEW, self.KEPT, self.SNAPSHOT):
            raise ValueError(f"data source {self.kind!r}: use new, kept or snapshot")
        if (self.kind == self.NEW) != (not self.ident):
            raise ValueError(f"data source {self.kind!r} {'takes no' if self.kind == self.NEW else 'needs an'} id")

    @classmethod
    def new(cls) -> DataSource:
        return cls(cls.NEW)

    @classmethod
    def kept(cls, ident: str) -> DataSource:
        return cls(cls.KEPT, ident)

    @classmethod
    def snapshot(cls, ident: str) -> DataSource:
        return cls(cls.SNAPSHOT, ident)

    def as_output(self) -> str:
        """``new``, ``kept:<id>`` or ``snapshot:<id>``: the box stack's ``data_source`` output."""
        return self.kind if self.kind == self.NEW else f"{self.kind}:{self.ident}"

    @classmethod
    def from_output(cls, text: object) -> DataSource | None:
        """The source a live box was made with (its ``data_source`` output); None when absent or unreadable."""
        if not isinstance(text, str):
            return None
        kind, _, ident = text.partition(":")
        try:
            return cls(kind, ident)
        except ValueError:
            return None

    def describe(self) -> str:
        """For the line `up` prints before asking."""
        if self.kind == self.KEPT:
            return f"attaches the kept data volume {self.ident}"
        if self.kind == self.SNAPSHOT:
            return f"a new data volume from the snapshot {self.ident}"
        return "a new, empty data volume"


# ---------------------------------------------------------------- programs


@dataclass(frozen=True)
class TowerRun:
    """How a tower stack's provider reaches the machine: `nomadrig up TOWER --ssh-key KEY -e VAR=VALUE`.

    The same two settings `nomadrig tower apply` takes, so a tower configured
    by hand and through its stack is configured alike. Both are inputs of the
    `Tower` resource (its variables hash covers them), so the next `up` must
    pass the same ones to report no change.
    """

    ssh_key_file: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: False only where the user turned Ansible's host key checking off (``ANSIBLE_HOST_KEY_CHECKING=False``,
    #: e.g. a throwaway test host whose key changes on every boot).
    strict_host_keys: bool = True


class Programs(Protocol):
    """Where the inline Pulumi programs come from (the `stacks` package; tests pass their own)."""

    def network(self, team: Team, cloud: str, region: str) -> PulumiFn: ...

    def box(self, team: Team, spec: BoxSpec, network: Mapping[str, Any], data: DataSource | None = None
            ) -> PulumiFn: ...

    def tower(self, team: Team, spec: TowerSpec, run: TowerRun | None = None) -> PulumiFn: ...


class StackPrograms:
    """The real programs from ``stacks/``; imported on first use (they pull in the cloud SDKs)."""

    def network(self, team: Team, cloud: str, region: str) -> PulumiFn:
        from nomadrig.stacks.program import team_program

        return team_program(team, cloud, region)

    def box(self, team: Team, spec: BoxSpec, network: Mapping[str, Any], data: DataSource | None = None
            ) -> PulumiFn:
        from nomadrig.stacks.program import box_program

        return box_program(team, spec, network=network, data=data)

    def tower(self, team: Team, spec: TowerSpec, run: TowerRun | None = None) -> PulumiFn:
        """A tower stack's program: the `Tower` component, reached as `run` says."""
        from nomadrig.stacks.tower import tower_program

        run = run or TowerRun()
        return tower_program(team, spec, ssh_key_file=run.ssh_key_file, overrides=run.overrides,
                             strict_host_keys=run.strict_host_keys)


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
    created: Any  # the `created` output as the backend holds it: a string when nomadrig wrote it
    resource_count: int | None
    outputs: dict[str, Any] = field(default_factory=dict)

    def created_at(self) -> datetime | None:
        """When the box was created (its `created` output); None when absent, not a string or not a time.

        Outputs come from a shared backend: a hand edit may leave a number, a list or a mapping there.
        """
        if not isinstance(self.created, str) or not self.created:
            return None
        try:
            return names.parse_time(self.created)
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

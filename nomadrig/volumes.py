"""A box's data volume between boxes: where the next box's volume comes from, and what a stack kept.

What the box programs write (``data_source``, ``data_volume_id``/``data_disk_name``
outputs) and what the engine, `down` and the reaper read back, side by side in
one leaf module that both the programs and the engine import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Resource types of a box's data volume: retained on delete, purged only on request.
DATA_VOLUME_TYPES = {"aws": "aws:ebs/volume:Volume", "gcp": "gcp:compute/disk:Disk"}


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

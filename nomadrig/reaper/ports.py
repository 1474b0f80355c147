"""The two things the reaper talks to, as Protocols: the box stacks and a cloud.

The engine implements `BoxStacks` (it owns Pulumi); `aws.AwsReaperCloud` and
`gcp.GcpReaperCloud` implement `ReaperCloud`. Tests pass doubles for either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from nomadrig.reaper.inventory import CpuWindow, ManagedInstance, SnapshotRef


@dataclass(frozen=True)
class StackRef:
    """One box stack as the engine knows it; `instance_id` is None before the first `up`."""

    name: str
    nomad: str
    cloud: str
    region: str
    instance_id: str | None


@dataclass(frozen=True)
class InstanceRef:
    """Where the instance a box stack owns lives, as its outputs say.

    AWS: `location` the region, `ident` the instance id (``instance_id`` output).
    GCP: `location` the zone, `ident` the instance name, and the project
    (``zone``, ``instance_name``, ``project`` outputs).
    """

    cloud: str
    location: str
    ident: str
    project: str = ""


# Called with an instance each time a start or stop sees it in a new state (progress for a person).
StateSeen = Callable[[ManagedInstance], None]


class BoxStacks(Protocol):
    """The engine's view of box stacks: list them, destroy one.

    `destroy` removes the box's resources except the data volume, which the
    stack retains (``retain_on_delete``), so the volume and its snapshot stay.
    """

    def list(self) -> list[StackRef]: ...

    def destroy(self, name: str) -> None: ...


class ReaperCloud(Protocol):
    """What the reaper needs from one cloud. Every mutating call is idempotent per instance."""

    cloud: str

    def list_instances(self, team: str) -> list[ManagedInstance]:
        """Every managed instance of `team` in every allowed region (paginated, filtered server-side)."""
        ...

    def cpu_windows(
        self, instances: Sequence[ManagedInstance], minutes: int, now: datetime
    ) -> dict[str, CpuWindow]:
        """The cloud's CPU metric over the last `minutes` for each running instance, by instance id."""
        ...

    def find(self, refs: Sequence[InstanceRef]) -> dict[InstanceRef, ManagedInstance]:
        """The instances the refs name, re-read; a ref the cloud does not know is absent."""
        ...

    def stop(self, instances: Sequence[ManagedInstance], progress: StateSeen | None = None) -> list[ManagedInstance]:
        """Stop the instances, wait until stopped, return them re-read (with their new stop time)."""
        ...

    def start(self, instances: Sequence[ManagedInstance], progress: StateSeen | None = None) -> list[ManagedInstance]:
        """Start the instances (`nomadrig start`), wait until running, return them re-read."""
        ...

    def ensure_snapshots(
        self, instances: Sequence[ManagedInstance]
    ) -> tuple[dict[str, list[SnapshotRef]], dict[str, str]]:
        """Start a snapshot of each data volume, or reuse a usable one a previous run took.

        Returns the snapshots by instance id, and an error message by instance id
        for the instances whose snapshot could not be started.
        """
        ...

    def wait_snapshots(self, snapshots: Sequence[SnapshotRef], timeout_s: float) -> list[SnapshotRef]:
        """Poll until every snapshot completed or failed, or the timeout passed; return their states."""
        ...

    def terminate(self, instances: Sequence[ManagedInstance]) -> None:
        """Delete instances directly (orphans only: they have no stack to destroy them)."""
        ...

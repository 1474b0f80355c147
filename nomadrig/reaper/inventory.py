"""A cloud-neutral record of one instance the reaper may act on.

The AWS and GCP adapters translate their own shapes into `ManagedInstance` so
that the verdicts (pure functions) never see a cloud SDK object. The adapters
keep only the cloud's own tags (AWS ``nomadrig:*``) or labels (GCP
``nomadrig-*``), keyed by bare name (``managed``), through `nomadrig.names`,
which also parses them (`BoxTags`): the module that writes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nomadrig.names import BoxTags

# Instance states, normalised across clouds. GCP calls a stopped VM TERMINATED.
RUNNING = "running"
STOPPED = "stopped"
PENDING = "pending"
STOPPING = "stopping"
TERMINATED = "terminated"
GONE_STATES = ("shutting-down", TERMINATED)  # EC2 states nothing starts or stops again (GCE deletes outright)

_AWS_STOP_REASON = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")


def parse_aws_stopped_since(state_transition_reason: str | None) -> datetime | None:
    """Read when an EC2 instance stopped from its ``StateTransitionReason``.

    EC2 has no "stopped at" field; the only record is the free text
    ``"User initiated (2026-11-19 10:00:00 GMT)"`` (moto writes ``UTC``).
    Returns None when the text carries no valid time (e.g. a stop by the
    service): an unknown stop time keeps the box, it never fails the scan.
    """
    if not state_transition_reason:
        return None
    match = _AWS_STOP_REASON.search(state_transition_reason)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class ManagedInstance:
    """One instance as the reaper sees it, whatever the cloud.

    `location` is the AWS region or the GCP zone (what the API calls need);
    `region` is the region in both clouds (what the team file allows).
    """

    cloud: str
    region: str
    location: str
    instance_id: str
    name: str
    state: str
    instance_type: str
    launched_at: datetime | None
    stopped_since: datetime | None
    tags: Mapping[str, str] = field(default_factory=dict)
    data_volume_ids: tuple[str, ...] = ()
    spot_interrupted: bool = False  # stopped by the cloud reclaiming a spot instance, not by a person or agent

    @property
    def box_tags(self) -> BoxTags:
        """The parsed nomadrig tags (parsed on demand so that the record stays plain data)."""
        return BoxTags.parse(self.tags, self.cloud)


@dataclass(frozen=True)
class CpuWindow:
    """The cloud's own CPU metric for one running instance over the idle window.

    `datapoints` against `expected` tells whether the metric covers the window:
    a box with missing data is never judged idle.
    """

    minutes: int
    max_percent: float | None
    datapoints: int
    expected: int


@dataclass(frozen=True)
class SnapshotRef:
    """A data-volume snapshot the reaper took (or found) for one instance."""

    snapshot_id: str
    volume_id: str
    instance_id: str
    state: str
    started_at: datetime | None
    location: str

    @property
    def completed(self) -> bool:
        """AWS says ``completed``; GCP says ``READY``."""
        return self.state.lower() in ("completed", "ready")

    @property
    def failed(self) -> bool:
        """A snapshot that will never complete; a new one must be taken."""
        return self.state.lower() in ("error", "failed", "deleting")

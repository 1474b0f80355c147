"""A cloud-neutral record of one instance the reaper may act on.

The AWS and GCP adapters translate their own shapes into `ManagedInstance` so
that the verdicts (pure functions) never see a cloud SDK object. Tags (AWS,
``nomadrig:managed``) and labels (GCP, ``nomadrig-managed``: labels cannot hold
``:``) are normalised to the bare key (``managed``) here, once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

AWS_TAG_PREFIX = "nomadrig:"
GCP_LABEL_PREFIX = "nomadrig-"

# Instance states, normalised across clouds. GCP calls a stopped VM TERMINATED.
RUNNING = "running"
STOPPED = "stopped"
PENDING = "pending"
STOPPING = "stopping"
TERMINATED = "terminated"

_AWS_STOP_REASON = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")


def parse_aws_stopped_since(state_transition_reason: str | None) -> datetime | None:
    """Read when an EC2 instance stopped from its ``StateTransitionReason``.

    EC2 has no "stopped at" field; the only record is the free text
    ``"User initiated (2026-11-19 10:00:00 GMT)"`` (moto writes ``UTC``).
    Returns None when the text carries no time (e.g. a stop by the service).
    """
    if not state_transition_reason:
        return None
    match = _AWS_STOP_REASON.search(state_transition_reason)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def parse_timestamp(value: str | None) -> datetime | None:
    """Parse an ISO-8601 time (AWS tags, GCP RFC 3339 fields) or epoch seconds (GCP labels).

    GCP label values allow only ``[a-z0-9_-]``, so ``nomadrig-created`` holds
    epoch seconds there. Naive times are taken as UTC. Raises ValueError on
    anything else so that a bad tag is reported, not guessed.
    """
    if value is None or value == "":
        return None
    text = value.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text), tz=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalise_tags(raw: Mapping[str, str]) -> dict[str, str]:
    """Keep only nomadrig tags/labels, keyed by their bare name (``managed``, ``ttl``...)."""
    tags: dict[str, str] = {}
    for key, value in raw.items():
        for prefix in (AWS_TAG_PREFIX, GCP_LABEL_PREFIX):
            if key.startswith(prefix):
                tags[key[len(prefix) :]] = value
    return tags


@dataclass(frozen=True)
class BoxTags:
    """The nomadrig tags of one instance, parsed. Problems are kept, not raised.

    A malformed tag must never make the reaper guess: the verdict reports
    `errors` and keeps the box.
    """

    managed: bool
    team: str | None
    owner: str | None
    ttl_hours: float | None
    idle_minutes: int | None
    created: datetime | None
    protect: bool
    errors: tuple[str, ...] = ()

    @classmethod
    def parse(cls, tags: Mapping[str, str], cloud: str) -> BoxTags:
        """Parse normalised tags; `cloud` only shapes the key names in error messages."""
        prefix = AWS_TAG_PREFIX if cloud == "aws" else GCP_LABEL_PREFIX
        errors: list[str] = []

        def number(key: str, kind: type[float] | type[int]) -> float | int | None:
            value = tags.get(key)
            if value in (None, ""):
                return None
            try:
                parsed = kind(value)
            except ValueError:
                errors.append(f"tag {prefix}{key}={value!r} is not a number; set it to e.g. 48")
                return None
            if parsed <= 0:
                errors.append(f"tag {prefix}{key}={value!r} must be positive")
                return None
            return parsed

        created: datetime | None = None
        try:
            created = parse_timestamp(tags.get("created"))
        except ValueError:
            errors.append(
                f"tag {prefix}created={tags.get('created')!r} is not a time; "
                "use ISO-8601 (2026-11-26T10:00:00Z) or epoch seconds"
            )
        ttl = number("ttl", float)
        idle = number("idle-minutes", int)
        return cls(
            managed=tags.get("managed", "").lower() == "true",
            team=tags.get("team") or None,
            owner=tags.get("owner") or None,
            ttl_hours=float(ttl) if ttl is not None else None,
            idle_minutes=int(idle) if idle is not None else None,
            created=created,
            protect=tags.get("protect", "").lower() in ("true", "yes", "1"),
            errors=tuple(errors),
        )


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

    @property
    def box_tags(self) -> BoxTags:
        """The parsed nomadrig tags (parsed on demand so that the record stays plain data)."""
        return BoxTags.parse(self.tags, self.cloud)

    def with_state(self, state: str, stopped_since: datetime | None) -> ManagedInstance:
        """A copy after a state change the reaper caused (e.g. its own stop)."""
        return ManagedInstance(
            cloud=self.cloud,
            region=self.region,
            location=self.location,
            instance_id=self.instance_id,
            name=self.name,
            state=state,
            instance_type=self.instance_type,
            launched_at=self.launched_at,
            stopped_since=stopped_since,
            tags=self.tags,
            data_volume_ids=self.data_volume_ids,
        )


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

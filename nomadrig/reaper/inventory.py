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
from datetime import UTC, datetime, timedelta

AWS_TAG_PREFIX = "nomadrig:"
GCP_LABEL_PREFIX = "nomadrig-"

# Instance states, normalised across clouds. GCP calls a stopped VM TERMINATED.
RUNNING = "running"
STOPPED = "stopped"
PENDING = "pending"
STOPPING = "stopping"
TERMINATED = "terminated"

_AWS_STOP_REASON = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")

# What nomadrig itself writes, so anything outside it is a hand edit or damage, never a setting to obey:
# TTL and idle minutes have the team file's bounds (nomads[].ttl_hours, nomads[].idle_minutes).
MAX_TTL_HOURS = 8760
MAX_IDLE_MINUTES = 1440
# No nomadrig box is older than this: an earlier `created` would make the reaper destroy the box at once.
EARLIEST_CREATED = datetime(2020, 1, 1, tzinfo=UTC)
# A `created` this far ahead of the reaper's clock is not clock skew: it would keep the box forever.
CREATED_SKEW = timedelta(hours=1)
SHOWN_VALUE_CHARS = 40

_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # ASCII only: no exponent, sign, inf, nan or other scripts' digits
_MAX_DECIMAL_CHARS = 12  # "8760.5" fits; a 5000-digit number does not reach float()
_EPOCH_SECONDS = re.compile(r"[0-9]{1,11}")
# `spec.label_value` turns "2026-11-26T10:00Z" into this on GCP (labels allow only [a-z0-9_-]).
_GCP_LABEL_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})t([0-9]{2})-([0-9]{2})(?:-([0-9]{2}))?z")


def shown(value: str) -> str:
    """A tag value for a message: quoted, escaped (newlines, control characters) and cut to a readable length."""
    if len(value) <= SHOWN_VALUE_CHARS:
        return repr(value)
    return f"{value[:SHOWN_VALUE_CHARS]!r}... ({len(value)} characters)"


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


def parse_timestamp(value: str | None) -> datetime | None:
    """Parse an ISO-8601 time (AWS tags, GCP RFC 3339 fields), epoch seconds, or a GCP label time.

    GCP label values allow only ``[a-z0-9_-]``, so ``nomadrig-created`` holds
    either epoch seconds or ``2026-11-26t10-00z`` (what the stacks write).
    Naive times are taken as UTC. Raises ValueError, and only ValueError, on
    anything else (out-of-range numbers included) so that a bad tag is
    reported, not guessed, and never stops a run.
    """
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if _EPOCH_SECONDS.fullmatch(text):
            return datetime.fromtimestamp(int(text), tz=UTC)
        label = _GCP_LABEL_TIME.fullmatch(text)
        if label:
            year, month, day, hour, minute = (int(part) for part in label.groups()[:5])
            return datetime(year, month, day, hour, minute, int(label.group(6) or 0), tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # In UTC from here on: comparing times with far-apart offsets near year 1 or 9999 would overflow later.
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError("not a valid time") from None  # the library's message would repeat the whole value


def parse_amount(text: str, *, whole: bool, highest: int, unit: str, example: str) -> float:
    """A positive decimal number of `unit` up to `highest`, from a tag; ValueError says why and what to write.

    Only plain ASCII decimals are read: float() would accept ``inf``, ``nan``,
    ``1e300`` and other scripts' digits, and int() raises on 5000 digits.
    """
    fix = f"set it to e.g. {example}"
    stripped = text.strip()
    if not _DECIMAL.fullmatch(stripped) or (whole and "." in stripped):
        kind = "whole number" if whole else "number"
        raise ValueError(f"not a {kind} of {unit}; {fix}")
    if len(stripped) > _MAX_DECIMAL_CHARS or float(stripped) > highest:
        raise ValueError(f"more than the {highest} {unit} nomadrig allows; {fix}")
    amount = float(stripped)
    if amount <= 0:
        raise ValueError(f"must be above 0 {unit}; {fix}")
    return amount


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

    A malformed tag must never make the reaper guess, nor stop its run: the
    verdict reports `errors` (one "unreadable tag KEY=VALUE: why" each) and
    keeps the box. `created_tag` is the raw value, for the checks against the
    reaper's clock that `problems` adds.
    """

    managed: bool
    team: str | None
    owner: str | None
    ttl_hours: float | None
    idle_minutes: int | None
    created: datetime | None
    protect: bool
    errors: tuple[str, ...] = ()
    prefix: str = AWS_TAG_PREFIX
    created_tag: str = ""

    @classmethod
    def parse(cls, tags: Mapping[str, str], cloud: str) -> BoxTags:
        """Parse normalised tags; `cloud` only shapes the key names in error messages. Never raises."""
        prefix = AWS_TAG_PREFIX if cloud == "aws" else GCP_LABEL_PREFIX
        errors: list[str] = []

        def text(key: str) -> str:
            value = tags.get(key)
            return value if isinstance(value, str) else ""

        def amount(key: str, *, whole: bool, highest: int, unit: str, example: str) -> float | None:
            value = text(key)
            if not value:
                return None
            try:
                return parse_amount(value, whole=whole, highest=highest, unit=unit, example=example)
            except ValueError as why:
                errors.append(unreadable(prefix, key, value, str(why)))
                return None

        created: datetime | None = None
        created_tag = text("created")
        try:
            created = parse_timestamp(created_tag)
        except ValueError as why:
            errors.append(unreadable(prefix, "created", created_tag,
                                     f"{why}; use ISO-8601 (2026-11-26T10:00:00Z) or epoch seconds"))
        if created is not None and created < EARLIEST_CREATED:
            errors.append(unreadable(prefix, "created", created_tag,
                                     f"before {EARLIEST_CREATED:%Y-%m-%d}, older than any nomadrig box"))
            created = None
        ttl = amount("ttl", whole=False, highest=MAX_TTL_HOURS, unit="hours", example="48")
        idle = amount("idle-minutes", whole=True, highest=MAX_IDLE_MINUTES, unit="minutes", example="60")
        return cls(
            managed=text("managed").lower() == "true",
            team=text("team") or None,
            owner=text("owner") or None,
            ttl_hours=ttl,
            idle_minutes=int(idle) if idle is not None else None,
            created=created,
            protect=text("protect").lower() in ("true", "yes", "1"),
            errors=tuple(errors),
            prefix=prefix,
            created_tag=created_tag,
        )

    def problems(self, now: datetime) -> tuple[str, ...]:
        """`errors`, plus a `created` time ahead of `now`: believed, it would keep the box forever."""
        if self.created is not None and self.created - now > CREATED_SKEW:  # a difference cannot overflow
            late = unreadable(self.prefix, "created", self.created_tag,
                              f"in the future (the reaper's clock says {now:%Y-%m-%d %H:%M} UTC)")
            return (*self.errors, late)
        return self.errors


def unreadable(prefix: str, key: str, value: str, why: str) -> str:
    """The one line a person reads about a bad tag: which tag, its value (escaped, cut short), why."""
    return f"unreadable tag {prefix}{key}={shown(value)}: {why}"


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

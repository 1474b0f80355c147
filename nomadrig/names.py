"""Every name nomadrig writes into a cloud or a backend, and the parser of each, side by side.

Stack names, AWS tags (``nomadrig:*``), GCP labels (``nomadrig-*``) and the
creation time each cloud can hold are written by the stacks and the engine and
read back by the reaper, ``ls`` and ``ssh-config``. Keeping the writer beside
its parser is what keeps them agreeing: a box the stacks tag is a box the
reaper can read.

Stack names join their parts with ``--``. Team, nomad and tower names cannot
hold ``--`` (``nomadrig.team``), nor can cloud regions, so a stack name
splits back into exactly the parts it was made of, and no two stacks share a
name: ``vision--lab-ada`` (team ``vision``, nomad ``lab-ada``) is not
``vision-lab--ada``, and a nomad named ``net`` is not a network stack.

Tags are parsed never trusting them: the team's Pulumi state and the cloud
console are shared, so a value may be a hand edit or damage. A malformed tag
is reported ("unreadable tag KEY=VALUE: why"), never guessed.

Standard library only: the reaper and the CLI import this at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# ---------------------------------------------------------------- stack names

SEPARATOR = "--"
LEGACY_SEPARATOR = "-"  # nomadrig before 0.2 joined parts with one dash, which made names collide

BOX, NETWORK, TOWER, PURGE = "box", "network", "tower", "purge"
_NETWORK_WORD, _TOWER_WORD, _PURGE_WORD = "net", "tower", "purge"
# A part of a stack name: what a team, nomad or tower name or a region can be (never empty, no dash at
# either end, so a part never swallows a separator).
_PART = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


@dataclass(frozen=True)
class StackName:
    """A stack name read back into what it names.

    `subject` is the nomad (box, purge), the tower, or ``<cloud>/<region>`` (network).
    """

    kind: str
    team: str
    subject: str
    cloud: str = ""
    region: str = ""

    @property
    def name(self) -> str:
        """The name this stack has (the inverse of `parse_stack_name`)."""
        if self.kind == NETWORK:
            return network_stack_name(self.team, self.cloud, self.region)
        if self.kind == TOWER:
            return tower_stack_name(self.team, self.subject)
        if self.kind == PURGE:
            return purge_stack_name(self.team, self.subject)
        return box_stack_name(self.team, self.subject)


def _join(*parts: str) -> str:
    """Parts joined by the separator; a part that could blur the split is a programming error, not input."""
    for part in parts:
        if not _PART.fullmatch(part) or SEPARATOR in part:
            raise ValueError(f"{part!r} cannot be part of a stack name (validated names never look like this)")
    return SEPARATOR.join(parts)


def box_stack_name(team: str, nomad: str) -> str:
    """``vision-lab--ada``: the stack of one nomad's box (also its ssh Host alias and GCE instance name)."""
    return _join(team, nomad)


def network_stack_name(team: str, cloud: str, region: str) -> str:
    """``vision-lab--net--aws--eu-west-1``: the team network of one cloud and region."""
    return _join(team, _NETWORK_WORD, cloud, region)


def tower_stack_name(team: str, tower: str) -> str:
    """``vision-lab--tower--basement``: the stack that records one tower's configuration."""
    return _join(team, _TOWER_WORD, tower)


def purge_stack_name(team: str, nomad: str) -> str:
    """``vision-lab--purge--ada``: the scratch stack that deletes a nomad's retained data volumes."""
    return _join(team, _PURGE_WORD, nomad)


def parse_stack_name(name: str) -> StackName | None:
    """What a stack name names, or None when nomadrig did not make it this way.

    Accepts Pulumi Cloud's ``org/project/stack`` too (the stack part is read).
    """
    parts = name.rsplit("/", 1)[-1].split(SEPARATOR)
    if not all(_PART.fullmatch(part) for part in parts):
        return None
    if len(parts) == 2:
        return StackName(BOX, parts[0], parts[1])
    if len(parts) == 3 and parts[1] == _TOWER_WORD:
        return StackName(TOWER, parts[0], parts[2])
    if len(parts) == 3 and parts[1] == _PURGE_WORD:
        return StackName(PURGE, parts[0], parts[2])
    if len(parts) == 4 and parts[1] == _NETWORK_WORD:
        return StackName(NETWORK, parts[0], f"{parts[2]}/{parts[3]}", parts[2], parts[3])
    return None


def legacy_stack_names(name: str) -> tuple[str, ...]:
    """The names earlier nomadrig releases gave the stack now called `name` (``<team>-<nomad>``, ...).

    The engine looks these up before creating `name`, so a stack made under
    the old name is renamed, not duplicated beside a live one.
    """
    parsed = parse_stack_name(name)
    if parsed is None:
        return ()
    dash = LEGACY_SEPARATOR
    if parsed.kind == NETWORK:
        return (dash.join((parsed.team, _NETWORK_WORD, parsed.cloud, parsed.region)),)
    if parsed.kind in (TOWER, PURGE):
        word = _TOWER_WORD if parsed.kind == TOWER else _PURGE_WORD
        return (dash.join((parsed.team, word, parsed.subject)),)
    return (dash.join((parsed.team, parsed.subject)),)


# ---------------------------------------------------------------- stack tags

# Tags on a box stack itself (kept in the backend beside its state, so every teammate and the reaper's
# machine read the same ones). Pulumi allows [a-zA-Z0-9-_.:] in a tag name, up to 40 characters.
DATA_VOLUME_STACK_TAG = "nomadrig:data-volume"  # the data volume a `down` or the reaper kept
DATA_SNAPSHOT_STACK_TAG = "nomadrig:data-snapshot"  # the snapshot the reaper took before its destroy


# ---------------------------------------------------------------- tags and labels

AWS_TAG_PREFIX = "nomadrig:"
GCP_LABEL_PREFIX = "nomadrig-"  # labels cannot hold ':'
PREFIXES = {"aws": AWS_TAG_PREFIX, "gcp": GCP_LABEL_PREFIX}

MANAGED = "managed"
TEAM = "team"
OWNER = "owner"
TTL = "ttl"
IDLE_MINUTES = "idle-minutes"
CREATED = "created"
PROTECT = "protect"  # set by people (console, CLI), never by nomadrig
REAP_OF = "reap-of"  # on the reaper's snapshots: the instance they were taken of
SOURCE_VOLUME = "source-volume"

_LABEL_VALUE_CHARS = 63
_FALSE_FLAGS = frozenset({"false", "0", "no"})


def prefix(cloud: str) -> str:
    """``nomadrig:`` on AWS, ``nomadrig-`` on GCP."""
    try:
        return PREFIXES[cloud]
    except KeyError:
        raise ValueError(f"unknown cloud {cloud!r}: use aws or gcp") from None


def tag_key(cloud: str, key: str) -> str:
    """The full tag (AWS) or label (GCP) key of a bare key: ``nomadrig:ttl`` / ``nomadrig-ttl``."""
    return prefix(cloud) + key


def label_value(value: str) -> str:
    """GCP label values allow only lowercase letters, digits, '_' and '-', up to 63 characters."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in value.lower())
    return cleaned[:_LABEL_VALUE_CHARS]


def tag_value(cloud: str, value: str) -> str:
    """A value as the cloud can hold it: AWS tags take it as written, GCP labels in their alphabet."""
    return label_value(value) if cloud == "gcp" else value


def cloud_tags(cloud: str, facts: Mapping[str, str]) -> dict[str, str]:
    """Bare keys and values -> the cloud's tags (AWS) or labels (GCP)."""
    return {tag_key(cloud, key): tag_value(cloud, value) for key, value in facts.items()}


def team_tags(cloud: str, team: str) -> dict[str, str]:
    """The tags (AWS) or labels (GCP) of a team network's resources: managed by nomadrig, and whose."""
    return cloud_tags(cloud, {MANAGED: "true", TEAM: team})


def box_tags(cloud: str, *, team: str, owner: str, ttl_hours: int, idle_minutes: int, created: str) -> dict[str, str]:
    """The tags (AWS) or labels (GCP) every resource of a box carries: what the reaper judges it by.

    `created` is the canonical time (`format_created`); on GCP it becomes
    ``2026-12-01t18-39z``, which `parse_time` reads back.
    """
    return cloud_tags(cloud, {MANAGED: "true", TEAM: team, OWNER: owner, TTL: str(ttl_hours),
                              IDLE_MINUTES: str(idle_minutes), CREATED: created})


def snapshot_tags(cloud: str, *, team: str, owner: str, instance_id: str, volume_id: str = "") -> dict[str, str]:
    """What the reaper tags a data-volume snapshot with, so a later run finds (and reuses) its own."""
    facts = {MANAGED: "true", TEAM: team, OWNER: owner, REAP_OF: instance_id}
    if volume_id:
        facts[SOURCE_VOLUME] = volume_id
    return cloud_tags(cloud, facts)


def read_tags(raw: Mapping[str, str], cloud: str) -> dict[str, str]:
    """The nomadrig tags of one resource keyed by bare name (``managed``, ``ttl``...).

    Only the cloud's own prefix is read: an AWS box tagged both
    ``nomadrig:protect=true`` and ``nomadrig-protect=false`` is protected,
    whatever order the API lists them in, and a stray ``nomadrig-ttl`` on AWS
    changes nothing.
    """
    own = prefix(cloud)
    return {key[len(own):]: value for key, value in raw.items() if key.startswith(own)}


def parse_flag(value: object) -> bool:
    """A flag tag (``protect``): set unless its value says false.

    The AWS console's usual way to set a flag is a tag with an empty value, so
    present-and-empty means set; only ``false``, ``0`` or ``no`` (any case)
    clear it. Absent (None) is not set.
    """
    if value is None:
        return False
    return not (isinstance(value, str) and value.strip().lower() in _FALSE_FLAGS)


# ---------------------------------------------------------------- times

# `label_value` turns "2026-11-26T10:00Z" into this on GCP (labels allow only [a-z0-9_-]).
_GCP_LABEL_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})t([0-9]{2})-([0-9]{2})(?:-([0-9]{2}))?z")
_EPOCH_SECONDS = re.compile(r"[0-9]{1,11}")
CREATED_FORMAT = "%Y-%m-%dT%H:%MZ"


def format_created(moment: datetime) -> str:
    """The canonical creation time, to the minute in UTC: ``2026-12-01T18:39Z`` (naive times are UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime(CREATED_FORMAT)


def created_now() -> str:
    """Now, as `format_created` writes it: the creation time of a box that has none yet."""
    return format_created(datetime.now(UTC))


def parse_time(value: str | None) -> datetime | None:
    """Parse an ISO-8601 time (AWS tags, stack outputs, API fields), epoch seconds, or a GCP label time.

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


# ---------------------------------------------------------------- reading a box's tags

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


def shown(value: str) -> str:
    """A tag value for a message: quoted, escaped (newlines, control characters) and cut to a readable length."""
    if len(value) <= SHOWN_VALUE_CHARS:
        return repr(value)
    return f"{value[:SHOWN_VALUE_CHARS]!r}... ({len(value)} characters)"


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


def unreadable(tag_prefix: str, key: str, value: str, why: str) -> str:
    """The one line a person reads about a bad tag: which tag, its value (escaped, cut short), why."""
    return f"unreadable tag {tag_prefix}{key}={shown(value)}: {why}"


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
        """Parse tags as `read_tags` returns them (bare keys); `cloud` names the keys in messages. Never raises."""
        tag_prefix = prefix(cloud)
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
                errors.append(unreadable(tag_prefix, key, value, str(why)))
                return None

        created: datetime | None = None
        created_tag = text(CREATED)
        try:
            created = parse_time(created_tag)
        except ValueError as why:
            errors.append(unreadable(tag_prefix, CREATED, created_tag,
                                     f"{why}; use ISO-8601 (2026-11-26T10:00:00Z) or epoch seconds"))
        if created is not None and created < EARLIEST_CREATED:
            errors.append(unreadable(tag_prefix, CREATED, created_tag,
                                     f"before {EARLIEST_CREATED:%Y-%m-%d}, older than any nomadrig box"))
            created = None
        ttl = amount(TTL, whole=False, highest=MAX_TTL_HOURS, unit="hours", example="48")
        idle = amount(IDLE_MINUTES, whole=True, highest=MAX_IDLE_MINUTES, unit="minutes", example="60")
        return cls(
            managed=text(MANAGED).lower() == "true",
            team=text(TEAM) or None,
            owner=text(OWNER) or None,
            ttl_hours=ttl,
            idle_minutes=int(idle) if idle is not None else None,
            created=created,
            protect=parse_flag(tags.get(PROTECT)),
            errors=tuple(errors),
            prefix=tag_prefix,
            created_tag=created_tag,
        )

    def problems(self, now: datetime) -> tuple[str, ...]:
        """`errors`, plus a `created` time ahead of `now`: believed, it would keep the box forever."""
        if self.created is not None and self.created - now > CREATED_SKEW:  # a difference cannot overflow
            late = unreadable(self.prefix, CREATED, self.created_tag,
                              f"in the future (the reaper's clock says {now:%Y-%m-%d %H:%M} UTC)")
            return (*self.errors, late)
        return self.errors

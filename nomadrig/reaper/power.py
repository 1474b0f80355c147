"""The instance a box stack owns: find it from the stack's outputs, read its live state, start and stop it.

`nomadrig start|stop NOMAD` and `nomadrig ls` talk to the clouds through the
reaper's adapters (`aws.AwsReaperCloud`, `gcp.GcpReaperCloud`), the only code
that calls cloud APIs directly: one adapter per cloud, the same calls the
reaper makes.

Stack outputs come from the team's shared Pulumi state, so each value is
checked against the shape the cloud gives it (`nomadrig.sshconfig.fits`)
before it reaches an API call; a value without it is reported, never sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nomadrig.errors import CloudError
from nomadrig.reaper.inventory import GONE_STATES, RUNNING, STOPPED, ManagedInstance
from nomadrig.reaper.ports import InstanceRef, ReaperCloud, StateSeen

# Interactive commands poll more often than the reaper, and give up on an unreachable API sooner.
POLL_S = 5.0
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 20
API_ATTEMPTS = 2
SPOT_INTERRUPTED = "spot-interrupted"
GONE = "gone"
UNKNOWN = "unknown"
ERROR_CHARS = 160

AdapterFactory = Callable[[str, str, Sequence[str]], ReaperCloud]


@dataclass(frozen=True)
class LiveState:
    """What the cloud says about a box's instance right now, as `ls` shows it.

    `state`: running, stopped, spot-interrupted (stopped by the cloud taking
    spot capacity back), pending, stopping, gone (the stack records an
    instance the cloud no longer has) or unknown (`detail` says why).
    """

    state: str
    since: datetime | None = None
    detail: str = ""

    @classmethod
    def of(cls, instance: ManagedInstance) -> LiveState:
        state = SPOT_INTERRUPTED if instance.spot_interrupted else instance.state
        return cls(state, instance.stopped_since if instance.state == STOPPED else None)

    def text(self, now: datetime | None = None) -> str:
        """``running``, ``stopped 5h``, ``spot-interrupted 2d``, ``unknown: why``."""
        if self.since is not None:
            hours = ((now or datetime.now(UTC)) - self.since).total_seconds() / 3600
            return f"{self.state} {hours:.0f}h" if hours < 48 else f"{self.state} {hours / 24:.0f}d"
        return f"{self.state}: {self.detail}" if self.detail else self.state

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "stopped_since": self.since.isoformat() if self.since else None,
                "detail": self.detail}


def instance_ref(cloud: str, region: str, outputs: Mapping[str, Any], project: str = "") -> InstanceRef | None:
    """Where the box's instance is, from its stack outputs; None before the first `up` (no instance output).

    Raises CloudError (exit 3) naming the output when a value does not have its cloud's shape.
    """
    from nomadrig.regions import REGIONS_BY_CLOUD
    from nomadrig.sshconfig import SHAPES, fits, shown

    def checked(key: str, shape: str, value: Any) -> str:
        if not fits(shape, value):
            raise CloudError(f"stack output {key} = {shown(value)} is not {SHAPES[shape][1]}; nomadrig does not "
                             "send it to the cloud.\n  `nomadrig outputs NOMAD` shows the outputs; "
                             "`nomadrig up NOMAD` writes the real ones again.")
        return str(value)

    if cloud == "aws":
        if not outputs.get("instance_id"):
            return None
        if region not in REGIONS_BY_CLOUD["aws"]:
            raise CloudError(f"region {shown(region)} is not an AWS region; nomadrig does not send it to the cloud.")
        return InstanceRef("aws", region, checked("instance_id", "aws_instance_id", outputs["instance_id"]))
    if cloud == "gcp":
        if not outputs.get("instance_name") or not outputs.get("zone"):
            return None
        return InstanceRef("gcp", checked("zone", "gcp_zone", outputs["zone"]),
                           checked("instance_name", "gcp_instance_name", outputs["instance_name"]),
                           checked("project", "gcp_project", outputs.get("project") or project))
    raise CloudError(f"unknown cloud {shown(cloud)}: nomadrig provisions on aws or gcp")


def default_adapter(cloud: str, project: str, locations: Sequence[str]) -> ReaperCloud:
    """An adapter for interactive use: short polls, short timeouts, few retries (a person is waiting)."""
    if cloud == "aws":
        from botocore.config import Config

        from nomadrig.reaper.aws import AwsReaperCloud

        config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                        retries={"max_attempts": API_ATTEMPTS, "mode": "standard"})
        return AwsReaperCloud(sorted(set(locations)), client_config=config, poll_s=POLL_S)
    from nomadrig.reaper.gcp import GcpReaperCloud, region_of_zone

    return GcpReaperCloud(project, sorted({region_of_zone(z) for z in locations}), poll_s=POLL_S)


def live_states(refs: Mapping[str, InstanceRef], adapter: AdapterFactory | None = None) -> dict[str, LiveState]:
    """The live state of each stack's instance, by stack name: one adapter (and few calls) per cloud and project.

    A cloud that cannot be asked (no credentials, no network, its client not
    installed) makes its boxes ``unknown`` with the reason; it never fails `ls`.
    `adapter` defaults to `default_adapter` (read when called, so tests can replace it).
    """
    adapter = adapter or default_adapter
    states: dict[str, LiveState] = {}
    for (cloud, project), group in _grouped(refs.items()).items():
        try:
            found = adapter(cloud, project, [ref.location for _, ref in group]).find([ref for _, ref in group])
        except Exception as error:  # any cloud failure: the stack list still shows, with the reason
            why = _short(error)
            states.update({stack: LiveState(UNKNOWN, detail=why) for stack, _ in group})
            continue
        for stack, ref in group:
            instance = found.get(ref)
            states[stack] = LiveState.of(instance) if instance else LiveState(GONE, detail="no such instance")
    return states


def _grouped(items: Iterable[tuple[str, InstanceRef]]) -> dict[tuple[str, str], list[tuple[str, InstanceRef]]]:
    groups: dict[tuple[str, str], list[tuple[str, InstanceRef]]] = {}
    for stack, ref in items:
        groups.setdefault((ref.cloud, ref.project), []).append((stack, ref))
    return groups


def _short(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + "..."


def set_power(ref: InstanceRef, running: bool, progress: StateSeen | None = None,
              adapter: AdapterFactory | None = None) -> tuple[ManagedInstance, bool]:
    """Start (`running`) or stop the instance `ref` names and wait for it; (the instance, whether it changed).

    An instance already in the wanted state is left alone. Cloud failures
    become CloudError (exit 3) with the cloud's own words.
    """
    adapter = adapter or default_adapter
    verb = "start" if running else "stop"
    try:
        cloud = adapter(ref.cloud, ref.project, [ref.location])
        instance = cloud.find([ref]).get(ref)
        if instance is None or instance.state in GONE_STATES:
            raise CloudError(f"{ref.cloud} has no live instance {ref.ident} in {ref.location} (terminated or deleted "
                             "outside nomadrig, or its stack is out of date).\n"
                             "  `nomadrig up NOMAD` creates the box again.")
        if instance.state == (RUNNING if running else STOPPED):
            return instance, False
        changed = cloud.start([instance], progress) if running else cloud.stop([instance], progress)
    except CloudError:
        raise
    except Exception as error:
        raise CloudError(f"{ref.cloud}: could not {verb} {ref.ident} in {ref.location}: {_short(error)}\n"
                         f"  Check the cloud credentials nomadrig runs with, then run the command again.") from None
    return changed[0], True

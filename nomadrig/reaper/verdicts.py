"""What the reaper decides for each instance: pure functions, no cloud, no clock.

Order of the rules, first match wins, chosen so that the safest answer wins:

1. not tagged ``managed=true`` for this team -> ``skip-unmanaged`` (never touched)
2. tagged ``protect``                         -> ``skip-protected`` (never touched)
3. a malformed nomadrig tag                   -> ``keep`` (never act on a guess; "unreadable tag KEY=VALUE: why")
4. no box stack owns the instance             -> ``orphan`` (reported; acted on only with --orphans)
5. past its TTL (created + ttl hours)         -> ``destroy``
6. stopped longer than the policy allows      -> ``destroy``
7. running, CPU idle over the whole window    -> ``stop`` (the idle agent is missing or broken)
8. otherwise                                  -> ``keep``

``destroy`` always means: snapshot the data volume, wait for it, then destroy
the stack (the data volume itself is retained by the stack).

Time arithmetic is done in float hours, never by adding a tag's hours to a
date: ``created + ttl`` overflows ``datetime`` near year 9999 even for a
finite TTL, and one box's tags must never be able to stop the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from nomadrig.reaper.inventory import RUNNING, STOPPED, CpuWindow, ManagedInstance
from nomadrig.reaper.ports import StackRef


class Action(StrEnum):
    """The reaper's verdict for one instance."""

    KEEP = "keep"
    STOP = "stop"
    DESTROY = "destroy"
    ORPHAN = "orphan"
    SKIP_PROTECTED = "skip-protected"
    SKIP_UNMANAGED = "skip-unmanaged"


@dataclass(frozen=True)
class ReapPolicy:
    """The team settings the verdicts read, taken from the team file once.

    `idle_cpu_percent`: below this maximum CPU over the window a box counts as
    idle. Conservative on purpose: the cloud sees no GPU, no SSH session, so
    the reaper only acts after the longest idle time the team allows
    (`max_idle_minutes`), when the agent should long since have stopped it.
    `min_cpu_coverage`: the share of expected metric datapoints that must be
    present; missing data never counts as idle.
    """

    team: str
    stopped_destroy_after_hours: float
    max_idle_minutes: int
    idle_cpu_percent: float = 5.0
    min_cpu_coverage: float = 0.8

    def __post_init__(self) -> None:
        if not math.isfinite(self.stopped_destroy_after_hours) or self.stopped_destroy_after_hours <= 0:
            raise ValueError(
                f"policy.stopped_destroy_after_hours is {self.stopped_destroy_after_hours}; "
                "set a positive number of hours (e.g. 168 for a week)"
            )
        if self.max_idle_minutes <= 0:
            raise ValueError(
                f"policy.max_idle_minutes is {self.max_idle_minutes}; set a positive number of minutes"
            )

    @classmethod
    def from_team(cls, team: Any) -> ReapPolicy:
        """Read `team.name`, `team.policy.stopped_destroy_after_hours` and `team.policy.max_idle_minutes`."""
        return cls(
            team=team.name,
            stopped_destroy_after_hours=float(team.policy.stopped_destroy_after_hours),
            max_idle_minutes=int(team.policy.max_idle_minutes),
        )


@dataclass(frozen=True)
class ReapDecision:
    """One decision with the reason a person reads in the report.

    `unreadable` lists the instance's bad tags ("unreadable tag KEY=VALUE: why"),
    the reason it was kept; the report lists them apart so nobody misses them.
    """

    instance: ManagedInstance
    action: Action
    reason: str
    stack: StackRef | None = None
    unreadable: tuple[str, ...] = ()


def _span(hours: float) -> str:
    """A duration for a reason: hours up to two days, days beyond."""
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"


def _hours_since(then: datetime, now: datetime) -> float:
    """Hours from `then` to `now` (negative when `then` is later): a float, so no tag can overflow it."""
    return (now - then).total_seconds() / 3600


def judge(
    instance: ManagedInstance,
    stack: StackRef | None,
    cpu: CpuWindow | None,
    policy: ReapPolicy,
    now: datetime,
) -> ReapDecision:
    """Decide for one instance. See the module docstring for the rule order."""
    tags = instance.box_tags

    def verdict(action: Action, reason: str) -> ReapDecision:
        return ReapDecision(instance=instance, action=action, reason=reason, stack=stack)

    if not tags.managed:
        return verdict(Action.SKIP_UNMANAGED, "not tagged nomadrig managed=true")
    if tags.team != policy.team:
        return verdict(Action.SKIP_UNMANAGED, f"belongs to team {tags.team!r}, not {policy.team!r}")
    if tags.protect:
        return verdict(Action.SKIP_PROTECTED, "tagged protect")
    problems = tags.problems(now)
    if problems:
        return ReapDecision(instance=instance, action=Action.KEEP, reason="; ".join(problems), stack=stack,
                       unreadable=problems)
    if stack is None:
        return verdict(Action.ORPHAN, "tagged managed but no box stack owns it")

    if tags.ttl_hours is not None:
        created = tags.created or instance.launched_at
        if created is not None:
            over = _hours_since(created, now) - tags.ttl_hours
            if over >= 0:
                return verdict(
                    Action.DESTROY,
                    f"TTL {tags.ttl_hours:g} h expired {_span(over)} ago (created {created:%Y-%m-%d %H:%M})",
                )

    if instance.state == STOPPED:
        if instance.stopped_since is None:
            return verdict(Action.KEEP, "stopped, but the cloud does not say since when")
        stopped_for = _hours_since(instance.stopped_since, now)
        if stopped_for >= policy.stopped_destroy_after_hours:
            return verdict(
                Action.DESTROY,
                f"stopped for {_span(stopped_for)} (policy: destroy after "
                f"{policy.stopped_destroy_after_hours:g} h)",
            )
        return verdict(Action.KEEP, f"stopped for {_span(stopped_for)}")

    if instance.state == RUNNING:
        return _judge_running(instance, cpu, policy, now, verdict)

    return verdict(Action.KEEP, f"{instance.state}: changing state, judged next run")


def _judge_running(
    instance: ManagedInstance,
    cpu: CpuWindow | None,
    policy: ReapPolicy,
    now: datetime,
    verdict: Callable[[Action, str], ReapDecision],
) -> ReapDecision:
    """Stop a running box only when the cloud's CPU metric covers the whole window and stays low."""
    if instance.launched_at is not None and _hours_since(instance.launched_at, now) * 60 < policy.max_idle_minutes:
        return verdict(Action.KEEP, "running, started less than the idle window ago")
    if cpu is None or cpu.max_percent is None or cpu.expected == 0:
        return verdict(Action.KEEP, "running, no CPU metric for the idle window")
    coverage = cpu.datapoints / cpu.expected
    if coverage < policy.min_cpu_coverage:
        return verdict(
            Action.KEEP,
            f"running, CPU metric covers only {cpu.datapoints}/{cpu.expected} periods of the idle window",
        )
    if cpu.max_percent < policy.idle_cpu_percent:
        return verdict(
            Action.STOP,
            f"running but idle: CPU at most {cpu.max_percent:.1f}% for {cpu.minutes} min "
            f"(policy: {policy.max_idle_minutes} min); the idle agent is missing or broken",
        )
    return verdict(Action.KEEP, f"running, CPU up to {cpu.max_percent:.1f}% in the last {cpu.minutes} min")


def stack_index(stacks: Sequence[StackRef]) -> dict[str, StackRef]:
    """Stacks by the instance they record (``instance_id`` output; on GCP it may be the instance name)."""
    return {s.instance_id: s for s in stacks if s.instance_id}


def stack_for(instance: ManagedInstance, index: Mapping[str, StackRef]) -> StackRef | None:
    """The stack that owns `instance`: by id; on GCP also by name (unique per project and zone)."""
    found = index.get(instance.instance_id)
    if found is None and instance.cloud == "gcp":
        found = index.get(instance.name)
        if found is not None and found.cloud != "gcp":
            found = None
    return found


def judge_all(
    instances: Iterable[ManagedInstance],
    stacks: Sequence[StackRef],
    cpu_by_id: Mapping[str, CpuWindow],
    policy: ReapPolicy,
    now: datetime,
) -> list[ReapDecision]:
    """Decide for every instance, matching each to the stack that records it."""
    index = stack_index(stacks)
    return [_judge_one(i, stack_for(i, index), cpu_by_id.get(i.instance_id), policy, now) for i in instances]


def _judge_one(
    instance: ManagedInstance, stack: StackRef | None, cpu: CpuWindow | None, policy: ReapPolicy, now: datetime
) -> ReapDecision:
    """`judge`, except that a failure to judge one instance keeps that instance instead of ending the run.

    The rules are total over every tag value (the tests generate them); this is
    the last line for what no test thought of, and it says so in the reason.
    """
    try:
        return judge(instance, stack, cpu, policy, now)
    except Exception as error:  # noqa: BLE001 - one instance must never stop the reaper
        return ReapDecision(instance=instance, action=Action.KEEP, reason=f"not judged, kept: {type(error).__name__}: "
                       f"{str(error)[:200]}", stack=stack)


def needs_cpu(instance: ManagedInstance, index: Mapping[str, StackRef], policy: ReapPolicy) -> bool:
    """Whether the CPU metric could change the verdict (saves metric queries for everything else)."""
    tags = instance.box_tags
    return (
        instance.state == RUNNING
        and tags.managed
        and tags.team == policy.team
        and not tags.protect
        and not tags.errors
        and stack_for(instance, index) is not None
    )

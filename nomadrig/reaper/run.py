"""One reaper run: list, judge, and (with apply) stop and destroy, keeping the data.

The steps of a destroy are idempotent per instance id, so a run interrupted
anywhere leaves nothing half-done that the next run cannot finish:

1. stop the box if it runs (a snapshot of a stopped box is consistent);
2. snapshot each data volume, tagged ``nomadrig:reap-of=<instance>``; a
   snapshot an earlier run took after the last stop is reused, not repeated;
3. wait until every snapshot of the box is completed (bounded); a box whose
   snapshots are not complete is not destroyed this run;
4. record the snapshot in the box stack's tags, where `nomadrig restore`
   finds it, when the stacks can (`SnapshotRecords`; the engine's can);
5. destroy the box stack (the stack retains the data volume, and the engine
   records it in the stack's tags, so the next `up` attaches it again).

Dry run unless `apply`. Orphans (managed instances no stack owns) are only
reported, unless `orphans` is set: then snapshot and terminate them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from nomadrig.reaper.inventory import RUNNING, STOPPED, CpuWindow, ManagedInstance, SnapshotRef
from nomadrig.reaper.lock import DEFAULT_TTL, holding, lock_for
from nomadrig.reaper.ports import BoxStacks, ReaperCloud, StackRef
from nomadrig.reaper.verdicts import Action, ReapDecision, ReapPolicy, judge_all, needs_cpu, stack_index

Progress = Callable[[str], None]
DEFAULT_SNAPSHOT_TIMEOUT_S = 2 * 3600.0  # below the lock's 6 h expiry


@runtime_checkable
class SnapshotRecords(Protocol):
    """Box stacks that keep a note of the snapshot taken of a box's data before its destroy.

    The engine's `EngineBoxStacks` writes it into the box stack's tags (shared through the backend);
    stacks without it (tests' doubles) are still destroyed, the snapshot then found by its cloud tags.
    """

    def record_snapshot(self, name: str, snapshot_id: str) -> None: ...


@dataclass(frozen=True)
class ActionRecord:
    """One thing the reaper did (or, in a dry run, would do), in order."""

    seq: int
    at: str
    instance_id: str
    step: str
    detail: str


@dataclass
class ReapReport:
    """The outcome of one run: every verdict, every step taken, every failure."""

    team: str
    applied: bool
    orphans_enabled: bool
    started_at: datetime
    verdicts: list[ReapDecision] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    finished_at: datetime | None = None

    def count(self, action: Action) -> int:
        return sum(1 for v in self.verdicts if v.action == action)

    def log(self, instance_id: str, step: str, detail: str = "") -> None:
        self.actions.append(
            ActionRecord(
                seq=len(self.actions) + 1,
                at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                instance_id=instance_id,
                step=step,
                detail=detail,
            )
        )

    def steps_for(self, instance_id: str) -> list[str]:
        return [a.step for a in self.actions if a.instance_id == instance_id]


def default_clouds(team: Any) -> tuple[ReaperCloud | None, ReaperCloud | None]:
    """AWS and GCP adapters for the clouds the team file declares (None where it declares none)."""
    clouds = getattr(team, "clouds", None)
    aws_conf = getattr(clouds, "aws", None)
    gcp_conf = getattr(clouds, "gcp", None)
    aws: ReaperCloud | None = None
    gcp: ReaperCloud | None = None
    if aws_conf is not None and getattr(aws_conf, "regions", None):
        from nomadrig.reaper.aws import AwsReaperCloud

        aws = AwsReaperCloud(aws_conf.regions)
    if gcp_conf is not None and getattr(gcp_conf, "regions", None):
        from nomadrig.reaper.gcp import GcpReaperCloud

        gcp = GcpReaperCloud(gcp_conf.project, gcp_conf.regions)
    return aws, gcp


def run_reaper(
    team: Any,
    *,
    apply: bool,
    orphans: bool,
    stacks: BoxStacks,
    now: datetime | None = None,
    aws: ReaperCloud | None = None,
    gcp: ReaperCloud | None = None,
    progress: Progress | None = None,
    lock_url: str | None = None,
    lock_ttl: timedelta = DEFAULT_TTL,
    snapshot_timeout_s: float = DEFAULT_SNAPSHOT_TIMEOUT_S,
) -> ReapReport:
    """Run the reaper for `team` (a `nomadrig.team.Team`).

    `aws`/`gcp` default to adapters for the clouds in the team file. With
    `apply`, the run holds the team's lock (``ReaperLockHeld``, exit code 3,
    when another run holds it); a dry run takes no lock since it changes nothing.
    """
    policy = ReapPolicy.from_team(team)
    if aws is None and gcp is None:
        aws, gcp = default_clouds(team)
    clouds = [c for c in (aws, gcp) if c is not None]
    say = progress or (lambda _message: None)
    if not apply:
        return _run(policy, clouds, stacks, now, say, apply=False, orphans=orphans, timeout_s=snapshot_timeout_s)
    lock = lock_for(lock_url or team.state.backend_url, policy.team, ttl=lock_ttl)
    with holding(lock):
        say(f"holding the reaper lock at {lock.where}")
        return _run(policy, clouds, stacks, now, say, apply=True, orphans=orphans, timeout_s=snapshot_timeout_s)


def _run(
    policy: ReapPolicy,
    clouds: Sequence[ReaperCloud],
    stacks: BoxStacks,
    now: datetime | None,
    say: Progress,
    *,
    apply: bool,
    orphans: bool,
    timeout_s: float,
) -> ReapReport:
    moment = now or datetime.now(UTC)
    report = ReapReport(team=policy.team, applied=apply, orphans_enabled=orphans, started_at=moment)
    stack_refs = stacks.list()
    stack_by_instance = stack_index(stack_refs)
    cloud_of: dict[str, ReaperCloud] = {}
    reachable: list[ReaperCloud] = []
    for cloud in clouds:
        try:
            instances = cloud.list_instances(policy.team)
            say(f"{cloud.cloud}: {len(instances)} managed instances")
            candidates = [i for i in instances if needs_cpu(i, stack_by_instance, policy)]
            cpu: dict[str, CpuWindow] = (
                cloud.cpu_windows(candidates, policy.max_idle_minutes, moment) if candidates else {}
            )
        except Exception as error:  # one cloud down (or its SDK missing) must not stop the other
            report.errors.append(f"{cloud.cloud}: not reaped: {error}")
            continue
        reachable.append(cloud)
        report.verdicts.extend(judge_all(instances, stack_refs, cpu, policy, moment))
        cloud_of.update({i.instance_id: cloud for i in instances})
    if not apply:
        report.finished_at = datetime.now(UTC)
        return report

    for cloud in reachable:
        mine = [v for v in report.verdicts if cloud_of.get(v.instance.instance_id) is cloud]
        _apply_cloud(cloud, mine, report, say, orphans=orphans, stacks=stacks, timeout_s=timeout_s)
    report.finished_at = datetime.now(UTC)
    return report


def _apply_cloud(
    cloud: ReaperCloud,
    verdicts: Sequence[ReapDecision],
    report: ReapReport,
    say: Progress,
    *,
    orphans: bool,
    stacks: BoxStacks,
    timeout_s: float,
) -> None:
    """Stop, snapshot, wait, destroy: each phase batched over the cloud's boxes, each failure kept to its boxes."""
    teardown = [v for v in verdicts if v.action == Action.DESTROY or (orphans and v.action == Action.ORPHAN)]
    stopped = _stop(cloud, [v.instance for v in verdicts if v.action == Action.STOP], teardown, report, say)
    snapshots = _snapshot(cloud, teardown, stopped, report)
    if snapshots is None:
        return
    snapshots = _wait_for_snapshots(cloud, snapshots, report, say, timeout_s)
    ready = [v for v in teardown if v.instance.instance_id in snapshots]
    orphans_ready = _destroy(ready, snapshots, stacks, report, say)
    _terminate_orphans(cloud, orphans_ready, report)


def _stop(cloud: ReaperCloud, to_stop: list[ManagedInstance], teardown: Sequence[ReapDecision], report: ReapReport,
          say: Progress) -> dict[str, ManagedInstance]:
    """Stop the idle boxes, and the running boxes to tear down (so their snapshot is consistent)."""
    running_teardown = [v.instance for v in teardown if v.instance.state == RUNNING]
    stopped_now: dict[str, ManagedInstance] = {}
    if not (to_stop or running_teardown):
        return stopped_now
    say(f"{cloud.cloud}: stopping {len(to_stop) + len(running_teardown)} instances")
    try:
        for instance in cloud.stop([*to_stop, *running_teardown]):
            stopped_now[instance.instance_id] = instance
    except Exception as error:  # a failed batch must not stop the rest of the run
        report.errors.append(f"{cloud.cloud}: stop failed: {error}")
    for instance in to_stop:
        if instance.instance_id in stopped_now:
            report.log(instance.instance_id, "stop", "idle by the cloud's CPU metric")
    for instance in running_teardown:
        if instance.instance_id in stopped_now:
            report.log(instance.instance_id, "stop-before-snapshot", "so the snapshot is consistent")
    return stopped_now


def _snapshot(cloud: ReaperCloud, teardown: Sequence[ReapDecision], stopped_now: dict[str, ManagedInstance],
              report: ReapReport) -> dict[str, list[SnapshotRef]] | None:
    """Snapshot the data volume of every stopped box to tear down; None when the cloud cannot snapshot at all.

    A box that is not stopped (its stop failed, or it is changing state) is
    deferred: a snapshot of a volume in use is not trustworthy, so it is
    neither snapshotted nor destroyed, and the next run picks it up.
    """
    stopped_teardown: list[ManagedInstance] = []
    for verdict in teardown:
        instance = stopped_now.get(verdict.instance.instance_id, verdict.instance)
        if instance.state != STOPPED:
            report.log(instance.instance_id, "deferred", f"{instance.state}, not stopped; next run")
            continue
        stopped_teardown.append(instance)
    if not stopped_teardown:
        return {}
    try:
        snapshots, failures = cloud.ensure_snapshots(stopped_teardown)
    except Exception as error:  # e.g. no permission to list snapshots: destroy nothing in this cloud
        report.errors.append(f"{cloud.cloud}: snapshots failed, nothing destroyed: {error}")
        return None
    for iid, message in failures.items():
        report.errors.append(f"{iid}: snapshot failed: {message}")
    for verdict in teardown:  # in the report, boxes keep the order of the decisions
        iid = verdict.instance.instance_id
        for ref in snapshots.get(iid, ()):
            step = "snapshot-reused" if ref.completed else "snapshot-started"
            report.log(iid, step, f"{ref.snapshot_id} of {ref.volume_id} ({ref.state})")
        if snapshots.get(iid) == []:
            report.log(iid, "no-data-volume", "nothing to snapshot")
    return snapshots


def _wait_for_snapshots(cloud: ReaperCloud, snapshots: dict[str, list[SnapshotRef]], report: ReapReport,
                        say: Progress, timeout_s: float) -> dict[str, list[SnapshotRef]]:
    """Wait (up to timeout_s) for the snapshots that are still being taken; log each that completed here."""
    all_refs = [r for refs in snapshots.values() for r in refs]
    if all(r.completed for r in all_refs):
        return snapshots
    say(f"{cloud.cloud}: waiting for {sum(not r.completed for r in all_refs)} snapshots")
    waited = {r.snapshot_id: r for r in cloud.wait_snapshots(all_refs, timeout_s)}
    snapshots = {iid: [waited[r.snapshot_id] for r in refs] for iid, refs in snapshots.items()}
    for iid, refs in snapshots.items():
        for ref in refs:
            if ref.completed and not any(
                a.instance_id == iid and a.step == "snapshot-reused" and ref.snapshot_id in a.detail
                for a in report.actions
            ):
                report.log(iid, "snapshot-completed", ref.snapshot_id)
    return snapshots


def _destroy(ready: Sequence[ReapDecision], snapshots: dict[str, list[SnapshotRef]], stacks: BoxStacks,
             report: ReapReport, say: Progress) -> list[ManagedInstance]:
    """Destroy the stack of each box whose snapshots all completed; return the orphans ready to terminate."""
    orphans_ready: list[ManagedInstance] = []
    for verdict in ready:
        iid = verdict.instance.instance_id
        refs = snapshots[iid]
        unfinished = [r for r in refs if not r.completed]
        if unfinished:
            states = ", ".join(f"{r.snapshot_id} {r.state}" for r in unfinished)
            report.errors.append(f"{iid}: not destroyed, snapshot not completed ({states}); the next run continues")
            continue
        if verdict.action == Action.ORPHAN:
            orphans_ready.append(verdict.instance)
            continue
        stack: StackRef | None = verdict.stack
        assert stack is not None  # a destroy verdict always has its stack
        _record_snapshot(stacks, stack, refs, report)
        say(f"destroying stack {stack.name} ({iid})")
        try:
            stacks.destroy(stack.name)
        except Exception as error:
            report.errors.append(f"{iid}: stack {stack.name} destroy failed: {error}; the next run retries")
            continue
        report.log(iid, "destroy", f"stack {stack.name}; data volume retained")
    return orphans_ready


def _terminate_orphans(cloud: ReaperCloud, orphans_ready: list[ManagedInstance], report: ReapReport) -> None:
    if not orphans_ready:
        return
    try:
        cloud.terminate(orphans_ready)
    except Exception as error:
        report.errors.append(f"{cloud.cloud}: terminating orphans failed: {error}")
        return
    for instance in orphans_ready:
        report.log(instance.instance_id, "terminate-orphan", "no stack owns it; data volume kept")


def _record_snapshot(stacks: BoxStacks, stack: StackRef, refs: Sequence[SnapshotRef], report: ReapReport) -> None:
    """Note the box's (completed) data snapshot on its stack before the destroy; a failure is reported, not fatal.

    The data volume itself is kept either way, so a note that could not be written costs `restore`
    its default, never the data.
    """
    if not refs or not isinstance(stacks, SnapshotRecords):
        return
    snapshot = refs[0].snapshot_id  # one data volume per box: the stacks declare exactly one
    try:
        stacks.record_snapshot(stack.name, snapshot)
    except Exception as error:
        report.errors.append(f"{refs[0].instance_id}: could not record snapshot {snapshot} on {stack.name}: {error}")
        return
    report.log(refs[0].instance_id, "snapshot-recorded", f"{snapshot} on stack {stack.name}")


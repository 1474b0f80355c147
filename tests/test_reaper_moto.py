"""The reaper against EC2 and CloudWatch served by a moto server on loopback.

A fleet of 1,020 instances in three regions: managed and unmanaged, running
busy and idle, stopped long ago and recently, past their TTL, protected,
orphaned, another team's. The reaper must act on exactly the right ones, take
a completed snapshot before every destroy, leave everything else as it was,
and scan with one DescribeInstances call per 1,000 instances per region.

How "stopped long ago" is expressed: EC2 has no stop-time field, only the
``StateTransitionReason`` text "User initiated (<time> GMT)"; moto builds that
text from ``moto.ec2.models.instances.utcnow`` when the instance stops (and
the launch time the same way when it starts). The moto server runs in this
process (ThreadedMotoServer), so seeding patches that clock while stopping or
launching: the reaper then reads a real moto stop reason, no test-only tag.
"""

from __future__ import annotations

import contextlib
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from nomadrig.reaper.aws import AwsReaperCloud
from nomadrig.reaper.ports import StackRef
from nomadrig.reaper.run import ReapReport, run_reaper
from nomadrig.reaper.verdicts import Action

REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
TEAM = "vision-lab"
IDLE_WINDOW_MIN = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def reset_moto(moto_url: str) -> None:
    requests.post(f"{moto_url}/moto-api/reset", timeout=30).raise_for_status()


def point_boto_at(moto_url: str, patch: pytest.MonkeyPatch) -> None:
    """Every boto3 client goes to the moto server, with fake credentials."""
    patch.setenv("AWS_ENDPOINT_URL", moto_url)
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        patch.delenv(name, raising=False)


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty moto cloud for one test."""
    point_boto_at(moto_url, monkeypatch)
    reset_moto(moto_url)
    return moto_url


@contextlib.contextmanager
def moto_clock(at: datetime) -> Iterator[None]:
    """Make moto's EC2 model believe it is `at` (for launch and stop times it records)."""
    import moto.ec2.models.instances as instances_model

    original = instances_model.utcnow
    instances_model.utcnow = lambda: at.astimezone(UTC).replace(tzinfo=None)
    try:
        yield
    finally:
        instances_model.utcnow = original


@dataclass
class Fleet:
    """What was seeded, by category, per instance id."""

    category: dict[str, str] = field(default_factory=dict)
    region: dict[str, str] = field(default_factory=dict)
    data_volume: dict[str, str] = field(default_factory=dict)
    stacks: list[StackRef] = field(default_factory=list)

    def ids(self, *categories: str) -> set[str]:
        return {i for i, c in self.category.items() if c in categories}


def tags_for(category: str, owner: str, now: datetime) -> list[dict[str, str]]:
    managed = {
        "nomadrig:managed": "true",
        "nomadrig:team": TEAM,
        "nomadrig:owner": owner,
        "nomadrig:ttl": "168",
        "nomadrig:idle-minutes": "30",
        "nomadrig:created": (now - timedelta(hours=30)).isoformat(timespec="seconds"),
        "Name": f"{owner}-box",
    }
    if category == "unmanaged":
        return [{"Key": "Name", "Value": f"{owner}-hand-made"}, {"Key": "nomadrig:team", "Value": TEAM}]
    if category == "other-team":
        managed["nomadrig:team"] = "nlp-lab"
    if category == "expired-running":
        managed["nomadrig:ttl"] = "48"
        managed["nomadrig:created"] = (now - timedelta(days=10)).isoformat(timespec="seconds")
    if category == "protected":
        managed["nomadrig:protect"] = "true"
        managed["nomadrig:ttl"] = "1"
    return [{"Key": k, "Value": v} for k, v in managed.items()]


# category -> (count per region, running?, stopped how long ago, has a stack?)
PLAN: dict[str, tuple[int, bool, timedelta | None, bool]] = {
    "keep-running": (284, True, None, True),  # no CPU data: never judged idle
    "idle": (5, True, None, True),
    "busy": (3, True, None, True),
    "stopped-long": (4, False, timedelta(days=10), True),
    "stopped-recent": (2, False, timedelta(days=1), True),
    "expired-running": (3, True, None, True),
    "protected": (2, False, timedelta(days=30), True),
    "orphan": (2, False, timedelta(days=30), False),
    "unmanaged": (30, False, timedelta(days=400), False),
    "other-team": (5, False, timedelta(days=30), False),
}


def seed(now: datetime, plan: dict[str, tuple[int, bool, timedelta | None, bool]], regions: list[str]) -> Fleet:
    """Launch the fleet with run_instances batches; stop the stopped ones at their past times."""
    fleet = Fleet()
    for region in regions:
        ec2 = boto3.client("ec2", region_name=region)
        image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
        cloudwatch = boto3.client("cloudwatch", region_name=region)
        for category, (count, running, stopped_ago, has_stack) in plan.items():
            with moto_clock(now - timedelta(days=40)):
                launched = ec2.run_instances(
                    ImageId=image,
                    MinCount=count,
                    MaxCount=count,
                    InstanceType="g5.xlarge",
                    BlockDeviceMappings=[
                        {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 50, "DeleteOnTermination": False}}
                    ],
                    TagSpecifications=[
                        {"ResourceType": "instance", "Tags": tags_for(category, f"{category}-{region}", now)}
                    ],
                )["Instances"]
            ids = [i["InstanceId"] for i in launched]
            for raw in launched:
                iid = raw["InstanceId"]
                fleet.category[iid] = category
                fleet.region[iid] = region
                fleet.data_volume[iid] = next(
                    m["Ebs"]["VolumeId"] for m in raw["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sdf"
                )
                if has_stack:
                    fleet.stacks.append(StackRef(f"{TEAM}-{iid}", category, "aws", region, iid))
            if not running:
                assert stopped_ago is not None
                with moto_clock(now - stopped_ago):
                    ec2.stop_instances(InstanceIds=ids)
            if category in ("idle", "busy"):
                level = 0.8 if category == "idle" else 70.0
                points = [
                    {
                        "MetricName": "CPUUtilization",
                        "Dimensions": [{"Name": "InstanceId", "Value": iid}],
                        "Timestamp": now - timedelta(minutes=2.5 + 5 * k),
                        "Value": level + (k % 3) * 0.1,
                        "Unit": "Percent",
                    }
                    for iid in ids
                    for k in range(IDLE_WINDOW_MIN // 5)
                ]
                cloudwatch.put_metric_data(Namespace="AWS/EC2", MetricData=points)
    return fleet


STACK_EVENTS = ("destroy", "record-snapshot")  # what MotoStacks logs beside the API calls


class MotoStacks:
    """The engine double: destroying a stack terminates its instance in moto.

    At destroy time it records the states of the instance's reaper snapshots,
    so the test sees what existed when the box went away. `interrupt_after`
    raises KeyboardInterrupt on that destroy call (a run killed mid-way).
    """

    def __init__(
        self,
        refs: list[StackRef],
        events: list[tuple[Any, ...]],
        data_volume: dict[str, str] | None = None,
        interrupt_after: int | None = None,
    ):
        self.refs = {r.name: r for r in refs}
        self.data_volume = data_volume or {}
        self.events = events
        self.destroyed: list[str] = []
        self.interrupt_after = interrupt_after
        self.calls = 0

    def list(self) -> list[StackRef]:
        return list(self.refs.values())

    def record_snapshot(self, name: str, snapshot_id: str) -> None:
        """What the engine writes into the box stack's tags (`EngineBoxStacks.record_snapshot`)."""
        self.events.append(("record-snapshot", self.refs[name].instance_id, snapshot_id))

    def destroy(self, name: str) -> None:
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        ref = self.refs[name]
        ec2 = boto3.client("ec2", region_name=ref.region)
        # by volume (moto answers that filter fast), then only the reaper's snapshots of this instance
        snaps = ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [self.data_volume[ref.instance_id]]}]
        )["Snapshots"]
        mine = [s for s in snaps if {"Key": "nomadrig:reap-of", "Value": ref.instance_id} in s.get("Tags", [])]
        self.events.append(("destroy", ref.instance_id, tuple(s["State"] for s in mine)))
        ec2.terminate_instances(InstanceIds=[ref.instance_id])
        del self.refs[name]
        self.destroyed.append(ref.instance_id)


def recording_session(events: list[tuple[Any, ...]]) -> boto3.Session:
    """A boto3 session that logs every API call the reaper makes, with its parameters.

    botocore emits ``before-parameter-build`` once per API call, with the
    operation model and the caller's parameters (``before-call`` sees only the
    serialised request).
    """
    session = boto3.Session()

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        events.append((model.name, dict(params)))

    session.events.register("before-parameter-build", record)
    return session


def states(regions: list[str]) -> dict[str, str]:
    """Every instance's state, read with a client the reaper does not use."""
    result: dict[str, str] = {}
    for region in regions:
        for page in boto3.client("ec2", region_name=region).get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                for raw in reservation["Instances"]:
                    result[raw["InstanceId"]] = raw["State"]["Name"]
    return result


def team_double(state_dir: Any) -> SimpleNamespace:
    return SimpleNamespace(
        name=TEAM,
        clouds=SimpleNamespace(aws=SimpleNamespace(regions=REGIONS), gcp=None),
        policy=SimpleNamespace(stopped_destroy_after_hours=168, max_idle_minutes=IDLE_WINDOW_MIN),
        state=SimpleNamespace(backend_url=f"file://{state_dir}"),
    )


@dataclass
class Reaped:
    fleet: Fleet
    before: dict[str, str]
    after: dict[str, str]
    dry_run: ReapReport
    dry_run_calls: Counter[str]
    report: ReapReport
    events: list[tuple[Any, ...]]
    stacks: MotoStacks


@pytest.fixture(scope="module")
def reaped(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reaped]:
    """Seed the 1,020-instance fleet once, dry-run, then apply; the tests below read the outcome."""
    with pytest.MonkeyPatch.context() as patch:
        point_boto_at(moto_url, patch)
        reset_moto(moto_url)
        now = datetime.now(UTC)
        fleet = seed(now, PLAN, REGIONS)
        before = states(REGIONS)
        events: list[tuple[Any, ...]] = []
        stacks = MotoStacks(fleet.stacks, events, fleet.data_volume)
        cloud = AwsReaperCloud(REGIONS, session=recording_session(events), poll_s=0.05)
        team = team_double(tmp_path_factory.mktemp("state"))

        dry_run = run_reaper(team, apply=False, orphans=False, stacks=stacks, now=now, aws=cloud)
        dry_run_calls = Counter(e[0] for e in events)
        events.clear()
        report = run_reaper(team, apply=True, orphans=False, stacks=stacks, now=now, aws=cloud)
        yield Reaped(fleet, before, states(REGIONS), dry_run, dry_run_calls, report, events, stacks)


def test_seeded_fleet_has_over_a_thousand_instances_in_three_regions(reaped: Reaped):
    assert len(reaped.before) == 1020
    assert set(reaped.fleet.region.values()) == set(REGIONS)


def test_scan_makes_one_describe_call_per_page_not_per_instance(reaped: Reaped):
    managed = len(reaped.dry_run.verdicts)
    assert managed == 3 * 305
    assert reaped.dry_run_calls["DescribeInstances"] == 3, reaped.dry_run_calls
    assert reaped.dry_run_calls["GetMetricData"] == 3, reaped.dry_run_calls


def test_dry_run_changes_nothing(reaped: Reaped):
    assert reaped.dry_run.actions == []
    assert not {"StopInstances", "CreateSnapshot", "TerminateInstances"} & set(reaped.dry_run_calls)


def test_verdicts_match_what_each_box_is(reaped: Reaped):
    expected = {
        "keep-running": Action.KEEP,
        "idle": Action.STOP,
        "busy": Action.KEEP,
        "stopped-long": Action.DESTROY,
        "stopped-recent": Action.KEEP,
        "expired-running": Action.DESTROY,
        "protected": Action.SKIP_PROTECTED,
        "orphan": Action.ORPHAN,
    }
    wrong = {
        v.instance.instance_id: (reaped.fleet.category[v.instance.instance_id], v.action, v.reason)
        for v in reaped.report.verdicts
        if expected[reaped.fleet.category[v.instance.instance_id]] != v.action
    }
    assert wrong == {}
    listed = {v.instance.instance_id for v in reaped.report.verdicts}
    assert not listed & reaped.fleet.ids("unmanaged", "other-team"), "the tag filter must exclude them server-side"


def test_idle_boxes_are_stopped_and_expired_or_long_stopped_boxes_destroyed(reaped: Reaped):
    after, fleet = reaped.after, reaped.fleet
    assert {after[i] for i in fleet.ids("idle")} == {"stopped"}
    assert {after[i] for i in fleet.ids("stopped-long", "expired-running")} == {"terminated"}
    assert set(reaped.stacks.destroyed) == fleet.ids("stopped-long", "expired-running")
    assert reaped.report.errors == []


def test_unmanaged_protected_orphaned_and_kept_boxes_are_untouched(reaped: Reaped):
    untouched = reaped.fleet.ids(
        "unmanaged", "other-team", "protected", "orphan", "keep-running", "busy", "stopped-recent"
    )
    changed = {i: (reaped.before[i], reaped.after[i]) for i in untouched if reaped.before[i] != reaped.after[i]}
    assert changed == {}
    touched_ids: set[str] = set()
    for name, params in (e for e in reaped.events if e[0] not in STACK_EVENTS):
        if name in ("StopInstances", "TerminateInstances", "StartInstances"):
            touched_ids.update(params["InstanceIds"])
        if name == "CreateSnapshot":
            touched_ids.add(next(i for i, v in reaped.fleet.data_volume.items() if v == params["VolumeId"]))
    assert not touched_ids & untouched


def test_every_destroyed_box_had_a_completed_snapshot_of_its_data_volume_first(reaped: Reaped):
    events, fleet = reaped.events, reaped.fleet
    for iid in reaped.stacks.destroyed:
        destroy_at = next(n for n, e in enumerate(events) if e[0] == "destroy" and e[1] == iid)
        snapshot_at = [
            n for n, e in enumerate(events) if e[0] == "CreateSnapshot" and e[1]["VolumeId"] == fleet.data_volume[iid]
        ]
        assert len(snapshot_at) == 1 and snapshot_at[0] < destroy_at, (iid, snapshot_at, destroy_at)
        assert events[destroy_at][2] == ("completed",), f"{iid}: snapshot states at destroy {events[destroy_at][2]}"
        steps = reaped.report.steps_for(iid)
        assert steps.index("destroy") > max(n for n, s in enumerate(steps) if s.startswith("snapshot"))


def test_each_destroyed_box_has_its_snapshot_recorded_on_its_stack_before_the_destroy(reaped: Reaped):
    """`nomadrig restore` reads this record: it must name the box's own completed snapshot."""
    events, fleet = reaped.events, reaped.fleet
    for iid in reaped.stacks.destroyed:
        destroy_at = next(n for n, e in enumerate(events) if e[0] == "destroy" and e[1] == iid)
        [(record_at, snapshot)] = [(n, e[2]) for n, e in enumerate(events) if e[0] == "record-snapshot" and e[1] == iid]
        assert record_at < destroy_at
        ec2 = boto3.client("ec2", region_name=fleet.region[iid])
        [raw] = ec2.describe_snapshots(SnapshotIds=[snapshot])["Snapshots"]
        assert (raw["VolumeId"], raw["State"]) == (fleet.data_volume[iid], "completed")
        assert {"Key": "nomadrig:reap-of", "Value": iid} in raw["Tags"]


def test_running_box_is_stopped_before_its_snapshot(reaped: Reaped):
    for iid in reaped.fleet.ids("expired-running"):
        steps = reaped.report.steps_for(iid)
        assert steps[0] == "stop-before-snapshot" and steps[-1] == "destroy", steps


def test_snapshots_carry_the_tags_that_find_them_again(reaped: Reaped):
    iid = sorted(reaped.fleet.ids("stopped-long"))[0]
    ec2 = boto3.client("ec2", region_name=reaped.fleet.region[iid])
    (snap,) = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:nomadrig:reap-of", "Values": [iid]}])[
        "Snapshots"
    ]
    tags = {t["Key"]: t["Value"] for t in snap["Tags"]}
    assert tags["nomadrig:managed"] == "true"
    assert tags["nomadrig:owner"] == f"stopped-long-{reaped.fleet.region[iid]}"
    assert tags["nomadrig:source-volume"] == reaped.fleet.data_volume[iid] == snap["VolumeId"]


def test_describe_calls_follow_the_page_size(reaped: Reaped, monkeypatch: pytest.MonkeyPatch):
    """Calls grow with pages: at EC2's smallest page (5) the same scan takes more calls.

    moto pages DescribeInstances by reservation (one run_instances batch), so the
    expected count is computed from the reservations, read without the reaper.
    """
    import math

    import nomadrig.reaper.aws as aws_module

    monkeypatch.setattr(aws_module, "DESCRIBE_PAGE_SIZE", 5)
    filters = [
        {"Name": "tag:nomadrig:managed", "Values": ["true"]},
        {"Name": "tag:nomadrig:team", "Values": [TEAM]},
        {"Name": "instance-state-name", "Values": aws_module.LIVE_STATES},
    ]
    reservations = {
        region: len(boto3.client("ec2", region_name=region).describe_instances(Filters=filters)["Reservations"])
        for region in REGIONS
    }
    expected_calls = sum(math.ceil(n / 5) for n in reservations.values())
    assert expected_calls > len(REGIONS)

    events: list[tuple[Any, ...]] = []
    found = AwsReaperCloud(REGIONS, session=recording_session(events)).list_instances(TEAM)
    assert len(found) == len(reaped.report.verdicts) - len(reaped.stacks.destroyed)
    assert Counter(e[0] for e in events)["DescribeInstances"] == expected_calls


# The tests below reset moto and seed their own small fleet: keep every test that reads the
# module's 1,020-instance fleet (the `reaped` fixture) above this line.
SMALL_PLAN: dict[str, tuple[int, bool, timedelta | None, bool]] = {
    "stopped-long": (3, False, timedelta(days=10), True),
    "expired-running": (2, True, None, True),
    "orphan": (2, False, timedelta(days=30), False),
    "unmanaged": (3, False, timedelta(days=400), False),
}


def test_interrupted_run_is_finished_by_the_next_without_a_second_snapshot(aws_env: str, tmp_path: Any):
    now = datetime.now(UTC)
    fleet = seed(now, SMALL_PLAN, ["eu-west-1"])
    events: list[tuple[Any, ...]] = []
    cloud = AwsReaperCloud(["eu-west-1"], session=recording_session(events), poll_s=0.05)
    team = team_double(tmp_path)
    doomed = fleet.ids("stopped-long", "expired-running")

    stacks = MotoStacks(fleet.stacks, events, fleet.data_volume, interrupt_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_reaper(team, apply=True, orphans=False, stacks=stacks, now=now, aws=cloud)
    assert len(stacks.destroyed) == 1
    first_run_snapshots = [e for e in events if e[0] == "CreateSnapshot"]
    assert len(first_run_snapshots) == len(doomed)
    assert not list((tmp_path / ".nomadrig" / "locks").glob("*.json")), "an interrupted run must release its lock"

    events.clear()
    stacks.interrupt_after = None
    report = run_reaper(team, apply=True, orphans=False, stacks=stacks, now=now, aws=cloud)
    assert [e for e in events if e[0] == "CreateSnapshot"] == []
    assert set(stacks.destroyed) == doomed
    for iid in doomed - {stacks.destroyed[0]}:
        assert report.steps_for(iid) == ["snapshot-reused", "snapshot-recorded", "destroy"], report.steps_for(iid)
    assert [e[2] for e in events if e[0] == "destroy"] == [("completed",)] * (len(doomed) - 1)


def test_orphans_are_reported_and_only_terminated_with_orphans_flag(aws_env: str, tmp_path: Any):
    now = datetime.now(UTC)
    fleet = seed(now, SMALL_PLAN, ["eu-west-1"])
    events: list[tuple[Any, ...]] = []
    cloud = AwsReaperCloud(["eu-west-1"], session=recording_session(events), poll_s=0.05)
    team = team_double(tmp_path)
    orphans = fleet.ids("orphan")

    run_reaper(
        team, apply=True, orphans=False, stacks=MotoStacks(fleet.stacks, events, fleet.data_volume), now=now, aws=cloud
    )
    assert {states(["eu-west-1"])[i] for i in orphans} == {"stopped"}

    report = run_reaper(team, apply=True, orphans=True, stacks=MotoStacks([], events), now=now, aws=cloud)
    after = states(["eu-west-1"])
    assert {after[i] for i in orphans} == {"terminated"}
    assert {after[i] for i in fleet.ids("unmanaged")} == {"stopped"}
    for iid in orphans:
        assert report.steps_for(iid)[-1] == "terminate-orphan"
        assert any(s.startswith("snapshot") for s in report.steps_for(iid))

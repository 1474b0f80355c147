"""The reaper's verdicts, its tag parsing and its GCP adapter: no cloud, no clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomadrig.names import box_tags, format_created, parse_time
from nomadrig.reaper import report_json
from nomadrig.reaper.gcp import GcpReaperCloud
from nomadrig.reaper.inventory import CpuWindow, ManagedInstance, parse_aws_stopped_since
from nomadrig.reaper.ports import StackRef
from nomadrig.reaper.run import run_reaper
from nomadrig.reaper.verdicts import Action, ReapPolicy, judge, judge_all

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = ReapPolicy(team="vision-lab", stopped_destroy_after_hours=168, max_idle_minutes=60)


def box(
    *,
    state: str = "running",
    tags: dict[str, str] | None = None,
    stopped_since: datetime | None = None,
    launched_at: datetime | None = NOW - timedelta(days=1),
    instance_id: str = "i-1",
) -> ManagedInstance:
    base = {
        "managed": "true",
        "team": "vision-lab",
        "owner": "ada",
        "ttl": "168",
        "idle-minutes": "60",
        "created": (NOW - timedelta(days=1)).isoformat(),
    }
    base.update(tags or {})
    return ManagedInstance(
        cloud="aws",
        region="eu-west-1",
        location="eu-west-1",
        instance_id=instance_id,
        name="ada-box",
        state=state,
        instance_type="g5.xlarge",
        launched_at=launched_at,
        stopped_since=stopped_since,
        tags={k: v for k, v in base.items() if v is not None},
        data_volume_ids=("vol-1",),
    )


STACK = StackRef(name="vision-lab-ada", nomad="ada", cloud="aws", region="eu-west-1", instance_id="i-1")
IDLE = CpuWindow(minutes=60, max_percent=1.2, datapoints=12, expected=12)
BUSY = CpuWindow(minutes=60, max_percent=87.0, datapoints=12, expected=12)


def test_aws_stop_time_is_read_from_the_transition_reason():
    assert parse_aws_stopped_since("User initiated (2026-11-19 10:00:00 GMT)") == datetime(2026, 11, 19, 10, tzinfo=UTC)
    assert parse_aws_stopped_since("User initiated (2026-11-19 10:00:00 UTC)") == datetime(2026, 11, 19, 10, tzinfo=UTC)
    assert parse_aws_stopped_since("Server.ScheduledStop: Stopped due to scheduled retirement") is None
    assert parse_aws_stopped_since("") is None


def test_gcp_label_time_is_epoch_seconds():
    assert parse_time("1795953600") == datetime.fromtimestamp(1795953600, tz=UTC)
    assert parse_time("2026-11-26T12:00:00Z") == NOW


def test_unmanaged_box_is_never_touched_even_when_stopped_for_a_year():
    old = box(state="stopped", stopped_since=NOW - timedelta(days=365), tags={"managed": None})
    assert judge(old, STACK, None, POLICY, NOW).action == Action.SKIP_UNMANAGED


def test_box_of_another_team_is_unmanaged_for_this_team():
    other = box(state="stopped", stopped_since=NOW - timedelta(days=30), tags={"team": "nlp-lab"})
    verdict = judge(other, STACK, None, POLICY, NOW)
    assert verdict.action == Action.SKIP_UNMANAGED
    assert "nlp-lab" in verdict.reason


def test_protected_box_is_skipped_even_when_expired_and_orphaned():
    protected = box(tags={"protect": "true", "created": (NOW - timedelta(days=60)).isoformat()})
    assert judge(protected, None, IDLE, POLICY, NOW).action == Action.SKIP_PROTECTED


def test_managed_box_without_a_stack_is_an_orphan():
    verdict = judge(box(), None, IDLE, POLICY, NOW)
    assert verdict.action == Action.ORPHAN


def test_box_past_its_ttl_is_destroyed_even_while_busy():
    expired = box(tags={"ttl": "48", "created": (NOW - timedelta(hours=50)).isoformat()})
    verdict = judge(expired, STACK, BUSY, POLICY, NOW)
    assert verdict.action == Action.DESTROY
    assert "TTL 48 h" in verdict.reason


def test_ttl_falls_back_to_launch_time_without_a_created_tag():
    expired = box(tags={"ttl": "24", "created": None}, launched_at=NOW - timedelta(hours=25))
    assert judge(expired, STACK, BUSY, POLICY, NOW).action == Action.DESTROY


def test_box_stopped_longer_than_policy_is_destroyed_and_shorter_is_kept():
    long_ago = box(state="stopped", stopped_since=NOW - timedelta(hours=169))
    recently = box(state="stopped", stopped_since=NOW - timedelta(hours=100))
    assert judge(long_ago, STACK, None, POLICY, NOW).action == Action.DESTROY
    assert judge(recently, STACK, None, POLICY, NOW).action == Action.KEEP


def test_stopped_box_with_unknown_stop_time_is_kept():
    assert judge(box(state="stopped", stopped_since=None), STACK, None, POLICY, NOW).action == Action.KEEP


def test_running_idle_box_is_stopped_and_busy_box_kept():
    assert judge(box(), STACK, IDLE, POLICY, NOW).action == Action.STOP
    assert judge(box(), STACK, BUSY, POLICY, NOW).action == Action.KEEP


def test_missing_cpu_data_never_counts_as_idle():
    sparse = CpuWindow(minutes=60, max_percent=0.5, datapoints=5, expected=12)
    assert judge(box(), STACK, None, POLICY, NOW).action == Action.KEEP
    verdict = judge(box(), STACK, sparse, POLICY, NOW)
    assert verdict.action == Action.KEEP
    assert "5/12" in verdict.reason


def test_box_started_within_the_idle_window_is_not_stopped():
    fresh = box(launched_at=NOW - timedelta(minutes=20))
    assert judge(fresh, STACK, IDLE, POLICY, NOW).action == Action.KEEP


def test_malformed_ttl_tag_keeps_the_box_and_says_how_to_fix_it():
    verdict = judge(box(tags={"ttl": "two days"}), STACK, IDLE, POLICY, NOW)
    assert verdict.action == Action.KEEP
    assert "nomadrig:ttl" in verdict.reason and "e.g. 48" in verdict.reason


def test_invalid_policy_names_the_field():
    with pytest.raises(ValueError, match="policy.stopped_destroy_after_hours"):
        ReapPolicy(team="t", stopped_destroy_after_hours=0, max_idle_minutes=60)


def test_judge_all_matches_stacks_by_instance_id():
    verdicts = judge_all(
        [box(instance_id="i-1"), box(instance_id="i-2")], [STACK], {"i-1": BUSY, "i-2": BUSY}, POLICY, NOW
    )
    assert [v.action for v in verdicts] == [Action.KEEP, Action.ORPHAN]


@given(
    managed=st.sampled_from(["true", "false", "", "TRUE"]),
    protect=st.sampled_from(["true", "false", "", None, "FALSE", "No", "0", "yes", " false "]),
    state=st.sampled_from(["running", "stopped", "pending", "stopping"]),
    stopped_h=st.floats(min_value=0, max_value=5000),
    ttl=st.sampled_from(["1", "48", "x", ""]),
    cpu=st.floats(min_value=0, max_value=100),
    has_stack=st.booleans(),
)
def test_unmanaged_or_protected_boxes_never_get_an_acting_verdict(
    managed, protect, state, stopped_h, ttl, cpu, has_stack
):
    instance = box(
        state=state,
        tags={"managed": managed, "protect": protect, "ttl": ttl},
        stopped_since=NOW - timedelta(hours=stopped_h),
    )
    window = CpuWindow(minutes=60, max_percent=cpu, datapoints=12, expected=12)
    action = judge(instance, STACK if has_stack else None, window, POLICY, NOW).action
    if managed.lower() != "true":
        assert action == Action.SKIP_UNMANAGED
    elif protect is not None and protect.strip().lower() not in ("false", "no", "0"):
        assert action == Action.SKIP_PROTECTED  # a flag tag: set, even empty, unless it says false
    else:
        assert action in set(Action) - {Action.SKIP_PROTECTED, Action.SKIP_UNMANAGED}


# ---- the GCP adapter, against fakes (there is no GCE emulator) ------------------------------


class FakeOperation:
    def result(self, timeout: float | None = None) -> None:
        return None


class FakeGce:
    """Instances and snapshots of one project, shaped like compute_v1 messages."""

    def __init__(self) -> None:
        self.vms: dict[str, SimpleNamespace] = {}
        self.snaps: dict[str, SimpleNamespace] = {}
        self.calls: list[tuple[str, dict]] = []

    def add(self, name: str, vid: int, status: str, labels: dict[str, str], stopped: str = "") -> None:
        self.vms[name] = SimpleNamespace(
            id=vid,
            name=name,
            status=status,
            machine_type="zones/us-central1-a/machineTypes/g2-standard-8",
            labels=labels,
            creation_timestamp="2026-11-20T00:00:00Z",
            last_start_timestamp="2026-11-20T00:00:00Z",
            last_stop_timestamp=stopped,
            disks=[
                SimpleNamespace(source=f"zones/us-central1-a/disks/{name}-boot", boot=True),
                SimpleNamespace(source=f"zones/us-central1-a/disks/{name}-data", boot=False),
            ],
        )

    # InstancesClient
    def aggregated_list(self, request: dict) -> list:
        self.calls.append(("aggregated_list", request))
        return [("zones/us-central1-a", SimpleNamespace(instances=list(self.vms.values())))]

    def stop(self, request: dict) -> FakeOperation:
        self.calls.append(("stop", request))
        vm = self.vms[request["instance"]]
        vm.status, vm.last_stop_timestamp = "TERMINATED", "2026-11-26T11:59:00Z"
        return FakeOperation()

    def get(self, request: dict) -> SimpleNamespace:
        if "snapshot" in request:
            return self.snaps[request["snapshot"]]
        return self.vms[request["instance"]]

    def delete(self, request: dict) -> FakeOperation:
        self.calls.append(("delete", request))
        del self.vms[request["instance"]]
        return FakeOperation()

    # SnapshotsClient
    def list(self, request: dict) -> list:
        of = request["filter"].split('"')[1]
        return [s for s in self.snaps.values() if s.labels["nomadrig-reap-of"] == of]

    def insert(self, request: dict) -> FakeOperation:
        self.calls.append(("insert", request))
        res = request["snapshot_resource"]
        self.snaps[res["name"]] = SimpleNamespace(name=res["name"], status="READY", labels=res["labels"])
        return FakeOperation()


class RecordingStacks:
    def __init__(self, refs: list[StackRef], log: list) -> None:
        self.refs, self.log = refs, log

    def list(self) -> list[StackRef]:
        return list(self.refs)

    def destroy(self, name: str) -> None:
        self.log.append(("destroy", name))


def gcp_team(state_dir) -> SimpleNamespace:
    return SimpleNamespace(
        name="vision-lab",
        policy=SimpleNamespace(stopped_destroy_after_hours=168, max_idle_minutes=60),
        state=SimpleNamespace(backend_url=f"file://{state_dir}"),
    )


def test_gcp_reaper_filters_by_label_snapshots_then_destroys_and_reuses_on_rerun(tmp_path):
    gce = FakeGce()
    labels = {"nomadrig-managed": "true", "nomadrig-team": "vision-lab", "nomadrig-owner": "grace"}
    gce.add("grace-box", 111, "TERMINATED", labels, stopped="2026-11-10T00:00:00Z")
    gce.add("idle-box", 222, "RUNNING", labels)
    log: list = []
    stacks = RecordingStacks(
        [
            StackRef("vision-lab-grace", "grace", "gcp", "us-central1", "111"),
            StackRef("vision-lab-idle", "idle", "gcp", "us-central1", "222"),
        ],
        log,
    )
    cloud = GcpReaperCloud(
        "vision-lab-research",
        ["us-central1"],
        instances_client=gce,
        snapshots_client=gce,
        cpu_reader=lambda project, start, end: {"222": [0.4] * 60},
    )
    team = gcp_team(tmp_path)
    report = run_reaper(team, apply=False, orphans=False, stacks=stacks, now=NOW, gcp=cloud)
    assert {v.instance.name: v.action for v in report.verdicts} == {
        "grace-box": Action.DESTROY,
        "idle-box": Action.STOP,
    }
    assert gce.calls[0][1]["filter"] == 'labels.nomadrig-managed = "true" AND labels.nomadrig-team = "vision-lab"'
    assert [c[0] for c in gce.calls] == ["aggregated_list"], "a dry run must change nothing"

    report = run_reaper(team, apply=True, orphans=False, stacks=stacks, now=NOW, gcp=cloud)
    assert report.errors == []
    inserts = [c for c in gce.calls if c[0] == "insert"]
    assert [i[1]["snapshot_resource"]["source_disk"] for i in inserts] == ["zones/us-central1-a/disks/grace-box-data"]
    assert log == [("destroy", "vision-lab-grace")]
    assert gce.vms["idle-box"].status == "TERMINATED"
    assert json.loads(report_json(report))["summary"]["destroy"] == 1

    # The fake stack did not remove the VM: a rerun destroys again but reuses the READY snapshot.
    report = run_reaper(team, apply=True, orphans=False, stacks=stacks, now=NOW, gcp=cloud)
    assert len([c for c in gce.calls if c[0] == "insert"]) == 1
    assert "snapshot-reused" in report.steps_for("111")


def test_gcp_box_is_matched_to_a_stack_that_records_its_instance_name():
    gce_box = ManagedInstance(
        cloud="gcp",
        region="us-central1",
        location="us-central1-a",
        instance_id="4242",
        name="vision-lab-grace",
        state="running",
        instance_type="g2-standard-8",
        launched_at=NOW - timedelta(days=1),
        stopped_since=None,
        tags={"managed": "true", "team": "vision-lab"},
    )
    by_name = StackRef("vision-lab-grace", "grace", "gcp", "us-central1", "vision-lab-grace")
    aws_named_alike = StackRef("other", "x", "aws", "us-east-1", "vision-lab-grace")
    assert judge_all([gce_box], [by_name], {"4242": BUSY}, POLICY, NOW)[0].stack == by_name
    assert judge_all([gce_box], [aws_named_alike], {}, POLICY, NOW)[0].action == Action.ORPHAN


def test_table_lists_what_the_reaper_acts_on_and_hides_kept_boxes():
    from rich.console import Console

    from nomadrig.cli.reap import report_table
    from nomadrig.reaper.run import ReapReport

    report = ReapReport(team="vision-lab", applied=False, orphans_enabled=False, started_at=NOW)
    report.verdicts = judge_all(
        [box(instance_id="i-1"), box(instance_id="i-keep", state="stopped", stopped_since=NOW)],
        [STACK, StackRef("s2", "b", "aws", "eu-west-1", "i-keep")],
        {"i-1": IDLE},
        POLICY,
        NOW,
    )
    console = Console(width=200, record=True)
    console.print(report_table(report))
    text = console.export_text()
    assert "dry run (add --apply to act)" in text
    assert "i-1" in text and "stop" in text
    assert "i-keep" not in text
    assert "1 keep" in text and "1 stop" in text


def test_importing_the_reaper_loads_no_cloud_sdk():
    import subprocess
    import sys

    code = (
        "import sys, nomadrig.reaper, nomadrig.reaper.aws, nomadrig.reaper.gcp, nomadrig.reaper.lock;"
        "print([m for m in ('boto3', 'botocore', 'google.cloud', 'rich') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_gcp_without_its_client_library_says_what_to_install():
    import importlib.util

    if importlib.util.find_spec("google.cloud.compute_v1") is not None:
        pytest.skip("google-cloud-compute is installed here")
    cloud = GcpReaperCloud("vision-lab-research", ["us-central1"])
    with pytest.raises(RuntimeError, match="pip install google-cloud-compute"):
        cloud.list_instances("vision-lab")


def test_policy_and_clouds_come_from_the_team_file():
    from pathlib import Path

    from nomadrig.reaper.aws import AwsReaperCloud
    from nomadrig.reaper.run import default_clouds
    from nomadrig.team.load import load_team

    team = load_team(Path(__file__).resolve().parent.parent / "examples" / "team.yaml")
    policy = ReapPolicy.from_team(team)
    assert (policy.team, policy.stopped_destroy_after_hours, policy.max_idle_minutes) == (
        team.name,
        team.policy.stopped_destroy_after_hours,
        team.policy.max_idle_minutes,
    )
    aws, gcp = default_clouds(team)
    assert isinstance(aws, AwsReaperCloud) and aws.regions == list(team.clouds.aws.regions)
    assert isinstance(gcp, GcpReaperCloud) and gcp.project == team.clouds.gcp.project


def test_aws_adapter_without_regions_names_the_field():
    from nomadrig.reaper.aws import AwsReaperCloud

    with pytest.raises(ValueError, match="clouds.aws.regions"):
        AwsReaperCloud([])


def test_a_failed_stack_destroy_is_reported_and_the_other_boxes_still_go(tmp_path):
    gce = FakeGce()
    labels = {"nomadrig-managed": "true", "nomadrig-team": "vision-lab", "nomadrig-owner": "grace"}
    gce.add("box-a", 1, "TERMINATED", labels, stopped="2026-11-10T00:00:00Z")
    gce.add("box-b", 2, "TERMINATED", labels, stopped="2026-11-10T00:00:00Z")
    log: list = []

    class FlakyStacks(RecordingStacks):
        def destroy(self, name: str) -> None:
            if name == "stack-a":
                raise RuntimeError("pulumi: resource busy")
            super().destroy(name)

    stacks = FlakyStacks(
        [StackRef("stack-a", "a", "gcp", "us-central1", "1"), StackRef("stack-b", "b", "gcp", "us-central1", "2")], log
    )
    cloud = GcpReaperCloud(
        "vision-lab-research",
        ["us-central1"],
        instances_client=gce,
        snapshots_client=gce,
        cpu_reader=lambda project, start, end: {},
    )
    report = run_reaper(gcp_team(tmp_path), apply=True, orphans=False, stacks=stacks, now=NOW, gcp=cloud)
    assert log == [("destroy", "stack-b")]
    assert len(report.errors) == 1 and "stack stack-a destroy failed: pulumi: resource busy" in report.errors[0]
    assert "destroy" not in report.steps_for("1")


def test_an_expired_box_that_fails_to_stop_is_neither_snapshotted_nor_destroyed(tmp_path):
    gce = FakeGce()
    # What the GCP box program writes (`nomadrig.names`), for a box created two days ago with a 1 h TTL.
    labels = box_tags("gcp", team="vision-lab", owner="x", ttl_hours=1, idle_minutes=60,
                      created=format_created(NOW - timedelta(days=2)))
    gce.add("expired", 7, "RUNNING", labels)

    def refuse(request: dict) -> FakeOperation:
        raise RuntimeError("quota: operation rate exceeded")

    gce.stop = refuse  # type: ignore[method-assign]
    log: list = []
    cloud = GcpReaperCloud(
        "vision-lab-research",
        ["us-central1"],
        instances_client=gce,
        snapshots_client=gce,
        cpu_reader=lambda project, start, end: {},
    )
    report = run_reaper(
        gcp_team(tmp_path),
        apply=True,
        orphans=False,
        stacks=RecordingStacks([StackRef("s7", "x", "gcp", "us-central1", "7")], log),
        now=NOW,
        gcp=cloud,
    )
    assert report.verdicts[0].action == Action.DESTROY
    assert log == [] and [c for c in gce.calls if c[0] == "insert"] == []
    assert report.steps_for("7") == ["deferred"]
    assert any("stop failed: quota" in e for e in report.errors)


def test_a_cloud_that_cannot_be_listed_is_reported_and_the_other_is_still_reaped(tmp_path):
    gce = FakeGce()
    gce.add(
        "old",
        9,
        "TERMINATED",
        {"nomadrig-managed": "true", "nomadrig-team": "vision-lab"},
        stopped="2026-11-01T00:00:00Z",
    )
    log: list = []
    cloud = GcpReaperCloud(
        "vision-lab-research",
        ["us-central1"],
        instances_client=gce,
        snapshots_client=gce,
        cpu_reader=lambda project, start, end: {},
    )

    class BrokenAws:
        cloud = "aws"

        def list_instances(self, team: str) -> list:
            raise RuntimeError("AccessDenied: ec2:DescribeInstances")

    report = run_reaper(
        gcp_team(tmp_path),
        apply=True,
        orphans=False,
        aws=BrokenAws(),  # type: ignore[arg-type]
        stacks=RecordingStacks([StackRef("s9", "x", "gcp", "us-central1", "9")], log),
        now=NOW,
        gcp=cloud,
    )
    assert report.errors == ["aws: not reaped: AccessDenied: ec2:DescribeInstances"]
    assert log == [("destroy", "s9")]

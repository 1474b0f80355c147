"""A malformed tag or label costs its own instance a "kept: unreadable tag" line, never the reaper's run.

Anyone with tag permissions (or a typo in the console) can write
``nomadrig:ttl=inf`` on one instance. The reaper must keep that instance, say
which tag and why, and still reap every other box in every cloud. The parser
and the verdicts are total: hypothesis feeds them arbitrary tag text and
times, and the acceptance test runs ``nomadrig reap --apply --json`` against
EC2 served by moto on loopback.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nomadrig.names import BoxTags, parse_time
from nomadrig.reaper.gcp import instance_from_gce
from nomadrig.reaper.inventory import CpuWindow, ManagedInstance, parse_aws_stopped_since
from nomadrig.reaper.ports import StackRef
from nomadrig.reaper.verdicts import Action, ReapPolicy, judge
from tests.test_reaper_moto import MotoStacks, moto_clock, moto_url, point_boto_at, reset_moto, states

__all__ = ["moto_url"]  # the module-scoped moto server fixture, shared with test_reaper_moto

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = ReapPolicy(team="vision-lab", stopped_destroy_after_hours=168, max_idle_minutes=60)
STACK = StackRef(name="vision-lab-ada", nomad="ada", cloud="aws", region="eu-west-1", instance_id="i-1")
BUSY = CpuWindow(minutes=60, max_percent=87.0, datapoints=12, expected=12)

# (tag, value): each would, if believed or ignored, change what happens to a box that is otherwise due.
BAD_TAGS = [
    ("ttl", "inf"),
    ("ttl", "nan"),
    ("ttl", "Infinity"),
    ("ttl", "1e300"),
    ("ttl", "-5"),
    ("ttl", "0"),
    ("ttl", "9" * 5000),
    ("ttl", "48 hours"),
    ("ttl", "\u0664\u0668"),  # Arabic-Indic 48: int() and float() read it, nomadrig never writes it
    ("ttl", "8761"),  # above the team file's maximum
    ("idle-minutes", "1e400"),
    ("idle-minutes", "30.5"),
    ("created", "9999-12-31T23:59:59Z"),
    ("created", "9999-12-31T23:59:59-14:00"),  # beyond year 9999 in UTC
    ("created", "0001-01-01"),
    ("created", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
    ("created", "99999999999"),  # epoch seconds in the year 5138
    ("created", "2026-02-30T00:00:00Z"),
    ("created", "yesterday"),
    ("created", "2027-01-01T00:00:00Z"),  # in the future of NOW
]


def box(tags: dict[str, str], *, cloud: str = "aws", stopped_days: float = 30) -> ManagedInstance:
    """A box that is due for destruction on every count (TTL long past, stopped a month) unless a tag says no."""
    base = {"managed": "true", "team": "vision-lab", "owner": "ada", "ttl": "48", "idle-minutes": "60",
            "created": (NOW - timedelta(days=40)).isoformat()}
    return ManagedInstance(
        cloud=cloud, region="eu-west-1", location="eu-west-1", instance_id="i-1", name="ada-box", state="stopped",
        instance_type="g5.xlarge", launched_at=NOW - timedelta(days=40),
        stopped_since=NOW - timedelta(days=stopped_days), tags={**base, **tags}, data_volume_ids=("vol-1",),
    )


@pytest.mark.parametrize(("key", "value"), BAD_TAGS, ids=lambda v: v if len(str(v)) < 30 else "long")
def test_one_bad_tag_keeps_its_box_and_names_the_tag(key, value):
    verdict = judge(box({key: value}), STACK, None, POLICY, NOW)
    assert verdict.action == Action.KEEP, verdict.reason
    assert verdict.reason.startswith(f"unreadable tag nomadrig:{key}=")
    assert verdict.unreadable and all(p.startswith("unreadable tag ") for p in verdict.unreadable)
    assert len(verdict.reason) < 400, "a 5000-digit value is cut short in the message"


def test_the_same_box_with_good_tags_is_destroyed():
    assert judge(box({}), STACK, None, POLICY, NOW).action == Action.DESTROY


@pytest.mark.parametrize("value", ["48", " 48 ", "0.5", "8760"])
def test_plain_decimal_ttls_are_read(value):
    assert BoxTags.parse({"ttl": value}, "aws").ttl_hours == float(value)


def test_a_gcp_label_names_the_label_not_the_tag():
    verdict = judge(box({"ttl": "inf"}, cloud="gcp"), STACK, None, POLICY, NOW)
    assert verdict.reason.startswith("unreadable tag nomadrig-ttl='inf': ")


def test_created_near_the_end_of_time_with_a_valid_ttl_does_not_overflow():
    # created + 8760 h is past year 9999; the verdict must not compute that date
    created = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    verdict = judge(box({"ttl": "8760", "created": created.isoformat()}), STACK, BUSY, POLICY, created)
    assert verdict.action in (Action.KEEP, Action.DESTROY)


# -- property: the parser and the verdict are total over any tag text -----------------------------

tag_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from([v for _, v in BAD_TAGS]),
    st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,20})?", fullmatch=True),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.floats().map(repr),
    st.integers().map(str),
)


@settings(max_examples=400, deadline=None)
@given(
    ttl=tag_text, created=tag_text, idle=tag_text, managed=st.sampled_from(["true", "TRUE", "", "x"]),
    protect=st.one_of(st.just(""), tag_text), cloud=st.sampled_from(["aws", "gcp"]),
    now=st.datetimes(min_value=datetime(2000, 1, 1), timezones=st.just(UTC)),
    stopped_days=st.floats(min_value=-1e5, max_value=1e5), has_stack=st.booleans(),
)
def test_no_tag_value_and_no_clock_makes_the_verdict_raise(ttl, created, idle, managed, protect, cloud, now,
                                                             stopped_days, has_stack):
    tags = {"ttl": ttl, "created": created, "idle-minutes": idle, "managed": managed, "protect": protect}
    instance = box(tags, cloud=cloud, stopped_days=0)
    try:
        stopped = now - timedelta(days=stopped_days)
    except OverflowError:
        stopped = None
    instance = replace(instance, state="stopped", stopped_since=stopped, spot_interrupted=False)
    verdict = judge(instance, STACK if has_stack else None, BUSY, POLICY, now)
    parsed = BoxTags.parse(tags, cloud)
    if verdict.action in (Action.DESTROY, Action.STOP, Action.ORPHAN):
        assert not parsed.errors, f"acted on a box with unreadable tags: {parsed.errors}"
    if parsed.errors and parsed.managed and parsed.team == "vision-lab" and not parsed.protect:
        assert verdict.action == Action.KEEP and verdict.unreadable


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), tag_text))
def test_times_parse_or_raise_value_error_only(text):
    try:
        parsed = parse_time(text)
    except ValueError:
        return
    assert parsed is None or parsed.tzinfo is not None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_an_ec2_stop_reason_never_raises(text):
    parse_aws_stopped_since(f"User initiated ({text})")
    parse_aws_stopped_since(text)


def test_an_ec2_stop_reason_with_an_impossible_date_is_an_unknown_stop_time():
    assert parse_aws_stopped_since("User initiated (2026-13-45 99:99:99 GMT)") is None


def test_a_gce_instance_with_unreadable_times_is_still_listed():
    disk = SimpleNamespace(boot=False, source="projects/p/zones/us-central1-a/disks/d")
    raw = SimpleNamespace(status="TERMINATED", disks=[disk], id=42, name="vision-lab-grace",
                          machine_type="zones/us-central1-a/machineTypes/g2-standard-8",
                          last_start_timestamp="not a time", creation_timestamp="", last_stop_timestamp="9999-99",
                          labels={"nomadrig-managed": "true"})
    instance = instance_from_gce(raw, "us-central1-a")
    assert instance.launched_at is None and instance.stopped_since is None


# -- round trip: what the stacks write, the reaper reads -----------------------------------------


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_reaper_reads_the_tags_and_labels_the_specs_write(cloud):
    from nomadrig.spec import box_specs
    from nomadrig.team.load import load_team

    spec = next(s for s in box_specs(load_team(REPO / "examples" / "team.yaml")) if s.cloud == cloud)
    raw = spec.tags() if cloud == "aws" else spec.labels()
    from nomadrig.names import read_tags

    tags = BoxTags.parse(read_tags(raw, cloud), cloud)
    assert tags.errors == ()
    assert tags.created == datetime.fromisoformat(spec.created.replace("Z", "+00:00"))
    assert tags.ttl_hours == spec.ttl_hours and tags.idle_minutes == spec.idle_minutes


# -- acceptance: `nomadrig reap --apply --json` on moto, one instance per bad tag ------------------

REGION = "eu-west-1"
# AWS tag values hold at most 256 characters, so the long number is 250 digits here; the test adds a
# `created` a month ahead of the real clock (BAD_TAGS' future date is relative to NOW).
MOTO_BAD_TAGS = [(k, v[:250]) for k, v in BAD_TAGS if not v.startswith("2027")]


def aws_only_team(tmp_path: Path) -> Path:
    """The example team without GCP, its state (and the reaper's lock) under tmp_path."""
    data = yaml.safe_load((REPO / "examples" / "team.yaml").read_text())
    del data["clouds"]["gcp"]
    data["nomads"] = [n for n in data["nomads"] if n.get("cloud") != "gcp"]
    data["state"]["backend_url"] = f"file://{tmp_path / 'state'}"
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def seed_one(ec2: Any, image: str, tags: dict[str, str], now: datetime) -> tuple[str, str]:
    """One instance launched 40 days ago and stopped 10 days ago (due by stop age): (instance id, data volume)."""
    with moto_clock(now - timedelta(days=40)):
        raw = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
            BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 50, "DeleteOnTermination": False}}],
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )["Instances"][0]
    with moto_clock(now - timedelta(days=10)):
        ec2.stop_instances(InstanceIds=[raw["InstanceId"]])
    volume = next(m["Ebs"]["VolumeId"] for m in raw["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sdf")
    return raw["InstanceId"], volume


def test_reap_apply_keeps_each_bad_tag_box_and_destroys_the_expired_good_one(moto_url, tmp_path, monkeypatch):
    import nomadrig.engine

    point_boto_at(moto_url, monkeypatch)
    reset_moto(moto_url)
    now = datetime.now(UTC)
    ec2 = boto3.client("ec2", region_name=REGION)
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    good_tags = {"nomadrig:managed": "true", "nomadrig:team": "vision-lab", "nomadrig:owner": "ada",
                 "nomadrig:ttl": "48", "nomadrig:created": (now - timedelta(days=40)).isoformat(timespec="seconds")}
    good, good_volume = seed_one(ec2, image, {**good_tags, "Name": "good"}, now)
    bad: dict[str, tuple[str, str]] = {}
    volumes = {good: good_volume}
    bad_tags = [*MOTO_BAD_TAGS, ("created", (now + timedelta(days=30)).isoformat(timespec="seconds"))]
    for key, value in bad_tags:
        iid, volume = seed_one(ec2, image, {**good_tags, f"nomadrig:{key}": value, "Name": f"bad-{key}"}, now)
        bad[iid] = (key, value)
        volumes[iid] = volume
    refs = [StackRef(f"vision-lab-{iid}", "ada", "aws", REGION, iid) for iid in [good, *bad]]
    events: list[tuple[Any, ...]] = []
    stacks = MotoStacks(refs, events, volumes)
    monkeypatch.setattr(nomadrig.engine, "box_stacks", lambda team, console=None: stacks)
    team = aws_only_team(tmp_path)
    from nomadrig.cli import app

    dry = CliRunner().invoke(app, ["reap", "--team", str(team)], env={"COLUMNS": "100"})
    result = CliRunner().invoke(app, ["reap", "--apply", "--json", "--team", str(team)])

    assert dry.exit_code == 0, dry.output
    for key, value in bad_tags:
        assert f"kept: unreadable tag nomadrig:{key}={value[:40]!r}" in dry.stdout
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["errors"] == []
    verdicts = {v["instance_id"]: v for v in report["verdicts"]}
    assert verdicts[good]["verdict"] == "destroy"
    for iid, (key, value) in bad.items():
        assert verdicts[iid]["verdict"] == "keep", (key, value, verdicts[iid]["reason"])
        assert verdicts[iid]["reason"].startswith(f"unreadable tag nomadrig:{key}=")
        assert any(line.startswith(f"kept: unreadable tag nomadrig:{key}=") and iid in line
                   for line in report["kept_unreadable"])
    after = states([REGION])
    assert after[good] == "terminated"
    assert {after[iid] for iid in bad} == {"stopped"}
    assert stacks.destroyed == [good]
    assert ("destroy", good, ("completed",)) in events, "the good box went only after its snapshot completed"
    steps = [a["step"] for a in report["actions"] if a["instance_id"] == good]
    assert steps[-1] == "destroy" and any(s.startswith("snapshot") for s in steps[:-1])
    assert not [a for a in report["actions"] if a["instance_id"] in bad]


# -- the reaper's lock record sits beside the shared state, as writable as the tags ----------------


@pytest.mark.parametrize("expires_at", ["garbage", 5, None, "9999-12-31T23:59:59-14:00"])
def test_a_lock_record_no_reaper_could_write_does_not_block_every_run(tmp_path, expires_at):
    from nomadrig.reaper.lock import FileLock

    lock = FileLock(tmp_path, "vision-lab", clock=lambda: NOW)
    lock.path.parent.mkdir(parents=True)
    lock.path.write_text(json.dumps({"team": "vision-lab", "owner": "[/]", "pid": 1, "host": "h",
                                     "acquired_at": "x", "expires_at": expires_at, "token": "t"}))
    info = lock.acquire()
    assert json.loads(lock.path.read_text())["token"] == info.token
    lock.release()


def test_a_naive_lock_expiry_is_read_as_utc():
    from nomadrig.reaper.lock import LockInfo

    holder = LockInfo("vision-lab", "ada", 1, "h", "", (NOW + timedelta(hours=1)).replace(tzinfo=None).isoformat(), "t")
    assert not holder.expired(NOW) and holder.expired(NOW + timedelta(hours=2))

"""The reaper's AWS adapter: EC2 and CloudWatch through boto3.

boto3 is imported inside, so `nomadrig --help` never pays for it. boto3 honours
``AWS_ENDPOINT_URL``, which is how the tests point it at a moto server.

API call budget (what keeps a 10,000-instance scan cheap): one
``DescribeInstances`` per 1,000 instances per region (server-side tag filters,
``MaxResults=1000``), one ``GetMetricData`` per 500 running candidates; only
the boxes being destroyed cost more (``DescribeSnapshots`` per 200 of them, to
reuse what an interrupted run took, then a snapshot each and batched polling).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from nomadrig import names
from nomadrig.reaper.inventory import (
    GONE_STATES,
    STOPPED,
    CpuWindow,
    ManagedInstance,
    SnapshotRef,
    parse_aws_stopped_since,
)
from nomadrig.reaper.ports import InstanceRef, StateSeen

DESCRIBE_PAGE_SIZE = 1000  # the EC2 maximum for MaxResults
METRIC_QUERIES_PER_CALL = 500  # the CloudWatch maximum for GetMetricData
METRIC_PERIOD_S = 300  # EC2 basic monitoring publishes every 5 minutes
IDS_PER_CALL = 200  # filter values / instance ids per EC2 call
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
WAIT_POLLS = 60  # how many polls a start or stop waits, `poll_s` apart, before it gives up
# StateReason codes of a stop (or termination) by EC2 reclaiming spot capacity, not by a person or the agent.
SPOT_REASON_PREFIX = "Server.SpotInstance"


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def instance_from_ec2(raw: dict[str, Any], region: str) -> ManagedInstance:
    """Translate one ``DescribeInstances`` instance into the cloud-neutral record.

    Data volumes are the EBS volumes not mounted at the root device: the box
    stack attaches exactly one, retained when the stack is destroyed.
    """
    tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
    reason = raw.get("StateReason", {}).get("Code", "")
    root = raw.get("RootDeviceName")
    data_volumes = tuple(
        m["Ebs"]["VolumeId"]
        for m in raw.get("BlockDeviceMappings", [])
        if "Ebs" in m and m.get("DeviceName") != root
    )
    state = raw["State"]["Name"]
    return ManagedInstance(
        cloud="aws",
        region=region,
        location=region,
        instance_id=raw["InstanceId"],
        name=tags.get("Name", raw["InstanceId"]),
        state=state,
        instance_type=raw.get("InstanceType", ""),
        launched_at=_aware(raw.get("LaunchTime")),
        stopped_since=parse_aws_stopped_since(raw.get("StateTransitionReason")) if state == STOPPED else None,
        tags=names.read_tags(tags, "aws"),
        data_volume_ids=data_volumes,
        spot_interrupted=state == STOPPED and reason.startswith(SPOT_REASON_PREFIX),
    )


class AwsReaperCloud:
    """EC2 instances of one team in the regions the team file allows.

    `session` is a ``boto3.Session`` (tests register botocore event hooks on it
    to count calls); `client_config` a ``botocore.config.Config`` (e.g. a longer
    read timeout for a slow emulator); `poll_s` the pause between snapshot/stop polls.
    """

    cloud = "aws"

    def __init__(
        self,
        regions: Sequence[str],
        *,
        session: Any = None,
        client_config: Any = None,
        poll_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not regions:
            raise ValueError("clouds.aws.regions is empty; list the regions the team uses, e.g. [us-east-1]")
        self.regions = list(regions)
        self._session = session
        self._client_config = client_config
        self._clients: dict[tuple[str, str], Any] = {}
        self.poll_s = poll_s
        self._clock = clock
        self._sleep = sleep

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            if self._session is None:
                import boto3

                self._session = boto3.Session()
            self._clients[key] = self._session.client(service, region_name=region, config=self._client_config)
        return self._clients[key]

    # ---- inventory -------------------------------------------------------
    def list_instances(self, team: str) -> list[ManagedInstance]:
        """Every live managed instance of `team`, paginated per region, filtered by tag server-side."""
        found: list[ManagedInstance] = []
        for region in self.regions:
            paginator = self._client("ec2", region).get_paginator("describe_instances")
            pages = paginator.paginate(
                Filters=[
                    {"Name": f"tag:{names.tag_key('aws', names.MANAGED)}", "Values": ["true"]},
                    {"Name": f"tag:{names.tag_key('aws', names.TEAM)}", "Values": [team]},
                    {"Name": "instance-state-name", "Values": LIVE_STATES},
                ],
                PaginationConfig={"PageSize": DESCRIBE_PAGE_SIZE},
            )
            for page in pages:
                for reservation in page.get("Reservations", []):
                    found.extend(instance_from_ec2(raw, region) for raw in reservation["Instances"])
        return found

    def cpu_windows(
        self, instances: Sequence[ManagedInstance], minutes: int, now: datetime
    ) -> dict[str, CpuWindow]:
        """Maximum ``CPUUtilization`` per 5-minute period over the window, up to 500 instances a call."""
        start = now - timedelta(minutes=minutes)
        expected = max(1, (minutes * 60) // METRIC_PERIOD_S)
        by_region: dict[str, list[ManagedInstance]] = defaultdict(list)
        for instance in instances:
            by_region[instance.location].append(instance)
        windows: dict[str, CpuWindow] = {}
        for region, members in by_region.items():
            client = self._client("cloudwatch", region)
            for batch in _chunks(members, METRIC_QUERIES_PER_CALL):
                ids = {f"q{n}": inst.instance_id for n, inst in enumerate(batch)}
                queries = [
                    {
                        "Id": qid,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/EC2",
                                "MetricName": "CPUUtilization",
                                "Dimensions": [{"Name": "InstanceId", "Value": iid}],
                            },
                            "Period": METRIC_PERIOD_S,
                            "Stat": "Maximum",
                        },
                        "ReturnData": True,
                    }
                    for qid, iid in ids.items()
                ]
                values: dict[str, list[float]] = defaultdict(list)
                token: str | None = None
                while True:
                    kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": now}
                    if token:
                        kwargs["NextToken"] = token
                    response = client.get_metric_data(**kwargs)
                    for result in response.get("MetricDataResults", []):
                        values[result["Id"]].extend(result.get("Values", []))
                    token = response.get("NextToken")
                    if not token:
                        break
                for qid, iid in ids.items():
                    series = values.get(qid, [])
                    windows[iid] = CpuWindow(
                        minutes=minutes,
                        max_percent=max(series) if series else None,
                        datapoints=len(series),
                        expected=expected,
                    )
        return windows

    # ---- actions ---------------------------------------------------------
    def find(self, refs: Sequence[InstanceRef]) -> dict[InstanceRef, ManagedInstance]:
        """The instances the refs name (``location`` a region, ``ident`` an instance id); unknown ids are absent.

        Filtered by id rather than asked for by id: EC2 fails the whole call when one id is unknown.
        """
        found: dict[InstanceRef, ManagedInstance] = {}
        for region, members in _refs_by_region(refs).items():
            by_id = {ref.ident: ref for ref in members}
            for instance in self._describe(region, list(by_id)):
                found[by_id[instance.instance_id]] = instance
        return found

    def _describe(self, region: str, ids: Sequence[str]) -> list[ManagedInstance]:
        client = self._client("ec2", region)
        result: list[ManagedInstance] = []
        for batch in _chunks(list(ids), IDS_PER_CALL):
            pages = client.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": list(batch)}])
            for page in pages:
                for reservation in page.get("Reservations", []):
                    result.extend(instance_from_ec2(raw, region) for raw in reservation["Instances"])
        return result

    def stop(self, instances: Sequence[ManagedInstance], progress: StateSeen | None = None) -> list[ManagedInstance]:
        """Stop, wait until stopped (each state change goes to `progress`), and return them re-read."""
        return self._change(instances, "stop_instances", STOPPED, progress)

    def start(self, instances: Sequence[ManagedInstance], progress: StateSeen | None = None) -> list[ManagedInstance]:
        """Start, wait until running (each state change goes to `progress`), and return them re-read."""
        return self._change(instances, "start_instances", "running", progress)

    def _change(self, instances: Sequence[ManagedInstance], call: str, wanted: str,
                progress: StateSeen | None) -> list[ManagedInstance]:
        refreshed: list[ManagedInstance] = []
        for region, ids in _ids_by_region(instances).items():
            client = self._client("ec2", region)
            for batch in _chunks(ids, IDS_PER_CALL):
                getattr(client, call)(InstanceIds=list(batch))
                refreshed.extend(self._wait_for(region, batch, wanted, progress))
        return refreshed

    def _wait_for(self, region: str, ids: Sequence[str], wanted: str,
                  progress: StateSeen | None) -> list[ManagedInstance]:
        """Poll until every instance is in `wanted` (or gone), reporting each state change; bounded."""
        deadline = self._clock() + self.poll_s * WAIT_POLLS
        seen: dict[str, str] = {}
        while True:
            current = self._describe(region, ids)
            for instance in current:
                if progress is not None and seen.get(instance.instance_id) != instance.state:
                    progress(instance)
                seen[instance.instance_id] = instance.state
            if len(current) == len(ids) and all(i.state in (wanted, *GONE_STATES) for i in current):
                return current
            if self._clock() >= deadline:
                waiting = ", ".join(f"{i.instance_id} {i.state}" for i in current if i.state != wanted)
                raise TimeoutError(f"still not {wanted} after {self.poll_s * WAIT_POLLS:.0f} s: {waiting or ids}")
            self._sleep(self.poll_s)

    def terminate(self, instances: Sequence[ManagedInstance]) -> None:
        """Terminate orphans directly; their data volumes are not deleted (DeleteOnTermination false)."""
        for region, ids in _ids_by_region(instances).items():
            client = self._client("ec2", region)
            for batch in _chunks(ids, IDS_PER_CALL):
                client.terminate_instances(InstanceIds=list(batch))

    def existing_snapshots(self, instances: Sequence[ManagedInstance]) -> dict[str, list[SnapshotRef]]:
        """Snapshots earlier runs took for these instances (tag ``nomadrig:reap-of``), batched per region."""
        reap_of = names.tag_key("aws", names.REAP_OF)
        found: dict[str, list[SnapshotRef]] = defaultdict(list)
        for region, ids in _ids_by_region(instances).items():
            client = self._client("ec2", region)
            for batch in _chunks(ids, IDS_PER_CALL):
                pages = client.get_paginator("describe_snapshots").paginate(
                    OwnerIds=["self"],
                    Filters=[{"Name": f"tag:{reap_of}", "Values": list(batch)}],
                )
                for page in pages:
                    for raw in page.get("Snapshots", []):
                        tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
                        iid = tags[reap_of]
                        found[iid].append(_snapshot_ref(raw, iid, region))
        return found

    def ensure_snapshots(
        self, instances: Sequence[ManagedInstance]
    ) -> tuple[dict[str, list[SnapshotRef]], dict[str, str]]:
        """One usable snapshot per data volume of each instance, and the errors of those that failed.

        A snapshot is reused when an earlier run took it after the box's last stop.
        """
        previous = self.existing_snapshots(instances)
        result: dict[str, list[SnapshotRef]] = {}
        errors: dict[str, str] = {}
        for instance in instances:
            try:
                result[instance.instance_id] = self._ensure_one(instance, previous.get(instance.instance_id, []))
            except Exception as error:  # one box's failure must not stop the others
                errors[instance.instance_id] = str(error)
        return result, errors

    def _ensure_one(self, instance: ManagedInstance, previous: list[SnapshotRef]) -> list[SnapshotRef]:
        client = self._client("ec2", instance.location)
        tags = instance.box_tags
        result: list[SnapshotRef] = []
        for volume_id in instance.data_volume_ids:
            reusable = [
                s for s in previous if s.volume_id == volume_id and not s.failed and _taken_after_stop(s, instance)
            ]
            if reusable:
                result.append(sorted(reusable, key=lambda s: (not s.completed, s.snapshot_id))[0])
                continue
            snapshot = client.create_snapshot(
                VolumeId=volume_id,
                Description=f"nomadrig reaper: data of {instance.instance_id} ({instance.name}) before teardown",
                TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
                    {"Key": key, "Value": value}
                    for key, value in names.snapshot_tags("aws", team=tags.team or "", owner=tags.owner or "",
                                                          instance_id=instance.instance_id,
                                                          volume_id=volume_id).items()]}],
            )
            result.append(_snapshot_ref(snapshot, instance.instance_id, instance.location))
        return result

    def wait_snapshots(self, snapshots: Sequence[SnapshotRef], timeout_s: float) -> list[SnapshotRef]:
        """Poll ``DescribeSnapshots`` (batched) until every snapshot is completed or failed, or time is up."""
        current = {s.snapshot_id: s for s in snapshots}
        deadline = self._clock() + timeout_s
        while True:
            pending = [s for s in current.values() if not s.completed and not s.failed]
            if not pending:
                break
            by_region: dict[str, list[SnapshotRef]] = defaultdict(list)
            for s in pending:
                by_region[s.location].append(s)
            for region, refs in by_region.items():
                client = self._client("ec2", region)
                instance_of = {r.snapshot_id: r.instance_id for r in refs}
                for batch in _chunks(list(instance_of), IDS_PER_CALL):
                    response = client.describe_snapshots(SnapshotIds=list(batch))
                    for raw in response.get("Snapshots", []):
                        sid = raw["SnapshotId"]
                        current[sid] = _snapshot_ref(raw, instance_of[sid], region)
            if all(s.completed or s.failed for s in current.values()) or self._clock() >= deadline:
                break
            self._sleep(self.poll_s)
        return [current[s.snapshot_id] for s in snapshots]


def _ids_by_region(instances: Sequence[ManagedInstance]) -> dict[str, list[str]]:
    by_region: dict[str, list[str]] = defaultdict(list)
    for instance in instances:
        by_region[instance.location].append(instance.instance_id)
    return by_region


def _refs_by_region(refs: Sequence[InstanceRef]) -> dict[str, list[InstanceRef]]:
    by_region: dict[str, list[InstanceRef]] = defaultdict(list)
    for ref in refs:
        by_region[ref.location].append(ref)
    return by_region


def _snapshot_ref(raw: dict[str, Any], instance_id: str, region: str) -> SnapshotRef:
    return SnapshotRef(
        snapshot_id=raw["SnapshotId"],
        volume_id=raw["VolumeId"],
        instance_id=instance_id,
        state=raw.get("State", "pending"),
        started_at=_aware(raw.get("StartTime")),
        location=region,
    )


def _taken_after_stop(snapshot: SnapshotRef, instance: ManagedInstance) -> bool:
    """A snapshot is reusable only if nothing could have written to the volume since it was taken.

    That holds when the box is stopped and was already stopped when the snapshot
    started (times compared to the second: EC2 reports stop times in seconds).
    """
    if instance.state != "stopped" or instance.stopped_since is None or snapshot.started_at is None:
        return False
    return snapshot.started_at.replace(microsecond=0) >= instance.stopped_since.replace(microsecond=0)

"""The reaper's GCP adapter: Compute Engine and Cloud Monitoring.

`google-cloud-compute` (and `google-cloud-monitoring` for the CPU metric) are
imported inside and are optional: a team without GCP never needs them. Requests
are passed as dicts (the GAPIC clients accept them), which also lets the tests
use plain fakes; no GCE emulator exists.

GCP calls a stopped VM ``TERMINATED``; labels cannot hold ``:``, so the keys
are ``nomadrig-managed``, ``nomadrig-team``... The instance id is GCE's numeric
id (what Pulumi's ``gcp.compute.Instance.instance_id`` output holds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from nomadrig import names
from nomadrig.reaper.inventory import (
    PENDING,
    RUNNING,
    STOPPED,
    STOPPING,
    CpuWindow,
    ManagedInstance,
    SnapshotRef,
)
from nomadrig.reaper.ports import InstanceRef, StateSeen

_STATES = {
    "RUNNING": RUNNING,
    "TERMINATED": STOPPED,
    "SUSPENDED": STOPPED,
    "STOPPING": STOPPING,
    "SUSPENDING": STOPPING,
    "PROVISIONING": PENDING,
    "STAGING": PENDING,
    "REPAIRING": PENDING,
}
METRIC_PERIOD_S = 60  # GCE publishes CPU utilisation every minute
INSTALL_HINT = "GCP reaping needs the Google Cloud client: pip install google-cloud-compute google-cloud-monitoring"

CpuReader = Callable[[str, datetime, datetime], dict[str, list[float]]]


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def region_of_zone(zone: str) -> str:
    """``us-central1-a`` -> ``us-central1``."""
    return zone.rsplit("-", 1)[0]


def _api_time(value: str | None) -> datetime | None:
    """A Compute Engine RFC 3339 field, or None when it is absent or unreadable.

    An unknown time makes the verdicts keep the box (no TTL fallback, no
    stop age); it must not end the listing of every other instance.
    """
    try:
        return names.parse_time(value or None)
    except ValueError:
        return None


def instance_from_gce(raw: Any, zone: str) -> ManagedInstance:
    """Translate one Compute Engine instance (message or fake with the same attributes)."""
    status = _STATES.get(raw.status, raw.status.lower())
    data_disks = tuple(d.source for d in raw.disks if not d.boot)
    return ManagedInstance(
        cloud="gcp",
        region=region_of_zone(zone),
        location=zone,
        instance_id=str(raw.id),
        name=raw.name,
        state=status,
        instance_type=_last(raw.machine_type),
        launched_at=_api_time(raw.last_start_timestamp or raw.creation_timestamp),
        stopped_since=_api_time(raw.last_stop_timestamp) if status == STOPPED else None,
        tags=names.read_tags(dict(raw.labels), "gcp"),
        data_volume_ids=data_disks,
    )


def monitoring_cpu_reader(project: str, start: datetime, end: datetime) -> dict[str, list[float]]:
    """Per-minute maximum CPU utilisation (percent) of every GCE instance in the project."""
    try:
        from google.cloud import monitoring_v3
    except ImportError as error:
        raise RuntimeError(INSTALL_HINT) from error
    client = monitoring_v3.MetricServiceClient()
    interval = {"start_time": {"seconds": int(start.timestamp())}, "end_time": {"seconds": int(end.timestamp())}}
    series = client.list_time_series(
        request={
            "name": f"projects/{project}",
            "filter": 'metric.type = "compute.googleapis.com/instance/cpu/utilization" '
            'AND resource.type = "gce_instance"',
            "interval": interval,
            "aggregation": {"alignment_period": {"seconds": METRIC_PERIOD_S}, "per_series_aligner": "ALIGN_MAX"},
            "view": "FULL",
        }
    )
    values: dict[str, list[float]] = {}
    for one in series:
        iid = one.resource.labels["instance_id"]
        values.setdefault(iid, []).extend(p.value.double_value * 100 for p in one.points)
    return values


class GcpReaperCloud:
    """Compute Engine instances of one team in one project."""

    cloud = "gcp"

    def __init__(
        self,
        project: str,
        regions: Sequence[str],
        *,
        instances_client: Any = None,
        snapshots_client: Any = None,
        cpu_reader: CpuReader = monitoring_cpu_reader,
        poll_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not project:
            raise ValueError("clouds.gcp.project is empty; set the GCP project id the team uses")
        self.project = project
        self.regions = list(regions)
        self._instances = instances_client
        self._snapshots = snapshots_client
        self._cpu_reader = cpu_reader
        self.poll_s = poll_s
        self._sleep = sleep
        self._clock = clock

    def _compute(self) -> Any:
        try:
            from google.cloud import compute_v1
        except ImportError as error:
            raise RuntimeError(INSTALL_HINT) from error
        return compute_v1

    @property
    def instances(self) -> Any:
        if self._instances is None:
            self._instances = self._compute().InstancesClient()
        return self._instances

    @property
    def snapshots(self) -> Any:
        if self._snapshots is None:
            self._snapshots = self._compute().SnapshotsClient()
        return self._snapshots

    def list_instances(self, team: str) -> list[ManagedInstance]:
        """One paginated aggregated list over all zones, filtered by label server-side."""
        managed, owner_team = names.tag_key("gcp", names.MANAGED), names.tag_key("gcp", names.TEAM)
        pager = self.instances.aggregated_list(
            request={
                "project": self.project,
                "filter": f'labels.{managed} = "true" AND labels.{owner_team} = "{names.label_value(team)}"',
                "max_results": 500,
            }
        )
        found: list[ManagedInstance] = []
        for scope, scoped in pager:
            zone = _last(scope)
            found.extend(instance_from_gce(raw, zone) for raw in scoped.instances)
        return found

    def cpu_windows(self, instances: Sequence[ManagedInstance], minutes: int, now: datetime) -> dict[str, CpuWindow]:
        values = self._cpu_reader(self.project, now - timedelta(minutes=minutes), now)
        expected = max(1, minutes * 60 // METRIC_PERIOD_S)
        return {
            i.instance_id: CpuWindow(
                minutes=minutes,
                max_percent=max(values[i.instance_id]) if values.get(i.instance_id) else None,
                datapoints=len(values.get(i.instance_id, [])),
                expected=expected,
            )
            for i in instances
        }

    def find(self, refs: Sequence[InstanceRef]) -> dict[InstanceRef, ManagedInstance]:
        """The instances the refs name (``location`` a zone, ``ident`` an instance name); unknown ones are absent."""
        found: dict[InstanceRef, ManagedInstance] = {}
        for ref in refs:
            try:
                raw = self.instances.get(request={"project": ref.project or self.project, "zone": ref.location,
                                                  "instance": ref.ident})
            except Exception as error:
                if type(error).__name__ == "NotFound":  # google.api_core.exceptions.NotFound: the VM is gone
                    continue
                raise
            found[ref] = instance_from_gce(raw, ref.location)
        return found

    def stop(self, instances: Sequence[ManagedInstance], progress: StateSeen | None = None) -> list[ManagedInstance]:
        """Stop each instance, wait for each operation, and re-read it (for ``lastStopTimestamp``)."""
        return self._change(instances, "stop", progress)

    def start(self, instances: Sequence[ManagedInstance], progress: StateSeen | None = None) -> list[ManagedInstance]:
        """Start each instance, wait for each operation, and re-read it."""
        return self._change(instances, "start", progress)

    def _change(self, instances: Sequence[ManagedInstance], call: str,
                progress: StateSeen | None) -> list[ManagedInstance]:
        """One operation per instance, all sent before any is waited for; each re-read goes to `progress`."""
        operations = [
            getattr(self.instances, call)(request={"project": self.project, "zone": i.location, "instance": i.name})
            for i in instances
        ]
        for operation in operations:
            operation.result()
        refreshed = [
            instance_from_gce(
                self.instances.get(request={"project": self.project, "zone": i.location, "instance": i.name}),
                i.location,
            )
            for i in instances
        ]
        for instance in refreshed if progress is not None else []:
            progress(instance)
        return refreshed

    def terminate(self, instances: Sequence[ManagedInstance]) -> None:
        for i in instances:
            self.instances.delete(request={"project": self.project, "zone": i.location, "instance": i.name}).result()

    def ensure_snapshots(
        self, instances: Sequence[ManagedInstance]
    ) -> tuple[dict[str, list[SnapshotRef]], dict[str, str]]:
        """Snapshots per instance, and the errors of those whose snapshot could not start."""
        result: dict[str, list[SnapshotRef]] = {}
        errors: dict[str, str] = {}
        for instance in instances:
            try:
                result[instance.instance_id] = self._ensure_one(instance)
            except Exception as error:  # one box's failure must not stop the others
                errors[instance.instance_id] = str(error)
        return result, errors

    def _ensure_one(self, instance: ManagedInstance) -> list[SnapshotRef]:
        """Snapshot names are derived from instance, disk and stop time, so a rerun finds its own."""
        existing = {
            s.name: s
            for s in self.snapshots.list(
                request={
                    "project": self.project,
                    "filter": f'labels.{names.tag_key("gcp", names.REAP_OF)} = "{instance.instance_id}"',
                }
            )
        }
        stop_mark = int(instance.stopped_since.timestamp()) if instance.stopped_since else 0
        tags = instance.box_tags
        refs: list[SnapshotRef] = []
        for index, disk in enumerate(instance.data_volume_ids):
            name = f"reap-{instance.instance_id}-{index}-{stop_mark}"
            found = existing.get(name)
            if found is None or found.status in ("FAILED", "DELETING"):
                if found is not None:
                    name = f"{name}-r{int(time.time())}"
                self.snapshots.insert(
                    request={
                        "project": self.project,
                        "snapshot_resource": {
                            "name": name,
                            "source_disk": disk,
                            "labels": names.snapshot_tags("gcp", team=tags.team or "", owner=tags.owner or "",
                                                          instance_id=instance.instance_id),
                        },
                    }
                )
                state = "CREATING"
            else:
                state = found.status
            refs.append(SnapshotRef(name, disk, instance.instance_id, state, None, instance.location))
        return refs

    def wait_snapshots(self, snapshots: Sequence[SnapshotRef], timeout_s: float) -> list[SnapshotRef]:
        deadline = self._clock() + timeout_s
        current = {s.snapshot_id: s for s in snapshots}
        while True:
            for sid, ref in list(current.items()):
                if not ref.completed and not ref.failed:
                    raw = self.snapshots.get(request={"project": self.project, "snapshot": sid})
                    current[sid] = SnapshotRef(sid, ref.volume_id, ref.instance_id, raw.status, None, ref.location)
            if all(r.completed or r.failed for r in current.values()) or self._clock() >= deadline:
                return [current[s.snapshot_id] for s in snapshots]
            self._sleep(self.poll_s)

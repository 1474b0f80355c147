"""What Pulumi sees of every program for the example team, held against a snapshot the code once produced.

A user's stacks were made by earlier code: a changed resource type, name,
parent, provider or input makes their next `up` update or replace it, and a
replaced data volume is data gone. So a refactor of the programs must leave
every registration exactly as it was. This test runs the real programs (the
team networks, each box with a new, kept and restored data volume, a box that
reads its network through a stack reference, the offline plan's path and the
tower) under the project's mocks, records each registration, look-up,
component output and export, and compares the record with
``tests/fixtures/stacks_snapshot.json``.

The snapshot is produced by the code, never written by hand. After a change
that is meant to alter what Pulumi sees, rewrite it and review its diff:

    NOMADRIG_WRITE_STACKS_SNAPSHOT=1 .venv/bin/pytest tests/test_stacks_snapshot.py

Only what would differ between machines or SDK releases is normalised: the
providers' plugin versions, source positions, the checkout's paths and the
roles' content hash in the tower's inputs, the pickled dynamic provider.
Long strings (user data) are kept as their SHA-256, gzip undone first.
"""

from __future__ import annotations

import base64
import difflib
import gzip
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from google.protobuf.json_format import MessageToDict
from nomadrig.stacks import mocks as stack_mocks
from nomadrig.stacks.mocks import MockScope, PlanMocks, RecordingMonitor
from nomadrig.stacks.program import box_program, team_program, tower_program
from nomadrig.stacks.tower import roles_content_hash
from pulumi.runtime import rpc

from nomadrig import paths
from nomadrig.names import network_stack_name
from nomadrig.plan.planner import new_mocks, run_programs
from nomadrig.spec import box_spec, network_specs, tower_spec
from nomadrig.team.load import load_team, parse_team
from nomadrig.team.model import Team
from nomadrig.volumes import DataSource
from tests.test_stacks_data_volume import run_program

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "team.yaml"
SNAPSHOT = Path(__file__).resolve().parent / "fixtures" / "stacks_snapshot.json"
WRITE_ENV = "NOMADRIG_WRITE_STACKS_SNAPSHOT"
CREATED = "2026-12-01T18:39Z"
PROJECT = "nomadrig"  # the stack: `run_program`'s
#: Request fields that differ between runs, machines or SDK releases without changing what a stack holds.
UNSTABLE_FIELDS = ("sourcePosition", "stackTrace", "parentStackTraceHandle", "version", "pluginDownloadURL",
                   "pluginChecksums", "packageRef", "transforms", "acceptSecrets", "acceptResources",
                   "supportsPartialValues", "supportsResultReporting", "acceptsByteString", "acceptOutputValues")
LONG_STRING = 400
ROOT_STACK = "pulumi:pulumi:Stack"
#: A kept data volume of each cloud, as the engine records it (an EBS id; a GCP disk's path).
KEPT = {"aws": "vol-0123456789abcdef0",
        "gcp": "projects/vision-lab-research/zones/us-central1-b/disks/vision-lab--grace-data"}
#: The example team with every switch the programs read turned the other way: public IPs (no NAT), a GCP
#: billing account (a budget), the team's own AMI parameter and image family, an N1 box (guest accelerators),
#: an on-demand GCP box and a spot AWS one in eu-west-1.
OTHER_WAY = (("allow_public_ip: false", "allow_public_ip: true"),
             ('billing_account: ""', 'billing_account: "012345-6789AB-CDEF01"'),
             ('ami_parameter: ""', 'ami_parameter: "/vision-lab/box-ami"'),
             ('image_family: ""', 'image_family: "common-cu129-ubuntu-2204-nvidia-580"'),
             ("instance_type: g2-standard-8", "instance_type: n1-standard-8+2xt4"),
             ("data_disk_gb: 1000\n    spot: true", "data_disk_gb: 1000\n    spot: false"),
             ("data_disk_gb: 500\n    spot: false", "data_disk_gb: 500\n    spot: true"))
SNAPSHOT_ID = {"aws": "snap-0123456789abcdef0", "gcp": "projects/vision-lab-research/global/snapshots/grace-1"}


class SnapshotMonitor(RecordingMonitor):
    """The project's monitor, also keeping every request as Pulumi received it (before the mocks answer)."""

    def __init__(self, mocks: PlanMocks) -> None:
        super().__init__(mocks)
        self.seen: list[dict[str, Any]] = []

    def _keep(self, kind: str, request: Any, props_field: str) -> None:
        record = {k: v for k, v in MessageToDict(request).items() if k not in UNSTABLE_FIELDS and k != props_field}
        record["kind"] = kind
        record[props_field] = rpc.deserialize_properties(getattr(request, props_field))
        self.seen.append(record)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        if request.type != ROOT_STACK:
            self._keep("register", request, "object")
        return super().RegisterResource(request)

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        self._keep("read", request, "properties")
        return super().ReadResource(request)

    def Invoke(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        self._keep("invoke", request, "args")
        return super().Invoke(request)

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        if request.urn.split("::")[2] != ROOT_STACK:  # the stack's own outputs: the exports, kept apart
            self._keep("outputs", request, "outputs")
        return super().RegisterResourceOutputs(request)


def stable(value: Any) -> Any:
    """`value` as JSON that is the same on every machine: sorted lists of URNs, long strings as their hash."""
    if isinstance(value, dict):
        return {str(k): stable(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [stable(v) for v in value]
    if isinstance(value, str) and len(value) > LONG_STRING:
        return f"sha256:{hashlib.sha256(value.encode()).hexdigest()} ({len(value)} chars)"
    return value


def unpacked(inputs: dict[str, Any]) -> dict[str, Any]:
    """Packed user data as its text (the gzip bytes follow from it), machine paths as names."""
    out = dict(inputs)
    if isinstance(out.get("userDataBase64"), str):
        out["userDataBase64"] = {"gunzipped": gzip.decompress(base64.b64decode(out["userDataBase64"])).decode()}
    if "__provider" in out:  # the pickled dynamic provider: Python's and dill's bytes, not the stack's
        out["__provider"] = "<pickled dynamic provider>"
    for key, local in (("project_root", str(ROOT)), ("runs_dir", str(paths.runs_dir())),
                       ("content_hash", roles_content_hash())):
        if out.get(key) == local:
            out[key] = f"<{key} of this checkout>"
    return out


def normalised(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for key in ("object", "properties", "args", "outputs"):
        if isinstance(out.get(key), dict):
            out[key] = unpacked(out[key])
    if "dependencies" in out:
        out["dependencies"] = sorted(out["dependencies"])
    if "propertyDependencies" in out:
        out["propertyDependencies"] = {k: sorted(v.get("urns", [])) for k, v in out["propertyDependencies"].items()}
    return stable(out)


def ordered(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Registrations race each other; their URNs (and an invoke's whole text) give one order."""
    return sorted(records, key=lambda r: (r["kind"], r.get("urn") or r.get("parent") or "",
                                          r.get("type") or r.get("tok") or "", r.get("name") or "",
                                          json.dumps(r, sort_keys=True)))


def fresh_root_stack() -> None:
    """Forget the root stack of an earlier program in this process, as a real deployment has none.

    `set_mocks` makes a root stack only where none is left, so without this the
    top-level components would be children of whichever stack ran first.
    """
    pulumi.runtime.reset_options()


def run(program: Callable[[], None], scope: MockScope | None = None) -> dict[str, Any]:
    """One stack's program under the mocks: what Pulumi received, and the stack's exports."""
    fresh_root_stack()
    mocks = PlanMocks(scope or MockScope(project="vision-lab-research"))
    monitor = SnapshotMonitor(mocks)
    _, exported = run_program(program, mocks, monitor)
    return {"requests": ordered([normalised(r) for r in monitor.seen]), "exports": stable(exported)}


def plan_path(team: Team, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The offline plan's own path (`run_programs`: components without stack programs around them)."""
    monitors: list[SnapshotMonitor] = []

    def monitor(mocks: PlanMocks) -> SnapshotMonitor:
        monitors.append(SnapshotMonitor(mocks))
        return monitors[-1]

    monkeypatch.setattr(stack_mocks, "RecordingMonitor", monitor)
    run_programs(team, [box_spec(team, nomad, created=CREATED) for nomad in team.nomads], new_mocks(team))
    [seen] = monitors
    return {"requests": ordered([normalised(r) for r in seen.seen])}


def programs(team: Team, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every program the engine, `pulumi up` by hand and the plan run for the team, by a stable label."""
    networks: dict[tuple[str, str], dict[str, Any]] = {}
    for net in network_specs(team):
        networks[(net.cloud, net.region)] = run(team_program(net))
        yield f"network {net.cloud}/{net.region}", networks[(net.cloud, net.region)]
    for nomad in team.nomads:
        spec = box_spec(team, nomad, created=CREATED)
        outputs = networks[(spec.cloud, spec.region)]["exports"]
        yield f"box {nomad.name} (new data volume)", run(box_program(spec, outputs))
        for data in (DataSource(DataSource.KEPT, KEPT.get(spec.cloud, "")),
                     DataSource(DataSource.SNAPSHOT, SNAPSHOT_ID.get(spec.cloud, ""))):
            if data.ident:
                yield f"box {nomad.name} ({data.as_output()})", run(box_program(spec, outputs, data))
        reference = f"organization/{PROJECT}/{network_stack_name(team.name, spec.cloud, spec.region)}"
        yield f"box {nomad.name} (network by stack reference)", run(
            box_program(spec, reference),
            MockScope(project="vision-lab-research", stack_outputs={reference: outputs}))
    # The tower's variables name the agent's source folder, which is where this checkout lies.
    monkeypatch.setattr(paths, "agent_source_dir", lambda: Path("/checkout/nomadrig/agent"))
    for tower in team.towers:
        yield f"tower {tower.name}", run(tower_program(tower_spec(team, tower)))
    yield "plan (every box, one run)", plan_path(team, monkeypatch)


def diff(expected: Any, recorded: Any, most: int = 60) -> str:
    """The first lines of a unified diff between the snapshot and this run, for the failure message."""
    def lines(value: Any) -> list[str]:
        return json.dumps(value, indent=1, sort_keys=True).splitlines()

    return "\n".join(list(difflib.unified_diff(lines(expected), lines(recorded), "snapshot", "this run",
                                                lineterm=""))[:most])


def other_way_team() -> Team:
    """The example team, its switches turned (`OTHER_WAY`)."""
    text = EXAMPLE.read_text()
    for old, new in OTHER_WAY:
        assert text.count(old) == 1, f"examples/team.yaml no longer has one {old!r}; update OTHER_WAY"
        text = text.replace(old, new)
    return parse_team(text, "other-way.yaml")


def other_way_programs(team: Team) -> Iterator[tuple[str, dict[str, Any]]]:
    """The team networks and new boxes of the turned team: the paths the example team does not take."""
    for net in network_specs(team):
        network = run(team_program(net))
        yield f"other way: network {net.cloud}/{net.region}", network
        for nomad in team.nomads:
            spec = box_spec(team, nomad, created=CREATED)
            if (spec.cloud, spec.region) == (net.cloud, net.region):
                yield f"other way: box {nomad.name}", run(box_program(spec, network["exports"]))


def test_the_programs_register_what_they_registered_before(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = json.loads(json.dumps({**dict(programs(load_team(EXAMPLE), monkeypatch)),
                                      **dict(other_way_programs(other_way_team()))}))
    if os.environ.get(WRITE_ENV):
        SNAPSHOT.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert sorted(recorded) == sorted(expected), "the set of programs changed"
    changed = {label: diff(stack, recorded[label]) for label, stack in expected.items() if recorded[label] != stack}
    assert not changed, "what Pulumi sees changed (see the module docstring):\n" + "\n".join(
        f"{label}:\n{lines}" for label, lines in changed.items())

"""The data volume outlives the box, through the real Pulumi CLI and its file:// backend.

The box program is a stand-in shaped like the real ones around the data
volume (`tests.fake_pulumi.real.box_with_data_program`: a kept volume is not
declared, a new one gets a fresh id), because the AWS and GCP provider plugins
cannot be built here; what is real is the engine, the CLI, the backend's
state and the stack tags that carry the record from `down` (or the reaper) to
the next `up`.
"""

from __future__ import annotations

import io
import re

import pulumi
import pytest
from rich.console import Console

from nomadrig.engine import Engine, box_stacks
from nomadrig.spec import box_spec
from nomadrig.team.load import load_team
from nomadrig.volumes import DataSource
from tests.fake_pulumi.real import REPO, Note, RealPulumi, ScriptedPrograms, box_with_data_program

TEAM_FILE = REPO / "examples" / "team.yaml"


def network_program() -> None:
    pulumi.export("network_id", Note("network", {"region": pulumi.Config("aws").require("region")}).id)


@pytest.fixture
def real(monkeypatch, tmp_path) -> RealPulumi:
    return RealPulumi.install(monkeypatch, tmp_path)


def engine(out: io.StringIO) -> Engine:
    programs = ScriptedPrograms(network=network_program, data_box=box_with_data_program)
    return Engine(load_team(TEAM_FILE), programs=programs, console=Console(file=out, width=200))


def volumes_declared(real: RealPulumi, stack: str) -> list[str]:
    resources = real.checkpoint(stack)["checkpoint"]["latest"].get("resources", [])
    return [r["id"] for r in resources if r["type"].endswith(":Volume")]


def test_up_down_up_attaches_the_same_volume_and_a_second_up_changes_nothing(real):
    out = io.StringIO()
    team = load_team(TEAM_FILE)
    spec = box_spec(team, "ada")
    first = engine(out).up_box(spec)
    assert volumes_declared(real, spec.stack_name) == [first["data_volume_id"]]

    engine(out).destroy(spec.stack_name, spec.cloud, spec.region)
    (real.home / "work" / team.name / "retained.json").unlink()  # only the backend's record is left
    again = engine(out).up_box(spec)
    third = engine(out).up_box(spec)

    assert again["data_volume_id"] == third["data_volume_id"] == first["data_volume_id"]
    assert again["data_source"] == f"kept:{first['data_volume_id']}"
    assert volumes_declared(real, spec.stack_name) == []  # attached, not declared: the stack does not own it
    summaries = re.findall(rf"^up {spec.stack_name}: (.*)$", out.getvalue(), re.MULTILINE)
    assert re.fullmatch(r"\d+ same", summaries[-1]), summaries


def test_after_a_reaper_destroy_restore_declares_a_volume_from_the_recorded_snapshot(real):
    out = io.StringIO()
    team = load_team(TEAM_FILE)
    spec = box_spec(team, "ada")
    first = engine(out).up_box(spec)
    reaper = box_stacks(team, console=Console(file=out))
    reaper.record_snapshot(spec.stack_name, "snap-0123456789abcdef0")
    reaper.destroy(spec.stack_name)

    later = engine(out)
    assert later.data_source(spec) == DataSource.kept(first["data_volume_id"])  # `up` would attach the volume
    snapshot = later.last_snapshot(spec.stack_name)
    restored = later.up_box(spec, DataSource.snapshot(snapshot or ""))

    assert snapshot == "snap-0123456789abcdef0"
    assert restored["data_source"] == "snapshot:snap-0123456789abcdef0"
    [volume] = volumes_declared(real, spec.stack_name)
    assert volume == restored["data_volume_id"] != first["data_volume_id"]
    assert engine(out).data_source(spec) == DataSource.snapshot(snapshot)  # the next up declares it the same way

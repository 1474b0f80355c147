"""The box programs under mocks, given where the data volume comes from: new, kept by a `down`, a snapshot.

What a nomad relies on: the box that comes back after `down` (or after the
reaper) attaches the very volume the last box left, and declares no new one;
`restore` makes the volume from the snapshot it names. The programs are the
real ones (`nomadrig.stacks.program.box_program`), run under `PlanMocks`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
from nomadrig.stacks.mocks import MockScope, PlanMocks, RecordingMonitor
from nomadrig.stacks.program import box_program

from nomadrig.spec import box_spec
from nomadrig.team.load import load_team
from nomadrig.team.model import Team
from nomadrig.volumes import DataSource, retained_volumes

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "team.yaml"
VOLUME = {"aws": "aws:ebs/volume:Volume", "gcp": "gcp:compute/disk:Disk"}
NOMAD = {"aws": "ada", "gcp": "grace"}
NETWORK = {
    "aws": {"vpc_id": "vpc-0aaa", "subnet_ids": ["subnet-0aaa"], "availability_zones": ["eu-west-1a"],
            "security_group_id": "sg-0aaa", "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/abc",
            "bucket_name": "nomadrig-vision-lab-x", "bucket_arn": "arn:aws:s3:::nomadrig-vision-lab-x"},
    "gcp": {"network_self_link": "projects/p/global/networks/n", "subnetwork_self_link": "projects/p/regions/r/s",
            "kms_key_id": "projects/p/locations/us-central1/keyRings/k/cryptoKeys/c",
            "bucket_name": "nomadrig-vision-lab-x", "network_tag": "nomadrig-box"},
}


@pytest.fixture(scope="module")
def team() -> Team:
    return load_team(EXAMPLE)


def run_program(program: Callable[[], None], mocks: PlanMocks | None = None,
                monitor: RecordingMonitor | None = None) -> tuple[PlanMocks, dict[str, Any]]:
    """Run a stack program under the mocks; the resources it declared and the values it exported.

    `mocks` and `monitor`: the ones to record with (a fresh `PlanMocks` and its `RecordingMonitor` if not given).
    """
    mocks = mocks or PlanMocks(MockScope())
    pulumi.runtime.set_mocks(mocks, project="nomadrig", stack="test", preview=False,
                             monitor=monitor or RecordingMonitor(mocks))
    exported: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> Any:
        real_export = pulumi.export
        outputs: dict[str, Any] = {}
        pulumi.export = lambda key, value: outputs.__setitem__(key, value)  # type: ignore[assignment]
        try:
            program()
        finally:
            pulumi.export = real_export
        keys = sorted(outputs)
        return pulumi.Output.all(*[outputs[k] for k in keys]).apply(lambda values: exported.update(zip(keys, values,
                                                                                                      strict=True)))

    run()
    return mocks, exported


def first_box(team: Team, cloud: str, data: DataSource | None) -> tuple[PlanMocks, dict[str, Any]]:
    return run_program(box_program(box_spec(team, NOMAD[cloud]), NETWORK[cloud], data))


def kept_id(team: Team, cloud: str) -> str:
    """The id the engine records when `down` keeps the first box's volume (the real recorder, on its outputs)."""
    spec = box_spec(team, NOMAD[cloud])
    _, outputs = first_box(team, cloud, None)
    [kept] = retained_volumes(spec.stack_name, cloud, spec.region, outputs, spec.project)
    return kept.id


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_a_new_box_declares_one_retained_data_volume(team: Team, cloud: str) -> None:
    mocks, outputs = first_box(team, cloud, None)
    volumes = [r for r in mocks.resources if r.type == VOLUME[cloud]]
    assert [(v.read, v.retain_on_delete) for v in volumes] == [(False, True)]
    assert outputs["data_source"] == "new"


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_given_a_kept_volume_the_box_declares_no_new_volume_and_attaches_the_kept_one(team: Team, cloud: str) -> None:
    kept = kept_id(team, cloud)
    mocks, outputs = first_box(team, cloud, DataSource.kept(kept))

    volumes = [r for r in mocks.resources if r.type == VOLUME[cloud]]
    assert [v.read for v in volumes] == [True], "a kept volume is read by id, never declared anew"
    assert outputs["data_source"] == f"kept:{kept}"
    if cloud == "aws":
        assert outputs["data_volume_id"] == kept
        attachment = next(r.inputs for r in mocks.resources if r.type == "aws:ec2/volumeAttachment:VolumeAttachment")
        assert attachment["volumeId"] == kept
    else:
        spec = box_spec(team, NOMAD[cloud])
        assert retained_volumes(spec.stack_name, cloud, spec.region, outputs, spec.project)[0].id == kept
        instance = next(r.inputs for r in mocks.resources if r.type == "gcp:compute/instance:Instance")
        assert instance["attachedDisks"][0]["source"].endswith(kept)
        assert instance["zone"] == kept.split("/zones/")[1].split("/")[0]  # the box goes where its disk is


@pytest.mark.parametrize("cloud, field", [("aws", "snapshotId"), ("gcp", "snapshot")])
def test_restoring_a_snapshot_declares_a_retained_volume_made_from_it(team: Team, cloud: str, field: str) -> None:
    mocks, outputs = first_box(team, cloud, DataSource.snapshot("snap-0123456789abcdef0"))
    [volume] = [r for r in mocks.resources if r.type == VOLUME[cloud]]
    assert (volume.read, volume.retain_on_delete) == (False, True)
    assert volume.inputs[field] == "snap-0123456789abcdef0"
    assert DataSource.from_output(outputs["data_source"]) == DataSource.snapshot("snap-0123456789abcdef0")


@pytest.mark.parametrize("text", ["new", "kept:vol-1", "snapshot:snap-1"])
def test_the_data_source_a_box_exports_reads_back_as_itself(text: str) -> None:
    source = DataSource.from_output(text)
    assert source is not None and source.as_output() == text


@pytest.mark.parametrize("text", [None, 3, "", "kept:", "new:vol-1", "copied:vol-1", ["kept", "vol-1"]])
def test_an_unreadable_data_source_output_is_no_source(text: object) -> None:
    assert DataSource.from_output(text) is None


# -- the same programs run by hand: `pulumi up` with stacks/__main__.py ---------------------------------------


def run_main(config: dict[str, str], stack_outputs: dict[str, dict[str, Any]]) -> PlanMocks:
    """`stacks/__main__.py` under the mocks, with the Pulumi config a person set."""
    import runpy

    mocks = PlanMocks(MockScope(stack_outputs=stack_outputs))
    pulumi.runtime.set_mocks(mocks, project="nomadrig", stack="vision-lab--ada", monitor=RecordingMonitor(mocks),
                             organization="organization")
    pulumi.runtime.set_all_config(config)

    @pulumi.runtime.test
    def run() -> Any:
        runpy.run_module("nomadrig.stacks.__main__", run_name="__main__")
        return pulumi.Output.from_input(None)

    try:
        run()
    finally:
        pulumi.runtime.set_all_config({})
    return mocks


def test_a_box_run_by_hand_reads_its_network_under_the_engines_stack_name_and_keeps_its_creation_time() -> None:
    from nomadrig.names import network_stack_name

    network = f"organization/nomadrig/{network_stack_name('vision-lab', 'aws', 'eu-west-1')}"
    mocks = run_main({"nomadrig:team_file": str(EXAMPLE), "nomadrig:nomad": "ada",
                      "nomadrig:created": "2026-01-05T09:30Z", "nomadrig:data_source": "kept:vol-0kept"},
                     {network: NETWORK["aws"]})
    reference = next(r for r in mocks.resources if r.type == "pulumi:pulumi:StackReference")
    assert reference.inputs["name"] == network
    instance = next(r.inputs for r in mocks.resources if r.type == "aws:ec2/instance:Instance")
    assert instance["tags"]["nomadrig:created"] == "2026-01-05T09:30Z"
    assert [v.read for v in mocks.resources if v.type == VOLUME["aws"]] == [True]


def test_a_box_run_by_hand_without_its_creation_time_is_refused() -> None:
    with pytest.raises(Exception, match="created"):
        run_main({"nomadrig:team_file": str(EXAMPLE), "nomadrig:nomad": "ada"}, {})

"""`nomadrig start|stop NOMAD` and the live state `ls` shows, against EC2 served by moto on loopback.

The box stack's outputs come from the Pulumi CLI double, with the ids of an
instance moto really runs (tagged by the real tag writer, `BoxSpec.tags()`);
the commands find that instance through the stack, change its state through
the reaper's EC2 adapter, and `ls --json` reads it back from moto. GCP runs
against the same fake Compute Engine client as the reaper's tests (there is
no GCE emulator).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

import nomadrig.reaper.power
from nomadrig.cli import app
from nomadrig.reaper.aws import instance_from_ec2
from nomadrig.reaper.gcp import GcpReaperCloud
from nomadrig.reaper.power import LiveState
from nomadrig.spec import box_spec
from nomadrig.team.load import load_team
from nomadrig.team.model import Team
from tests.fake_pulumi import FakePulumi
from tests.test_reaper_moto import moto_url, point_boto_at, reset_moto
from tests.test_reaper_verdicts import FakeGce, FakeOperation

__all__ = ["moto_url"]  # the module-scoped moto server fixture, shared with test_reaper_moto

TEAM_FILE = Path(__file__).resolve().parent.parent / "examples" / "team.yaml"


@functools.cache
def team() -> Team:
    return load_team(TEAM_FILE)


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--team", str(TEAM_FILE)])


def launch_box(nomad: str) -> tuple[str, str]:
    """Run the nomad's box in moto as the stack would: its region, its type, its tags; (instance id, volume id)."""
    spec = box_spec(team(), nomad)
    ec2 = boto3.client("ec2", region_name=spec.region)
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    raw = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType=spec.machine_type,
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 50, "DeleteOnTermination": False}}],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": k, "Value": v} for k, v in {**spec.tags(), "Name": spec.stack_name}.items()]}],
    )["Instances"][0]
    volume = next(m["Ebs"]["VolumeId"] for m in raw["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sdf")
    return raw["InstanceId"], volume


def box_outputs(nomad: str, **ids: str) -> dict[str, Any]:
    """What the box program exports (stacks/program.py), with the cloud's ids."""
    spec = box_spec(team(), nomad)
    return {**ids, "team": spec.team, "nomad": spec.nomad, "cloud": spec.cloud, "region": spec.region,
            "instance_type": spec.instance_type, "created": spec.created, "ttl_hours": spec.ttl_hours,
            "spot": spec.spot}


def ec2_state(instance_id: str, region: str = "eu-west-1") -> str:
    described = boto3.client("ec2", region_name=region).describe_instances(InstanceIds=[instance_id])
    return described["Reservations"][0]["Instances"][0]["State"]["Name"]


def ls_instance(stack: str) -> dict[str, Any]:
    result = cli("ls", "--json")
    assert result.exit_code == 0, result.output
    return {s["stack"]: s for s in json.loads(result.stdout)["stacks"]}[stack]


@pytest.fixture
def ada(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[FakePulumi, str]:
    """ada's box deployed: a running moto instance, and a stack (in the double) whose outputs name it."""
    point_boto_at(moto_url, monkeypatch)
    reset_moto(moto_url)
    fake = FakePulumi.install(monkeypatch, tmp_path)
    instance, volume = launch_box("ada")
    fake.scenario(outputs={"vision-lab--ada": box_outputs("ada", instance_id=instance, data_volume_id=volume,
                                                          availability_zone="eu-west-1a")})
    assert cli("up", "ada", "--yes").exit_code == 0
    return fake, instance


def test_stop_then_ls_shows_stopped_and_start_then_ls_shows_running(ada):
    fake, instance = ada
    assert ls_instance("vision-lab--ada")["instance"]["state"] == "running"

    stopped = cli("stop", "ada")
    assert stopped.exit_code == 0, stopped.output
    assert f"vision-lab--ada: {instance} stopped" in stopped.stdout
    assert ec2_state(instance) == "stopped"
    listed = ls_instance("vision-lab--ada")
    assert listed["instance"]["state"] == "stopped" and listed["instance"]["stopped_since"]

    started = cli("start", "ada")
    assert started.exit_code == 0, started.output
    assert f"vision-lab--ada: {instance} running" in started.stdout
    assert ec2_state(instance) == "running"
    assert ls_instance("vision-lab--ada")["instance"]["state"] == "running"


def test_ls_shows_the_hours_left_to_the_ttl_the_box_was_tagged_with(ada):
    listed = ls_instance("vision-lab--ada")
    ttl = box_spec(team(), "ada").ttl_hours
    assert ttl - 1 <= listed["ttl_hours_left"] <= ttl


def test_stop_json_says_what_changed_and_a_second_stop_changes_nothing(ada):
    _, instance = ada
    first = cli("stop", "ada", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) | {"stopped_since": None} == {
        "stack": "vision-lab--ada", "nomad": "ada", "cloud": "aws", "instance": instance, "changed": True,
        "state": "stopped", "stopped_since": None, "detail": ""}
    again = cli("stop", "ada", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] is False


def test_an_instance_the_cloud_no_longer_has_is_gone_in_ls_and_start_exits_3(ada):
    _, instance = ada
    boto3.client("ec2", region_name="eu-west-1").terminate_instances(InstanceIds=[instance])
    assert ls_instance("vision-lab--ada")["instance"]["state"] in ("terminated", "gone")
    result = cli("start", "ada")
    assert result.exit_code == 3, result.output


def test_start_of_a_box_never_created_and_of_a_tower(moto_url, monkeypatch, tmp_path):
    point_boto_at(moto_url, monkeypatch)
    FakePulumi.install(monkeypatch, tmp_path)
    missing = cli("start", "linus")
    assert missing.exit_code == 3
    assert "nomadrig up linus" in missing.output
    tower = cli("stop", "basement")
    assert tower.exit_code == 2
    assert "'basement' is a tower" in tower.output


def test_a_spot_instance_stopped_by_ec2_reads_as_spot_interrupted(moto_url, monkeypatch):
    point_boto_at(moto_url, monkeypatch)
    reset_moto(moto_url)
    instance, _ = launch_box("linus")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2.stop_instances(InstanceIds=[instance])
    raw = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    # EC2 says why in StateReason; moto records a user stop, EC2 this code when it reclaims spot capacity.
    raw["StateReason"] = {"Code": "Server.SpotInstanceShutdown",
                          "Message": "Server.SpotInstanceShutdown: Spot Instance shutdown by Amazon EC2"}
    assert LiveState.of(instance_from_ec2(raw, "us-east-1")).state == "spot-interrupted"
    raw["StateReason"] = {"Code": "Client.UserInitiatedShutdown", "Message": "User initiated shutdown"}
    assert LiveState.of(instance_from_ec2(raw, "us-east-1")).state == "stopped"


# ---------------------------------------------------------------- GCP, through the fake Compute Engine client


class NotFound(Exception):
    """What google.api_core raises for a VM that does not exist (matched by name, as the adapter does)."""


class StartableGce(FakeGce):
    def start(self, request: dict) -> FakeOperation:
        self.calls.append(("start", request))
        vm = self.vms[request["instance"]]
        vm.status = "RUNNING"
        return FakeOperation()

    def get(self, request: dict) -> SimpleNamespace:
        if "instance" in request and request["instance"] not in self.vms:
            raise NotFound(request["instance"])
        return super().get(request)


def test_gcp_start_and_stop_act_on_the_vm_the_stack_names(monkeypatch, tmp_path):
    fake = FakePulumi.install(monkeypatch, tmp_path)
    spec = box_spec(team(), "grace")
    gce = StartableGce()
    gce.add(spec.stack_name, 4242, "TERMINATED", spec.labels(), stopped="2026-11-26T08:00:00Z")
    monkeypatch.setattr(nomadrig.reaper.power, "default_adapter", lambda cloud, project, locations: GcpReaperCloud(
        project, ["us-central1"], instances_client=gce, poll_s=0))
    fake.scenario(outputs={spec.stack_name: box_outputs("grace", instance_name=spec.stack_name,
                                                        zone="us-central1-a", project=spec.project)})
    assert cli("up", "grace", "--yes").exit_code == 0

    assert ls_instance(spec.stack_name)["instance"]["state"] == "stopped"
    started = cli("start", "grace")
    assert started.exit_code == 0, started.output
    assert ("start", {"project": spec.project, "zone": "us-central1-a", "instance": spec.stack_name}) in gce.calls
    assert ls_instance(spec.stack_name)["instance"]["state"] == "running"
    assert cli("stop", "grace").exit_code == 0
    assert gce.vms[spec.stack_name].status == "TERMINATED"

    del gce.vms[spec.stack_name]
    assert ls_instance(spec.stack_name)["instance"]["state"] == "gone"

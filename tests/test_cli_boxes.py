"""The box commands end to end: typer CLI -> policy -> engine -> the Pulumi CLI double.

The real `stacks` programs are handed to the Automation API (the double never
runs them), so these tests also catch a mismatch between the engine and the
programs' signatures.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nomadrig.cli import app
from tests.fake_pulumi import FakePulumi, flag_value

REPO = Path(__file__).resolve().parent.parent
TEAM_FILE = REPO / "examples" / "team.yaml"


def no_cloud(monkeypatch) -> None:
    """Cloud APIs (the live state `ls` reads) answer from a closed loopback port: nothing leaves the machine."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def fake(monkeypatch, tmp_path) -> FakePulumi:
    no_cloud(monkeypatch)
    return FakePulumi.install(monkeypatch, tmp_path)


def run(*args: str):
    return CliRunner().invoke(app, [*args, "--team", str(TEAM_FILE)])


def test_up_creates_network_and_box_and_prints_outputs(fake):
    result = run("up", "ada", "--yes")
    assert result.exit_code == 0, result.output
    ups = [flag_value(a, "--stack") for a in fake.argvs() if a[0] == "up"]
    assert ups == ["vision-lab--net--aws--eu-west-1", "vision-lab--ada"]
    instance = fake.state()["stacks"]["vision-lab--ada"]["outputs"]["instance_id"]
    assert f"instance_id = {instance}" in result.stdout
    assert "ssh vision-lab--ada" in result.stdout


def test_up_json_prints_only_json_on_stdout(fake):
    result = run("up", "grace", "--json", "--yes")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stack"] == "vision-lab--grace" and data["kind"] == "box"
    assert data["outputs"]["instance_name"] == "vision-lab--grace"


def test_up_refuses_a_mandatory_policy_violation_before_calling_pulumi(fake, tmp_path):
    text = TEAM_FILE.read_text()
    assert "box_hourly_cap_usd: 8.0" in text
    team_file = tmp_path / "team.yaml"
    team_file.write_text(text.replace("box_hourly_cap_usd: 8.0", "box_hourly_cap_usd: 0.5"))

    result = CliRunner().invoke(app, ["up", "ada", "--yes", "--team", str(team_file)])

    assert result.exit_code == 1, result.output
    assert "COST-001" in result.output
    assert "refused: 1 mandatory policy violation(s); up ada was not started." in result.output
    assert fake.calls() == []  # not even `pulumi version`


def test_unknown_name_is_bad_input_listing_the_choices(fake):
    result = run("up", "bob", "--yes")
    assert result.exit_code == 2
    assert "'bob' is neither a nomad nor a tower" in result.output
    assert "ada, grace, linus, basement (tower)" in result.output
    assert fake.calls() == []


def test_down_keeps_the_data_volume_and_says_so(fake):
    assert run("up", "ada", "--yes").exit_code == 0
    volume = fake.state()["stacks"]["vision-lab--ada"]["outputs"]["data_volume_id"]

    result = run("down", "ada", "--yes")

    assert result.exit_code == 0, result.output
    assert "vision-lab--ada destroyed." in result.stdout
    assert f"kept the data volume {volume} (500 GB)" in result.stdout
    assert not [a for a in fake.argvs() if a[0] == "import"]


def test_purge_without_yes_and_without_a_terminal_destroys_nothing(fake):
    assert run("up", "ada", "--yes").exit_code == 0
    result = run("down", "ada", "--purge-data")
    assert result.exit_code == 2, result.output
    assert "Everything on it is lost for good" in result.output
    assert "Add --yes" in result.output
    assert not [a for a in fake.argvs() if a[0] == "destroy"]


def test_purge_with_yes_destroys_the_box_then_deletes_its_volume(fake):
    assert run("up", "ada", "--yes").exit_code == 0
    volume = fake.state()["stacks"]["vision-lab--ada"]["outputs"]["data_volume_id"]

    result = run("down", "ada", "--purge-data", "--yes")

    assert result.exit_code == 0, result.output
    order = [(a[0], flag_value(a, "--stack")) for a in fake.argvs() if a[0] in ("destroy", "import")]
    assert order == [
        ("destroy", "vision-lab--ada"),
        ("import", "vision-lab--purge--ada"),
        ("destroy", "vision-lab--purge--ada"),
    ]
    assert f"data of ada deleted: {volume}" in result.stdout


def test_purge_after_a_plain_down_deletes_the_recorded_volume(fake):
    assert run("up", "ada", "--yes").exit_code == 0
    volume = fake.state()["stacks"]["vision-lab--ada"]["outputs"]["data_volume_id"]
    assert run("down", "ada", "--yes").exit_code == 0
    fake.clear_log()

    result = run("down", "ada", "--purge-data", "--yes")

    assert result.exit_code == 0, result.output
    purge = [(a[0], flag_value(a, "--stack")) for a in fake.argvs() if a[0] in ("destroy", "import")]
    assert purge[-2:] == [("import", "vision-lab--purge--ada"), ("destroy", "vision-lab--purge--ada")]
    assert f"data of ada deleted: {volume}" in result.stdout


def test_down_of_a_box_never_created_is_exit_3(fake):
    result = run("down", "linus")
    assert result.exit_code == 3
    assert "vision-lab--linus does not exist" in result.output


def test_ls_json_lists_stacks_with_state_and_what_is_not_created(fake):
    assert run("up", "ada", "--yes").exit_code == 0
    result = run("ls", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    stacks = {s["stack"]: s for s in data["stacks"]}
    assert stacks["vision-lab--ada"]["state"] == "deployed"
    assert stacks["vision-lab--ada"]["kind"] == "box"
    assert stacks["vision-lab--ada"]["instance_type"] == "g5.xlarge"
    assert stacks["vision-lab--ada"]["hourly_usd"] > 0
    assert stacks["vision-lab--net--aws--eu-west-1"]["kind"] == "network"
    assert data["not_created"] == ["grace", "linus"]


def test_ls_table(fake):
    assert run("up", "ada", "--yes").exit_code == 0
    result = CliRunner().invoke(app, ["ls", "--team", str(TEAM_FILE)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "vision-lab--ada" in line)
    for cell in ("box", "deployed", "aws", "eu-west-1", "g5.xlarge"):
        assert cell in row
    assert "not created yet: grace, linus" in result.stdout


def test_outputs_of_a_box_and_of_a_missing_stack(fake):
    assert run("up", "ada", "--yes").exit_code == 0
    result = run("outputs", "ada", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outputs"] == fake.state()["stacks"]["vision-lab--ada"]["outputs"]
    missing = run("outputs", "grace")
    assert missing.exit_code == 3
    assert "vision-lab--grace does not exist" in missing.output


def test_preview_before_anything_exists_previews_the_network(fake):
    result = run("preview", "linus", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stack"] == "vision-lab--net--aws--us-east-1"
    assert data["changes"]["create"] > 0
    previews = [a for a in fake.argvs() if a[0] == "preview"]
    assert flag_value(previews[0], "--policy-pack") == str(fake.policy_pack)


def test_concurrent_update_exits_3_with_the_message(fake):
    fake.scenario(mode={"up": "conflict"})
    result = run("up", "ada", "--yes")
    assert result.exit_code == 3
    assert "another update is in progress" in result.output


def test_missing_pulumi_cli_exits_3_with_the_install_link(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("NOMADRIG_PULUMI_ROOT", str(tmp_path / "nowhere"))
    result = run("ls")
    assert result.exit_code == 3
    assert "https://www.pulumi.com/docs/install/" in result.output


def test_up_tower_runs_its_stack_like_a_box_and_ls_shows_it(fake):
    fake.scenario(outputs={"vision-lab--tower--basement": {"tower": "basement", "team": "vision-lab",
                                                         "tower_public_key": "wg-public-key"}},
                  resources={"vision-lab--tower--basement": [["nomadrig:tower:Tower", "basement"],
                                                           ["pulumi-python:dynamic:Resource",
                                                            "basement-configuration"]]})
    result = run("up", "basement", "--yes")
    assert result.exit_code == 0, result.output
    [up] = [a for a in fake.argvs() if a[0] == "up"]
    assert flag_value(up, "--stack") == "vision-lab--tower--basement"
    assert flag_value(up, "--policy-pack") == str(fake.policy_pack)
    assert "tower_public_key = wg-public-key" in result.stdout

    data = json.loads(run("ls", "--json").stdout)
    tower = {s["stack"]: s for s in data["stacks"]}["vision-lab--tower--basement"]
    assert (tower["kind"], tower["subject"], tower["state"]) == ("tower", "basement", "deployed")


# -- live state, old stack names, the creation time, JSON errors --------------------------------------------


def test_ls_still_lists_when_the_cloud_cannot_be_asked_and_says_why(fake):
    assert run("up", "ada", "--yes").exit_code == 0
    result = run("ls", "--json")
    assert result.exit_code == 0, result.output
    ada = {s["stack"]: s for s in json.loads(result.stdout)["stacks"]}["vision-lab--ada"]
    assert ada["instance"]["state"] == "unknown" and ada["instance"]["detail"]
    assert ada["state"] == "deployed"


def test_a_failed_command_with_json_prints_the_error_object(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("NOMADRIG_PULUMI_ROOT", str(tmp_path / "nowhere"))
    result = run("ls", "--json")
    assert result.exit_code == 3
    error = json.loads(result.stdout)["error"]
    assert error["code"] == 3 and "https://www.pulumi.com/docs/install/" in error["message"]


def old_named_stack(fake: FakePulumi, name: str, outputs: dict[str, str]) -> None:
    """A stack an earlier nomadrig made and deployed (one dash between the parts), through the CLI double."""
    import subprocess

    fake.scenario(outputs={name: outputs})
    pulumi = str(Path(__file__).parent / "fake_pulumi" / "bin" / "pulumi")
    for argv in (["stack", "init", name], ["up", "--yes", "--stack", name]):
        subprocess.run([pulumi, *argv], check=True, capture_output=True)
    fake.scenario()


def test_up_refuses_to_make_a_second_stack_beside_one_under_its_old_name(fake):
    old_named_stack(fake, "vision-lab-ada", {"team": "vision-lab", "nomad": "ada", "instance_id": "i-0abc"})
    fake.clear_log()
    result = run("up", "ada", "--yes")
    assert result.exit_code == 3, result.output
    assert "stack vision-lab-ada was made by an earlier nomadrig" in result.stderr
    assert "pulumi stack rename vision-lab--ada --stack vision-lab-ada" in result.stderr
    assert not [a for a in fake.argvs() if a[0] == "up"]
    assert "vision-lab--ada" not in fake.state()["stacks"]


def test_ls_names_stacks_left_under_their_old_name(fake):
    old_named_stack(fake, "vision-lab-net-aws-eu-west-1", {"team": "vision-lab", "cloud": "aws", "region": "eu-west-1"})
    result = CliRunner().invoke(app, ["ls", "--team", str(TEAM_FILE)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "vision-lab-net-aws-eu-west-1 is the old name of vision-lab--net--aws--eu-west-1" in result.stdout


def test_a_second_up_keeps_the_creation_time_the_stack_recorded(fake, monkeypatch):
    from nomadrig.engine.stacks import StackPrograms

    seen: list[str] = []
    real_box = StackPrograms.box
    monkeypatch.setattr(StackPrograms, "box", lambda self, spec, network, data=None: (
        seen.append(spec.created), real_box(self, spec, network, data))[1])
    fake.scenario(outputs={"vision-lab--ada": {"instance_id": "i-0123456789abcdef0", "created": "2026-01-05T09:30Z",
                                               "ttl_hours": 168}})
    assert run("up", "ada", "--yes").exit_code == 0
    second = run("up", "ada", "--yes")
    assert second.exit_code == 0, second.output
    assert seen[1] == "2026-01-05T09:30Z", "the TTL must not restart on every up"
    assert "box vision-lab--ada (update)" in second.stderr


# -- the data volume comes back; restore; a tower's SSH key and variables ------------------------------------


def record_data_sources(monkeypatch) -> list:
    """What the real programs are asked to do with the data volume, on each `up` (the double never runs them)."""
    from nomadrig.engine.stacks import StackPrograms

    seen: list = []
    real_box = StackPrograms.box
    monkeypatch.setattr(StackPrograms, "box", lambda self, spec, network, data=None: (
        seen.append(data), real_box(self, spec, network, data))[1])
    return seen


def test_up_down_up_attaches_the_same_data_volume(fake, monkeypatch):
    from nomadrig.volumes import DataSource

    seen = record_data_sources(monkeypatch)
    assert run("up", "ada", "--yes").exit_code == 0
    volume = fake.state()["stacks"]["vision-lab--ada"]["outputs"]["data_volume_id"]
    down = run("down", "ada", "--yes")
    assert "the next `nomadrig up ada` attaches it again" in " ".join(down.stdout.split())

    again = run("up", "ada", "--yes")

    assert again.exit_code == 0, again.output
    assert f"data: attaches the kept data volume {volume}" in " ".join(again.output.split())
    assert seen == [DataSource.new(), DataSource.kept(volume)]


def test_restore_after_the_reaper_declares_the_volume_from_its_last_snapshot(fake, monkeypatch):
    from rich.console import Console

    from nomadrig.engine import box_stacks
    from nomadrig.team.load import load_team
    from nomadrig.volumes import DataSource

    seen = record_data_sources(monkeypatch)
    assert run("up", "ada", "--yes").exit_code == 0
    reaper = box_stacks(load_team(TEAM_FILE), console=Console(file=None, quiet=True))
    reaper.record_snapshot("vision-lab--ada", "snap-0123456789abcdef0")  # what a reaper run does before its destroy
    reaper.destroy("vision-lab--ada")

    result = run("restore", "ada", "--yes")

    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "data: a new data volume from the snapshot snap-0123456789abcdef0" in shown
    assert seen[-1] == DataSource.snapshot("snap-0123456789abcdef0")
    assert "stays as it is (billed)" in shown  # the volume the reaper kept is not touched


def test_restore_refuses_a_live_box_and_a_box_with_no_known_snapshot(fake):
    assert run("up", "ada", "--yes").exit_code == 0
    live = run("restore", "ada", "--yes")
    assert live.exit_code == 2 and "nomadrig down ada" in live.output
    assert run("down", "ada", "--yes").exit_code == 0
    unknown = run("restore", "ada", "--yes")
    assert unknown.exit_code == 2 and "--snapshot" in unknown.output
    assert not [a for a in fake.argvs() if a[0] == "up" and flag_value(a, "--stack") == "vision-lab--ada"][1:]


def test_up_of_a_tower_hands_its_ssh_key_and_variables_to_the_tower_program(fake, monkeypatch, tmp_path):
    from nomadrig.engine.stacks import StackPrograms, TowerRun

    seen: list = []
    monkeypatch.setattr(StackPrograms, "tower", lambda self, spec, run=None: (seen.append(run), lambda: None)[1])
    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING", raising=False)
    result = run("up", "basement", "--yes", "--ssh-key", str(tmp_path / "key"), "-e", "hardening_extra_tcp_ports=[8080]")
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "False")  # Ansible's own switch, for a throwaway test host
    assert run("preview", "basement", "--ssh-key", str(tmp_path / "key")).exit_code == 0
    assert seen == [TowerRun(ssh_key_file=str(tmp_path / "key"), overrides={"hardening_extra_tcp_ports": [8080]}),
                    TowerRun(ssh_key_file=str(tmp_path / "key"), strict_host_keys=False)]


def test_tower_options_on_a_box_are_refused(fake):
    result = run("up", "ada", "--yes", "-e", "x=1")
    assert result.exit_code == 2
    assert "--ssh-key/--var" in result.output
    assert not [a for a in fake.argvs() if a[0] == "up"]


def test_down_of_a_tower_removes_its_stack(fake):
    assert run("up", "basement", "--yes").exit_code == 0
    result = run("down", "basement", "--yes")
    assert result.exit_code == 0, result.output
    assert "vision-lab--tower--basement" not in fake.state()["stacks"]

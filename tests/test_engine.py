"""The engine through the Automation API's `pulumi_command=` seam, with a test double of the CLI.

The double (tests/fake_pulumi/bin/pulumi) records every invocation; these tests
assert the exact commands, config, policy-pack arguments and environment the
engine hands the Pulumi CLI, and how it reports failures.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from nomadrig.engine import Engine, UpdateInterrupted, box_stacks
from nomadrig.engine.settings import INSTALL_URL, policy_pack_dir, pulumi_root
from nomadrig.engine.stacks import TowerRun
from nomadrig.errors import CloudError, ExitCode
from nomadrig.spec import box_spec
from nomadrig.team.load import load_team
from nomadrig.volumes import DataSource, retained_volumes
from tests.fake_pulumi import FakePulumi, flag_value, spawn_in_session

REPO = Path(__file__).resolve().parent.parent
TEAM_FILE = REPO / "examples" / "team.yaml"


class RecordingPrograms:
    """Inline programs that record what the engine built them from (the double never runs them)."""

    def __init__(self) -> None:
        self.boxes: list[tuple[str, dict]] = []
        self.networks: list[tuple[str, str]] = []
        self.data: list[DataSource | None] = []
        self.towers: list[TowerRun | None] = []

    def network(self, spec):
        self.networks.append((spec.cloud, spec.region))
        return lambda: None

    def box(self, spec, network, data=None):
        self.boxes.append((spec.nomad, dict(network)))
        self.data.append(data)
        return lambda: None

    def tower(self, spec, run=None):
        self.towers.append(run)
        return lambda: None


@pytest.fixture
def fake(monkeypatch, tmp_path) -> FakePulumi:
    return FakePulumi.install(monkeypatch, tmp_path)


@pytest.fixture
def team():
    return load_team(TEAM_FILE)


def make_engine(team, programs=None, out: io.StringIO | None = None) -> Engine:
    console = Console(file=out or io.StringIO(), width=200, force_terminal=False)
    return Engine(team, programs=programs or RecordingPrograms(), console=console)


def stack_args(fake: FakePulumi, stack: str) -> list[list[str]]:
    return [
        a for a in fake.argvs() if flag_value(a, "--stack") == stack or (a[:2] == ["stack", "init"] and a[2] == stack)
    ]


def test_up_deploys_network_then_box_with_exact_commands(fake, team):
    programs = RecordingPrograms()
    outputs = make_engine(team, programs).up_box(box_spec(team, "ada"))

    argvs = fake.argvs()
    ups = [a for a in argvs if a[0] == "up"]
    assert [flag_value(a, "--stack") for a in ups] == ["vision-lab--net--aws--eu-west-1", "vision-lab--ada"]
    box = stack_args(fake, "vision-lab--ada")
    # The first select asks whether an earlier box left a data volume to attach (no stack: none).
    assert box[0] == box[1] == ["stack", "select", "--stack", "vision-lab--ada"]
    assert box[2] == ["stack", "init", "vision-lab--ada", "--secrets-provider", "passphrase"]
    assert box[3] == ["config", "set-all", "--stack", "vision-lab--ada", "--plaintext", "aws:region=eu-west-1"]
    up = box[4]
    client = next(a for a in up if a.startswith("--client=127.0.0.1:"))  # the inline program's server
    event_log = flag_value(up, "--event-log")
    assert up == ["up", "--yes", "--skip-preview", "--message", "nomadrig up ada",
                  "--policy-pack", str(fake.policy_pack),
                  "--policy-pack-config", str(fake.home / "work" / "vision-lab" / "policy-pack-config.json"),
                  "--color", "never", client,
                  "--exec-kind", "auto.inline", "--event-log", event_log, "--stack", "vision-lab--ada"]
    assert Path(flag_value(up, "--policy-pack")).is_absolute()
    assert event_log.endswith("eventlog.txt")
    # The box program got the network stack's outputs; the engine returned the box's outputs.
    assert programs.boxes == [("ada", fake.state()["stacks"]["vision-lab--net--aws--eu-west-1"]["outputs"])]
    assert outputs == fake.state()["stacks"]["vision-lab--ada"]["outputs"]
    assert outputs["instance_id"].startswith("i-")


def test_gcp_box_gets_project_region_and_zone_config(fake, team):
    make_engine(team).up_box(box_spec(team, "grace"))
    sets = [a for a in fake.argvs() if a[:2] == ["config", "set-all"]]
    assert sets[-1] == [
        "config",
        "set-all",
        "--stack",
        "vision-lab--grace",
        "--plaintext",
        "gcp:project=vision-lab-research",
        "--plaintext",
        "gcp:region=us-central1",
    ]


def test_cli_runs_in_the_team_work_dir_with_local_backend_and_passphrase_file(fake, team):
    out = io.StringIO()
    make_engine(team, out=out).up_box(box_spec(team, "ada"))

    work = fake.home / "work" / "vision-lab"
    state = fake.home / "state"
    passphrase = fake.home / "passphrase"
    calls = [c for c in fake.calls() if c["argv"] != ["version"]]
    assert calls
    for call in calls:
        assert call["cwd"] == str(work)
        assert call["env"]["PULUMI_BACKEND_URL"] == f"file://{state}"
        assert call["env"]["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(passphrase)
        assert "PULUMI_CONFIG_PASSPHRASE" not in call["env"]
    assert state.is_dir()
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600
    assert len(passphrase.read_text().strip()) >= 32
    assert "Back it up" in out.getvalue()
    project = (work / "Pulumi.yaml").read_text()
    assert f"url: file://{state}" in project and "name: nomadrig" in project


def test_passphrase_from_environment_is_passed_and_no_file_is_made(fake, team, monkeypatch):
    monkeypatch.setenv("NOMADRIG_PASSPHRASE", "correct horse battery staple")
    make_engine(team).up_box(box_spec(team, "ada"))
    ups = fake.calls_of("up")
    assert ups and all(c["env"]["PULUMI_CONFIG_PASSPHRASE"] == "correct horse battery staple" for c in ups)
    assert not (fake.home / "passphrase").exists()


def test_remote_backend_url_from_the_team_file_passes_through(fake, team):
    shared = team.model_copy(update={"state": team.state.model_copy(update={"backend_url": "s3://lab-state/pulumi"})})
    make_engine(shared).up_box(box_spec(shared, "ada"))
    assert {c["env"]["PULUMI_BACKEND_URL"] for c in fake.calls_of("up")} == {"s3://lab-state/pulumi"}
    assert not (fake.home / "state").exists()


def test_preview_carries_the_policy_pack_and_changes_nothing(fake, team):
    engine = make_engine(team)
    engine.up_box(box_spec(team, "ada"))
    before = fake.state()["stacks"]["vision-lab--ada"]
    fake.clear_log()

    stack, changes = engine.preview_box(box_spec(team, "ada"))

    [preview] = [a for a in fake.argvs() if a[0] == "preview"]
    client = next(a for a in preview if a.startswith("--client=127.0.0.1:"))
    assert preview == ["preview", "--policy-pack", str(fake.policy_pack),
                       "--policy-pack-config", str(fake.home / "work" / "vision-lab" / "policy-pack-config.json"),
                       "--color", "never", client,
                       "--exec-kind", "auto.inline", "--event-log", flag_value(preview, "--event-log"),
                       "--stack", "vision-lab--ada"]
    assert stack == "vision-lab--ada"
    assert changes == {"same": 5}
    assert not [a for a in fake.argvs() if a[0] in ("up", "destroy")]
    assert fake.state()["stacks"]["vision-lab--ada"] == before


def test_preview_before_the_network_exists_previews_the_network(fake, team):
    programs = RecordingPrograms()
    stack, changes = make_engine(team, programs).preview_box(box_spec(team, "linus"))
    assert stack == "vision-lab--net--aws--us-east-1"
    assert changes["create"] == 5
    assert programs.boxes == []  # no box program without network outputs
    assert not [a for a in fake.argvs() if a[0] == "up"]


def test_destroy_keeps_and_records_the_data_volume(fake, team):
    engine = make_engine(team)
    outputs = engine.up_box(box_spec(team, "ada"))
    fake.clear_log()

    kept = engine.destroy("vision-lab--ada", "aws", "eu-west-1")

    destroys = [a for a in fake.argvs() if a[0] == "destroy"]
    assert len(destroys) == 1
    assert destroys[0][:3] == ["destroy", "--skip-preview", "--yes"]
    assert flag_value(destroys[0], "--stack") == "vision-lab--ada"
    assert "--policy-pack" not in destroys[0]
    assert [v.id for v in kept] == [outputs["data_volume_id"]]
    assert [v.id for v in engine.retained("vision-lab--ada")] == [outputs["data_volume_id"]]
    # The network stack is shared: destroying a box leaves it alone.
    assert fake.state()["stacks"]["vision-lab--net--aws--eu-west-1"]["resources"]


def test_purge_imports_the_retained_volume_into_a_scratch_stack_and_destroys_it(fake, team):
    engine = make_engine(team)
    engine.up_box(box_spec(team, "ada"))
    kept = engine.destroy("vision-lab--ada", "aws", "eu-west-1")
    fake.clear_log()

    engine.purge(kept, "ada")

    purge = stack_args(fake, "vision-lab--purge--ada")
    assert ["config", "set-all", "--stack", "vision-lab--purge--ada", "--plaintext", "aws:region=eu-west-1"] in purge
    imports = [a for a in purge if a[0] == "import"]
    assert len(imports) == 1
    assert imports[0][:3] == ["import", "--yes", "--skip-preview"]
    assert "--protect=false" in imports[0] and "--generate-code=false" in imports[0]
    assert fake.imports() == [
        {
            "stack": "vision-lab--purge--ada",
            "resources": [{"type": "aws:ebs/volume:Volume", "name": "data-0", "id": kept[0].id}],
        }
    ]
    order = [a[0] for a in purge if a[0] in ("import", "destroy")]
    assert order == ["import", "destroy"]
    assert ["stack", "rm", "--yes", "vision-lab--purge--ada"] in fake.argvs()
    assert "vision-lab--purge--ada" not in fake.state()["stacks"]
    assert engine.retained("vision-lab--ada") == []


def test_gcp_retained_disk_id_is_the_import_id():
    outputs = {
        "instance_name": "vision-lab--grace",
        "zone": "us-central1-b",
        "project": "vision-lab-research",
        "data_disk_name": "grace-data",
    }
    [disk] = retained_volumes("vision-lab--grace", "gcp", "us-central1", outputs)
    assert disk.type == "gcp:compute/disk:Disk"
    assert disk.id == "projects/vision-lab-research/zones/us-central1-b/disks/grace-data"


def test_list_reports_state_kind_and_price_per_stack(fake, team):
    engine = make_engine(team)
    engine.up_box(box_spec(team, "ada"))
    engine.up_box(box_spec(team, "linus"))
    engine.destroy("vision-lab--linus", "aws", "us-east-1")

    statuses = {s.name: s for s in engine.list_stacks()}

    assert set(statuses) == {
        "vision-lab--ada",
        "vision-lab--linus",
        "vision-lab--net--aws--eu-west-1",
        "vision-lab--net--aws--us-east-1",
    }
    ada = statuses["vision-lab--ada"]
    assert (ada.kind, ada.subject, ada.state, ada.cloud, ada.region) == ("box", "ada", "deployed", "aws", "eu-west-1")
    assert ada.instance_type == box_spec(team, "ada").instance_type
    assert ada.hourly_usd == box_spec(team, "ada").hourly_usd
    assert ada.age() == "0h"
    assert statuses["vision-lab--linus"].state == "destroyed"
    net = statuses["vision-lab--net--aws--eu-west-1"]
    assert (net.kind, net.subject, net.state) == ("network", "aws/eu-west-1", "deployed")


def test_list_shows_a_failed_update(fake, team):
    fake.scenario(mode={"up": "ok"})
    engine = make_engine(team)
    engine.up_network("aws", "eu-west-1")
    fake.scenario(mode={"up": "fail"})
    with pytest.raises(CloudError):
        engine.up_box(box_spec(team, "ada"))
    statuses = {s.name: s for s in engine.list_stacks()}
    assert statuses["vision-lab--net--aws--eu-west-1"].state == "deployed"
    assert statuses["vision-lab--ada"].state == "update failed"


@pytest.mark.parametrize("mode", ["conflict", "locked"])
def test_concurrent_update_is_exit_3_with_a_clear_message(fake, team, mode):
    fake.scenario(mode={"up": mode})
    with pytest.raises(CloudError) as caught:
        make_engine(team).up_box(box_spec(team, "ada"))
    assert caught.value.exit_code == ExitCode.CLOUD_FAILURE == 3
    message = str(caught.value)
    assert "another update is in progress" in message
    assert "vision-lab--net--aws--eu-west-1" in message
    assert "pulumi cancel --stack vision-lab--net--aws--eu-west-1" in message


def test_missing_cli_is_exit_3_with_the_install_link(fake, team, monkeypatch, tmp_path):
    empty = tmp_path / "no-pulumi"
    (empty / "bin").mkdir(parents=True)
    monkeypatch.setenv("NOMADRIG_PULUMI_ROOT", str(empty))
    with pytest.raises(CloudError) as caught:
        make_engine(team).up_box(box_spec(team, "ada"))
    assert caught.value.exit_code == 3
    assert INSTALL_URL in str(caught.value)
    assert "not installed" in str(caught.value)


def test_no_cli_on_path_or_in_home_names_the_install_link(monkeypatch, tmp_path):
    monkeypatch.delenv("NOMADRIG_PULUMI_ROOT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(CloudError, match="https://www.pulumi.com/docs/install/"):
        pulumi_root()


def test_failed_update_shows_the_engine_error(fake, team):
    fake.scenario(mode={"up": "fail"})
    engine = make_engine(team)
    with pytest.raises(CloudError) as caught:
        engine.up_box(box_spec(team, "ada"))
    assert "pulumi up failed" in str(caught.value)
    assert "InsufficientInstanceCapacity" in str(caught.value)


def test_mandatory_crossguard_violation_fails_the_up_and_is_shown(fake, team):
    fake.scenario(
        policy={
            "vision-lab--ada": [
                {"policyName": "SEC-002", "message": "httpTokens is 'optional'", "enforcementLevel": "mandatory"}
            ]
        }
    )
    engine = make_engine(team)
    with pytest.raises(CloudError) as caught:
        engine.up_box(box_spec(team, "ada"))
    assert "mandatory nomadrig/SEC-002 (box-instance): httpTokens is 'optional'" in str(caught.value)


def test_progress_shows_each_resource_with_its_operation(fake, team):
    out = io.StringIO()
    engine = make_engine(team, out=out)
    engine.up_box(box_spec(team, "ada"))
    engine.destroy("vision-lab--ada", "aws", "eu-west-1")
    text = out.getvalue()
    assert "created                  aws:ec2/instance:Instance box-instance (" in text
    assert "retained (not deleted)   aws:ebs/volume:Volume box-data (" in text
    assert "deleted                  aws:ec2/instance:Instance box-instance (" in text
    assert "up vision-lab--ada: 5 create" in text


def test_events_over_grpc_for_newer_clis_reach_the_progress_view(monkeypatch, tmp_path, team):
    fake = FakePulumi.install(monkeypatch, tmp_path, version="3.272.0")
    out = io.StringIO()
    make_engine(team, out=out).up_box(box_spec(team, "ada"))
    up = [a for a in fake.argvs() if a[0] == "up"][-1]
    assert flag_value(up, "--event-log").startswith("tcp://127.0.0.1:")
    assert "created                  aws:ec2/instance:Instance box-instance (" in out.getvalue()


def test_reaper_box_stacks_lists_boxes_with_instance_ids_and_destroys(fake, team):
    engine = make_engine(team)
    ada = engine.up_box(box_spec(team, "ada"))
    grace = engine.up_box(box_spec(team, "grace"))
    stacks = box_stacks(team, console=Console(file=io.StringIO()))

    refs = {r.name: r for r in stacks.list()}

    assert set(refs) == {"vision-lab--ada", "vision-lab--grace"}
    assert (
        refs["vision-lab--ada"].nomad,
        refs["vision-lab--ada"].cloud,
        refs["vision-lab--ada"].region,
        refs["vision-lab--ada"].instance_id,
    ) == ("ada", "aws", "eu-west-1", ada["instance_id"])
    assert refs["vision-lab--grace"].instance_id == grace["instance_name"]
    fake.clear_log()
    stacks.destroy("vision-lab--ada")
    assert [flag_value(a, "--stack") for a in fake.argvs() if a[0] == "destroy"] == ["vision-lab--ada"]
    assert {r.name: r.instance_id for r in stacks.list()}["vision-lab--ada"] is None


def test_interrupt_outside_an_update_is_exit_130(fake, team, monkeypatch):
    engine = make_engine(team)

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr("pulumi.automation.create_or_select_stack", interrupted)
    with pytest.raises(UpdateInterrupted) as caught:
        engine.up_box(box_spec(team, "ada"))
    assert caught.value.exit_code == 130


def _start_slow_up(fake: FakePulumi, team_file: Path = TEAM_FILE, terminal: bool = False
                   ) -> tuple[subprocess.Popen, str, int | None]:
    """`nomadrig up ada` in its own session, with a pty as controlling terminal when `terminal`."""
    fake.scenario(mode={"up": "slow"})  # the double waits (10 min at most) for a SIGINT or a `pulumi cancel`
    proc, master = spawn_in_session(
        [sys.executable, "-c", "from nomadrig.cli import main; main()", "up", "ada", "--yes", "--team", str(team_file)],
        cwd=REPO, env={**os.environ, "COLUMNS": "200"}, terminal=terminal)
    started = fake.dir / "started"
    deadline = time.monotonic() + 600  # a guard for a hung start, not a bound on a busy machine
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), proc.communicate(timeout=10)
    return proc, started.read_text(), master


def _assert_stopped(fake: FakePulumi, proc: subprocess.Popen, stack: str, err: str, note: str) -> None:
    assert proc.returncode == 130, err
    assert f"interrupted: stopping the up of {stack}" in err
    assert f"interrupted: {note}; resources already changed stay as they are." in err
    assert "Run the same command again" in err
    assert not fake.state()["stacks"][stack]["updating"]
    history = fake.state()["stacks"][stack]["history"]
    assert history == [] or history[0]["result"] == "failed", json.dumps(history)


def test_ctrl_c_in_a_terminal_lets_the_cli_stop_itself_and_sends_no_second_interrupt(fake):
    """The terminal's Ctrl-C reaches nomadrig and the CLI (one foreground group); a 2nd SIGINT would kill it."""
    proc, stack, master = _start_slow_up(fake, terminal=True)
    os.write(master, b"\x03")
    _, err = proc.communicate(timeout=600)
    os.close(master)
    _assert_stopped(fake, proc, stack, err, "the update stopped")
    assert (fake.dir / "stopped-by").read_text() == "SIGINT"
    assert (fake.dir / "sigints").read_text() == "1"
    assert not [a for a in fake.argvs() if a[0] == "cancel"]  # on a file backend cancel only breaks the lock


def test_sigint_to_nomadrig_alone_is_forwarded_once_to_the_cli(fake):
    """Only nomadrig got the signal (`kill -INT`, a supervisor): it must reach the CLI, once."""
    proc, stack, _ = _start_slow_up(fake)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    _assert_stopped(fake, proc, stack, err, "the update stopped")
    assert (fake.dir / "stopped-by").read_text() == "SIGINT"
    assert (fake.dir / "sigints").read_text() == "1"
    assert not [a for a in fake.argvs() if a[0] == "cancel"]


def test_interrupt_on_pulumi_cloud_cancels_the_update_through_the_service(fake, tmp_path):
    team_file = tmp_path / "team.yaml"
    team_file.write_text(TEAM_FILE.read_text().replace("backend_url: file://~/.nomadrig/state",
                                                       "backend_url: https://api.pulumi.com"))
    proc, stack, _ = _start_slow_up(fake, team_file)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    _assert_stopped(fake, proc, stack, err, "the update was cancelled")
    assert [a for a in fake.argvs() if a[0] == "cancel"] == [["cancel", "--yes", "--stack", stack]]
    assert (fake.dir / "stopped-by").read_text() == "cancel"
    assert {c["env"]["PULUMI_BACKEND_URL"] for c in fake.calls_of("up")} == {"https://api.pulumi.com"}


def test_default_policy_pack_is_the_checkouts_policypack(monkeypatch):
    monkeypatch.delenv("NOMADRIG_POLICY_PACK", raising=False)
    assert policy_pack_dir() == REPO / "policypack"


def test_missing_policy_pack_refuses_instead_of_running_without_it(fake, team, monkeypatch, tmp_path):
    monkeypatch.setenv("NOMADRIG_POLICY_PACK", str(tmp_path / "nowhere"))
    with pytest.raises(CloudError, match="the policy pack is missing"):
        make_engine(team).up_box(box_spec(team, "ada"))
    assert not [a for a in fake.argvs() if a[0] == "up"]


def test_live_view_on_a_terminal_ends_with_every_resource_and_its_time(fake, team):
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=True, color_system=None)
    Engine(team, programs=RecordingPrograms(), console=console).up_box(box_spec(team, "ada"))
    final = out.getvalue().split("up vision-lab--net--aws--eu-west-1: 5 create")[-1]
    for resource in ("box-instance", "box-data", "box-attach"):
        assert resource in final
    assert "created" in final and "0s" in final


def test_progress_counts_unchanged_resources_without_listing_them():
    from pulumi.automation import EngineEvent

    from nomadrig.engine.progress import UpdateProgress

    ticks = iter([0.0, 0.0, 2.5, 3.0])
    progress = UpdateProgress("s", "up", clock=lambda: next(ticks))
    urn = "urn:pulumi:s::nomadrig::aws:ec2/instance:Instance::box"
    same = "urn:pulumi:s::nomadrig::aws:kms/key:Key::key"
    progress.handle(EngineEvent.from_json({"resourcePreEvent": {"metadata": {
        "op": "update", "urn": urn, "type": "aws:ec2/instance:Instance", "provider": ""}}}))
    progress.handle(EngineEvent.from_json({"resourcePreEvent": {"metadata": {
        "op": "same", "urn": same, "type": "aws:kms/key:Key", "provider": ""}}}))
    line = progress.handle(EngineEvent.from_json({"resOutputsEvent": {"metadata": {
        "op": "update", "urn": urn, "type": "aws:ec2/instance:Instance", "provider": ""}}}))
    assert line == "  updated                  aws:ec2/instance:Instance box (2.5s)"
    assert list(progress.rows) == [urn]
    assert progress.quiet == {"same": 1}
    assert progress.table().caption == "1 unchanged"


def test_secret_outputs_reach_programs_but_are_masked_for_display(fake, team):
    fake.scenario(outputs={"vision-lab--net--aws--eu-west-1": {"vpc_id": "vpc-1", "token": "s3cr3t"},
                           "vision-lab--ada": {"instance_id": "i-1", "token": "s3cr3t"}},
                  secret_outputs={"vision-lab--net--aws--eu-west-1": ["token"], "vision-lab--ada": ["token"]})
    programs = RecordingPrograms()
    engine = make_engine(team, programs)
    shown = engine.up_box(box_spec(team, "ada"))
    assert programs.boxes == [("ada", {"vpc_id": "vpc-1", "token": "s3cr3t"})]
    assert shown == {"instance_id": "i-1", "token": "[secret]"}
    assert engine.outputs("vision-lab--ada") == shown
    assert engine.outputs("vision-lab--ada", reveal=True)["token"] == "s3cr3t"


def test_list_does_not_claim_another_teams_stacks_that_share_a_prefix(fake, team):
    make_engine(team).up_box(box_spec(team, "ada"))  # team vision-lab: vision-lab--ada, vision-lab-net-...
    other = team.model_copy(update={"name": "vision"})
    assert make_engine(other).list_stacks() == []
    assert {s.name for s in make_engine(team).list_stacks()} == {"vision-lab--ada", "vision-lab--net--aws--eu-west-1"}


# -- the data volume between boxes: down / reaper -> next up --------------------------------------------------


def test_up_after_down_hands_the_box_the_volume_the_down_kept(fake, team):
    programs = RecordingPrograms()
    first = make_engine(team, programs).up_box(box_spec(team, "ada"))
    make_engine(team, programs).destroy("vision-lab--ada", "aws", "eu-west-1")
    make_engine(team, programs).up_box(box_spec(team, "ada"))

    assert programs.data == [DataSource.new(), DataSource.kept(first["data_volume_id"])]
    # The record is a tag of the stack in the backend, not only this machine's file.
    assert fake.state()["stacks"]["vision-lab--ada"]["tags"] == {"nomadrig:data-volume": first["data_volume_id"]}


def test_a_teammate_without_the_local_record_attaches_the_kept_volume_too(fake, team):
    engine = make_engine(team)
    first = engine.up_box(box_spec(team, "ada"))
    engine.destroy("vision-lab--ada", "aws", "eu-west-1")
    (engine.settings.work_dir / "retained.json").unlink()  # another machine: only the backend is shared

    assert make_engine(team).data_source(box_spec(team, "ada")) == DataSource.kept(first["data_volume_id"])


def test_a_live_box_keeps_the_data_source_it_was_made_with(fake, team):
    fake.scenario(outputs={"vision-lab--ada": {"instance_id": "i-0abc", "data_volume_id": "vol-0restored",
                                               "data_source": "snapshot:snap-0abc"}})
    programs = RecordingPrograms()
    make_engine(team, programs).up_box(box_spec(team, "ada"))
    make_engine(team, programs).up_box(box_spec(team, "ada"))

    assert programs.data[-1] == DataSource.snapshot("snap-0abc")  # declared again as it was: nothing replaced


def test_the_reapers_destroy_records_its_snapshot_and_keeps_the_volume_for_the_next_up(fake, team):
    engine = make_engine(team)
    first = engine.up_box(box_spec(team, "ada"))
    stacks = box_stacks(team, console=Console(file=io.StringIO()))

    stacks.record_snapshot("vision-lab--ada", "snap-0reaped")
    stacks.destroy("vision-lab--ada")

    after = make_engine(team)
    assert after.last_snapshot("vision-lab--ada") == "snap-0reaped"
    assert after.data_source(box_spec(team, "ada")) == DataSource.kept(first["data_volume_id"])


def test_purge_forgets_the_kept_volume_so_the_next_up_makes_a_new_one(fake, team):
    engine = make_engine(team)
    engine.up_box(box_spec(team, "ada"))
    kept = engine.destroy("vision-lab--ada", "aws", "eu-west-1")

    engine.purge(kept, "ada")

    assert "nomadrig:data-volume" not in fake.state()["stacks"]["vision-lab--ada"].get("tags", {})
    assert make_engine(team).data_source(box_spec(team, "ada")) == DataSource.new()


def test_stack_status_age_reads_any_created_output_without_raising():
    from datetime import UTC, datetime

    from nomadrig.engine.stacks import StackStatus

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    last = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def status(created):
        return StackStatus(name="vision-lab--ada", kind="box", subject="ada", state="deployed", cloud="aws",
                           region="eu-west-1", instance_type="g5.xlarge", hourly_usd=1.0, last_update=last,
                           created=created, resource_count=4, outputs={"ttl_hours": 48})

    assert status("2026-12-01T06:00Z").age(now) == "6h"
    for odd in (1700000000, 3.5, True, ["2026-12-01T06:00Z"], {"at": "x"}, "not a time", None):
        assert status(odd).age(now) == "24h", odd  # falls back to the last update
        assert status(odd).ttl_hours_left(now) is None

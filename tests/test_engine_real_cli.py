"""The engine against the real Pulumi CLI, built from its Go modules by scripts/build-engine.sh.

Every test runs nomadrig's own `Engine`, with programs handed in through its `programs=` seam: component
resources, `pulumi.Output` exports, a stack reference and `pulumi.dynamic` resources, which the engine runs
with no cloud provider plugin. State goes to a file:// backend under tmp_path, secrets are encrypted with
the passphrase, and the policy pack from policypack/ is attached to every preview and up, as in production.

Skipped only where Go is absent (no CLI could be built); where Go is present a missing build fails.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pytest
from rich.console import Console
from semver import VersionInfo

from nomadrig.engine import Engine
from nomadrig.errors import CloudError
from nomadrig.names import network_stack_name, tower_stack_name
from nomadrig.spec import box_spec, tower_spec
from nomadrig.team.load import load_team
from tests.fake_pulumi import spawn_in_session
from tests.fake_pulumi.real import (
    PASSPHRASE,
    REPO,
    Note,
    RealPulumi,
    ScriptedPrograms,
    gated_program,
    tower_like_program,
    wait_for,
)

TEAM_FILE = REPO / "examples" / "team.yaml"
TOWER_STACK = tower_stack_name("vision-lab", "basement")
NETWORK_STACK = network_stack_name("vision-lab", "aws", "eu-west-1")
BOX_STACK = box_spec(load_team(TEAM_FILE), "ada").stack_name


@pytest.fixture
def real(monkeypatch, tmp_path) -> RealPulumi:
    return RealPulumi.install(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def team():
    return load_team(TEAM_FILE)


def make_engine(team, programs, out: io.StringIO | None = None) -> Engine:
    return Engine(team, programs=programs, console=Console(file=out or io.StringIO(), width=200))


def network_program() -> None:
    """Reads the provider config the engine set on the stack (aws:region) and exports it."""
    region = pulumi.Config("aws").require("region")
    net = Note("network", {"region": region})
    pulumi.export("network_id", net.id)
    pulumi.export("region", region)


def box_program(size: str):
    """A box stack: reads its network twice, through the engine's outputs and a stack reference."""

    def make(network) -> object:
        def program() -> None:
            ref = pulumi.StackReference(f"organization/nomadrig/{NETWORK_STACK}")
            box = Note("box", {"size": size, "network": network["network_id"]})
            pulumi.export("nomad", "ada")
            pulumi.export("size", box.size)  # type: ignore[attr-defined]
            pulumi.export("network_from_engine", network["network_id"])
            pulumi.export("network_from_reference", ref.get_output("network_id"))

        return program

    return make


def resource_types(real: RealPulumi, stack: str) -> list[str]:
    return [r["type"] for r in real.checkpoint(stack)["checkpoint"]["latest"].get("resources", [])]


@dataclass
class Deployed:
    """A backend holding a tower stack (deployed twice) and a box with its network, for tests that only read."""

    tmp: Path
    tower_outputs: dict
    box_outputs: dict
    box_networks: list
    summaries: list[str]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, team) -> Deployed:
    tmp = tmp_path_factory.mktemp("deployed")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch:
        RealPulumi.install(monkeypatch, tmp)
        programs = ScriptedPrograms(tower=tower_like_program(["pytorch"], secret="ssh-ed25519 AAAAsecret"),
                                    network=network_program, box=box_program("small"))
        tower = make_engine(team, programs, out).up_tower(tower_spec(team, "basement"))
        make_engine(team, programs, out).up_tower(tower_spec(team, "basement"))  # the same program again
        box = make_engine(team, programs, out).up_box(box_spec(team, "ada"))
    summaries = re.findall(rf"^up {TOWER_STACK}: (.*)$", out.getvalue(), re.MULTILINE)
    return Deployed(tmp, tower, box, programs.box_networks, summaries)


@pytest.fixture
def on_deployed(deployed, monkeypatch) -> RealPulumi:
    """The environment of the `deployed` backend, for one test."""
    return RealPulumi.install(monkeypatch, deployed.tmp)


def test_the_built_cli_is_the_pinned_version_and_newer_than_the_sdk(real, team):
    pinned = re.search(r"github.com/pulumi/pulumi/pkg/v3 (v\S+)", (REPO / "scripts/engine/go.mod").read_text())[1]
    command = make_engine(team, ScriptedPrograms()).pulumi_command()
    assert command.command == str(real.root / "bin" / "pulumi")
    assert f"v{command.version}" == pinned
    assert command.version >= VersionInfo.parse(importlib.metadata.version("pulumi"))


def test_up_creates_the_stack_and_outputs_are_read_from_its_state(deployed, on_deployed, team):
    expected = {"team": "vision-lab", "tower": "basement", "frameworks": ["pytorch"],
                "note_id": "note-basement-note", "summary": "basement runs note-basement-note",
                "tower_public_key": "[secret]"}
    assert deployed.tower_outputs == expected
    assert make_engine(team, ScriptedPrograms()).outputs(TOWER_STACK) == expected
    assert sorted(resource_types(on_deployed, TOWER_STACK)) == [
        "nomadrig:test:Rack", "pulumi-python:dynamic/nomadrig-test:Note", "pulumi:providers:pulumi-python",
        "pulumi:pulumi:Stack"]


def test_second_up_with_the_same_program_changes_nothing(deployed):
    assert len(deployed.summaries) == 2, deployed.summaries
    assert deployed.summaries[0] == "3 create"  # the stack, the component and its dynamic resource
    assert deployed.summaries[1] == "3 same"


def test_config_the_engine_sets_reaches_the_program_and_the_box_reads_its_network(deployed, on_deployed, team):
    network = make_engine(team, ScriptedPrograms()).outputs(NETWORK_STACK)
    assert network == {"network_id": "note-network", "region": "eu-west-1"}
    assert deployed.box_networks == [network]
    assert deployed.box_outputs["network_from_engine"] == deployed.box_outputs["network_from_reference"] == \
        "note-network"


def test_preview_shows_an_update_and_changes_nothing(deployed, on_deployed, team):
    before = on_deployed.checkpoint(BOX_STACK)["checkpoint"]["latest"]
    bigger = ScriptedPrograms(network=network_program, box=box_program("large"))

    stack, changes = make_engine(team, bigger).preview_box(box_spec(team, "ada"))

    assert stack == BOX_STACK
    assert changes == {"update": 1, "same": 1}, changes  # the box's Note; the stack itself is unchanged
    assert on_deployed.checkpoint(BOX_STACK)["checkpoint"]["latest"] == before


def test_secret_outputs_are_encrypted_with_the_passphrase_and_revealed_only_on_request(on_deployed, team):
    engine = make_engine(team, ScriptedPrograms())
    assert engine.outputs(TOWER_STACK)["tower_public_key"] == "[secret]"
    assert engine.outputs(TOWER_STACK, reveal=True)["tower_public_key"] == "ssh-ed25519 AAAAsecret"
    state = (on_deployed.backend / "stacks" / "nomadrig" / f"{TOWER_STACK}.json").read_text()
    assert "AAAAsecret" not in state
    assert "ciphertext" in state
    assert "encryptionsalt" in (engine.settings.work_dir / f"Pulumi.{TOWER_STACK}.yaml").read_text()


def test_a_wrong_passphrase_is_an_engine_failure_not_garbage(on_deployed, team, monkeypatch):
    monkeypatch.setenv("NOMADRIG_PASSPHRASE", PASSPHRASE + "-wrong")

    with pytest.raises(CloudError) as caught:
        make_engine(team, ScriptedPrograms()).outputs(TOWER_STACK, reveal=True)
    assert caught.value.exit_code == 3
    assert f"stack {TOWER_STACK}: pulumi read outputs failed" in str(caught.value)
    assert "passphrase" in str(caught.value)


def test_list_reads_kind_state_and_resource_count_from_the_real_backend(on_deployed, team):
    statuses = {s.name: s for s in make_engine(team, ScriptedPrograms()).list_stacks()}

    assert {name: (s.kind, s.subject, s.state) for name, s in statuses.items()} == {
        TOWER_STACK: ("tower", "basement", "deployed"),
        NETWORK_STACK: ("network", "aws/eu-west-1", "deployed"),
        BOX_STACK: ("box", "ada", "deployed"),
    }
    for name, status in statuses.items():
        assert status.resource_count == len(resource_types(on_deployed, name)), name
        assert status.last_update is not None, name


def test_changed_inputs_are_updated_in_place(real, team):
    out = io.StringIO()
    make_engine(team, ScriptedPrograms(tower=tower_like_program(["pytorch"])), out).up_tower(
        tower_spec(team, "basement"))
    outputs = make_engine(team, ScriptedPrograms(tower=tower_like_program(["pytorch", "jax"])), out).up_tower(
        tower_spec(team, "basement"))

    assert outputs["frameworks"] == ["pytorch", "jax"]
    assert outputs["note_id"] == "note-basement-note"  # the same resource, not a replacement
    assert f"up {TOWER_STACK}: 2 same, 1 update" in out.getvalue()


def test_preview_before_anything_exists_previews_the_network_and_deploys_nothing(real, team):
    engine = make_engine(team, ScriptedPrograms(network=network_program, box=box_program("small")))
    stack, changes = engine.preview_box(box_spec(team, "ada"))

    assert stack == NETWORK_STACK
    assert changes == {"create": 2}  # the stack itself and the network Note
    assert {s.name: s.state for s in engine.list_stacks()} == {NETWORK_STACK: "never deployed"}


def test_without_a_passphrase_variable_the_generated_file_encrypts_and_decrypts(real, team, monkeypatch):
    monkeypatch.delenv("NOMADRIG_PASSPHRASE")
    engine = make_engine(team, ScriptedPrograms(tower=tower_like_program(["jax"], secret="from-the-file")))
    engine.up_tower(tower_spec(team, "basement"))

    passphrase = real.home / "passphrase"
    assert passphrase.stat().st_mode & 0o777 == 0o600
    assert make_engine(team, ScriptedPrograms()).outputs(TOWER_STACK, reveal=True)["tower_public_key"] == \
        "from-the-file"


def test_destroy_removes_every_resource_and_list_says_destroyed(real, team):
    engine = make_engine(team, ScriptedPrograms(tower=tower_like_program(["pytorch"])))
    engine.up_tower(tower_spec(team, "basement"))

    assert engine.destroy(TOWER_STACK) == []  # no cloud: no data volume to keep

    assert resource_types(real, TOWER_STACK) == []
    assert engine.outputs(TOWER_STACK) == {}
    assert {s.name: s.state for s in engine.list_stacks()} == {TOWER_STACK: "destroyed"}


# ---------------------------------------------------------------- an update in flight


def start_gated_up(real: RealPulumi, terminal: bool = False) -> tuple[subprocess.Popen, int | None]:
    """A separate nomadrig process runs `up` of the tower stack; returns once its first create is in flight."""
    proc, master = spawn_in_session(
        [sys.executable, "-c", "from tests.fake_pulumi.real import drive_gated_up; drive_gated_up()", str(real.gates)],
        cwd=REPO, env=os.environ, terminal=terminal)
    wait_for(real.gates / "first.started", proc)
    return proc, master


def test_a_concurrent_update_is_refused_by_the_backend_lock_with_exit_3(real, team):
    proc, _ = start_gated_up(real)
    try:
        assert real.locks(TOWER_STACK), "the running update holds no lock"
        with pytest.raises(CloudError) as caught:
            make_engine(team, ScriptedPrograms(tower=tower_like_program(["jax"]))).up_tower(
                tower_spec(team, "basement"))
    finally:
        (real.gates / "first.open").touch()
    assert caught.value.exit_code == 3
    assert f"stack {TOWER_STACK}: another update is in progress" in str(caught.value)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert real.locks(TOWER_STACK) == []


@pytest.mark.parametrize("how", ["terminal", "signal"])
def test_ctrl_c_cancels_the_update_cleanly_and_the_next_up_finishes_it(real, team, how):
    """Ctrl-C in a terminal reaches nomadrig and the CLI; `kill -INT` reaches nomadrig, which forwards it once.

    Either way the CLI must get exactly one SIGINT: one lets the create in flight finish and records it;
    a second would make it exit at once and leave that create pending in the state.
    """
    proc, master = start_gated_up(real, terminal=how == "terminal")
    if master is not None:
        os.write(master, b"\x03")
    else:
        os.kill(proc.pid, signal.SIGINT)
    wait_for(real.gates / "cli-cancelling", proc)
    (real.gates / "first.open").touch()
    _, err = proc.communicate(timeout=300)
    if master is not None:
        os.close(master)

    assert proc.returncode == 130, err
    assert "interrupted: the update stopped; resources already changed stay as they are." in err
    latest = real.checkpoint(TOWER_STACK)["checkpoint"]["latest"]
    names = [r["urn"].rsplit("::", 1)[-1] for r in latest["resources"]]
    assert "first" in names and "second" not in names, names
    assert not latest.get("pending_operations"), latest.get("pending_operations")
    assert real.locks(TOWER_STACK) == []

    outputs = make_engine(team, ScriptedPrograms(tower=gated_program(real.gates))).up_tower(
        tower_spec(team, "basement"))
    assert outputs == {"second": "note-second"}


# ---------------------------------------------------------------- with a cloud account

HAS_CLOUD = bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")
                 or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))
HAS_PLUGINS = any((Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi")) / "plugins").glob("resource-aws-*"))


@pytest.mark.skipif(not (HAS_CLOUD and HAS_PLUGINS),
                    reason="needs cloud credentials and the AWS provider plugin, which cannot be built from the "
                           "Go module proxy: box programs run under mocks here (README)")
def test_real_preview_of_a_fresh_team_network_plans_creates_with_the_policy_pack(real, team, monkeypatch):
    monkeypatch.setenv("PULUMI_HOME", str(Path.home() / ".pulumi"))
    engine = Engine(team, console=Console(file=io.StringIO(), width=200))
    stack, changes = engine.preview_box(box_spec(team, "ada"))
    assert stack == NETWORK_STACK
    assert changes.get("create", 0) > 0

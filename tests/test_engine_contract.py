"""The CLI double keeps its place only where it is checked: the same script through the double and the real CLI.

tests/test_engine.py runs the engine against the double (tests/fake_pulumi/bin/pulumi) for what the real
CLI cannot do here (cloud resources, Pulumi Cloud, failures on demand). This test runs one scripted session
through nomadrig's `Engine` twice, once over the double and once over the real CLI (built by
scripts/build-engine.sh), and compares the command lines the engine sent and what it made of the answers:
outputs, secrets, previews, the progress lines, `ls` and `down`. The double is told what the program
declares (its scenario); the real CLI runs the program. Any difference is the double drifting from the engine.
"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
from rich.console import Console

from nomadrig.engine import Engine
from nomadrig.names import network_stack_name, tower_stack_name
from nomadrig.spec import box_spec, tower_spec
from nomadrig.team.load import load_team
from tests.fake_pulumi import FakePulumi
from tests.fake_pulumi.real import REPO, Note, RealPulumi, ScriptedPrograms, built_engine_root

TEAM_FILE = REPO / "examples" / "team.yaml"
NOTE = "pulumi-python:dynamic/nomadrig-test:Note"

NETWORK = network_stack_name("vision-lab", "aws", "eu-west-1")
BOX = box_spec(load_team(TEAM_FILE), "ada").stack_name
TOWER = tower_stack_name("vision-lab", "basement")
# What each stack's program declares: its resources (type, name) and outputs (secret ones by name).
DECLARED: dict[str, dict[str, Any]] = {
    NETWORK: {"resources": [[NOTE, "network"]],
                                     "outputs": {"network_id": "net-0abc", "region": "eu-west-1"}, "secret": []},
    BOX: {"resources": [["nomadrig:test:Rack", "ada"], [NOTE, "ada-box"]],
                       "outputs": {"nomad": "ada", "cloud": "aws", "region": "eu-west-1", "instance_id": "i-0abc"},
                       "secret": []},
    TOWER: {"resources": [["nomadrig:test:Rack", "basement"], [NOTE, "basement-note"]],
                                  "outputs": {"team": "vision-lab", "tower": "basement", "key": "ssh-ed25519 AAAA"},
                                  "secret": ["key"]},
}


class Rack(pulumi.ComponentResource):
    """A component that registers its outputs, as nomadrig's components do (STYLE.md)."""

    def __init__(self, name: str) -> None:
        super().__init__("nomadrig:test:Rack", name, None)
        self.register_outputs({})


def declared_program(stack: str, size: str = "small"):
    """The program DECLARED describes: Notes (a Rack parent where declared) and the outputs, secrets marked."""
    want = DECLARED[stack]

    def program() -> None:
        parent = None
        for type_, name in want["resources"]:
            if type_ == "nomadrig:test:Rack":
                parent = Rack(name)
            else:
                Note(name, {"size": size}, pulumi.ResourceOptions(parent=parent))
        for key, value in want["outputs"].items():
            pulumi.export(key, pulumi.Output.secret(value) if key in want["secret"] else value)

    return program


def programs(size: str = "small") -> ScriptedPrograms:
    return ScriptedPrograms(tower=declared_program(TOWER, size), network=declared_program(NETWORK, size),
                            box=lambda _network: declared_program(BOX, size))


STEPS = ("preview before up", "up box", "up tower", "outputs", "outputs revealed", "outputs of a missing stack",
         "preview, no change", "ls", "down box", "ls after down")
CONCURRENT = {"ls", "ls after down"}  # `ls` reads stacks four at a time: its commands come in any order


def run_script(argvs: Callable[[], list[list[str]]]) -> tuple[dict[str, Any], dict[str, list[list[str]]]]:
    """The scripted session: what nomadrig parsed at each step, and the command lines each step sent."""
    team = load_team(TEAM_FILE)
    out = io.StringIO()

    def engine(size: str = "small") -> Engine:
        return Engine(team, programs=programs(size), console=Console(file=out, width=200))

    ada, basement = box_spec(team, "ada"), tower_spec(team, "basement")
    actions: dict[str, Callable[[], Any]] = {
        "preview before up": lambda: engine().preview_box(ada),
        "up box": lambda: engine().up_box(ada),
        "up tower": lambda: engine().up_tower(basement),
        "outputs": lambda: engine().outputs(TOWER),
        "outputs revealed": lambda: engine().outputs(TOWER, reveal=True),
        "outputs of a missing stack": lambda: engine().outputs("vision-lab--nobody"),
        "preview, no change": lambda: engine().preview_box(ada),
        "ls": lambda: [_status(s) for s in engine().list_stacks()],
        "down box": lambda: engine().destroy(BOX, "aws", "eu-west-1"),
        "ls after down": lambda: [_status(s) for s in engine().list_stacks()],
    }
    results: dict[str, Any] = {}
    commands: dict[str, list[list[str]]] = {}
    for step in STEPS:
        before = len(argvs())
        results[step] = actions[step]()
        sent = argvs()[before:]
        commands[step] = sorted(sent) if step in CONCURRENT else sent
    results["progress"] = _progress_lines(out.getvalue())
    return results, commands


def _status(status: Any) -> dict[str, Any]:
    """What `ls` shows, without the times (they differ between any two runs)."""
    data = status.as_dict()
    for key in ("age", "last_update"):
        data.pop(key)
    return data


def _progress_lines(text: str) -> list[str]:
    """The progress lines nomadrig printed, without the seconds each resource took."""
    return [re.sub(r"\(\d+\.\ds\)", "(Ns)", line) for line in text.splitlines()]


def normalise(argv: list[str], tmp: Path) -> list[str]:
    """A command line with what differs between any two sessions replaced: temp paths, ports, temp files."""
    text = "\0".join(argv).replace(str(tmp), "<tmp>")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"/tmp/[^\0]*", "<tempfile>", text)
    return text.split("\0")


@pytest.fixture(scope="module")
def transcripts(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The script through the double and through the real CLI, each in a fresh home and backend."""
    cli = built_engine_root() / "bin" / "pulumi"
    version = subprocess.run([str(cli), "version"], capture_output=True, text=True, check=True).stdout.strip()
    runs: dict[str, dict[str, Any]] = {}
    for which in ("double", "real"):
        tmp = tmp_path_factory.mktemp(which)
        with pytest.MonkeyPatch.context() as monkeypatch:
            if which == "double":
                # The double answers as the built CLI's version would, so the SDK sends it the same commands.
                fake = FakePulumi.install(monkeypatch, tmp, version=version.lstrip("v"))
                fake.scenario(resources={k: v["resources"] for k, v in DECLARED.items()},
                              outputs={k: v["outputs"] for k, v in DECLARED.items()},
                              secret_outputs={k: v["secret"] for k, v in DECLARED.items()})
                argvs = fake.argvs
            else:
                argvs = RealPulumi.install(monkeypatch, tmp, record=True).argvs
            monkeypatch.setenv("NOMADRIG_POLICY_PACK", str(REPO / "policypack"))
            monkeypatch.setenv("NOMADRIG_PASSPHRASE", "contract")
            results, commands = run_script(lambda tmp=tmp, argvs=argvs: [normalise(a, tmp) for a in argvs()])
        runs[which] = {"results": results, "commands": commands}
    return runs


@pytest.mark.parametrize("step", STEPS)
def test_the_double_is_sent_the_same_command_lines_as_the_real_cli(transcripts, step):
    assert transcripts["double"]["commands"][step] == transcripts["real"]["commands"][step]


@pytest.mark.parametrize("step", [*STEPS, "progress"])
def test_nomadrig_reads_the_same_result_from_the_double_as_from_the_real_cli(transcripts, step):
    assert transcripts["double"]["results"][step] == transcripts["real"]["results"][step]

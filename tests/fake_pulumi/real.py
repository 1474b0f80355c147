"""The real Pulumi CLI beside the double: where scripts/build-engine.sh put it, and programs it can run here.

No cloud provider plugin can be built on these machines (the AWS and GCP plugins replace a patched upstream
source), so the programs below declare only what the engine runs by itself: component resources,
`pulumi.Output` exports, stack references and `pulumi.dynamic` resources, whose provider is the SDK's own
``python -m pulumi.dynamic`` (started by the ``pulumi-resource-pulumi-python`` script the build installs).

The dynamic providers are classes of this module, pickled by reference: the provider process imports
``tests.fake_pulumi.real`` again, so `RealPulumi.install` puts the checkout on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic
import pytest

REPO = Path(__file__).resolve().parent.parent.parent
ENGINE_ROOT = REPO / ".cache" / "engine"
ENGINE_BIN = ENGINE_ROOT / "bin"
BUILD_HINT = "bash scripts/build-engine.sh (scripts/setup.sh --test runs it)"
PASSPHRASE = "real-engine-test-passphrase"
GATE_TIMEOUT_S = 300.0  # a gate nobody opens fails the create instead of hanging the test run
PulumiFn = Callable[[], None]


def built_engine_root() -> Path:
    """The root (``bin/pulumi`` inside) of the CLI the build made; skip only where Go is absent.

    Where Go is installed the build is part of the test setup, so a missing CLI is a failure to fix, not a
    reason to skip silently: CI must not pass with the real-engine tests quietly skipped.
    """
    from tests.harness.engine_build import EngineBuildFailed, wait_for_engine_build

    try:  # setup.sh --engine-background may still be building it: every user of the CLI waits here
        wait_for_engine_build()
    except EngineBuildFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    if (ENGINE_BIN / "pulumi").is_file():
        return ENGINE_ROOT
    if shutil.which("go") is None:
        pytest.skip("Go is not installed, so the Pulumi CLI was not built from its modules (scripts/build-engine.sh)")
    pytest.fail(f"Go is installed but the Pulumi CLI is not built in {ENGINE_BIN}: run {BUILD_HINT}")


class RealPulumi:
    """The built CLI set up for one test: file backend, passphrase and Pulumi home all under tmp_path."""

    def __init__(self, root: Path, home: Path, gates: Path, log: Path | None) -> None:
        self.root = root
        self.home = home
        self.gates = gates
        self.log = log

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, record: bool = False) -> RealPulumi:
        """Point nomadrig at the built CLI; with `record`, through a wrapper that logs each command line."""
        root = built_engine_root()
        log = None
        if record:
            root, log = _recording_root(tmp_path / "recording-pulumi")
        home = tmp_path / "nomadrig-home"
        gates = tmp_path / "gates"
        gates.mkdir(exist_ok=True)  # installing twice over one tmp_path gives the same set-up (module fixtures)
        monkeypatch.setenv("NOMADRIG_PULUMI_ROOT", str(root))
        monkeypatch.setenv("NOMADRIG_HOME", str(home))
        monkeypatch.setenv("NOMADRIG_PASSPHRASE", PASSPHRASE)
        monkeypatch.setenv("NOMADRIG_POLICY_PACK", str(REPO / "policypack"))
        monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))  # plugins, credentials: not ~/.pulumi
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(":"))
        for name in ("PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE",
                     "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK"):
            monkeypatch.delenv(name, raising=False)
        return cls(root, home, gates, log)

    # -- what the file backend holds -------------------------------------

    @property
    def backend(self) -> Path:
        return self.home / "state" / ".pulumi"

    def checkpoint(self, stack: str) -> dict[str, Any]:
        """The stack's state file exactly as the CLI wrote it."""
        return json.loads((self.backend / "stacks" / "nomadrig" / f"{stack}.json").read_text())

    def locks(self, stack: str) -> list[Path]:
        folder = self.backend / "locks" / "organization" / "nomadrig" / stack
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def argvs(self) -> list[list[str]]:
        """Each command line the wrapper saw, without the `--non-interactive` the SDK adds to all."""
        if self.log is None or not self.log.exists():
            return []
        records = [path.read_bytes() for path in sorted(self.log.glob("*.argv"))]
        return [[a.decode() for a in r.split(b"\0")[:-1] if a != b"--non-interactive"] for r in records]


def wrapper_root(folder: Path, script: str) -> Path:
    """A root whose ``bin/pulumi`` is the sh `script` around the built CLI (``$PULUMI``), plugins beside it."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "pulumi"
    wrapper.write_text(f"#!/bin/sh\nPULUMI='{ENGINE_BIN / 'pulumi'}'\n{script}")
    wrapper.chmod(0o755)
    for plugin in ENGINE_BIN.iterdir():
        if plugin.name != "pulumi":
            (bin_dir / plugin.name).symlink_to(plugin)
    return folder


def _recording_root(root: Path) -> tuple[Path, Path]:
    """The built CLI behind a wrapper that logs each argv and then execs it (signals reach the CLI itself).

    One file per call, named by its start time in nanoseconds: calls the engine runs side by side (`ls` reads
    four stacks at once) interleaved their writes in one shared file. Each argument is NUL-terminated
    (arguments may hold newlines, never NUL); the file is renamed into place whole.
    """
    log = root / "argv"
    log.mkdir(parents=True)
    script = (
        f"record='{log}'/$(date +%s%N)-$$\n"
        "printf '%s\\0' \"$@\" > \"$record.partial\" && mv \"$record.partial\" \"$record.argv\"\n"
        "exec \"$PULUMI\" \"$@\"\n"
    )
    return wrapper_root(root, script), log


# ---------------------------------------------------------------- dynamic providers


class NoteProvider(pulumi.dynamic.ResourceProvider):
    """Creates nothing outside Pulumi: its outputs are its inputs, its id comes from its `name` input."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=f"note-{props['name']}", outs=dict(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=dict(news))


class Note(pulumi.dynamic.Resource, module="nomadrig-test", name="Note"):
    """A resource with real create/update/delete through the dynamic provider, and nothing outside Pulumi."""

    def __init__(self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(NoteProvider(), name, {"name": name, **props}, opts)


class GateProvider(pulumi.dynamic.ResourceProvider):
    """A create that stays in flight until the test opens its gate, so a test acts while an update runs.

    It writes ``<gates>/<name>.started`` when the engine calls it and returns once ``<gates>/<name>.open``
    exists: a test waits on files, never on a sleep sized for an idle machine.
    """

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        gates, name = Path(props["gates"]), props["name"]
        (gates / f"{name}.started").write_text(str(os.getpid()))
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not (gates / f"{name}.open").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {name} was never opened")
            time.sleep(0.05)
        return pulumi.dynamic.CreateResult(id_=f"gate-{name}", outs=dict(props))


class Gate(pulumi.dynamic.Resource, module="nomadrig-test", name="Gate"):
    def __init__(self, name: str, gates: Path, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(GateProvider(), name, {"name": name, "gates": str(gates)}, opts)


def wait_for(path: Path, proc: Any = None, timeout: float = 120.0) -> None:
    """Wait until `path` exists; fail early when the process that should make it has ended."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"{path.name} never appeared; the process ended with {proc.returncode}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} did not appear within {timeout:.0f} s")
        time.sleep(0.05)


# ---------------------------------------------------------------- programs


class ScriptedPrograms:
    """`nomadrig.engine.stacks.Programs` from plain callables: the engine asks, the test decides."""

    def __init__(self, *, tower: PulumiFn | None = None, network: PulumiFn | None = None,
                 box: Callable[[Mapping[str, Any]], PulumiFn] | None = None,
                 data_box: Callable[[Mapping[str, Any], Any], PulumiFn] | None = None) -> None:
        self._tower, self._network, self._box, self._data_box = tower, network, box, data_box
        self.box_networks: list[dict[str, Any]] = []
        self.box_data: list[Any] = []

    def tower(self, spec: Any, run: Any = None) -> PulumiFn:
        assert self._tower is not None, "this test declared no tower program"
        return self._tower

    def network(self, spec: Any) -> PulumiFn:
        assert self._network is not None, "this test declared no network program"
        return self._network

    def box(self, spec: Any, network: Mapping[str, Any], data: Any = None) -> PulumiFn:
        """The test's box program: `data_box` gets the engine's `DataSource` too, `box` only the network."""
        self.box_networks.append(dict(network))
        self.box_data.append(data)
        if self._data_box is not None:
            return self._data_box(network, data)
        assert self._box is not None, "this test declared no box program"
        return self._box(network)


class Rack(pulumi.ComponentResource):
    """A component owning one Note: what a tower stack looks like without its provider's side effects."""

    def __init__(self, name: str, frameworks: list[str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("nomadrig:test:Rack", name, None, opts)
        self.note = Note(f"{name}-note", {"frameworks": frameworks}, pulumi.ResourceOptions(parent=self))
        self.register_outputs({"frameworks": self.note.frameworks})  # type: ignore[attr-defined]


def tower_like_program(frameworks: list[str], secret: str = "s3cret-token") -> PulumiFn:
    """Exports plain values, a computed Output, a list and a secret, as a tower stack does."""

    def program() -> None:
        rack = Rack("basement", frameworks)
        pulumi.export("team", "vision-lab")
        pulumi.export("tower", "basement")
        pulumi.export("frameworks", rack.note.frameworks)  # type: ignore[attr-defined]
        pulumi.export("note_id", rack.note.id)
        pulumi.export("summary", pulumi.Output.concat("basement runs ", rack.note.id))
        pulumi.export("tower_public_key", pulumi.Output.secret(secret))

    return program


def gated_program(gates: Path) -> PulumiFn:
    """`first` stays in flight until its gate opens; `second` waits for `first`, so a cancel stops it."""

    def program() -> None:
        first = Gate("first", gates)
        second = Note("second", {"after": first.id})
        pulumi.export("second", second.id)

    return program


def drive_gated_up() -> None:
    """Entry point of a separate nomadrig process: `up` of the tower stack running `gated_program`.

    Run as ``python -c "from tests.fake_pulumi.real import drive_gated_up; drive_gated_up()" GATES`` with
    the environment `RealPulumi.install` set. It maps errors to exit codes as the nomadrig CLI does, and
    marks ``<gates>/cli-cancelling`` when the CLI's event stream says it took the Ctrl-C, so the test opens
    the gate only once the engine is cancelling (else the update could finish before the signal lands).
    """
    from rich.console import Console

    from nomadrig.engine import Engine
    from nomadrig.engine.progress import UpdateProgress
    from nomadrig.errors import NomadrigError
    from nomadrig.spec import tower_spec
    from nomadrig.team.load import load_team

    gates = Path(sys.argv[1])
    handle = UpdateProgress.handle

    def observed(self: UpdateProgress, event: Any) -> str | None:
        stdout = getattr(event, "stdout_event", None)
        if stdout is not None and "received; cancelling" in stdout.message:
            (gates / "cli-cancelling").write_text(stdout.message)
        return handle(self, event)

    UpdateProgress.handle = observed  # type: ignore[method-assign]
    team = load_team(REPO / "examples" / "team.yaml")
    engine = Engine(team, programs=ScriptedPrograms(tower=gated_program(gates)),
                    console=Console(stderr=True, width=200, highlight=False))
    try:
        engine.up_tower(tower_spec(team, "basement"))
    except NomadrigError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(int(exc.exit_code))


class VolumeProvider(pulumi.dynamic.ResourceProvider):
    """A stand-in for a cloud volume: each create gets a new id (``vol-<random>``), as EBS or a GCE disk does.

    So a test can tell the same volume attached again from a new one made in its place.
    """

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        import uuid

        return pulumi.dynamic.CreateResult(id_=f"vol-{uuid.uuid4().hex[:17]}", outs=dict(props))


class Volume(pulumi.dynamic.Resource, module="nomadrig-test", name="Volume"):
    """A data volume with a fresh id per create; retained on delete, as the box programs declare theirs."""

    def __init__(self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(retain_on_delete=True))
        super().__init__(VolumeProvider(), name, dict(props), opts)


def box_with_data_program(network: Mapping[str, Any], data: Any) -> PulumiFn:
    """A box stack shaped like the real ones around its data: kept -> no volume declared, else a new one.

    Exports what the engine reads back: ``data_volume_id`` and ``data_source``.
    """

    def program() -> None:
        if data.kind == data.KEPT:
            volume_id: Any = data.ident
        else:
            volume_id = Volume("data", {"source": data.as_output()}).id
        box = Note("box", {"network": network["network_id"], "volume": volume_id})
        pulumi.export("instance_id", box.id)
        pulumi.export("data_volume_id", volume_id)
        pulumi.export("data_source", data.as_output())

    return program

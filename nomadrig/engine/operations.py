"""The engine: the only module that talks to the Pulumi CLI (through the Automation API).

One stack per box (``<team>--<nomad>``), one per tower (``<team>--tower--<name>``)
and one team network stack per cloud and region (``<team>--net--<cloud>--<region>``;
``nomadrig.names`` writes and parses them all),
all in one Pulumi project run from a fixed work dir, so any teammate with the
same backend sees the same stacks and locks. Programs are inline (the
``stacks`` package), so the CLI never needs a virtualenv of its own.

Every preview and up carries the CrossGuard pack (``policypack/``) configured
with the team's own policy settings and per-rule overrides (the
``--policy-pack-config`` file `policy_pack_config` builds), so the pack judges
exactly as `nomadrig plan` does; failures
become `CloudError` (exit 3) with what to do, a concurrent update is named as
such, and Ctrl-C cancels the update before exiting 130.

``pulumi.automation`` is imported inside the functions that need it: the CLI
must start fast and most commands never touch Pulumi.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console

from nomadrig import names, paths
from nomadrig.engine.interrupt import ctrl_c_as_a_flag
from nomadrig.engine.listing import TeamStacks, stack_base
from nomadrig.engine.progress import ProgressDisplay, UpdateProgress
from nomadrig.engine.retained import RetainedRecord
from nomadrig.engine.settings import (
    PROJECT_NAME,
    SECRETS_PROVIDER,
    EngineSettings,
    missing_cli_error,
    policy_pack_dir,
    pulumi_root,
)
from nomadrig.engine.stacks import Programs, PulumiFn, StackPrograms, StackStatus, TowerRun, cloud_config, empty_program
from nomadrig.errors import CloudError, NomadrigError
from nomadrig.names import box_stack_name, network_stack_name, purge_stack_name, tower_stack_name
from nomadrig.volumes import DataSource, RetainedVolume, retained_volumes

if TYPE_CHECKING:
    from pulumi import automation as auto

    from nomadrig.spec import BoxSpec, TowerSpec
    from nomadrig.team.model import Team

__all__ = ["DataSource", "Engine", "RetainedVolume", "StackStatus", "UpdateInterrupted", "cloud_config",
           "network_stack_name", "retained_volumes", "tower_stack_name"]

Say = Callable[[str], None]

SECRET_MASK = "[secret]"
POLICY_PACK_CONFIG_FILE = "policy-pack-config.json"  # in the team's work dir, rewritten before each update
CANCEL_WAIT_S = 120.0  # how long a Ctrl-C waits for the CLI to finish its in-flight operations and stop


class UpdateInterrupted(NomadrigError):
    """The user pressed Ctrl-C; the update was cancelled (or the cancel was attempted)."""

    exit_code = 130  # type: ignore[assignment]  # the shell's convention for SIGINT, not an ExitCode


def _values(outputs: Mapping[str, Any], reveal: bool = True) -> dict[str, Any]:
    """Plain output values; secrets masked unless `reveal` (programs get them, terminals do not)."""
    return {key: SECRET_MASK if not reveal and getattr(value, "secret", False) else getattr(value, "value", value)
            for key, value in outputs.items()}


def policy_pack_config(team: Team) -> dict[str, dict[str, Any]]:
    """The `--policy-pack-config` document the engine hands the pack: the team's policy, rule by rule."""
    from nomadrig.policy.pack_config import pack_config

    return pack_config(team)


# ---------------------------------------------------------------- the engine


class Engine:
    """Runs a team's stacks. One instance per command; the Pulumi CLI is located once."""

    def __init__(self, team: Team, *, programs: Programs | None = None, console: Console | None = None,
                 say: Say | None = None) -> None:
        self.team = team
        self.programs: Programs = programs or StackPrograms()
        self.console = console or Console(stderr=True, highlight=False)
        self.say: Say = say or (lambda text: self.console.print(text, markup=False, highlight=False))
        self.settings = EngineSettings.for_team(team.name, team.state.backend_url,
                                                lambda text: self.say(f"warning: {text}"))
        self._command: Any = None

    # -- plumbing -------------------------------------------------------

    def pulumi_command(self) -> auto.PulumiCommand:
        """The CLI to run, found once; a missing CLI becomes the install hint (exit 3)."""
        if self._command is None:
            from pulumi import automation as auto

            root = pulumi_root()
            try:
                self._command = auto.PulumiCommand(root=str(root) if root else None, skip_version_check=False)
            except FileNotFoundError:
                raise missing_cli_error() from None
            except auto.InvalidVersionError as exc:
                raise CloudError(f"the Pulumi CLI is too old for this SDK: {exc}\n"
                                 "  Upgrade it: https://www.pulumi.com/docs/install/") from None
        return self._command

    def _options(self, program: PulumiFn | None) -> auto.LocalWorkspaceOptions:
        from pulumi import automation as auto

        project = auto.ProjectSettings(name=PROJECT_NAME, runtime="python", main=str(self.settings.work_dir),
                                       backend=auto.ProjectBackend(url=self.settings.backend_url))
        return auto.LocalWorkspaceOptions(
            work_dir=str(self.settings.work_dir),
            program=program,
            env_vars=dict(self.settings.env),
            secrets_provider=SECRETS_PROVIDER,
            project_settings=project,
            pulumi_command=self.pulumi_command(),
        )

    def policy_packs(self) -> dict[str, list[str]]:
        """The pack and its config file for `up`/`preview`; the file is rewritten from the team file each time.

        Written atomically through a private temp file (0600, in the 0700 work dir: it holds the team's
        budgets and alert addresses), so a teammate's concurrent command never reads half a file.
        """
        import tempfile

        pack = str(policy_pack_dir())  # refuses first when the pack is missing
        path = self.settings.work_dir / POLICY_PACK_CONFIG_FILE
        fd, tmp = tempfile.mkstemp(dir=self.settings.work_dir, prefix=f".{POLICY_PACK_CONFIG_FILE}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(policy_pack_config(self.team), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return {"policy_packs": [pack], "policy_pack_configs": [str(path)]}

    def workspace(self) -> auto.LocalWorkspace:
        from pulumi import automation as auto

        return auto.LocalWorkspace(**self._options(None).__dict__)

    def open_stack(self, name: str, program: PulumiFn, config: Mapping[str, str]) -> auto.Stack:
        """Create or select the stack and set its provider config (idempotent)."""
        from pulumi import automation as auto

        self.settings.ensure_passphrase()  # creating a stack writes its encryption salt; read-only paths never get here
        with self._errors(name, "select"):
            stack = auto.create_or_select_stack(stack_name=name, project_name=PROJECT_NAME, program=program,
                                                opts=self._options(program))
            if config:
                stack.set_all_config({key: auto.ConfigValue(value=value) for key, value in config.items()})
        return stack

    def existing_stack(self, name: str) -> auto.Stack | None:
        """Select a stack that exists; None when it was never created (no CLI call creates one)."""
        from pulumi import automation as auto

        with self._errors(name, "select"):
            try:
                return auto.select_stack(stack_name=name, project_name=PROJECT_NAME, program=empty_program,
                                         opts=self._options(empty_program))
            except auto.StackNotFoundError:
                return None

    @contextlib.contextmanager
    def _errors(self, stack_name: str, action: str, progress: UpdateProgress | None = None) -> Iterator[None]:
        """Turn Automation API failures into messages a user can act on."""
        from pulumi import automation as auto

        try:
            yield
        except KeyboardInterrupt:
            raise UpdateInterrupted(f"interrupted during {action} of {stack_name}.") from None
        except auto.ConcurrentUpdateError:
            raise CloudError(
                f"stack {stack_name}: another update is in progress (a teammate, the reaper, or another "
                f"terminal is running up/down on it).\n"
                f"  Wait for it to finish and run the command again. If nothing is running (a killed run "
                f"left the lock), run `pulumi cancel --stack {stack_name}` in {self.settings.work_dir}."
            ) from None
        except FileNotFoundError as exc:
            if "pulumi" in str(exc):
                raise missing_cli_error() from None
            raise
        except auto.CommandError as exc:
            details = progress.errors if progress and progress.errors else [_stderr_tail(str(exc))]
            policy = [p for p in (progress.policy if progress else []) if p.startswith("mandatory")]
            lines = [f"stack {stack_name}: pulumi {action} failed:"]
            lines += [f"  {line}" for line in details + policy if line]
            lines.append("  Fix the cause and run the command again; the stack keeps what was already done.")
            raise CloudError("\n".join(lines)) from None

    def _run_update(self, stack: auto.Stack, action: str,
                    run: Callable[[Callable[[Any], None]], Any]) -> tuple[Any, UpdateProgress]:
        """Run one up/preview/destroy with the progress view; Ctrl-C cancels it.

        The CLI runs on a worker thread so the main thread stays free to take
        Ctrl-C at once and send `pulumi cancel` while the update still runs
        (waiting for the subprocess first would make the cancel pointless).
        """
        progress = UpdateProgress(stack.name, action)
        outcome: dict[str, Any] = {}
        with self._errors(stack.name, action, progress), ProgressDisplay(progress, self.console) as display:
            done = threading.Event()

            def work() -> None:
                try:
                    outcome["result"] = run(display.on_event)
                except BaseException as exc:  # handed to the main thread, mapped by _errors there
                    outcome["error"] = exc
                finally:
                    done.set()

            # Wait on an Event, not Thread.join: on Python 3.11 a Ctrl-C inside join() marks the
            # still-running thread as stopped, and we could no longer wait for it. The Ctrl-C is a flag
            # polled here (ctrl_c_as_a_flag), never a KeyboardInterrupt inside the Event's lock.
            with ctrl_c_as_a_flag() as interrupted:
                threading.Thread(target=work, name=f"pulumi-{action}-{stack.name}", daemon=True).start()
                while not done.wait(0.2) and not interrupted():
                    pass
                if interrupted():
                    self._cancel(stack, action, done)
            if "error" in outcome:
                raise outcome["error"]
        self.say(f"{action} {stack.name}: {progress.summary_line()}")
        return outcome["result"], progress

    def _cancel(self, stack: auto.Stack, action: str, done: threading.Event) -> NoReturn:
        """Stop the running update cleanly, wait (bounded) for the CLI to end, exit 130.

        Pulumi Cloud: ``stack.cancel()`` asks the service to cancel the update.
        Self-managed backends: the CLI stops itself on the Ctrl-C (forwarded to
        it when only nomadrig got the signal); `pulumi cancel` would only break
        the lock under a CLI still writing state, so it is not sent there.
        """
        from nomadrig.engine.interrupt import ctrl_c_reached_children, forward_interrupt, is_service_backend

        self.say(f"interrupted: stopping the {action} of {stack.name}; Pulumi first finishes the operations "
                 "in flight ... (Ctrl-C again to stop waiting)")
        if is_service_backend(self.settings.backend_url):
            try:
                stack.cancel()
                note = "the update was cancelled"
            except Exception as exc:  # the CLI may have stopped on the same Ctrl-C already
                reason = _last_line(str(exc))
                note = "the update stopped" if "in progress" in reason else \
                    f"the cancel request failed ({reason})"
        else:
            if not ctrl_c_reached_children():
                forward_interrupt()
            note = "the update stopped"
        with contextlib.suppress(KeyboardInterrupt):
            done.wait(CANCEL_WAIT_S)
        if not done.is_set():
            note = (f"the Pulumi CLI is still finishing the operations in flight and holds the lock of "
                    f"{stack.name} until it ends")
        raise UpdateInterrupted(f"interrupted: {note}; resources already changed stay as they are.\n"
                                f"  Run the same command again to finish the {action} of {stack.name}.")

    # -- box, tower and network stacks ----------------------------------

    def up_network(self, cloud: str, region: str) -> dict[str, Any]:
        """Deploy (or confirm) the team network of a cloud/region; returns its outputs for the boxes."""
        from nomadrig.spec import network_spec

        spec = network_spec(self.team, cloud, region)
        name = spec.stack_name
        stack = self.open_stack(name, self.programs.network(spec),
                                cloud_config(spec.cloud, spec.region, spec.project))
        packs = self.policy_packs()
        result, _ = self._run_update(stack, "up", lambda on_event: stack.up(
            **packs, on_event=on_event, color="never", message=f"nomadrig up {name}"))
        return _values(result.outputs)

    def up_box(self, spec: BoxSpec, data: DataSource | None = None) -> dict[str, Any]:
        """Deploy the team network of the box's region, then the box; returns the box's outputs.

        `data`: where the box's data volume comes from; by default `data_source` decides (the
        volume a `down` kept comes back). `nomadrig restore` passes a snapshot.
        """
        network = self.up_network(spec.cloud, spec.region)
        data = data or self.data_source(spec)
        stack = self.open_stack(spec.stack_name, self.programs.box(spec, network, data=data),
                                cloud_config(spec.cloud, spec.region, spec.project))
        packs = self.policy_packs()
        result, _ = self._run_update(stack, "up", lambda on_event: stack.up(
            **packs, on_event=on_event, color="never", message=f"nomadrig up {spec.nomad}"))
        return _values(result.outputs, reveal=False)

    def preview_box(self, spec: BoxSpec, data: DataSource | None = None) -> tuple[str, dict[str, int]]:
        """What `up` would change, with the policy pack's verdicts; changes nothing.

        A box program needs its team network's outputs; before the network's
        first `up` there are none, so the network stack is previewed instead
        (that is what `up` would create first). Returns the stack previewed.
        """
        network = self._network_outputs(spec.cloud, spec.region)
        if network:
            name = spec.stack_name
            program = self.programs.box(spec, network, data=data or self.data_source(spec))
        else:
            from nomadrig.spec import network_spec

            net = network_spec(self.team, spec.cloud, spec.region)
            name = net.stack_name
            self.say(f"note: the {spec.cloud}/{spec.region} team network is not deployed yet; previewing it "
                     f"(`up` creates it before the box; preview the box once it exists).")
            program = self.programs.network(net)
        stack = self.open_stack(name, program, cloud_config(spec.cloud, spec.region, spec.project))
        packs = self.policy_packs()
        result, _ = self._run_update(stack, "preview", lambda on_event: stack.preview(
            **packs, on_event=on_event, color="never"))
        return name, _change_counts(result.change_summary)

    def _network_outputs(self, cloud: str, region: str) -> dict[str, Any]:
        """The network's outputs without deploying it; empty before its first up."""
        stack = self.existing_stack(network_stack_name(self.team.name, cloud, region))
        if stack is None:
            return {}
        with self._errors(stack.name, "read outputs"):
            return _values(stack.outputs())

    def up_tower(self, spec: TowerSpec, run: TowerRun | None = None) -> dict[str, Any]:
        """Configure a tower through its stack: the `Tower` provider runs the playbook only when something changed."""
        stack = self.open_stack(spec.stack_name, self.programs.tower(spec, run=run), {})
        packs = self.policy_packs()
        result, _ = self._run_update(stack, "up", lambda on_event: stack.up(
            **packs, on_event=on_event, color="never", message=f"nomadrig up tower {spec.name}"))
        return _values(result.outputs, reveal=False)

    def preview_tower(self, spec: TowerSpec, run: TowerRun | None = None) -> tuple[str, dict[str, int]]:
        """What `up` of a tower would change (the provider's diff: roles or variables); runs no playbook."""
        stack = self.open_stack(spec.stack_name, self.programs.tower(spec, run=run), {})
        packs = self.policy_packs()
        result, _ = self._run_update(stack, "preview", lambda on_event: stack.preview(
            **packs, on_event=on_event, color="never"))
        return spec.stack_name, _change_counts(result.change_summary)

    def outputs(self, name: str, reveal: bool = False) -> dict[str, Any] | None:
        """A stack's outputs (secrets masked unless `reveal`); None when the stack does not exist."""
        stack = self.existing_stack(name)
        if stack is None:
            return None
        with self._errors(name, "read outputs"):
            return _values(stack.outputs(), reveal)

    def destroy(self, name: str, cloud: str = "", region: str = "", project: str = "") -> list[RetainedVolume]:
        """Destroy a stack's resources; the data volumes it retains are recorded and returned."""
        stack = self.existing_stack(name)
        if stack is None:
            raise CloudError(f"stack {name} does not exist in {self.settings.backend_url}: nothing to destroy.\n"
                             "  `nomadrig ls` lists the team's stacks.")
        with self._errors(name, "read outputs"):
            outputs = _values(stack.outputs())
        kept = retained_volumes(name, cloud, region, outputs, project) if cloud else []
        self._run_update(stack, "destroy", lambda on_event: stack.destroy(on_event=on_event, color="never",
                                                                           message=f"nomadrig down {name}"))
        if kept:
            self._retained_record.add(name, kept)
            self._set_stack_tag(stack, names.DATA_VOLUME_STACK_TAG, kept[0].id)
        return kept

    def remove_stack(self, name: str) -> None:
        """Remove a destroyed stack from the backend (its history with it): a tower's stack after `down`.

        Box stacks are never removed: their tags record the data volume the next box attaches.
        """
        stack = self.existing_stack(name)
        if stack is not None:
            with self._errors(name, "remove"):
                stack.workspace.remove_stack(name)

    # -- the data volume between boxes ----------------------------------

    def data_source(self, spec: BoxSpec) -> DataSource:
        """Where the next `up` of this box takes its data volume from (see `DataSource`).

        A live box keeps the source it was made with (its ``data_source``
        output; a box from before this output owns its volume: ``new``).
        Otherwise the volume the last `down` or reaper destroy kept (the box
        stack's tag, else this machine's record of an older nomadrig's
        `down`), else a new, empty volume. A snapshot is never chosen here:
        restoring one replaces what a kept volume holds, so only
        `nomadrig restore` asks for it.
        """
        stack = self.existing_stack(spec.stack_name)
        if stack is None:
            return DataSource.new()
        with self._errors(spec.stack_name, "read outputs"):
            outputs = _values(stack.outputs())
        live = DataSource.from_output(outputs.get("data_source"))
        if live is not None:
            return live
        if retained_volumes(spec.stack_name, spec.cloud, spec.region, outputs, spec.project):
            return DataSource.new()
        kept = self._tags_of(stack).get(names.DATA_VOLUME_STACK_TAG)
        if kept:
            return DataSource.kept(kept)
        recorded = self.retained(spec.stack_name)
        return DataSource.kept(recorded[-1].id) if recorded else DataSource.new()

    def last_snapshot(self, stack_name: str) -> str | None:
        """The snapshot the reaper took of this box's data volume before it destroyed the box, if any."""
        return self.stack_tags(stack_name).get(names.DATA_SNAPSHOT_STACK_TAG) or None

    def record_snapshot(self, stack_name: str, snapshot_id: str) -> None:
        """Write the reaper's snapshot into the box stack's tags, where `restore` finds it."""
        stack = self.existing_stack(stack_name)
        if stack is not None:
            self._set_stack_tag(stack, names.DATA_SNAPSHOT_STACK_TAG, snapshot_id)

    def stack_tags(self, stack_name: str) -> dict[str, str]:
        """The stack's tags as the backend holds them; empty when the stack does not exist."""
        stack = self.existing_stack(stack_name)
        return {} if stack is None else self._tags_of(stack)

    def _tags_of(self, stack: auto.Stack) -> dict[str, str]:
        with self._errors(stack.name, "read tags"):
            return {str(k): str(v) for k, v in stack.workspace.list_tags(stack.name).items()}

    def _set_stack_tag(self, stack: auto.Stack, key: str, value: str) -> None:
        with self._errors(stack.name, "tag"):
            stack.workspace.set_tag(stack.name, key, value)

    def _forget_kept_volume(self, stack_name: str, gone: set[str]) -> None:
        """After a purge: the box stack no longer names a kept volume that was deleted."""
        stack = self.existing_stack(stack_name)
        if stack is not None and self._tags_of(stack).get(names.DATA_VOLUME_STACK_TAG) in gone:
            with self._errors(stack_name, "tag"):
                stack.workspace.remove_tag(stack.name, names.DATA_VOLUME_STACK_TAG)

    # -- retained data volumes ------------------------------------------

    @property
    def _retained_record(self) -> RetainedRecord:
        return RetainedRecord(paths.retained_volumes_file(self.team.name))

    def retained(self, stack: str) -> list[RetainedVolume]:
        """Data volumes earlier `down`s of this stack kept (recorded locally at destroy time)."""
        return self._retained_record.of(stack)

    def purge(self, volumes: list[RetainedVolume], nomad: str) -> None:
        """Delete retained data volumes through Pulumi: import them into a scratch stack, destroy it.

        Going through Pulumi (not a cloud SDK) keeps this module the only one
        that changes cloud state for boxes, and uses the same credentials,
        backend and provider config as the box itself.
        """
        if not volumes:
            return
        first = volumes[0]
        name = purge_stack_name(self.team.name, nomad)
        stack = self.open_stack(name, empty_program, cloud_config(first.cloud, first.region, first.project))
        resources = [{"type": v.type, "name": f"data-{i}", "id": v.id} for i, v in enumerate(volumes)]
        with self._errors(name, "import"):
            stack.import_resources(resources=resources, protect=False, generate_code=False,
                                   message=f"nomadrig purge data of {nomad}")
        self._run_update(stack, "destroy", lambda on_event: stack.destroy(on_event=on_event, color="never"))
        with self._errors(name, "remove"):
            stack.workspace.remove_stack(name)
        gone = {v.id for v in volumes}
        self._forget_kept_volume(box_stack_name(self.team.name, nomad), gone)
        self._retained_record.forget(gone)

    # -- listing --------------------------------------------------------

    def list_stacks(self) -> list[StackStatus]:
        """Every stack of this team in the backend, with its state and what the team file says it is.

        Which stacks are the team's and what each is: `engine.listing.TeamStacks`. Stacks are
        read four at a time: each read is a few CLI calls.
        """
        from concurrent.futures import ThreadPoolExecutor

        from pulumi import automation as auto

        index = TeamStacks.of(self.team)
        ws = self.workspace()
        with self._errors(f"{index.team}-*", "list"):
            summaries = [s for s in ws.list_stacks() if index.may_belong(s.name)]

        def read(summary: Any) -> tuple[Any, dict[str, Any], Any]:
            name = stack_base(summary.name)
            with self._errors(name, "read"):
                outputs = _values(ws.stack_outputs(summary.name), reveal=False)
                last = None
                if not summary.update_in_progress and index.belongs(name, outputs):
                    history = auto.Stack.select(summary.name, ws).history(page_size=1, show_secrets=False)
                    last = history[0] if history else None
            return summary, outputs, last

        with ThreadPoolExecutor(max_workers=4) as pool:
            reads = list(pool.map(read, sorted(summaries, key=lambda s: s.name)))
        return [index.status(stack_base(summary.name), summary, outputs, last)
                for summary, outputs, last in reads if index.belongs(stack_base(summary.name), outputs)]


def _change_counts(summary: Mapping[Any, int]) -> dict[str, int]:
    """A preview's change summary keyed by plain operation names (``create``, ``same``, ``update``...)."""
    return {str(getattr(key, "value", key)): int(count) for key, count in summary.items()}


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def _stderr_tail(text: str) -> str:
    """The useful part of a CommandError: the lines after ``stderr:``, else the last line."""
    _, _, stderr = text.partition("stderr:")
    lines = [line.strip() for line in (stderr or text).splitlines() if line.strip()]
    return "\n  ".join(lines[-6:])

"""Configure a tower: render its Ansible inputs, run the playbook, report what changed.

The only module that talks to ansible-runner. A run gets a private data dir
(0700) under ``<NOMADRIG_HOME>/runs/<timestamp>-<tower>/`` (``~/.nomadrig/runs`` by default) holding the rendered
inventory (``inventory/hosts.yml``), the variables (``env/extravars``),
ansible-runner's artefacts and the run report (``report.json`` +
``summary.txt``), so a failed run can be read afterwards and a tower's
WireGuard key is on record.

Two guarantees hold for every run. Every string handed to Ansible, in the
variables and in the inventory, is marked ``!unsafe``, so text from the team
file is never evaluated as a template on the admin's machine. And the child
gets a scrubbed environment (``scrubbed_env``): cloud credentials, tokens and
the passphrase neither reach ansible-playbook nor the run dir, where
ansible-runner records the child's whole environment.

Modes: ``apply`` (playbooks/tower.yml), ``check`` (the same in Ansible's check
mode with diffs: nothing on the tower changes) and ``verify``
(playbooks/verify.yml only).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nomadrig import paths
from nomadrig.errors import BadInputError, CloudError, InputProblem
from nomadrig.team.model import Team, Tower
from nomadrig.towers.ansible_inputs import scrubbed_env, write_ansible_inputs
from nomadrig.towers.strategy import choose_strategy
from nomadrig.towers.variables import check_tower_policy, find_tower, inventory, tower_vars

if TYPE_CHECKING:
    from ansible_runner import Runner

Mode = Literal["apply", "check", "verify"]
MODES: tuple[Mode, ...] = ("apply", "check", "verify")

#: The folder that holds roles/ and playbooks/: the checkout a team forked, or the installed wheel's copy.
PROJECT_ROOT = paths.project_root()

PLAYBOOKS: dict[Mode, str] = {"apply": "tower.yml", "check": "tower.yml", "verify": "verify.yml"}

TOWER_PUBLIC_KEY_FILE = "/etc/wireguard/nomadrig-tower.pub"
#: The fact remote_access sets to the tower's public key; an apply takes the key from it, not over SSH again.
PUBLIC_KEY_FACT = "remote_access_tower_public_key"
_WG_KEY_RE = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")


# -- the run report ---------------------------------------------------------------


@dataclass
class RunReport:
    """What one run did to one tower; saved as report.json and summary.txt."""

    tower: str
    host: str
    mode: Mode
    started: str
    status: str = "unknown"
    rc: int | None = None
    duration_s: float = 0.0
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    changed_tasks: list[str] = field(default_factory=list)
    failed_tasks: list[dict[str, str]] = field(default_factory=list)
    role_seconds: dict[str, float] = field(default_factory=dict)
    #: What the roles said for the operator to read (their "WARNING:" and "NOTE:" messages).
    notes: list[str] = field(default_factory=list)
    tower_public_key: str | None = None
    run_dir: str = ""
    #: The Ansible strategy that ran the playbook (nomadrig.towers.strategy says why).
    strategy: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "successful" and self.failed == 0 and self.unreachable == 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunReport:
        return cls(**json.loads(text))

    def summary(self) -> str:
        """The human summary: outcome, counts, time per role, what changed, what failed."""
        verdict = "OK" if self.succeeded else "FAILED"
        lines = [
            f"tower {self.tower} ({self.host}), {self.mode}: {verdict} in {self.duration_s:.0f} s",
            f"  tasks ok {self.ok}, changed {self.changed}, failed {self.failed}, "
            f"unreachable {self.unreachable}, skipped {self.skipped}"
            + (f"; strategy {self.strategy}" if self.strategy else ""),
        ]
        if self.role_seconds:
            lines.append("  time per role: " + ", ".join(f"{r} {s:.0f} s" for r, s in self.role_seconds.items()))
        if self.changed_tasks:
            lines.append(f"  changed ({len(self.changed_tasks)}):")
            lines += [f"    - {name}" for name in self.changed_tasks]
        for failure in self.failed_tasks:
            lines.append(f"  FAILED: {failure['task']}: {failure['msg']}")
        lines += [f"  {note}" for note in self.notes]
        if self.tower_public_key:
            lines.append(f"  WireGuard public key: {self.tower_public_key}")
        lines.append(f"  run dir: {self.run_dir}")
        return "\n".join(lines)


ProgressCallback = Callable[[str, str, int, int | None], None]
#: A role's debug message that starts with one of these is meant for the operator: it goes in the report.
NOTE_PREFIXES = ("WARNING:", "NOTE:")


def _failure_message(result: Mapping[str, Any]) -> str:
    """The most useful text of a failed task; for a loop, the failed items' own messages."""
    items = [r for r in result.get("results", []) or [] if isinstance(r, Mapping) and r.get("failed")]
    if items:
        return "; ".join(f"{r.get('item', '?')}: {_failure_message(r)}" for r in items)
    return str(result.get("msg") or result.get("stderr") or result.get("reason") or "see the run dir")


class _EventCollector:
    """Turns ansible-runner's event stream into the report and live progress."""

    def __init__(self, report: RunReport, progress: ProgressCallback | None, total: int | None) -> None:
        self.report = report
        self.progress = progress
        self.total = total
        self.done = 0
        self._role: str | None = None
        self._role_started = 0.0

    def _close_role(self) -> None:
        if self._role is not None:
            spent = time.monotonic() - self._role_started
            self.report.role_seconds[self._role] = round(self.report.role_seconds.get(self._role, 0.0) + spent, 1)

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {}) or {}
        role = data.get("role") or "(play)"
        task = data.get("task", "")
        label = f"{role} : {task}" if data.get("role") else task
        if kind == "playbook_on_task_start":
            if role != self._role:
                self._close_role()
                self._role, self._role_started = role, time.monotonic()
            if self.progress:
                self.progress(self.report.tower, label, self.done, self.total)
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"):
            self.done += 1
            result = data.get("res", {}) or {}
            if kind == "runner_on_ok" and result.get("changed"):
                self.report.changed_tasks.append(label)
            message = result.get("msg")
            noted = isinstance(message, str) and message.startswith(NOTE_PREFIXES)
            if kind == "runner_on_ok" and noted and message not in self.report.notes:
                self.report.notes.append(message)
            announced = (result.get("ansible_facts") or {}).get(PUBLIC_KEY_FACT) if kind == "runner_on_ok" else None
            if isinstance(announced, str) and _WG_KEY_RE.match(announced):
                self.report.tower_public_key = announced
            if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                message = _failure_message(result)
                self.report.failed_tasks.append({"task": label, "msg": str(message)[:2000]})
        elif kind == "playbook_on_stats":
            self._close_role()
            self._role = None
            host = self.report.tower

            def count(key: str) -> int:
                return int((data.get(key) or {}).get(host, 0))

            self.report.ok, self.report.changed, self.report.failed = count("ok"), count("changed"), count("failures")
            self.report.unreachable, self.report.skipped = count("dark"), count("skipped")
        return True  # keep ansible-runner's own artefacts too


# -- running ------------------------------------------------------------------------


def _runner_env(project_root: Path, *, strict_host_keys: bool = True) -> dict[str, str]:
    """The playbook's settings. ansible-playbook sits beside this Python, which a user who runs
    `.venv/bin/nomadrig` without activating the venv does not have on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", os.defpath)
    return {
        "PATH": path if venv_bin in path.split(os.pathsep) else os.pathsep.join([venv_bin, path]),
        "ANSIBLE_ROLES_PATH": str(project_root / "roles"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        # ansible-runner turns host key checking off unless told otherwise.
        "ANSIBLE_HOST_KEY_CHECKING": "True" if strict_host_keys else "False",
    }


def _run_ansible(private_dir: Path, project_root: Path, *, strict_host_keys: bool,
                 strategy_env: Mapping[str, str] | None = None, **kwargs: Any) -> Runner:
    """Run ansible-runner with a scrubbed environment; return its Runner (status, rc, events).

    ``ansible_runner.run`` is ``init_runner`` then ``Runner.run``; between the
    two the child's environment is final but unused, so it is filtered there,
    before anything is spawned or recorded.
    """
    from ansible_runner.interface import init_runner

    ours = {**_runner_env(project_root, strict_host_keys=strict_host_keys), **(strategy_env or {})}
    runner = init_runner(private_data_dir=str(private_dir), envvars=dict(ours), quiet=True, **kwargs)
    runner.config.env = scrubbed_env(runner.config.env, os.environ, ours)
    runner.run()
    return runner


@dataclass(frozen=True)
class RunOptions:
    """How to run: which key, where to keep runs, and test-only relaxations."""

    ssh_key_file: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: Move the GPU stack (driver, toolkit, container toolkit) to the newest build of what is installed.
    upgrade: bool = False
    runs_dir: Path = field(default_factory=paths.runs_dir)  # <NOMADRIG_HOME>/runs, read when the options are made
    project_root: Path = PROJECT_ROOT
    #: Only for throwaway test hosts whose host key changes every boot.
    strict_host_keys: bool = True
    progress: ProgressCallback | None = None
    fetch_public_key: bool = True
    #: Another playbook of playbooks/ for the mode, e.g. ``access.yml`` (accounts, sudo, SSH, firewall only).
    playbook: str | None = None
    #: Asked during the run; True stops ansible-playbook (status "canceled"). `tower --all` runs towers in
    #: threads, where ansible-runner cannot install its own Ctrl-C handler.
    cancel: Callable[[], bool] | None = None


def _playbook(mode: Mode, options: RunOptions) -> Path:
    """The playbook file a run uses: the mode's, or the one the options name (a file of playbooks/)."""
    name = options.playbook or PLAYBOOKS[mode]
    folder = options.project_root / "playbooks"
    known = sorted(p.name for p in folder.glob("*.yml"))
    if name not in known:
        raise BadInputError(
            "arguments",
            [InputProblem("playbook", f"{name!r} is not a playbook in {folder}.", f"Use one of: {', '.join(known)}.")],
        )
    return folder / name


def _new_run_dir(runs_dir: Path, tower: Tower) -> Path:
    root = runs_dir.expanduser()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    run_dir = root / f"{stamp}-{tower.name}"
    run_dir.mkdir(mode=0o700)
    os.chmod(run_dir, 0o700)  # mkdir's mode is masked by the umask
    return run_dir


def run(team: Team, tower_name: str, mode: Mode = "apply", options: RunOptions | None = None) -> RunReport:
    """Run one mode against one tower and return (and save) its report.

    Raises BadInputError for a bad team file or overrides (nothing ran),
    PolicyRefused when an apply or check breaks a mandatory tower rule (nothing ran) and
    CloudError when Ansible could not be started at all; a run in which tasks
    failed returns a report with ``succeeded`` false.
    """
    if mode not in MODES:
        raise BadInputError("arguments", [InputProblem("mode", f"{mode!r} is not a mode.", f"Use one of {MODES}.")])
    options = options or RunOptions()
    tower = find_tower(team, tower_name)
    if mode in ("apply", "check"):
        # The tower rules `plan` runs: a tower they reject is not touched, and its dry run says so too.
        check_tower_policy(team, tower)
    variables = tower_vars(team, tower, overrides=options.overrides, upgrade=options.upgrade)
    if not (options.project_root / "playbooks").is_dir():
        raise CloudError(f"{options.project_root / 'playbooks'} does not exist: no tower playbooks to run.\n"
                         "  Reinstall nomadrig (its wheel ships roles/ and playbooks/), or give a project root "
                         "that holds them.")
    playbook = _playbook(mode, options)
    run_dir = _new_run_dir(options.runs_dir, tower)
    report = RunReport(
        tower=tower.name,
        host=tower.address,
        mode=mode,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        run_dir=str(run_dir),
    )
    hosts = inventory(tower, ssh_key_file=options.ssh_key_file, strict_host_keys=options.strict_host_keys)
    inventory_file = write_ansible_inputs(run_dir, variables, hosts)
    report.strategy, strategy_env = choose_strategy(variables, os.environ)
    collector = _EventCollector(report, options.progress, total=None)
    started = time.monotonic()
    for attempt in (1, 2):
        try:
            result = _run_ansible(
                run_dir,
                options.project_root,
                strict_host_keys=options.strict_host_keys,
                strategy_env=strategy_env,
                playbook=str(playbook),
                inventory=str(inventory_file),
                cmdline="--check --diff" if mode == "check" else None,
                event_handler=collector,
                cancel_callback=options.cancel,
            )
        except Exception as exc:  # ansible-runner raises plain exceptions for a broken setup
            raise CloudError(f"ansible-runner could not start: {exc}. Its files are in {run_dir}.") from exc
        if attempt == 2 or not _ended_before_it_began(result, options):
            break
        # Seen 2 times in ~40 runs under the Pulumi engine's dynamic provider, cause not found: the new
        # ansible-playbook ends on a signal before printing anything. It ran nothing, so a second start is safe.
        report.notes.append("WARNING: ansible-playbook ended on a signal before it printed anything "
                            "(no task ran); it was started once more.")
    report.duration_s = round(time.monotonic() - started, 1)
    report.status, report.rc = result.status, result.rc
    if report.status != "successful" and not report.failed_tasks and not report.unreachable:
        stdout = (run_dir / "artifacts").glob("*/stdout")
        tail = next((p.read_text(errors="replace")[-2000:] for p in stdout), "")
        # ansible-runner leaves rc None when the process ended on a signal (pexpect's exitstatus is None then).
        ended = f"rc {result.rc}" if result.rc is not None else "killed by a signal, no exit status"
        report.failed_tasks.append({"task": "(ansible-playbook)", "msg": f"{ended}: {tail or '(no output)'}"})
    if any(refusal in failure["msg"] for failure in report.failed_tasks for refusal in _HOST_KEY_REFUSALS):
        report.notes.append(_unknown_host_key_note(tower))
    if mode == "apply" and report.succeeded and options.fetch_public_key and not report.tower_public_key:
        # remote_access announces the key as a fact (the collector keeps it); read the file only when it did not.
        try:
            report.tower_public_key = read_tower_public_key(team, tower.name, options)
        except CloudError as exc:
            report.notes.append(f"WARNING: {exc}")
    (run_dir / "report.json").write_text(report.to_json())
    (run_dir / "summary.txt").write_text(report.summary() + "\n")
    return report


def run_in_child(team: Team | Mapping[str, Any], tower_name: str, mode: Mode, options: RunOptions) -> RunReport:
    """`run` in a fresh Python process (nomadrig.towers.child says why); its errors come back as CloudError.

    For callers inside a gRPC server (the `Tower` dynamic provider, which passes the team as its JSON,
    validated here first). `progress` and `cancel` stay behind.
    """
    import subprocess
    import tempfile

    team = team if isinstance(team, Team) else Team.model_validate(team)
    request = {
        "team": team.model_dump(mode="json"), "tower": tower_name, "mode": mode,
        "ssh_key_file": str(options.ssh_key_file) if options.ssh_key_file else None,
        "overrides": dict(options.overrides), "upgrade": options.upgrade,
        "runs_dir": str(options.runs_dir),
        "project_root": str(options.project_root), "strict_host_keys": options.strict_host_keys,
        "fetch_public_key": options.fetch_public_key,
    }
    with tempfile.TemporaryDirectory(prefix="nomadrig-tower-run-") as private:
        request_file, report_file = Path(private) / "request.json", Path(private) / "report.json"
        request_file.write_text(json.dumps(request))
        done = subprocess.run([sys.executable, "-m", "nomadrig.towers.child", str(request_file), str(report_file)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if not report_file.exists():
            raise CloudError(f"the tower run for {tower_name} ended (exit {done.returncode}) without a report:\n"
                             f"{done.stderr[-3000:]}")
        return RunReport.from_json(report_file.read_text())


def _ended_before_it_began(result: Runner, options: RunOptions) -> bool:
    """The playbook process died on a signal (rc None) before its first event, and nobody cancelled it."""
    cancelled = options.cancel is not None and options.cancel()
    return result.rc is None and result.status == "failed" and not cancelled and next(iter(result.events), None) is None


#: How a refused host key reads: OpenSSH's words under Ansible's own strategy, Mitogen's under its strategy.
_HOST_KEY_REFUSALS = ("Host key verification failed", "SSH reported an unrecognized or mismatching host key")


def _unknown_host_key_note(tower: Tower) -> str:
    """What to do when ssh does not know the tower's host key: nomadrig checks host keys and never trusts blindly."""
    return (
        f"NOTE: ssh does not know {tower.address}'s host key. Connect once with "
        f"`ssh -p {tower.ssh_port} {tower.ssh_user}@{tower.address}`, compare the fingerprint with the one the "
        "tower shows (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console), accept it, run again."
    )


def read_tower_public_key(team: Team, tower_name: str, options: RunOptions | None = None) -> str | None:
    """Read the tower's WireGuard public key over SSH (Ansible's slurp, with sudo).

    Returns None when the file is not there yet (remote_access has not run); any other failure (unreachable,
    sudo refused, a file that holds something else) raises CloudError with Ansible's reason, as a silent None
    would send the user to the wrong fix.
    """
    import base64
    import tempfile

    options = options or RunOptions()
    tower = find_tower(team, tower_name)
    hosts = inventory(tower, ssh_key_file=options.ssh_key_file, strict_host_keys=options.strict_host_keys)
    with tempfile.TemporaryDirectory(prefix="nomadrig-slurp-") as private:
        inventory_file = write_ansible_inputs(Path(private), None, hosts)
        result = _run_ansible(
            Path(private),
            options.project_root,
            strict_host_keys=options.strict_host_keys,
            host_pattern="towers",
            module="ansible.builtin.slurp",
            module_args=f"src={TOWER_PUBLIC_KEY_FILE}",
            inventory=str(inventory_file),
            cmdline="--become",
        )
        for event in result.events:
            kind, res = event.get("event"), (event.get("event_data") or {}).get("res") or {}
            if kind == "runner_on_ok":
                key = base64.b64decode(res.get("content", "")).decode(errors="replace").strip()
                if not _WG_KEY_RE.match(key):
                    raise CloudError(
                        f"{TOWER_PUBLIC_KEY_FILE} on tower {tower_name} does not hold a WireGuard public key.\n"
                        f"  Run `nomadrig tower apply {tower_name}`: remote_access writes it again."
                    )
                return key
            if kind == "runner_on_failed" and "not found" in _failure_message(res).lower():
                return None
            if kind in ("runner_on_failed", "runner_on_unreachable"):
                raise CloudError(
                    f"could not read tower {tower_name}'s WireGuard public key ({TOWER_PUBLIC_KEY_FILE}) over SSH: "
                    f"{_failure_message(res)}"
                )
    raise CloudError(
        f"could not read tower {tower_name}'s WireGuard public key: ansible ended {result.status} (rc {result.rc}) "
        "without a result for the tower."
    )


def latest_report(tower_name: str, runs_dir: Path | None = None, *, with_key: bool = False) -> RunReport | None:
    """The newest saved report for a tower (optionally: the newest that has its WireGuard key).

    ``runs_dir`` defaults to ``<NOMADRIG_HOME>/runs``, where runs keep their reports.
    """
    root = (runs_dir or paths.runs_dir()).expanduser()
    if not root.is_dir():
        return None
    for path in sorted(root.glob(f"*-{tower_name}/report.json"), reverse=True):
        report = RunReport.from_json(path.read_text())
        if report.tower == tower_name and (not with_key or report.tower_public_key):
            return report
    return None



"""`nomadrig tower`: configure, check and verify on-prem towers; print WireGuard peers.

Thin: argument parsing and printing only. The work is in nomadrig.tower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .cli_common import JsonOption, TeamFileOption, console, emit_json, handle_errors, literal, load_team_file
from .errors import BadInputError, ExitCode, InputProblem

tower_app = typer.Typer(help="On-prem GPU towers: configure over SSH with Ansible.", no_args_is_help=True)

SshKeyOption = typer.Option(None, "--ssh-key", "-i", help="Private key for SSH (default: your SSH agent/config).")
VarOption = typer.Option(
    None, "--var", "-e", help="Override a role variable, KEY=VALUE (VALUE is YAML), e.g. -e agent_mode=shutdown."
)
RunsDirOption = typer.Option(Path("~/.nomadrig/runs"), "--runs-dir", help="Where run reports are kept.")


def register(app: typer.Typer) -> None:
    """Mount `tower` on the main CLI (called by nomadrig.cli)."""
    app.add_typer(tower_app, name="tower")


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE pairs to a dict, each VALUE read as YAML (so lists and booleans work)."""
    import yaml

    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInputError(
                "arguments", [InputProblem("--var", f"{pair!r} is not KEY=VALUE.", "Write e.g. -e agent_mode=report.")]
            )
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise BadInputError(
                "arguments", [InputProblem(f"--var {key}", f"value is not YAML: {exc}.", "Quote it.")]
            ) from None
    return overrides


def _run(
    mode: str,
    tower: str,
    team_file: Path | None,
    ssh_key: Path | None,
    var: list[str] | None,
    runs_dir: Path,
    json_out: bool,
) -> None:
    from rich.status import Status

    from . import tower as towers

    team = load_team_file(team_file)
    status = Status(f"{literal(tower)}: starting ansible-playbook", console=console)

    def progress(host: str, task: str, done: int, total: int | None) -> None:
        of = f"/{total}" if total else ""
        status.update(literal(f"{host}: [{done}{of} tasks done] {task}"))

    options = towers.RunOptions(
        ssh_key_file=ssh_key,
        overrides=parse_overrides(var),
        runs_dir=runs_dir,
        progress=None if json_out else progress,
    )
    if json_out:
        report = towers.run(team, tower, mode, options)  # type: ignore[arg-type]
        emit_json(report.__dict__)
    else:
        with status:
            report = towers.run(team, tower, mode, options)  # type: ignore[arg-type]
        console.print(report.summary(), markup=False)
    if not report.succeeded:
        raise typer.Exit(1)


@tower_app.command("apply")
@handle_errors
def apply(
    tower: str = typer.Argument(..., help="Tower name from the team file."),
    team_file: Path = TeamFileOption,
    ssh_key: Path = SshKeyOption,
    var: list[str] = VarOption,
    runs_dir: Path = RunsDirOption,
    json_out: bool = JsonOption,
) -> None:
    """Configure the tower (playbooks/tower.yml). Exit 1 when a task fails."""
    _run("apply", tower, team_file, ssh_key, var, runs_dir, json_out)


@tower_app.command("check")
@handle_errors
def check(
    tower: str = typer.Argument(..., help="Tower name from the team file."),
    team_file: Path = TeamFileOption,
    ssh_key: Path = SshKeyOption,
    var: list[str] = VarOption,
    runs_dir: Path = RunsDirOption,
    json_out: bool = JsonOption,
) -> None:
    """Show what apply would change (Ansible check mode with diffs); the tower is not modified."""
    _run("check", tower, team_file, ssh_key, var, runs_dir, json_out)


@tower_app.command("verify")
@handle_errors
def verify(
    tower: str = typer.Argument(..., help="Tower name from the team file."),
    team_file: Path = TeamFileOption,
    ssh_key: Path = SshKeyOption,
    var: list[str] = VarOption,
    runs_dir: Path = RunsDirOption,
    json_out: bool = JsonOption,
) -> None:
    """Check the driver, CUDA and frameworks work (playbooks/verify.yml)."""
    _run("verify", tower, team_file, ssh_key, var, runs_dir, json_out)


@tower_app.command("peers")
@handle_errors
def peers(
    tower: str = typer.Argument(..., help="Tower name from the team file."),
    team_file: Path = TeamFileOption,
    ssh_key: Path = SshKeyOption,
    runs_dir: Path = RunsDirOption,
    offline: bool = typer.Option(False, "--offline", help="Use the key in the last run report; no SSH."),
) -> None:
    """Print each nomad's WireGuard client config for the tower."""
    from . import tower as towers

    team = load_team_file(team_file)
    found = towers.find_tower(team, tower)
    key = None
    if not offline:
        key = towers.read_tower_public_key(team, tower, towers.RunOptions(ssh_key_file=ssh_key))
    if key is None:
        last = towers.latest_report(tower, runs_dir, with_key=True)
        key = last.tower_public_key if last else None
    if key is None:
        console.print(
            f"error: no WireGuard public key for tower {tower}: not readable at {towers.TOWER_PUBLIC_KEY_FILE} "
            f"and in no run report under {runs_dir}.\n  Run `nomadrig tower apply {tower}` first.",
            markup=False,
        )
        raise typer.Exit(int(ExitCode.CLOUD_FAILURE))
    for config in towers.peer_configs(team, found, key).values():
        console.print(config, markup=False)

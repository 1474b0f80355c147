"""Box and tower stack commands: up, preview, down, ls, outputs, ssh-config.

Every command reads the team file, resolves what the user named (a nomad's
box or a tower), runs the policy where something would be created, and hands
the rest to `nomadrig.engine`. Pulumi and the stacks are imported inside the
commands so `nomadrig --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .cli_common import (
    DataTable,
    JsonOption,
    TeamFileOption,
    console,
    emit_json,
    err_console,
    handle_errors,
    load_team_file,
)
from .errors import BadInputError, CloudError, ExitCode, InputProblem

if TYPE_CHECKING:
    from .config import Team
    from .engine import Engine
    from .policy import Verdict
    from .spec import BoxSpec

YesOption = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")


def register(app: typer.Typer) -> None:
    app.command(name="up")(handle_errors(up))
    app.command(name="preview")(handle_errors(preview))
    app.command(name="down")(handle_errors(down))
    app.command(name="ls")(handle_errors(ls))
    app.command(name="outputs")(handle_errors(outputs))
    app.command(name="ssh-config")(handle_errors(ssh_config))


# ---------------------------------------------------------------- helpers


def _engine(team: Team) -> Engine:
    from .engine import Engine

    return Engine(team, console=err_console)


def _resolve(team: Team, name: str) -> tuple[str, str]:
    """("box", nomad) or ("tower", tower) for a name from the command line, or a located error."""
    if any(n.name == name for n in team.nomads):
        return "box", name
    if any(t.name == name for t in team.towers):
        return "tower", name
    known = ", ".join([n.name for n in team.nomads] + [f"{t.name} (tower)" for t in team.towers]) or "none"
    raise BadInputError("command line", [InputProblem("NAME", f"{name!r} is neither a nomad nor a tower of team "
                                                              f"{team.team}.", f"Use one of: {known}.")])


def _print_verdicts(verdicts: list[Verdict]) -> None:
    for v in verdicts:
        err_console.print(f"{v.severity.value} {v.rule_id} ({v.subject}): {v.message}\n  fix: {v.fix}",
                          markup=False, highlight=False)


def _box_verdicts(team: Team, spec: BoxSpec) -> list[Verdict]:
    """Spec rules for this box plus the team rules (budget projection over every declared box)."""
    from .cost import fixed_monthly_usd
    from .policy import PolicyContext, TeamPlan, check_box, check_team
    from .spec import box_specs

    ctx = PolicyContext.from_team(team)
    specs = box_specs(team)
    fixed = sum(fixed_monthly_usd(specs, team.policy.allow_public_ip).values())
    return check_box(spec, ctx) + check_team(TeamPlan(team.team, tuple(specs), fixed), ctx)


def _refuse_on_mandatory(verdicts: list[Verdict], what: str) -> None:
    from .policy import mandatory

    _print_verdicts(verdicts)
    blocking = mandatory(verdicts)
    if blocking:
        err_console.print(f"refused: {len(blocking)} mandatory policy violation(s); {what} was not started.",
                          markup=False)
        raise typer.Exit(int(ExitCode.POLICY_VIOLATION))


def _print_outputs(values: dict[str, Any]) -> None:
    for key, value in sorted(values.items()):
        console.print(f"  {key} = {value}", markup=False, highlight=False)


# ---------------------------------------------------------------- commands


def up(name: str = typer.Argument(..., help="A nomad (their box) or a tower."),
       team_file: Path = TeamFileOption, json_out: bool = JsonOption) -> None:
    """Create or update a box (its team network first) or a tower stack; the policy runs first."""
    from .spec import box_spec, tower_spec

    team = load_team_file(team_file)
    kind, subject = _resolve(team, name)
    if kind == "box":
        spec = box_spec(team, subject)
        _refuse_on_mandatory(_box_verdicts(team, spec), f"up {subject}")
        values = _engine(team).up_box(spec)
        stack = spec.stack_name
    else:
        from .policy import PolicyContext, check_tower

        tspec = tower_spec(team, subject)
        _refuse_on_mandatory(check_tower(tspec, PolicyContext.from_team(team)), f"up {subject}")
        values = _engine(team).up_tower(tspec)
        stack = tspec.stack_name
    if json_out:
        emit_json({"stack": stack, "kind": kind, "outputs": values})
        return
    console.print(f"{stack} is up:", markup=False)
    _print_outputs(values)
    if kind == "box":
        price = f"${spec.hourly_usd:.2f}/h" if spec.hourly_usd is not None else "an unknown price per hour"
        console.print(f"It costs {price} while running; its idle agent stops it after {spec.idle_minutes} idle "
                      f"minutes.\nConnect: `nomadrig ssh-config --write`, then `ssh {stack}`.", markup=False)


def preview(name: str = typer.Argument(..., help="A nomad: preview their box."),
            team_file: Path = TeamFileOption, json_out: bool = JsonOption) -> None:
    """Show what `up` would change, with policy verdicts (exit 1 on a mandatory one); changes nothing."""
    from .policy import mandatory
    from .spec import box_spec

    team = load_team_file(team_file)
    kind, subject = _resolve(team, name)
    if kind != "box":
        raise BadInputError("command line", [InputProblem("NAME", f"{name!r} is a tower; preview takes a nomad.",
                                                          f"Run `nomadrig up {name}` for the tower stack.")])
    spec = box_spec(team, subject)
    verdicts = _box_verdicts(team, spec)
    _print_verdicts(verdicts)
    stack, changes = _engine(team).preview_box(spec)
    if json_out:
        emit_json({"stack": stack, "changes": changes, "verdicts": [v.as_dict() for v in verdicts]})
    else:
        summary = ", ".join(f"{n} to {op}" for op, n in sorted(changes.items()) if n) or "no changes"
        console.print(f"{stack}: {summary}", markup=False)
    if mandatory(verdicts):
        raise typer.Exit(int(ExitCode.POLICY_VIOLATION))


def down(name: str = typer.Argument(..., help="A nomad (their box) or a tower."),
         purge_data: bool = typer.Option(False, "--purge-data",
                                         help="Also delete the box's retained data volume (asks first)."),
         yes: bool = YesOption, team_file: Path = TeamFileOption) -> None:
    """Destroy a box stack; its data volume is kept unless --purge-data."""
    team = load_team_file(team_file)
    kind, subject = _resolve(team, name)
    engine = _engine(team)
    if kind == "tower":
        from .spec import tower_spec

        engine.destroy(tower_spec(team, subject).stack_name)
        console.print(f"tower stack of {subject} destroyed.", markup=False)
        return
    from .engine import retained_volumes
    from .spec import box_spec

    spec = box_spec(team, subject)
    current = engine.outputs(spec.stack_name)
    recorded = engine.retained(spec.stack_name)
    if current is None and not (purge_data and recorded):
        raise CloudError(f"{spec.stack_name} does not exist: nothing to destroy.\n"
                         "  `nomadrig ls` lists the team's stacks.")
    volumes = retained_volumes(spec.stack_name, spec.cloud, spec.region, current or {}, spec.project)
    volumes += [v for v in recorded if v.id not in {x.id for x in volumes}]
    if purge_data:
        _confirm_purge(spec, [v.id for v in volumes], yes)
    kept = []
    if current is not None:
        kept = engine.destroy(spec.stack_name, spec.cloud, spec.region, spec.project)
        console.print(f"{spec.stack_name} destroyed.", markup=False)
    if purge_data and volumes:
        engine.purge(volumes, spec.nomad)
        console.print(f"data of {spec.nomad} deleted: {', '.join(v.id for v in volumes)}", markup=False)
    elif purge_data:
        console.print(f"no retained data volume of {spec.nomad} is known; nothing else to delete.", markup=False)
    for volume in kept if not purge_data else []:
        console.print(f"kept the data volume {volume.id} ({spec.data_disk_gb} GB): the next `nomadrig up "
                      f"{spec.nomad}` does not reattach it by itself, and it is billed until deleted "
                      f"(`nomadrig down {spec.nomad} --purge-data`).", markup=False)


def _confirm_purge(spec: BoxSpec, volume_ids: list[str], yes: bool) -> None:
    what = ", ".join(volume_ids) or "(none recorded yet)"
    err_console.print(
        f"--purge-data deletes the data volume of {spec.nomad} ({what}, {spec.data_disk_gb} GB) after the box.\n"
        "  Everything on it is lost for good: datasets, checkpoints and notebooks under the data mount.\n"
        "  No snapshot is taken (the reaper's snapshots, if any, are not touched).", markup=False)
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadInputError("command line", [InputProblem("--purge-data", "needs confirmation, and there is no "
                                                          "terminal to ask on.",
                                                          "Add --yes once you are sure the data may go.")])
    if not typer.confirm(f"Delete the data of {spec.nomad}?", default=False):
        err_console.print("nothing was destroyed.", markup=False)
        raise typer.Exit(int(ExitCode.OK))


def ls(team_file: Path = TeamFileOption, json_out: bool = JsonOption) -> None:
    """List the team's stacks (boxes, towers, networks): state, cloud, region, type, $/h, age."""
    team = load_team_file(team_file)
    statuses = _engine(team).list_stacks()
    present = {s.name for s in statuses}
    missing = [n.name for n in team.nomads if f"{team.team}-{n.name}" not in present]
    if json_out:
        emit_json({"team": team.team, "stacks": [s.as_dict() for s in statuses], "not_created": missing})
        return
    table = DataTable(title=f"team {team.team}: stacks", title_justify="left")
    for col in ("stack", "kind", "state", "cloud", "region", "type", "$/h", "age"):
        table.add_column(col, justify="right" if col in ("$/h", "age") else "left")
    for s in statuses:
        price = f"{s.hourly_usd:.2f}" if s.hourly_usd is not None else ""
        table.add_row(s.name, s.kind, s.state, s.cloud, s.region, s.instance_type, price, s.age())
    console.print(table)
    if missing:
        console.print(f"not created yet: {', '.join(missing)} (`nomadrig up NOMAD`)", markup=False)


def outputs(name: str = typer.Argument(..., help="A nomad, a tower, or a stack name."),
            team_file: Path = TeamFileOption, json_out: bool = JsonOption) -> None:
    """Print a stack's outputs (instance id, data volume, ...)."""
    from .engine import tower_stack_name

    team = load_team_file(team_file)
    if any(n.name == name for n in team.nomads):
        stack = f"{team.team}-{name}"
    elif any(t.name == name for t in team.towers):
        stack = tower_stack_name(team.team, name)
    else:
        stack = name
    values = _engine(team).outputs(stack)
    if values is None:
        raise CloudError(f"stack {stack} does not exist (nothing deployed under that name).\n"
                         "  `nomadrig ls` lists the team's stacks; `nomadrig up NOMAD` creates a box.")
    if json_out:
        emit_json({"stack": stack, "outputs": values})
    else:
        console.print(f"{stack}:", markup=False)
        _print_outputs(values)


def ssh_config(write: bool = typer.Option(False, "--write", help="Write the block into ~/.ssh/config."),
               team_file: Path = TeamFileOption, json_out: bool = JsonOption) -> None:
    """Print (or --write) the ssh Host entries of the team's boxes: SSM on AWS, IAP on GCP.

    Every stack output is checked against the cloud's real shapes first: one bad value refuses the whole
    block (exit 3) and ~/.ssh/config is left byte for byte as it was.
    """
    from .spec import box_specs
    from .sshconfig import box_accesses, default_config_path, render_block, write_block

    team = load_team_file(team_file)
    specs = box_specs(team)
    engine = _engine(team)
    accesses = box_accesses(specs, {s.stack_name: engine.outputs(s.stack_name) for s in specs})
    block = render_block(team.team, accesses)
    result = write_block(team.team, block) if write else None
    for access in accesses if result else []:  # printed blocks carry the notes as comments already
        if access.note:
            err_console.print(f"note: {access.note}", markup=False)
    if json_out:
        emit_json({"team": team.team, "hosts": [a.as_dict() for a in accesses],
                   "written": str(result.path) if result else None,
                   "changed": result.changed if result else False})
        return
    if result is None:
        sys.stdout.write(block)
        err_console.print(f"(not written; `nomadrig ssh-config --write` puts it into {default_config_path()})",
                          markup=False)
    elif result.changed:
        console.print(f"updated {result.path}" + (f" (previous file: {result.backup})" if result.backup else ""),
                      markup=False)
    else:
        console.print(f"{result.path} already up to date", markup=False)

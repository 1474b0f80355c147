"""Box and tower stack commands: up, preview, down, ls, outputs, ssh-config, start, stop.

Every command reads the team file, resolves what the user named (a nomad's
box or a tower), runs the policy where something would be created, and hands
the rest to `nomadrig.engine`. `up` and `down` say what they will do and what
it costs, then ask (``--yes`` skips the question; with no terminal and no
``--yes`` they refuse, exit 2, having changed nothing). `start`, `stop` and
`ls` read the instance a box stack owns through the reaper's cloud adapters
(`nomadrig.reaper.power`). Pulumi, the stacks and the cloud SDKs are imported
inside the commands so `nomadrig --help` stays fast.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from nomadrig import names
from nomadrig.cli.common import (
    CommandRefused,
    JsonOption,
    TeamFileOption,
    confirm,
    console,
    emit_json,
    err_console,
    handle_errors,
    load_team_file,
    require_answer,
)
from nomadrig.errors import BadInputError, CloudError, ExitCode, InputProblem
from nomadrig.tables import DataTable

if TYPE_CHECKING:
    from nomadrig.engine import Engine, StackStatus
    from nomadrig.engine.stacks import TowerRun
    from nomadrig.policy import Verdict
    from nomadrig.reaper.ports import InstanceRef
    from nomadrig.reaper.power import LiveState
    from nomadrig.spec import BoxSpec, TowerSpec
    from nomadrig.team.model import Team
    from nomadrig.volumes import DataSource, RetainedVolume

YesOption = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (needed without a terminal).")
TowerKeyOption = typer.Option(None, "--ssh-key", "-i",
                              help="A tower: private key for SSH, as `tower apply --ssh-key` (default: your agent).")
TowerVarOption = typer.Option(None, "--var", "-e",
                              help="A tower: override a role variable, KEY=VALUE (YAML), as `tower apply -e`.")
LiveOption = typer.Option(True, "--live/--no-live",
                          help="Ask the clouds for each box's instance state (--no-live: the stacks only).")


def register(app: typer.Typer) -> None:
    for name, command in (("up", up), ("preview", preview), ("down", down), ("ls", ls), ("outputs", outputs),
                          ("ssh-config", ssh_config), ("start", start), ("stop", stop), ("restore", restore)):
        app.command(name=name)(handle_errors(command))


# ---------------------------------------------------------------- helpers


def _engine(team: Team) -> Engine:
    from nomadrig.engine import Engine

    return Engine(team, console=err_console)


def _resolve(team: Team, name: str) -> tuple[str, str]:
    """("box", nomad) or ("tower", tower) for a name from the command line, or a located error."""
    if any(n.name == name for n in team.nomads):
        return "box", name
    if any(t.name == name for t in team.towers):
        return "tower", name
    known = ", ".join([n.name for n in team.nomads] + [f"{t.name} (tower)" for t in team.towers]) or "none"
    raise BadInputError("command line", [InputProblem("NAME", f"{name!r} is neither a nomad nor a tower of team "
                                                              f"{team.name}.", f"Use one of: {known}.")])


def _print_verdicts(verdicts: list[Verdict]) -> None:
    for v in verdicts:
        err_console.print(f"{v.severity.value} {v.rule_id} ({v.subject}): {v.message}\n  fix: {v.fix}",
                          markup=False, highlight=False)


def _box_verdicts(team: Team, spec: BoxSpec) -> list[Verdict]:
    """Spec rules for this box plus the team rules (budget projection over every declared box)."""
    from nomadrig.policy import PolicyContext, TeamPlan, check_box, check_team
    from nomadrig.spec import box_specs

    ctx = PolicyContext.from_team(team)
    specs = box_specs(team)
    return check_box(spec, ctx) + check_team(TeamPlan(team.name, tuple(specs)), ctx)


def _refuse_on_mandatory(verdicts: list[Verdict], what: str) -> None:
    from nomadrig.policy import mandatory

    _print_verdicts(verdicts)
    blocking = mandatory(verdicts)
    if blocking:
        raise CommandRefused(f"refused: {len(blocking)} mandatory policy violation(s); {what} was not started.",
                             ExitCode.POLICY_VIOLATION, [v.as_dict() for v in blocking])


def _print_outputs(values: dict[str, Any]) -> None:
    for key, value in sorted(values.items()):
        console.print(f"  {key} = {value}", markup=False, highlight=False)


def _say(*lines: str) -> None:
    """What a command is about to do, on stderr (stdout stays for results and --json)."""
    for line in lines:
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)


def _outputs(engine: Engine, stack: str) -> dict[str, Any] | None:
    """A stack's outputs; None when it does not exist. A stack left under its old name is refused (exit 3)."""
    values = engine.outputs(stack)
    if values is None:
        _refuse_legacy(engine, stack)
    return values


def _refuse_legacy(engine: Engine, stack: str) -> None:
    """Stop before `stack` is created beside the same stack under an earlier release's name."""
    for old in names.legacy_stack_names(stack):
        if engine.existing_stack(old) is not None:
            raise CloudError(migration_message(engine, old, stack))


def migration_message(engine: Engine, old: str, new: str) -> str:
    """How to move a stack from its old name to its new one, as commands a user can paste."""
    env = engine.settings.env
    secret = (f"PULUMI_CONFIG_PASSPHRASE_FILE={shlex.quote(env['PULUMI_CONFIG_PASSPHRASE_FILE'])}"
              if "PULUMI_CONFIG_PASSPHRASE_FILE" in env else 'PULUMI_CONFIG_PASSPHRASE="$NOMADRIG_PASSPHRASE"')
    return (f"stack {old} was made by an earlier nomadrig, which joined names with one dash; its name is now {new} "
            "(names joined by '--' cannot collide).\n"
            "  Rename it once (Pulumi keeps its resources and history), then run the command again:\n"
            f"    cd {shlex.quote(str(engine.settings.work_dir))} && "
            f"PULUMI_BACKEND_URL={shlex.quote(engine.settings.backend_url)} {secret} "
            f"pulumi stack rename {shlex.quote(new)} --stack {shlex.quote(old)}\n"
            "  A GCP box's VM is named after its stack: the next `up` replaces the VM and keeps its data disk.")


def _current_spec(team: Team, nomad: str, previous: dict[str, Any] | None) -> BoxSpec:
    """The nomad's box as the stack should now be, keeping the creation time the stack recorded.

    Without this every `up` would write a new `created` tag: a diff on every
    run, and a TTL that never ends. An unreadable recorded time is replaced
    by now (said on stderr): the TTL restarts rather than the box being
    judged by a value nobody wrote.
    """
    from nomadrig.spec import box_spec

    recorded = (previous or {}).get("created")
    if isinstance(recorded, str) and recorded:
        try:
            return box_spec(team, nomad, created=recorded)
        except ValueError:
            _say(f"warning: the stack's created output {recorded!r} is not a time; the box's TTL counts from now.")
    return box_spec(team, nomad)


# ---------------------------------------------------------------- up, preview


def up(name: str = typer.Argument(..., help="A nomad (their box) or a tower."),
       team_file: Path = TeamFileOption, yes: bool = YesOption, json_out: bool = JsonOption,
       ssh_key: Path | None = TowerKeyOption, var: list[str] | None = TowerVarOption) -> None:
    """Create or update a box (its team network first) or a tower stack; shows the price and asks first."""
    from nomadrig.spec import box_spec, tower_spec

    team = load_team_file(team_file)
    kind, subject = _resolve(team, name)
    run = _tower_run(kind, name, ssh_key, var)
    if kind == "tower":
        from nomadrig.policy import PolicyContext, check_tower

        tspec = tower_spec(team, subject)
        _refuse_on_mandatory(check_tower(tspec, PolicyContext.from_team(team)), f"up {subject}")
        values = _up_tower(team, tspec, yes, run)
        if values is not None:
            _print_up(tspec.stack_name, "tower", values, json_out)
        return
    _up_box(team, box_spec(team, subject), yes, json_out)


def _up_box(team: Team, spec: BoxSpec, yes: bool, json_out: bool, snapshot: str | None = None) -> None:
    """`up` of a box (`restore` passes the snapshot its data volume is made from): say, ask, run, print."""
    from nomadrig.volumes import DataSource

    subject = spec.nomad
    _refuse_on_mandatory(_box_verdicts(team, spec), f"up {subject}")
    if not yes and not sys.stdin.isatty():  # refuse before the first engine call: nothing read, nothing made
        _say(*box_plan_lines(team, spec, network_new=None, box_new=None))
        require_answer(yes)
    engine = _engine(team)
    network = names.network_stack_name(team.name, spec.cloud, spec.region)
    previous = _outputs(engine, spec.stack_name)
    network_new = not _outputs(engine, network)
    spec = _current_spec(team, subject, previous)
    data = DataSource.snapshot(snapshot) if snapshot else engine.data_source(spec)
    _say(*box_plan_lines(team, spec, network_new=network_new, box_new=not previous, data=data))
    if not confirm(f"{'Create' if not previous else 'Update'} the box of {subject}?", yes=yes):
        _say("nothing was changed.")
        return
    values = engine.up_box(spec, data)
    _print_up(spec.stack_name, "box", values, json_out)
    if not json_out:
        price = f"${spec.hourly_usd:.2f}/h" if spec.hourly_usd is not None else "an unknown price per hour"
        console.print(f"It costs {price} while running; its idle agent stops it after {spec.idle_minutes} idle "
                      f"minutes.\nConnect: `nomadrig ssh-config --write`, then `ssh {spec.stack_name}`.",
                      markup=False)


def _tower_run(kind: str, name: str, ssh_key: Path | None, var: list[str] | None) -> TowerRun | None:
    """The `--ssh-key`/`--var` of a tower's `up` or `preview`; refused for a box, whose SSH runs through SSM/IAP."""
    from nomadrig.engine.stacks import TowerRun

    if kind != "tower":
        if ssh_key is not None or var:
            raise BadInputError("command line", [InputProblem(
                "--ssh-key/--var", f"{name!r} is a nomad's box; these options configure a tower.",
                "Drop them: a box is reached through `nomadrig ssh-config`, its settings come from the team file.")])
        return None
    from nomadrig.cli.tower import parse_overrides

    return TowerRun(ssh_key_file=str(ssh_key.expanduser()) if ssh_key else None, overrides=parse_overrides(var),
                    strict_host_keys=not _host_key_checking_off())


def _host_key_checking_off() -> bool:
    """Whether the user turned Ansible's host key checking off with its own switch, ``ANSIBLE_HOST_KEY_CHECKING``.

    nomadrig checks host keys by default (a tower's key is known once); this is the one way to relax it, for a
    test host whose key changes on every boot, and it is Ansible's own documented variable.
    """
    import os

    return os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "").strip().lower() in ("false", "0", "no", "off")


def _up_tower(team: Team, spec: TowerSpec, yes: bool, run: TowerRun | None = None) -> dict[str, Any] | None:
    """Say what a tower's `up` does, ask, run it; None when the user said no."""
    require_answer(yes)
    engine = _engine(team)
    previous = _outputs(engine, spec.stack_name)
    _say(f"up {spec.name}:",
         f"  tower stack {spec.stack_name} ({'update' if previous else 'new'}): configures {spec.address} over SSH "
         f"as {spec.ssh_user}; no cloud cost")
    if not confirm(f"Configure the tower {spec.name}?", yes=yes):
        _say("nothing was changed.")
        return None
    return engine.up_tower(spec, run)


def _print_up(stack: str, kind: str, values: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit_json({"stack": stack, "kind": kind, "outputs": values})
        return
    console.print(f"{stack} is up:", markup=False)
    _print_outputs(values)


def box_plan_lines(team: Team, spec: BoxSpec, *, network_new: bool | None, box_new: bool | None,
                   data: DataSource | None = None) -> list[str]:
    """What `up` of one box creates and what it costs an hour and a month under the team's usage.

    `network_new` / `box_new`: whether the stack is new, or None when not
    known yet (no engine was asked, because the command is about to refuse).
    Figures come from `nomadrig.cost`: the same the policy's budget rule uses.
    """
    from nomadrig.cost import box_cost, fixed_monthly_usd

    network = names.network_stack_name(team.name, spec.cloud, spec.region)
    fixed = sum(fixed_monthly_usd([spec], team.policy.allow_public_ip).values())
    status = {True: "new", False: "exists, kept", None: "made first unless it exists"}
    lines = [f"up {spec.nomad}:",
             f"  team network {network} ({status[network_new]}): private network, egress, key, dataset bucket"
             + (f"; ${fixed:,.2f}/month fixed" if fixed and network_new is not False else ""),
             f"  box {spec.stack_name} ({'new' if box_new else 'update' if box_new is False else 'new or update'}): "
             f"{spec.instance_type} ({spec.gpu_count}x {spec.gpu_model}, {spec.vcpu} vCPU, {spec.ram_gb:g} GB RAM), "
             f"{spec.root_disk_gb} GB root + {spec.data_disk_gb} GB data disk (kept on down), "
             f"{'spot' if spec.spot else 'on-demand'}, {spec.cloud} {spec.region}"]
    if data is not None and data.kind != data.NEW:
        lines.append(f"  data: {data.describe()}")
    cost = box_cost(spec, team.usage)
    if cost.hourly_usd is None or cost.monthly_usd is None:
        lines.append(f"  price: unknown ({cost.note}); check `nomadrig catalog` before going on")
        return lines
    usage = f"{team.usage.hours_per_day:g} h/day x {team.usage.days_per_month:g} days/month"
    total = cost.monthly_usd + (fixed if network_new is not False else 0.0)
    lines.append(f"  price: ${cost.hourly_usd:.3f}/h while running; ${cost.monthly_usd:,.2f}/month at {usage} "
                 f"(the team's usage)" + (f"; ${total:,.2f}/month with the new network" if total != cost.monthly_usd
                                          else ""))
    return lines


def preview(name: str = typer.Argument(..., help="A nomad (their box) or a tower."),
            team_file: Path = TeamFileOption, json_out: bool = JsonOption,
            ssh_key: Path | None = TowerKeyOption, var: list[str] | None = TowerVarOption) -> None:
    """Show what `up` would change, with policy verdicts (exit 1 on a mandatory one); changes nothing."""
    from nomadrig.engine.stacks import NO_CHANGE_OPS
    from nomadrig.policy import mandatory

    team = load_team_file(team_file)
    kind, subject = _resolve(team, name)
    run = _tower_run(kind, name, ssh_key, var)
    engine = _engine(team)
    if kind == "tower":
        from nomadrig.policy import PolicyContext, check_tower
        from nomadrig.spec import tower_spec

        tspec = tower_spec(team, subject)
        verdicts = check_tower(tspec, PolicyContext.from_team(team))
        _print_verdicts(verdicts)
        _refuse_legacy(engine, tspec.stack_name)
        stack, changes = engine.preview_tower(tspec, run)
    else:
        spec = _current_spec(team, subject, _outputs(engine, names.box_stack_name(team.name, subject)))
        verdicts = _box_verdicts(team, spec)
        _print_verdicts(verdicts)
        stack, changes = engine.preview_box(spec)
    if json_out:
        emit_json({"stack": stack, "changes": changes, "verdicts": [v.as_dict() for v in verdicts]})
    else:
        summary = ", ".join(f"{n} to {op}" for op, n in sorted(changes.items())
                            if n and op not in NO_CHANGE_OPS) or "no changes"
        console.print(f"{stack}: {summary}", markup=False)
    if mandatory(verdicts):
        raise typer.Exit(int(ExitCode.POLICY_VIOLATION))


# ---------------------------------------------------------------- down


def down(name: str = typer.Argument(..., help="A nomad (their box) or a tower."),
         purge_data: bool = typer.Option(False, "--purge-data",
                                         help="Also delete the box's retained data volume (asks first)."),
         yes: bool = YesOption, team_file: Path = TeamFileOption) -> None:
    """Destroy a box stack (asks first); its data volume is kept unless --purge-data."""
    team = load_team_file(team_file)
    kind, subject = _resolve(team, name)
    engine = _engine(team)
    if kind == "tower":
        from nomadrig.spec import tower_spec

        stack = tower_spec(team, subject).stack_name
        engine.destroy(stack)
        engine.remove_stack(stack)
        console.print(f"tower stack of {subject} removed ({stack}); the tower keeps its configuration.",
                      markup=False)
        return
    from nomadrig.spec import box_spec
    from nomadrig.volumes import retained_volumes

    spec = box_spec(team, subject)
    current = _outputs(engine, spec.stack_name)
    recorded = engine.retained(spec.stack_name)
    if current is None and not (purge_data and (recorded or _tagged_volume(engine, spec))):
        raise CloudError(f"{spec.stack_name} does not exist: nothing to destroy.\n"
                         "  `nomadrig ls` lists the team's stacks.")
    volumes = retained_volumes(spec.stack_name, spec.cloud, spec.region, current or {}, spec.project)
    volumes += [v for v in recorded + _tagged_volume(engine, spec) if v.id not in {x.id for x in volumes}]
    if current is not None:
        instance = current.get("instance_id") or current.get("instance_name") or "no instance"
        kept = ", ".join(v.id for v in volumes) or "its data volume"
        _say(f"down {subject}: destroys the box stack {spec.stack_name} ({instance}, {spec.instance_type}, "
             f"{spec.cloud} {spec.region})"
             + ("" if purge_data else f"; keeps {kept} ({spec.data_disk_gb} GB), billed until "
                                      f"`nomadrig down {subject} --purge-data`"))
    if purge_data:
        _say_purge(spec, [v.id for v in volumes])
    question = f"Destroy the box{' and delete the data' if purge_data else ''} of {subject}?"
    if not confirm(question, yes=yes, option="--yes"):
        _say("nothing was destroyed.")
        return
    kept_volumes = []
    if current is not None:
        kept_volumes = engine.destroy(spec.stack_name, spec.cloud, spec.region, spec.project)
        console.print(f"{spec.stack_name} destroyed.", markup=False)
    if purge_data and volumes:
        engine.purge(volumes, spec.nomad)
        console.print(f"data of {spec.nomad} deleted: {', '.join(v.id for v in volumes)}", markup=False)
    elif purge_data:
        console.print(f"no retained data volume of {spec.nomad} is known; nothing else to delete.", markup=False)
    for volume in kept_volumes if not purge_data else []:
        console.print(f"kept the data volume {volume.id} ({spec.data_disk_gb} GB): the next `nomadrig up "
                      f"{spec.nomad}` attaches it again; it is billed until deleted "
                      f"(`nomadrig down {spec.nomad} --purge-data`).", markup=False)


def _tagged_volume(engine: Engine, spec: BoxSpec) -> list[RetainedVolume]:
    """The kept data volume the box stack's tag names (a `down` or the reaper wrote it, on any machine)."""
    from nomadrig.volumes import DATA_VOLUME_TYPES, RetainedVolume

    ident = engine.stack_tags(spec.stack_name).get(names.DATA_VOLUME_STACK_TAG)
    if not ident:
        return []
    return [RetainedVolume(spec.stack_name, spec.cloud, spec.region, DATA_VOLUME_TYPES[spec.cloud], ident,
                           spec.project)]


def _say_purge(spec: BoxSpec, volume_ids: list[str]) -> None:
    what = ", ".join(volume_ids) or "(none recorded yet)"
    _say(f"--purge-data deletes the data volume of {spec.nomad} ({what}, {spec.data_disk_gb} GB) after the box.",
         "  Everything on it is lost for good: datasets, checkpoints and notebooks under the data mount.",
         "  No snapshot is taken (the reaper's snapshots, if any, are not touched).")


# ---------------------------------------------------------------- restore


def restore(nomad: str = typer.Argument(..., help="The nomad whose box to bring back from a snapshot."),
            snapshot: str | None = typer.Option(None, "--snapshot",
                                                help="The snapshot id (default: the reaper's last one)."),
            team_file: Path = TeamFileOption, yes: bool = YesOption, json_out: bool = JsonOption) -> None:
    """Bring a box back with a new data volume made from a snapshot (where only a snapshot of the data is left).

    Without --snapshot, the snapshot the reaper took before it destroyed the
    box (recorded in the box stack's tags). The box must be down: a live box's
    volume is not replaced under it. A volume a `down` kept is not touched;
    `down --purge-data` still deletes it.
    """
    from nomadrig.spec import box_spec

    team = load_team_file(team_file)
    kind, subject = _resolve(team, nomad)
    if kind != "box":
        raise BadInputError("command line", [InputProblem("NOMAD", f"{nomad!r} is a tower; restore takes a nomad.",
                                                          "A tower keeps its own disks.")])
    spec = box_spec(team, subject)
    engine = _engine(team)
    current = _outputs(engine, spec.stack_name)
    if current:
        raise BadInputError("command line", [InputProblem(
            "NOMAD", f"the box of {subject} is up ({spec.stack_name}); restoring would replace its data volume.",
            f"Run `nomadrig down {subject}` first (its volume is kept), then `nomadrig restore {subject}`.")])
    snapshot = snapshot or engine.last_snapshot(spec.stack_name)
    if not snapshot:
        raise BadInputError("command line", [InputProblem(
            "--snapshot", f"no snapshot of {subject}'s data is recorded ({spec.stack_name} has no "
            f"{names.DATA_SNAPSHOT_STACK_TAG} tag: the reaper never destroyed this box).",
            "Pass --snapshot ID (snapshots tagged "
            f"{names.tag_key(spec.cloud, names.OWNER)}={names.tag_value(spec.cloud, subject)}), "
            f"or run `nomadrig up {subject}`.")])
    kept = engine.stack_tags(spec.stack_name).get(names.DATA_VOLUME_STACK_TAG)
    if kept:
        _say(f"note: the data volume {kept} that the last down kept stays as it is (billed); "
             f"`nomadrig down {subject} --purge-data` deletes it with the restored one.")
    _up_box(team, spec, yes, json_out, snapshot=snapshot)


# ---------------------------------------------------------------- ls


def ls(team_file: Path = TeamFileOption, live: bool = LiveOption, json_out: bool = JsonOption) -> None:
    """List the team's stacks: state, the box's live instance state and TTL left, cloud, region, type, $/h, age."""
    team = load_team_file(team_file)
    engine = _engine(team)
    statuses = engine.list_stacks()
    present = {s.name for s in statuses}
    missing = [n.name for n in team.nomads if names.box_stack_name(team.name, n.name) not in present]
    states = _live_states(team, statuses) if live else {}
    renamed = _legacy_names(team, present)
    if json_out:
        emit_json({"team": team.name, "not_created": missing,
                   "stacks": [{**s.as_dict(), "instance": states[s.name].as_dict() if s.name in states else None,
                               "renamed_to": renamed.get(s.name)} for s in statuses]})
        return
    table = DataTable(title=f"team {team.name}: stacks", title_justify="left")
    for col in ("stack", "kind", "state", "instance", "TTL left", "cloud", "region", "type", "$/h", "age"):
        table.add_column(col, justify="right" if col in ("TTL left", "$/h", "age") else "left")
    for s in statuses:
        price = f"{s.hourly_usd:.2f}" if s.hourly_usd is not None else ""
        left = s.ttl_hours_left() if s.kind == "box" and s.outputs else None
        table.add_row(s.name, s.kind, s.state, states[s.name].text() if s.name in states else "",
                      "" if left is None else f"{left:.0f}h" if left > 0 else "expired",
                      s.cloud, s.region, s.instance_type, price, s.age())
    console.print(table)
    if missing:
        console.print(f"not created yet: {', '.join(missing)} (`nomadrig up NOMAD`)", markup=False)
    for old, new in renamed.items():
        console.print(f"{old} is the old name of {new}: `nomadrig up` says how to rename it.", markup=False)


def _legacy_names(team: Team, present: set[str]) -> dict[str, str]:
    """Stacks of this team still under an earlier release's name, old -> new."""
    from nomadrig.spec import tower_spec

    current = [names.box_stack_name(team.name, n.name) for n in team.nomads]
    current += [tower_spec(team, t).stack_name for t in team.towers]
    current += [names.network_stack_name(team.name, cloud, region)
                for cloud in team.clouds.configured() for region in team.clouds.regions(cloud)]
    return {old: new for new in current for old in names.legacy_stack_names(new) if old in present}


def _live_states(team: Team, statuses: list[StackStatus]) -> dict[str, LiveState]:
    """Each deployed box's instance state from its cloud; a box whose outputs cannot be used says why."""
    from nomadrig.reaper.power import UNKNOWN, LiveState, instance_ref, live_states

    project = team.clouds.gcp.project if team.clouds.gcp else ""
    refs: dict[str, InstanceRef] = {}
    states: dict[str, LiveState] = {}
    for status in statuses:
        if status.kind != "box" or not status.outputs:
            continue
        try:
            ref = instance_ref(status.cloud, status.region, status.outputs, project)
        except CloudError as error:
            states[status.name] = LiveState(UNKNOWN, detail=str(error).splitlines()[0])
            continue
        if ref is not None:
            refs[status.name] = ref
    return {**states, **live_states(refs)}


# ---------------------------------------------------------------- start, stop


def start(nomad: str = typer.Argument(..., help="The nomad whose box to start."),
          team_file: Path = TeamFileOption, json_out: bool = JsonOption) -> None:
    """Start a stopped box (the idle agent or `nomadrig stop` stopped it) and wait until it runs."""
    _set_power(nomad, team_file, json_out, running=True)


def stop(nomad: str = typer.Argument(..., help="The nomad whose box to stop."),
         team_file: Path = TeamFileOption, json_out: bool = JsonOption) -> None:
    """Stop a box and wait until it is stopped: compute billing ends, disks and data stay."""
    _set_power(nomad, team_file, json_out, running=False)


def _set_power(name: str, team_file: Path | None, json_out: bool, *, running: bool) -> None:
    from nomadrig.reaper.power import LiveState, instance_ref, set_power
    from nomadrig.spec import box_spec

    team = load_team_file(team_file)
    kind, subject = _resolve(team, name)
    verb = "start" if running else "stop"
    if kind != "box":
        raise BadInputError("command line", [InputProblem("NOMAD", f"{name!r} is a tower; {verb} takes a nomad.",
                                                          "A tower is a machine you power on and off yourself.")])
    spec = box_spec(team, subject)
    stack = spec.stack_name
    values = _outputs(_engine(team), stack)
    ref = instance_ref(spec.cloud, spec.region, values or {}, spec.project)
    if ref is None:
        raise CloudError(f"{stack} has no instance{'' if values is not None else ' (the stack does not exist)'}: "
                         f"nothing to {verb}.\n  `nomadrig up {subject}` creates the box.")
    _say(f"{'starting' if running else 'stopping'} {ref.ident} ({stack}) ...")
    instance, changed = set_power(ref, running, progress=lambda i: _say(f"  {i.instance_id}: {LiveState.of(i).text()}"))
    state = LiveState.of(instance)
    if json_out:
        emit_json({"stack": stack, "nomad": subject, "cloud": ref.cloud, "instance": ref.ident, "changed": changed,
                   **state.as_dict()})
        return
    console.print(f"{stack}: {ref.ident} {state.text()}" + ("" if changed else f" (already {state.state})"),
                  markup=False)
    if running:
        console.print(f"Connect: `ssh {stack}` (after `nomadrig ssh-config --write`).", markup=False)
    else:
        console.print(f"Compute billing has stopped; its disks are still billed. `nomadrig start {subject}` "
                      "starts it again.", markup=False)


# ---------------------------------------------------------------- outputs, ssh-config


def outputs(name: str = typer.Argument(..., help="A nomad, a tower, or a stack name."),
            team_file: Path = TeamFileOption, json_out: bool = JsonOption) -> None:
    """Print a stack's outputs (instance id, data volume, ...)."""
    team = load_team_file(team_file)
    if any(n.name == name for n in team.nomads):
        stack = names.box_stack_name(team.name, name)
    elif any(t.name == name for t in team.towers):
        stack = names.tower_stack_name(team.name, name)
    else:
        stack = name
    values = _outputs(_engine(team), stack)
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

    Each box's Host alias is its stack name (``<team>--<nomad>``): unique across teams by construction.
    Every stack output is checked against the cloud's real shapes first: one bad value refuses the whole
    block (exit 3) and ~/.ssh/config is left byte for byte as it was.
    """
    from nomadrig.spec import box_specs
    from nomadrig.sshconfig import box_accesses, default_config_path, render_block, write_block

    team = load_team_file(team_file)
    specs = box_specs(team)
    engine = _engine(team)
    accesses = box_accesses(specs, {s.stack_name: _outputs(engine, s.stack_name) for s in specs})
    block = render_block(team.name, accesses)
    result = write_block(team.name, block) if write else None
    for access in accesses if result else []:  # printed blocks carry the notes as comments already
        if access.note:
            err_console.print(f"note: {access.note}", markup=False)
    if json_out:
        emit_json({"team": team.name, "hosts": [a.as_dict() for a in accesses],
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

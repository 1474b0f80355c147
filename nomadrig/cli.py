"""The nomadrig command line.

Exit codes: 0 ok, 1 policy violation, 2 bad input, 3 cloud or engine failure
(130 when interrupted). Start-up stays fast: cloud SDKs, Pulumi and Ansible are
imported inside the commands that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .cli_common import (
    INTERRUPTED,
    DataTable,
    JsonOption,
    TeamFileOption,
    console,
    emit_json,
    err_console,
    error_object,
    handle_errors,
    load_team_file,
    resolve_team_file,
)
from .errors import ExitCode

EPILOG = "Exit codes: 0 ok, 1 policy violation, 2 bad input, 3 cloud/engine failure, 130 interrupted."

app = typer.Typer(
    name="nomadrig",
    help="Cloud GPU boxes, on-prem GPU towers and idle teardown for a small ML team, from one team file.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
catalog_app = typer.Typer(help="The GPU catalog: instance types, prices, tower builds.", epilog=EPILOG,
                          invoke_without_command=True)
policy_app = typer.Typer(help="The team's policy: rules, severities, parameters.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(policy_app, name="policy")


def _version(value: bool) -> None:
    """--version: print the installed version and stop (eager: before any command or team file is read)."""
    if value:
        from . import __version__

        console.print(f"nomadrig {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Cloud GPU boxes, on-prem GPU towers and idle teardown for a small ML team, from one team file."""


@app.command()
@handle_errors
def validate(
    team_file: Path = TeamFileOption,
    file: Path = typer.Argument(None, help="Deprecated: use --team FILE (the positional file still works).",
                                show_default=False),
    json_out: bool = JsonOption,
) -> None:
    """Check a team file (exit 2: every problem names the file, line, field and fix) and its towers against the
    policy's tower rules (exit 1 on a mandatory violation, with the rule id and the fix)."""
    if file is not None and team_file is not None and file != team_file:
        from .errors import BadInputError, InputProblem

        raise BadInputError("command line", [InputProblem("FILE", f"two team files given: {file} and --team "
                                                                  f"{team_file}.", "Pass only --team FILE.")])
    if file is not None:
        err_console.print("note: `nomadrig validate FILE` is deprecated; use `nomadrig validate --team FILE`.",
                          markup=False, soft_wrap=True)
    from .cli_plan import print_verdicts
    from .policy import check_towers, mandatory

    path = resolve_team_file(team_file or file)
    team = load_team_file(path)
    verdicts = check_towers(team)
    blocking = mandatory(verdicts)
    if json_out:
        emit_json({"file": str(path), "valid": True, "team": team.team, "nomads": len(team.nomads),
                   "towers": len(team.towers), "policy_ok": not blocking,
                   "verdicts": [v.as_dict() for v in verdicts]})
    else:
        print_verdicts(verdicts)
        verdict = f"{len(blocking)} mandatory policy violation(s)" if blocking else "ok"
        console.print(f"{path}: {verdict}: team {team.team}, {len(team.nomads)} nomads, {len(team.towers)} towers",
                      markup=False)
    if blocking:
        raise typer.Exit(int(ExitCode.POLICY_VIOLATION))


@catalog_app.callback()
@handle_errors
def catalog_list(
    ctx: typer.Context,
    cloud: str = typer.Option(None, help="aws or gcp."),
    region: str = typer.Option(None, help="Only prices in this region."),
    gpu: str = typer.Option(None, help="GPU model, e.g. A10G, L4, 'RTX 4090'."),
    min_vram: float = typer.Option(None, help="Minimum memory per GPU, GB."),
    max_price: float = typer.Option(None, help="Maximum USD per hour."),
    spot: bool = typer.Option(False, help="Filter and sort by spot price."),
    towers: bool = typer.Option(False, "--towers", help="List tower builds instead."),
    rates: bool = typer.Option(False, "--rates", help="List storage, network and key rates instead."),
    json_out: bool = JsonOption,
) -> None:
    """List GPU instance types and prices (or tower builds, or rates), filtered; prices older than 90 days are stale."""
    if ctx.invoked_subcommand:
        return
    import datetime as dt

    from .catalog import load_catalog
    from .catalog import report as catalog_report

    cat = load_catalog()
    if cloud and cloud not in ("aws", "gcp"):
        from .errors import BadInputError, InputProblem

        raise BadInputError("catalog", [InputProblem("--cloud", f"{cloud!r} is not a cloud.", "Use aws or gcp.")])
    today = dt.date.today()
    if towers:
        rows = cat.towers()
        if json_out:
            emit_json([catalog_report.tower_dict(t) for t in rows])
            return
        console.print(catalog_report.towers_table(rows, cat.catalog_date))
        return
    if rates:
        found_rates = [r for r in cat.rates()
                       if (not cloud or r.cloud == cloud) and (not region or r.region in (region, "*"))]
        if json_out:
            emit_json([catalog_report.rate_dict(r, today) for r in found_rates])
            return
        console.print(catalog_report.rates_table(found_rates, today))
        return
    found = cat.search(cloud=cloud, region=region, gpu_model=gpu, min_vram_gb=min_vram, max_usd_hr=max_price,
                       spot=spot)
    if json_out:
        emit_json([catalog_report.price_dict(it, p, today) for it, p in found])
        return
    console.print(catalog_report.prices_table(found, today, cat.catalog_date))
    for line in catalog_report.footer(cat, [p for _, p in found], today):
        console.print(line, markup=False)
    if not found:
        console.print("no instance type matches these filters", markup=False)


@catalog_app.command("refresh")
@handle_errors
def catalog_refresh(
    cloud: list[str] = typer.Option(None, "--cloud", help="Refresh only this cloud (repeatable; default: both)."),
    region: list[str] = typer.Option(None, "--region", help="Refresh this region (repeatable; default: every "
                                                            "region the catalog prices, plus the team's)."),
    team_file: Path = typer.Option(None, "--team", "-t", help="Also refresh the regions this team file allows "
                                                              "(read even if the file does not validate yet)."),
    out: Path = typer.Option(None, help="Refreshed catalog folder (default: $NOMADRIG_CATALOG or "
                                        "$NOMADRIG_HOME/catalog)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Fetch and print what would change; write nothing."),
    json_out: bool = JsonOption,
) -> None:
    """Refresh cloud prices from the AWS Price List API and the GCP Cloud Billing Catalog, merging, never dropping.

    Needs credentials; writes nothing unless every fetch succeeds, keeps the previous refresh in previous/,
    and `nomadrig catalog reset` returns to the packaged catalog. Later commands read the refreshed prices.
    """
    from .catalog.refresh import refresh
    from .catalog.refreshed import refreshed_data_dir
    from .catalog.report import refresh_lines, refresh_targets

    clouds, regions = refresh_targets(cloud, region, team_file)
    report = refresh(clouds, regions, out or refreshed_data_dir(), dry_run=dry_run)
    if json_out:
        emit_json(report.as_dict())
        return
    for line in refresh_lines(report):
        console.print(line, markup=False)


@catalog_app.command("reset")
@handle_errors
def catalog_reset(
    out: Path = typer.Option(None, help="Refreshed catalog folder (default: $NOMADRIG_CATALOG or "
                                        "$NOMADRIG_HOME/catalog)."),
) -> None:
    """Go back to the packaged catalog: the refreshed prices move to previous/ (nothing is deleted)."""
    from .catalog.refreshed import PREVIOUS, refreshed_data_dir, reset

    folder = out or refreshed_data_dir()
    moved = reset(folder)
    if moved:
        console.print(f"moved {', '.join(moved)} from {folder} to {folder / PREVIOUS}; "
                      "commands now read the packaged catalog", markup=False)
    else:
        console.print(f"no refreshed catalog in {folder}: commands already read the packaged catalog", markup=False)


@policy_app.command("list")
@handle_errors
def policy_list(team_file: Path = typer.Option(None, "--team", "-t",
                                               help="Show the severities and switches this team's file sets."),
                json_out: bool = JsonOption) -> None:
    """List every rule with its id, kind, severity and parameters."""
    from .policy import all_rules
    from .policy.model import PolicyContext
    from .policy.registry import effective

    ctx = PolicyContext.from_team(load_team_file(team_file)) if team_file else PolicyContext.default()
    rows = []
    for rule in all_rules():
        enabled, severity, rule_ctx = effective(rule, ctx)
        rows.append({"id": rule.id, "kind": rule.kind, "title": rule.title, "severity": severity.value,
                     "enabled": enabled, "applies_to": list(rule.applies_to), "params": dict(rule_ctx.params)})
    if json_out:
        emit_json(rows)
        return
    table = DataTable(title=f"{len(rows)} policy rules")
    for col in ("id", "kind", "severity", "on", "title"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["kind"], r["severity"], "yes" if r["enabled"] else "no", r["title"])
    console.print(table)


@app.command()
@handle_errors
def cost(team_file: Path = TeamFileOption, json_out: bool = JsonOption) -> None:
    """Project the team's monthly bill line by line (compute, disks, snapshots, NAT, egress, keys, buckets).

    Exit 1 where `plan` would on its box, team and tower rules (resource rules need `plan`)."""
    import datetime as dt

    from .cost import team_projection
    from .plan import spec_verdicts
    from .spec import box_specs

    team = load_team_file(team_file)
    specs = box_specs(team)
    projection = team_projection(specs, team.usage, team.budgets.monthly_usd, team.policy.allow_public_ip)
    verdicts = spec_verdicts(team, specs, projection)
    today = dt.date.today()
    if json_out:
        emit_json({**projection.as_dict(), "stale_lines": [f"{ln.scope} {ln.item}" for ln in projection.lines
                                                           if ln.monthly_usd is not None and ln.stale(today)],
                   "verdicts": [v.as_dict() for v in verdicts]})
    else:
        a = projection.assumptions
        table = DataTable(title=f"team {team.team}: {a.hours_per_day:g} h/day x {a.days_per_month:g} days/month; "
                                f"per nomad {a.nat_gb_per_month:g} GB through NAT, {a.egress_gb_per_month:g} GB out")
        for col in ("item", "basis", "$/month", "rate"):
            table.add_column(col, justify="right" if col == "$/month" else "left")
        for box in projection.boxes:
            table.add_row(f"{box.nomad} ({box.cloud} {box.region}, {box.instance_type}"
                          + (", spot)" if box.spot else ")"), box.note, _usd_month(box.monthly_usd), "")
            for ln in box.lines:
                table.add_row(f"  {ln.item}", ln.basis, _usd_month(ln.monthly_usd), _rate_age(ln, today))
        for (cloud, region) in dict.fromkeys((ln.cloud, ln.region) for ln in projection.team):
            shared = [ln for ln in projection.team if (ln.cloud, ln.region) == (cloud, region)]
            table.add_row(f"team stack ({cloud} {region})", "", _usd_month(round(sum(
                ln.monthly_usd or 0.0 for ln in shared), 2)), "")
            for ln in shared:
                table.add_row(f"  {ln.item}", ln.basis, _usd_month(ln.monthly_usd), _rate_age(ln, today))
        console.print(table)
        pct = projection.budget_used_pct
        console.print(f"total ${projection.total_usd:,.2f}/month of ${team.budgets.monthly_usd:,.0f} budget"
                      + (f" ({pct:g}%)" if pct is not None else ""), markup=False)
        console.print("by item: " + ", ".join(f"{k} ${v:,.2f}" for k, v in projection.by_item.items()), markup=False)
        if projection.unknown:
            console.print(f"no rate known (left out of the total): {', '.join(projection.unknown)}", markup=False)
        for v in verdicts:
            console.print(f"{v.severity.value} {v.rule_id}: {v.message}\n  fix: {v.fix}", markup=False)
    if any(v.mandatory for v in verdicts):
        raise typer.Exit(int(ExitCode.POLICY_VIOLATION))


def _usd_month(value: float | None) -> str:
    return f"{value:,.2f}" if value is not None else "unknown"


def _rate_age(line: Any, today: Any) -> str:
    """The rate's effective date, flagged when older than 90 days or unknown."""
    if line.monthly_usd is None:
        return ""
    when = line.effective_date or "undated"
    return f"{when} (stale)" if line.stale(today) else when


@app.command()
@handle_errors
def advise(
    gpu_class: str = typer.Option("a10g-24gb", "--gpu-class", help="A GPU profile (see `nomadrig catalog`)."),
    hours_per_week: float = typer.Option(None, "--hours-per-week", help="GPU hours used per week "
                                         "(default: the team file's usage, else 20)."),
    cloud: str = typer.Option("aws", help="aws or gcp."),
    region: str = typer.Option(None, help="Region for cloud prices (default: the cheapest the team allows)."),
    team_file: Path = typer.Option(None, "--team", "-t", help="Team file for regions and usage (default: the one "
                                                              "other commands find, if it loads)."),
    tower: str = typer.Option(None, help="Tower build (default: cheapest with as many GPUs and enough memory each)."),
    electricity: float = typer.Option(0.30, help="Electricity price, USD per kWh."),
    life_months: int = typer.Option(36, help="Months before the tower is replaced (and the old one sold)."),
    resale_pct: float = typer.Option(30.0, help="Resale value at end of life, % of parts cost (0-100)."),
    always_on: bool = typer.Option(True, "--always-on/--off-when-idle", help="A remote tower stays on 24/7."),
    months: int = typer.Option(36, help="Horizon of the comparison, months."),
    root_gb: float = typer.Option(100.0, help="Cloud box root disk, GB (billed 24/7)."),
    data_gb: float = typer.Option(500.0, help="Cloud box data disk, GB (billed 24/7)."),
    tower_price: float = typer.Option(None, help="Tower price to use instead of the build's parts cost, USD."),
    idle_watts: float = typer.Option(None, help="Tower idle draw at the wall, W (default: the build's)."),
    platform_watts: float = typer.Option(None, help="Board, RAM, SSD and fans under load, W (default: the build's)."),
    speed_ratio: float = typer.Option(None, help="Tower GPU speed / cloud GPU speed (default: throughput.csv)."),
    spot_overhead_pct: float = typer.Option(None, "--spot-overhead-pct", help="Spot hours re-run or restarting "
                                            "after interruptions, % (default: the team's usage, else 10)."),
    admin_rate: float = typer.Option(None, help="What an hour of administration costs, USD (default 50)."),
    admin_hours: list[str] = typer.Option(None, "--admin-hours", help="SETUP=HOURS a month of administration, "
                                          "e.g. 'tower only=5' (repeatable; defaults in the README)."),
    tower_trips: float = typer.Option(None, help="Trips or shipments a year to move or fix a tower (default 1)."),
    trip_usd: float = typer.Option(None, help="Cost of one such trip or shipment, USD (default 300)."),
    notebook_price: float = typer.Option(None, help="Price of the GPU notebook, USD (default: notebooks.csv)."),
    notebook_watts: float = typer.Option(None, help="GPU notebook at the wall while training, W."),
    notebook_speed: float = typer.Option(None, help="Notebook GPU speed / cloud GPU speed (default: throughput.csv)."),
    egpu_speed: float = typer.Option(None, help="eGPU speed / the same card in a desktop slot (default: egpus.csv)."),
    chart: Path = typer.Option(None, help="Write a PNG chart of cumulative cost over time."),
    setups_chart: Path = typer.Option(None, help="Write a PNG chart ranking the field guide's five setups."),
    json_out: bool = JsonOption,
) -> None:
    """Cloud or tower? Compare notebook+cloud (on-demand, spot) with a tower of as many GPUs, show break-even,
    and rank the field guide's five setups (tower, notebook, notebook + tower/eGPU/cloud) with their hidden costs."""
    from .advise import AdviceInputs, cheapest_region, hours_per_week_from_usage, pick_tower, render_chart
    from .advise import advise as compute
    from .advise.setups import ADMIN_USD_HOUR, TOWER_TRIPS_PER_YEAR, TRIP_USD, HiddenCosts, field_guide
    from .catalog import load_catalog
    from .cost import SPOT_INTERRUPTION_OVERHEAD_PCT
    from .errors import BadInputError, InputProblem

    cat = load_catalog()
    profile = cat.profile(gpu_class, cloud)
    if profile is None:
        names = sorted({p.profile for p in cat.profiles() if p.cloud == cloud})
        raise BadInputError("advise", [InputProblem("--gpu-class", f"{gpu_class!r} is not a {cloud} GPU profile.",
                                                    f"Use one of: {', '.join(names)}.")])
    instance = cat.instance(cloud, profile.instance_type)
    assert instance is not None
    team = _advise_team(team_file)
    if hours_per_week is None:
        hours_per_week = (hours_per_week_from_usage(team.usage.hours_per_day, team.usage.days_per_month)
                          if team else 20.0)
    if region is None:
        allowed = team.clouds.regions(cloud) if team and cloud in team.clouds.configured() else None
        region = cheapest_region(cat, instance, allowed) or cheapest_region(cat, instance) or ""
    if tower:
        build = next((t for t in cat.towers() if t.name == tower), None)
        if build is None:
            raise BadInputError("advise", [InputProblem("--tower", f"{tower!r} is not a tower build.",
                                                        "Use one of: " + ", ".join(t.name for t in cat.towers()))])
    else:
        build = pick_tower(cat, instance)
    if spot_overhead_pct is None:
        spot_overhead_pct = team.usage.spot_interruption_overhead_pct if team else SPOT_INTERRUPTION_OVERHEAD_PCT
    inputs = AdviceInputs(hours_per_week, electricity, life_months, resale_pct, months, always_on, root_gb, data_gb,
                          tower_price, idle_watts, platform_watts, speed_ratio, spot_overhead_pct)
    hidden = HiddenCosts(ADMIN_USD_HOUR if admin_rate is None else admin_rate, _admin_hours(admin_hours or []),
                         TOWER_TRIPS_PER_YEAR if tower_trips is None else tower_trips,
                         TRIP_USD if trip_usd is None else trip_usd, notebook_price, notebook_watts, notebook_speed,
                         egpu_speed)
    advice = compute(cat, instance, region, build, inputs)
    guide = field_guide(cat, advice, hidden)
    if chart:
        render_chart(advice, str(chart))
    if setups_chart:
        from .advise.setups_chart import render_setups_chart

        render_setups_chart(guide, str(setups_chart))
    if json_out:
        emit_json({**advice.as_dict(), "setups": guide.as_dict()})
        return
    _print_advice(advice, chart)
    _print_setups(guide, setups_chart)


def _admin_hours(given: list[str]) -> dict[str, float]:
    """--admin-hours 'SETUP=HOURS' pairs over the documented defaults; a malformed pair is a usage error (exit 2)."""
    from .advise.setups import ADMIN_HOURS_MONTH
    from .errors import BadInputError, InputProblem

    hours = dict(ADMIN_HOURS_MONTH)
    problems = []
    for pair in given:
        name, _, value = pair.partition("=")
        try:
            hours[name.strip()] = float(value)
        except ValueError:
            problems.append(InputProblem("--admin-hours", f"{pair!r} is not SETUP=HOURS.",
                                         "Write e.g. --admin-hours 'notebook + tower=6'."))
    if problems:
        raise BadInputError("advise", problems)
    return hours


def _print_setups(guide: Any, chart: Path | None) -> None:
    """The five setups ranked: one row each with its lines over the horizon (USD), then each one's GPU and hours."""
    from .advise.setups import LINE_ITEMS

    table = DataTable(title=f"The field guide's five setups: {guide.hours_per_week:g} GPU h/week, "
                            f"{guide.data_gb:g} GB of data, USD over {guide.horizon_months} months, cheapest first",
                      box=None, padding=(0, 1))
    for col in ("#", "setup", *LINE_ITEMS, "total"):
        table.add_column(col, justify="left" if col == "setup" else "right", no_wrap=col != "setup")
    for i, setup in enumerate(guide.setups, 1):
        table.add_row(str(i), setup.name, *(f"{setup.lines[k]:,.0f}" for k in LINE_ITEMS), f"{setup.total_usd:,.0f}")
    console.print(table)
    for i, setup in enumerate(guide.setups, 1):
        late = "" if setup.feasible else " (more than the week has: ranked last)"
        console.print(f"{i}. {setup.name}: {setup.gpu}, {setup.gpu_hours_week:,.1f} GPU h/week{late}; "
                      f"upfront ${setup.upfront_usd:,.0f}", markup=False)
        for note in setup.notes:
            console.print(f"   note: {note}", markup=False)
    hidden = guide.hidden
    console.print(f"hidden costs: admin at ${hidden.admin_usd_hour:g}/h ("
                  + ", ".join(f"{k} {v:g} h/month" for k, v in hidden.admin_hours_month.items())
                  + f"); tower trips {hidden.tower_trips_per_year:g}/year at ${hidden.trip_usd:g}; data: a backup "
                  "copy in object storage; hardware net of its value at the horizon", markup=False)
    if chart:
        console.print(f"setups chart written to {chart}", markup=False)


def _advise_team(team_file: Path | None) -> Any:
    """The team file for advise's defaults: the one named (errors shown), else the usual one if it loads."""
    from .errors import BadInputError

    if team_file is not None:
        return load_team_file(team_file)
    try:
        return load_team_file(None)
    except BadInputError:
        return None


def _print_advice(advice: Any, chart: Path | None) -> None:
    inst, build, inputs = advice.instance, advice.tower, advice.inputs
    table = DataTable(title=f"{inputs.hours_per_week:g} GPU h/week: {inst.gpu_count}x {inst.gpu_model} "
                            f"({inst.instance_type}, {advice.price.region}) vs {build.gpu_count}x {build.gpu_model} "
                            f"tower {build.name}")
    for col in ("option", "upfront $", "$/month", f"after {inputs.horizon_months} months $", "break-even"):
        table.add_column(col, justify="right" if col != "option" else "left")
    for o in advice.options:
        months = advice.break_evens.get(o.name)
        text = "" if months is None else (
            "tower cheaper from month " + ", again from ".join(map(str, months)) if months
            else f"tower not cheaper within {inputs.horizon_months} months")
        table.add_row(o.name, f"{o.upfront_usd:,.0f}", f"{o.monthly_usd:,.2f}", f"{o.cumulative[-1]:,.0f}", text)
    console.print(table)
    console.print(f"tower value left at month {inputs.horizon_months}: ${advice.tower_value[-1]:,.0f} "
                  f"(straight-line to {inputs.resale_pct:g}% over {inputs.life_months} months)", markup=False)
    for caveat in advice.caveats:
        console.print(f"note: {caveat}", markup=False)
    console.print(f"prices: {advice.price.source} (effective {advice.price.effective_date or 'undated'}, read "
                  f"{advice.price.read_date}); tower: {build.source} ({build.date})", markup=False)
    if chart:
        console.print(f"chart written to {chart}", markup=False)


def _register_extensions() -> None:
    """Commands owned by other modules register themselves; each imports its heavy deps lazily."""
    import importlib

    for module in ("cli_plan", "cli_boxes", "cli_tower", "cli_reap"):
        try:
            mod = importlib.import_module(f"nomadrig.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nomadrig.{module}":
                raise
            continue
        mod.register(app)


_register_extensions()


def main() -> None:
    """The `nomadrig` entry point: exit codes for what happens outside a command, too.

    Usage errors (an unknown option, a missing argument) exit 2 with the
    message on stderr and, under --json, the error object on stdout; Ctrl-C
    anywhere (even while the CLI starts) exits 130.
    """
    import sys

    as_json = "--json" in sys.argv[1:]
    try:
        code = app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C outside a command, or at a question
        err_console.print("interrupted", markup=False)
        if as_json:
            emit_json(error_object(INTERRUPTED, "interrupted"))
        code = INTERRUPTED
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        exc.show()  # type: ignore[attr-defined]
        if as_json:
            emit_json(error_object(exc.exit_code, exc.format_message()))  # type: ignore[attr-defined]
        code = exc.exit_code  # type: ignore[attr-defined]
    sys.exit(code if isinstance(code, int) else 0)


def _is_usage_error(exc: Exception) -> bool:
    """A click usage error (unknown option, missing argument, bad value): it can show itself and has a code.

    Told by shape, not class: typer ships its own copy of click, whose
    exception classes are not public.
    """
    return all(hasattr(exc, name) for name in ("show", "format_message")) and isinstance(
        getattr(exc, "exit_code", None), int)


if __name__ == "__main__":
    main()

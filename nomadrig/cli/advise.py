"""`advise`: cloud or tower for this team, and the field guide's five setups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from nomadrig.cli.common import JsonOption, console, emit_json, handle_errors, load_team_file
from nomadrig.tables import DataTable


def register(app: typer.Typer) -> None:
    app.command(name="advise")(handle_errors(advise))


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
    from nomadrig.advise import AdviceInputs, cheapest_region, hours_per_week_from_usage, pick_tower, render_chart
    from nomadrig.advise import advise as compute
    from nomadrig.advise.setups import ADMIN_USD_HOUR, TOWER_TRIPS_PER_YEAR, TRIP_USD, HiddenCosts, field_guide
    from nomadrig.catalog import load_catalog
    from nomadrig.cost import SPOT_INTERRUPTION_OVERHEAD_PCT
    from nomadrig.errors import BadInputError, InputProblem

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
        from nomadrig.advise.setups_chart import render_setups_chart

        render_setups_chart(guide, str(setups_chart))
    if json_out:
        emit_json({**advice.as_dict(), "setups": guide.as_dict()})
        return
    _print_advice(advice, chart)
    _print_setups(guide, setups_chart)


def _admin_hours(given: list[str]) -> dict[str, float]:
    """--admin-hours 'SETUP=HOURS' pairs over the documented defaults; a malformed pair is a usage error (exit 2)."""
    from nomadrig.advise.setups import ADMIN_HOURS_MONTH
    from nomadrig.errors import BadInputError, InputProblem

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
    from nomadrig.advise.setups import LINE_ITEMS

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
    from nomadrig.errors import BadInputError

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

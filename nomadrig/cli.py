"""The nomadrig command line.

Exit codes: 0 ok, 1 policy violation, 2 bad input, 3 cloud or engine failure
(130 when interrupted). Start-up stays fast: cloud SDKs, Pulumi and Ansible are
imported inside the commands that use them.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .cli_common import (
    DataTable,
    JsonOption,
    TeamFileOption,
    console,
    emit_json,
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
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
catalog_app = typer.Typer(help="The GPU catalog: instance types, prices, tower builds.", epilog=EPILOG,
                          invoke_without_command=True)
policy_app = typer.Typer(help="The team's policy: rules, severities, parameters.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(policy_app, name="policy")


@app.command()
@handle_errors
def validate(
    file: Path = typer.Argument(None, help="Team file (default: $NOMADRIG_TEAM, ./team.yaml, ./examples/team.yaml).",
                                show_default=False),
    json_out: bool = JsonOption,
) -> None:
    """Check a team file; every problem names the file, line, field and fix (exit 2)."""
    path = resolve_team_file(file)
    team = load_team_file(path)
    if json_out:
        emit_json({"file": str(path), "valid": True, "team": team.team, "nomads": len(team.nomads),
                   "towers": len(team.towers)})
    else:
        console.print(f"{path}: ok: team {team.team}, {len(team.nomads)} nomads, {len(team.towers)} towers",
                      markup=False)


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
    json_out: bool = JsonOption,
) -> None:
    """List GPU instance types and prices (or tower builds), filtered."""
    if ctx.invoked_subcommand:
        return
    from .catalog import load_catalog

    cat = load_catalog()
    if cloud and cloud not in ("aws", "gcp"):
        from .errors import BadInputError, InputProblem

        raise BadInputError("catalog", [InputProblem("--cloud", f"{cloud!r} is not a cloud.", "Use aws or gcp.")])
    if towers:
        rows = cat.towers()
        if json_out:
            emit_json([t.__dict__ for t in rows])
            return
        table = DataTable(title=f"tower builds (catalog {cat.catalog_date})")
        for col in ("build", "GPUs", "VRAM GB", "GPU TDP W", "typical W", "parts $", "source"):
            table.add_column(col)
        for t in rows:
            table.add_row(t.name, f"{t.gpu_count}x {t.gpu_model}", f"{t.gpu_vram_gb * t.gpu_count:g}",
                          str(t.gpu_tdp_w), str(t.typical_power_w),
                          f"{t.parts_cost_usd:,.0f}" if t.parts_cost_usd is not None else "unknown", t.source)
        console.print(table)
        return
    found = cat.search(cloud=cloud, region=region, gpu_model=gpu, min_vram_gb=min_vram, max_usd_hr=max_price,
                       spot=spot)
    if json_out:
        emit_json([{**it.__dict__, "total_vram_gb": it.total_vram_gb, "region": p.region,
                    "on_demand_usd_hr": p.on_demand_usd_hr, "spot_usd_hr": p.spot_usd_hr,
                    "price_source": p.source, "price_date": p.date} for it, p in found])
        return
    table = DataTable(title=f"GPU instance types (catalog {cat.catalog_date})")
    for col in ("cloud", "type", "GPUs", "VRAM GB", "vCPU", "RAM GB", "region", "$/h", "spot $/h"):
        table.add_column(col, justify="right" if col in ("VRAM GB", "vCPU", "RAM GB", "$/h", "spot $/h") else "left")
    for it, p in found:
        table.add_row(it.cloud, it.instance_type, f"{it.gpu_count}x {it.gpu_model}", f"{it.total_vram_gb:g}",
                      str(it.vcpu), f"{it.ram_gb:g}", p.region, _money(p.on_demand_usd_hr), _money(p.spot_usd_hr))
    console.print(table)
    if not found:
        console.print("no instance type matches these filters", markup=False)


def _money(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "unknown"


@catalog_app.command("refresh")
@handle_errors
def catalog_refresh(
    team_file: Path = TeamFileOption,
    cloud: list[str] = typer.Option(None, "--cloud", help="Refresh only this cloud (repeatable)."),
    out: Path = typer.Option(None, help="Catalog folder to write (default: $NOMADRIG_CATALOG or ~/.nomadrig/catalog)."),
    json_out: bool = JsonOption,
) -> None:
    """Rebuild cloud prices for the team's regions from the AWS Price List API and GCP Cloud Billing Catalog.

    Needs credentials; writes nothing unless the whole refresh succeeds. Later commands read the refreshed catalog.
    """
    from .catalog.loader import refreshed_data_dir
    from .catalog.refresh import refresh

    team = load_team_file(team_file)
    clouds = cloud or team.clouds.configured()
    out_dir = out or refreshed_data_dir()
    report = refresh(clouds, {c: team.clouds.regions(c) for c in clouds}, out_dir)
    summary = {"path": str(report.path), "refreshed": len(report.refreshed), "kept": len(report.kept),
               "dropped_outside_allowed_regions": len(report.dropped)}
    if json_out:
        emit_json(summary)
    else:
        console.print(f"wrote {report.path}: {summary['refreshed']} prices refreshed, {summary['kept']} kept, "
                      f"{summary['dropped_outside_allowed_regions']} outside the allowed regions dropped", markup=False)


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
    """Project the team's monthly cost per nomad against its budget."""
    from .cost import team_projection
    from .policy import PolicyContext, TeamPlan, check_team
    from .spec import box_specs

    team = load_team_file(team_file)
    specs = box_specs(team)
    projection = team_projection(specs, team.usage, team.budgets.monthly_usd, team.policy.allow_public_ip)
    verdicts = check_team(TeamPlan(team.team, tuple(specs)), PolicyContext.from_team(team))
    if json_out:
        emit_json({**projection.as_dict(), "assumptions": team.usage.model_dump(),
                   "verdicts": [v.as_dict() for v in verdicts]})
    else:
        table = DataTable(title=f"team {team.team}: {team.usage.hours_per_day:g} h/day x "
                                f"{team.usage.days_per_month:g} days/month")
        for col in ("nomad", "cloud", "region", "type", "spot", "$/h", "$/month", "note"):
            table.add_column(col, justify="right" if "$" in col else "left")
        for b in projection.boxes:
            table.add_row(b.nomad, b.cloud, b.region, b.instance_type, "yes" if b.spot else "no",
                          _money(b.hourly_usd), f"{b.monthly_usd:,.2f}" if b.monthly_usd is not None else "unknown",
                          b.note)
        for key, usd in projection.fixed.items():
            fixed_cloud, fixed_region, item = key.split("/", 2)
            table.add_row("(team)", fixed_cloud, fixed_region, item, "", "", f"{usd:,.2f}", "fixed, 730 h")
        console.print(table)
        pct = projection.budget_used_pct
        console.print(f"total ${projection.total_usd:,.2f}/month of ${team.budgets.monthly_usd:,.0f} budget"
                      + (f" ({pct:g}%)" if pct is not None else ""), markup=False)
        for v in verdicts:
            console.print(f"{v.severity.value} {v.rule_id}: {v.message}\n  fix: {v.fix}", markup=False)
    if any(v.mandatory for v in verdicts):
        raise typer.Exit(int(ExitCode.POLICY_VIOLATION))


@app.command()
@handle_errors
def advise(
    gpu_class: str = typer.Option("a10g-24gb", "--gpu-class", help="A GPU profile (see `nomadrig catalog`)."),
    hours_per_week: float = typer.Option(20.0, "--hours-per-week", help="GPU hours used per week."),
    cloud: str = typer.Option("aws", help="aws or gcp."),
    region: str = typer.Option(None, help="Region for cloud prices (default: first priced one)."),
    tower: str = typer.Option(None, help="Tower build name (default: cheapest with enough VRAM)."),
    electricity: float = typer.Option(0.30, help="Electricity price, USD per kWh."),
    life_months: int = typer.Option(36, help="Months before the tower is replaced."),
    resale_pct: float = typer.Option(30.0, help="Resale value at end of life, % of parts cost."),
    always_on: bool = typer.Option(False, "--always-on", help="Tower stays on 24/7 (idle draw counts)."),
    months: int = typer.Option(36, help="Horizon of the comparison, months."),
    chart: Path = typer.Option(None, help="Write a PNG chart of cumulative cost over time."),
    json_out: bool = JsonOption,
) -> None:
    """Cloud or tower? Compare notebook+cloud (on-demand, spot) with notebook+tower and show break-even."""
    from .advise import AdviceInputs, pick_tower, render_chart
    from .advise import advise as compute
    from .catalog import load_catalog
    from .errors import BadInputError, InputProblem

    cat = load_catalog()
    profile = cat.profile(gpu_class, cloud)
    if profile is None:
        names = sorted({p.profile for p in cat.profiles() if p.cloud == cloud})
        raise BadInputError("advise", [InputProblem("--gpu-class", f"{gpu_class!r} is not a {cloud} GPU profile.",
                                                    f"Use one of: {', '.join(names)}.")])
    instance = cat.instance(cloud, profile.instance_type)
    assert instance is not None
    if region is None:
        priced = sorted(p.region for p in cat.prices()
                        if p.cloud == cloud and p.instance_type == instance.instance_type and p.on_demand_usd_hr)
        region = priced[0] if priced else ""
    if tower:
        build = next((t for t in cat.towers() if t.name == tower), None)
        if build is None:
            raise BadInputError("advise", [InputProblem("--tower", f"{tower!r} is not a tower build.",
                                                        "Use one of: " + ", ".join(t.name for t in cat.towers()))])
    else:
        build = pick_tower(cat, instance.total_vram_gb)
    inputs = AdviceInputs(hours_per_week, electricity, life_months, resale_pct, tower_always_on=always_on,
                          horizon_months=months)
    advice = compute(cat, instance, region, build, inputs)
    if chart:
        render_chart(advice, str(chart))
    if json_out:
        emit_json(advice.as_dict())
        return
    table = DataTable(title=f"{hours_per_week:g} GPU h/week: {instance.instance_type} ({region}) vs tower {build.name}")
    for col in ("option", "upfront $", "$/month", f"after {months} months $", "break-even"):
        table.add_column(col, justify="right" if col != "option" else "left")
    for o in advice.options:
        be = advice.break_even_month.get(o.name)
        be_text = "" if o.name not in advice.break_even_month else (
            f"tower cheaper from month {be}" if be is not None else f"tower not cheaper within {months} months")
        table.add_row(o.name, f"{o.upfront_usd:,.0f}", f"{o.monthly_usd:,.2f}", f"{o.cumulative[-1]:,.0f}", be_text)
    console.print(table)
    console.print(f"prices: {advice.price.source} ({advice.price.date}); tower: {build.source} ({build.date})",
                  markup=False)
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
    app()


if __name__ == "__main__":
    main()

"""`catalog`: the GPU catalog, its prices and their refresh."""

from __future__ import annotations

from pathlib import Path

import typer

from nomadrig.cli.common import (
    EPILOG,
    JsonOption,
    console,
    emit_json,
    handle_errors,
)

catalog_app = typer.Typer(help="The GPU catalog: instance types, prices, tower builds.", epilog=EPILOG,
                          invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")


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

    from nomadrig.catalog import load_catalog
    from nomadrig.catalog import report as catalog_report

    cat = load_catalog()
    if cloud and cloud not in ("aws", "gcp"):
        from nomadrig.errors import BadInputError, InputProblem

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
    from nomadrig.catalog.refresh import refresh
    from nomadrig.catalog.refreshed import refreshed_data_dir
    from nomadrig.catalog.report import refresh_lines, refresh_targets

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
    from nomadrig.catalog.refreshed import PREVIOUS, refreshed_data_dir, reset

    folder = out or refreshed_data_dir()
    moved = reset(folder)
    if moved:
        console.print(f"moved {', '.join(moved)} from {folder} to {folder / PREVIOUS}; "
                      "commands now read the packaged catalog", markup=False)
    else:
        console.print(f"no refreshed catalog in {folder}: commands already read the packaged catalog", markup=False)

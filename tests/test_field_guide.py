"""`nomadrig advise`: the field guide's five setups, every line recomputed here by hand, ranked, and drawn readably.

The figures below are the catalog rows the comparison uses, written out (not read through the model):
g5.xlarge us-east-1 on demand, gp3 and S3 in us-east-1, the 1x-rtx3090-used build, the dGPU and thin
notebooks, the eGPU enclosure and the RTX 4090 Laptop's throughput factor; and the README's defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nomadrig.advise import AdviceInputs, advise, pick_tower
from nomadrig.advise.setups import HiddenCosts, field_guide
from nomadrig.advise.setups_chart import layout_setups_chart, render_setups_chart
from nomadrig.catalog import load_catalog
from nomadrig.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "team.yaml"
runner = CliRunner()

G5, GP3, S3 = 1.006, 0.08, 0.023  # prices.csv g5.xlarge us-east-1; rates.csv ebs-gp3, s3-standard us-east-1
TOWER, THIN, NOTEBOOK, EGPU, CARD = 800 + 1395.37, 599, 2699, 299, 800  # towers/notebooks/egpus.csv
TOWER_LOAD_W, TOWER_IDLE_W = (350 + 170 + 60) / 0.90, 70
NOTEBOOK_W, NOTEBOOK_SPEED, EGPU_SPEED, CARD_W = 230, 0.77, 0.85, 350 / 0.90
KWH, MONTHS, KEPT = 0.30, 36, 0.70  # 36-month life = horizon: no replacement, 30 % of the price left (70 % spent)
ADMIN = {"tower only": 3, "notebook only": 1, "notebook + tower": 4, "notebook + eGPU": 2, "notebook + cloud": 1}
RATE, TRIPS = 50 * MONTHS, 300 * 1 * MONTHS / 12


def by_hand(hours_per_week: float, data_gb: float = 500) -> dict[str, dict[str, float]]:
    """Every line of every setup over 36 months, from the README formulas."""
    month_h = hours_per_week * 52 / 12
    backup = data_gb * S3 * MONTHS
    tower_power = (TOWER_LOAD_W * month_h + TOWER_IDLE_W * (730 - month_h)) / 1000 * KWH * MONTHS
    nb_hours = hours_per_week / NOTEBOOK_SPEED * 52 / 12
    egpu_hours = hours_per_week / EGPU_SPEED * 52 / 12
    return {
        "tower only": {"hardware": KEPT * TOWER, "electricity": tower_power, "cloud": 0,
                       "admin": ADMIN["tower only"] * RATE, "data": backup, "travel": TRIPS},
        "notebook + tower": {"hardware": KEPT * (TOWER + THIN), "electricity": tower_power, "cloud": 0,
                             "admin": ADMIN["notebook + tower"] * RATE, "data": backup, "travel": TRIPS},
        "notebook only": {"hardware": KEPT * NOTEBOOK, "electricity": NOTEBOOK_W * nb_hours / 1000 * KWH * MONTHS,
                          "cloud": 0, "admin": ADMIN["notebook only"] * RATE, "data": backup, "travel": 0},
        "notebook + eGPU": {"hardware": KEPT * (THIN + EGPU + CARD), "electricity": CARD_W * egpu_hours / 1000 * KWH
                            * MONTHS, "cloud": 0, "admin": ADMIN["notebook + eGPU"] * RATE, "data": backup,
                            "travel": 0},
        "notebook + cloud": {"hardware": KEPT * THIN, "electricity": 0,
                             "cloud": (month_h * G5 + (100 + data_gb) * GP3) * MONTHS,
                             "admin": ADMIN["notebook + cloud"] * RATE, "data": backup, "travel": 0},
    }


def run(*args: str) -> dict:
    result = runner.invoke(app, ["advise", "--team", str(EXAMPLE), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["setups"]


def lines_of(data: dict) -> dict[str, dict[str, float]]:
    return {entry["setup"]: entry["lines_usd"] for entry in data["ranking"]}


@pytest.mark.parametrize("hours", [10, 40, 80])
def test_every_line_of_every_setup_matches_the_hand_computation(hours):
    got, expected = lines_of(run("--hours-per-week", str(hours))), by_hand(hours)
    assert set(got) == set(expected)
    for setup, lines in expected.items():
        assert got[setup] == pytest.approx(lines, abs=0.01), setup


def test_json_carries_every_line_item_and_totals_that_add_up():
    data = run("--hours-per-week", "20")
    assert [e["rank"] for e in data["ranking"]] == [1, 2, 3, 4, 5]
    for entry in data["ranking"]:
        assert set(entry["lines_usd"]) == {"hardware", "electricity", "cloud", "admin", "data", "travel"}
        assert entry["total_usd"] == pytest.approx(sum(entry["lines_usd"].values()), abs=0.02)
        assert entry["gpu"] and entry["bought"] and entry["gpu_hours_per_week"] > 0
    assert data["assumptions"]["admin_hours_month"] == ADMIN


def test_ranking_is_by_total_cost_for_light_use():
    data = run("--hours-per-week", "20")
    totals = {s: sum(lines.values()) for s, lines in by_hand(20).items()}
    assert [e["setup"] for e in data["ranking"]] == sorted(totals, key=totals.get)


def test_the_cloud_beats_the_tower_at_light_use_and_loses_at_heavy_use():
    """Cloud minus tower-only grows with the hours and changes sign: the break-even the guide asks about."""
    def gap(hours: float) -> float:
        totals = {e["setup"]: e["total_usd"] for e in run("--hours-per-week", str(hours))["ranking"]}
        return totals["notebook + cloud"] - totals["tower only"]

    gaps = [gap(h) for h in (2, 20, 80, 160)]
    assert gaps == sorted(gaps) and gaps[0] < 0 < gaps[-1], gaps


def test_a_setup_that_cannot_do_the_week_s_work_is_ranked_last():
    data = run("--hours-per-week", "168")
    ranking = data["ranking"]
    slow = [e["setup"] for e in ranking if not e["feasible"]]
    assert set(slow) == {"notebook only", "notebook + eGPU"}  # 168 / 0.77 and 168 / 0.85 exceed the week
    assert [e["setup"] for e in ranking[-2:]] == sorted(slow, key=lambda s: sum(by_hand(168)[s].values()))
    assert all(e["feasible"] for e in ranking[:3])


def test_more_data_costs_the_cloud_its_disk_and_every_setup_its_backup():
    small, large = lines_of(run("--hours-per-week", "20")), lines_of(run("--hours-per-week", "20", "--data-gb", "5000"))
    for setup in small:
        assert large[setup]["data"] - small[setup]["data"] == pytest.approx(4500 * S3 * MONTHS, abs=0.02)
    assert large["notebook + cloud"]["cloud"] - small["notebook + cloud"]["cloud"] == pytest.approx(
        4500 * GP3 * MONTHS, abs=0.02)
    assert large["tower only"]["cloud"] == 0


def test_hidden_costs_are_overridable_and_move_the_ranking():
    cheap_admin = run("--hours-per-week", "20", "--admin-hours", "tower only=0", "--admin-hours",
                      "notebook + tower=0", "--tower-trips", "0")
    lines = lines_of(cheap_admin)
    assert lines["tower only"]["admin"] == 0 and lines["tower only"]["travel"] == 0
    assert cheap_admin["ranking"][0]["setup"] == "tower only"  # 1,537 + 1,090 + 414 beats the notebook's 4,383


@pytest.mark.parametrize(("args", "option"), [
    (["--admin-hours", "laptop=3"], "--admin-hours"),
    (["--admin-hours", "tower only"], "--admin-hours"),
    (["--egpu-speed", "0"], "--egpu-speed"),
    (["--notebook-price", "-5"], "--notebook-price"),
    (["--admin-rate", "nan"], "--admin-rate"),
])
def test_bad_hidden_cost_inputs_exit_2_naming_the_option(args, option):
    result = runner.invoke(app, ["advise", "--team", str(EXAMPLE), *args])
    assert result.exit_code == 2, result.output
    assert option in result.output


def test_the_text_output_has_one_ranked_table_and_the_assumptions():
    result = runner.invoke(app, ["advise", "--team", str(EXAMPLE), "--hours-per-week", "20"])
    assert result.exit_code == 0, result.output
    assert "The field guide's five setups" in result.output
    for name in ADMIN:
        assert name in result.output
    assert "hidden costs: admin at $50/h" in result.output


# --- the chart: edge cases rendered, every label inside the axes and clear of the others -----------------------------

EDGE_CASES = {
    "one-hour-a-week": {"hours": 1.0},
    "168-hours-a-week": {"hours": 168.0},
    "huge-data": {"hours": 20.0, "data_gb": 50_000.0},
    "ten-year-horizon": {"hours": 40.0, "months": 120, "life": 36},
    "close-totals": {"hours": 20.0, "admin": {"tower only": 0.0, "notebook + tower": 0.0, "notebook only": 0.6}},
}


def guide_for(hours: float, data_gb: float = 500.0, months: int = 36, life: int = 36,
              admin: dict[str, float] | None = None):
    catalog = load_catalog()
    instance = catalog.instance("aws", "g5.xlarge")
    inputs = AdviceInputs(hours, horizon_months=months, life_months=life, data_gb=data_gb)
    advice = advise(catalog, instance, "us-east-1", pick_tower(catalog, instance), inputs)
    hidden = HiddenCosts(admin_hours_month={**HiddenCosts().admin_hours_month, **(admin or {})})
    return field_guide(catalog, advice, hidden)


@pytest.fixture(params=sorted(EDGE_CASES), ids=sorted(EDGE_CASES))
def layout(request):
    import matplotlib.pyplot as plt

    layout = layout_setups_chart(guide_for(**EDGE_CASES[request.param]))
    yield layout
    plt.close(layout.figure)


def test_total_labels_stay_inside_the_axes_and_apart(layout):
    renderer = layout.figure.canvas.get_renderer()
    frame = layout.axes.get_window_extent(renderer)
    boxes = [label.get_window_extent(renderer) for label in layout.totals]
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    for i, box in enumerate(boxes):
        assert not any(box.overlaps(other) for other in boxes[i + 1:])


def test_legend_title_and_footnote_fit_the_figure_without_covering_the_plot(layout):
    renderer = layout.figure.canvas.get_renderer()
    figure = layout.figure.bbox
    axes = layout.axes.get_tightbbox(renderer)
    legend = layout.legend.get_window_extent(renderer)
    footnote = layout.footnote.get_window_extent(renderer)
    title = layout.title.get_window_extent(renderer)
    for box in (legend, footnote, title):
        assert figure.x0 <= box.x0 and box.x1 <= figure.x1 and figure.y0 <= box.y0 and box.y1 <= figure.y1
    assert not legend.overlaps(axes) and not footnote.overlaps(legend) and not footnote.overlaps(axes)
    assert "GPU h/week" in layout.title.get_text() and "GB of data" in layout.title.get_text()


def test_each_edge_case_renders_a_png(tmp_path):
    for name, case in EDGE_CASES.items():
        path = tmp_path / f"{name}.png"
        render_setups_chart(guide_for(**case), str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

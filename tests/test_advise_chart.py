"""The advise chart stays readable in its edge cases: no label overlaps another, the legend or the axes' edge.

Each case is rendered and every placed label's box is measured with matplotlib's renderer
(`get_window_extent`). With NOMADRIG_WRITE_DOCS=1 the images are written to docs/advise/ (the ones
the README shows); otherwise to a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nomadrig.advise import AdviceInputs, advise
from nomadrig.advise.chart import layout_chart, render_chart, step_series
from nomadrig.catalog import load_catalog

DOCS = Path(__file__).resolve().parents[1] / "docs" / "advise"


def case(cloud: str, kind: str, region: str, tower: str, **inputs: float):
    catalog = load_catalog()
    build = next(t for t in catalog.towers() if t.name == tower)
    return advise(catalog, catalog.instance(cloud, kind), region, build, AdviceInputs(**inputs))


CASES = {
    # 1x A100 40GB around the clock costs more in one month than the used-3090 tower
    "break-even-month-1": lambda: case("gcp", "a2-highgpu-1g", "us-central1", "1x-rtx3090-used", hours_per_week=168),
    # 7.9 h/week is where the on-demand cloud catches up exactly at the 36-month horizon
    "break-even-at-horizon": lambda: case("aws", "g5.xlarge", "us-east-1", "1x-rtx3090-used", hours_per_week=7.9),
    # a 12-month life: the replacement at month 12 puts the tower back above the cloud for a few months
    "two-break-evens": lambda: case("aws", "g5.xlarge", "us-east-1", "1x-rtx3090-used", hours_per_week=66,
                                    life_months=12),
    "no-break-even": lambda: case("aws", "g5.xlarge", "us-east-1", "1x-rtx3090-used", hours_per_week=2),
    "168-hours-a-week": lambda: case("aws", "g5.xlarge", "us-east-1", "1x-rtx3090-used", hours_per_week=168),
}


def test_the_cases_are_the_edge_cases_they_claim_to_be():
    months = {name: make().break_evens["cloud on-demand"] for name, make in CASES.items()}
    assert months["break-even-month-1"][0] == 1
    assert months["break-even-at-horizon"] == (36,)
    first, second = months["two-break-evens"][:2]
    assert 2 <= second - first <= 5
    assert months["no-break-even"] == ()
    assert months["168-hours-a-week"][0] <= 6


@pytest.fixture(params=sorted(CASES))
def laid_out(request):
    import matplotlib.pyplot as plt

    advice = CASES[request.param]()
    layout = layout_chart(advice)
    yield request.param, advice, layout
    plt.close(layout.figure)


def test_labels_stay_inside_the_axes_and_clear_of_each_other_and_the_legend(laid_out):
    name, advice, layout = laid_out
    renderer = layout.figure.canvas.get_renderer()
    frame = layout.axes.get_window_extent(renderer)
    boxes = [label.get_bbox_patch().get_window_extent(renderer) for label in layout.labels]  # the framed text
    legend = layout.legend.get_window_extent(renderer)
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, name
        assert not box.overlaps(legend), name
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), name
    marks = sum(len(months) for months in advice.break_evens.values())
    assert len(layout.labels) + len(layout.moved_to_footnote) == marks


def test_title_and_footnote_fit_the_figure_and_say_what_is_compared(laid_out):
    _, advice, layout = laid_out
    renderer = layout.figure.canvas.get_renderer()
    figure = layout.figure.bbox
    for text in (layout.title, layout.footnote):
        box = text.get_window_extent(renderer)
        assert figure.x0 <= box.x0 and box.x1 <= figure.x1 and figure.y0 <= box.y0 and box.y1 <= figure.y1
    assert layout.footnote.get_window_extent(renderer).y1 < layout.axes.xaxis.label.get_window_extent(renderer).y0
    title = layout.title.get_text().replace("\n", " ")
    assert f"{advice.instance.gpu_count}x {advice.instance.gpu_model}" in title
    assert f"{advice.tower.gpu_count}x {advice.tower.gpu_model}" in title
    assert "replaced every" in layout.footnote.get_text()


def test_a_replacement_is_drawn_as_a_vertical_step():
    advice = CASES["two-break-evens"]()
    xs, ys = step_series(advice.options[-1])
    at_12 = [y for x, y in zip(xs, ys, strict=True) if x == 12]
    assert len(at_12) == 2 and at_12[1] - at_12[0] == pytest.approx(advice.tower.parts_cost_usd * 0.7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_case_renders_a_png(name, tmp_path):
    folder = DOCS if os.environ.get("NOMADRIG_WRITE_DOCS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    render_chart(CASES[name](), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

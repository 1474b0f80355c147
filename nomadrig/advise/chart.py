"""The advise chart: cumulative cost of each option by month, readable at a glance.

Labels are placed, not just drawn: each break-even label tries a list of positions around its
marker and keeps the first whose rendered box (matplotlib's `get_window_extent`) lies inside the
axes and clear of the legend and of every label already placed. A label that fits nowhere goes
to the footnote instead, so no label can overlap another or leave the plot. A tower replacement
is drawn as the vertical step it is; the title names the GPU counts compared and the footnote
carries the caveats.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from nomadrig.advise.model import Advice, Option

# Offsets of a label from its marker, in points, nearest first: beside, above, below, then further out.
CANDIDATE_OFFSETS = sorted(((dx, dy) for dx in (8, -8, 40, -40, 90, -90, 160, -160)
                            for dy in (10, -26, 40, -56, 70, -86, 100, 130, 160)),
                           key=lambda offset: (abs(offset[0]) + abs(offset[1]), offset[0] < 0))


@dataclass
class ChartLayout:
    """What the chart put where: the figure, its axes, the break-even labels placed and those moved to the footnote."""

    figure: Any
    axes: Any
    labels: list[Any]
    footnote: Any
    title: Any
    legend: Any
    moved_to_footnote: list[str]


def step_series(option: Option) -> tuple[list[float], list[float]]:
    """x, y of an option's cumulative cost with each replacement drawn as a vertical jump, not a slope."""
    xs: list[float] = []
    ys: list[float] = []
    for month, value in enumerate(option.cumulative):
        if month in option.steps:
            xs.append(month)
            ys.append(option.cumulative[month - 1] + option.monthly_usd)
        xs.append(month)
        ys.append(value)
    return xs, ys


def _title(advice: Advice) -> str:
    inst, tower = advice.instance, advice.tower
    return (f"{advice.inputs.hours_per_week:g} GPU h/week: {inst.gpu_count}x {inst.gpu_model} in the cloud "
            f"({inst.instance_type}, {advice.price.region}) vs {tower.gpu_count}x {tower.gpu_model} tower "
            f"({tower.name})")


def _footnote(advice: Advice, moved: list[str]) -> str:
    notes = [f"Tower: cash spent; replaced every {advice.inputs.life_months} months, old one sold at "
             f"{advice.inputs.resale_pct:g}%. Cloud: compute + disks 24/7. Prices read {advice.price.read_date}.",
             *advice.caveats, *moved]
    return "\n".join(textwrap.fill(n, 150) for n in notes)


def _break_even_marks(advice: Advice) -> list[tuple[str, float, float]]:
    tower = advice.options[-1].cumulative
    marks = []
    for name, months in advice.break_evens.items():
        for i, month in enumerate(months):
            again = " again" if i else ""
            marks.append((f"tower cheaper than {name}{again}\nfrom month {month}", month, tower[month]))
    return marks


def _inside(box: Any, outer: Any) -> bool:
    return box.x0 >= outer.x0 and box.x1 <= outer.x1 and box.y0 >= outer.y0 and box.y1 <= outer.y1


def label_box(label: Any, renderer: Any) -> Any:
    """The label's visible box (text plus its rounded frame), without the leader line to its marker."""
    from matplotlib.text import Text

    label.update_positions(renderer)  # an annotation places its text from the marker only when asked
    return Text.get_window_extent(label, renderer).padded(4)


def _place(axes: Any, renderer: Any, text: str, x: float, y: float, obstacles: list[Any]) -> Any | None:
    """The first candidate position whose box is inside the axes and clear of the obstacles, or None."""
    frame = axes.get_window_extent(renderer)
    for dx, dy in CANDIDATE_OFFSETS:
        label = axes.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8,
                              ha="left" if dx > 0 else "right", va="bottom",
                              bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6", "alpha": 0.95},
                              arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.8})
        box = label_box(label, renderer)
        if _inside(box, frame) and not any(box.overlaps(other) for other in obstacles):
            return label
        label.remove()
    return None


def layout_chart(advice: Advice) -> ChartLayout:
    """Draw the chart and place its labels; the caller saves or inspects the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.8), dpi=120)
    for option in advice.options:
        xs, ys = step_series(option)
        ax.plot(xs, ys, label=option.name, linewidth=2)
    top = max(max(o.cumulative) for o in advice.options)
    ax.set_xlim(0, advice.inputs.horizon_months)
    ax.set_ylim(0, top * 1.25 if top > 0 else 1)
    ax.set_xlabel("months")
    ax.set_ylabel("cumulative cost (USD)")
    ax.grid(alpha=0.3)
    marks = _break_even_marks(advice)
    for _, month, value in marks:
        ax.axvline(month, linestyle=":", color="grey", linewidth=1)
        ax.plot([month], [value], marker="o", color="black", markersize=4)
    legend = ax.legend(loc="upper left", fontsize=8)
    title = ax.set_title(textwrap.fill(_title(advice), 110), fontsize=10)
    footnote = fig.text(0.01, 0.01, _footnote(advice, []), fontsize=7, va="bottom", ha="left")
    # Room for the footnote as long as it can get: every label moved there (the figure is 5.8 in = 418 pt high).
    worst = _footnote(advice, [m[0].replace("\n", " ") + " (no room on the plot)" for m in marks])
    fig.tight_layout(rect=(0, 0.02 + (worst.count("\n") + 1) * 9.5 / 418 + 0.01, 1, 1))
    fig.canvas.draw()  # positions (axis labels, legend) are final only once drawn
    renderer = fig.canvas.get_renderer()
    obstacles = [legend.get_window_extent(renderer)]
    labels, moved = [], []
    for text, month, value in marks:
        label = _place(ax, renderer, text, month, value, obstacles)
        if label is None:
            moved.append(text.replace("\n", " ") + " (no room on the plot)")
            continue
        labels.append(label)
        obstacles.append(label_box(label, renderer))
    if moved:
        footnote.set_text(_footnote(advice, moved))
    fig.canvas.draw()
    return ChartLayout(fig, ax, labels, footnote, title, legend, moved)


def render_chart(advice: Advice, path: str) -> None:
    """Write the chart as a PNG."""
    import matplotlib.pyplot as plt

    layout = layout_chart(advice)
    layout.figure.savefig(path)
    plt.close(layout.figure)

"""The field guide chart: the five setups as stacked bars of their cost lines, cheapest feasible on top.

One bar per setup, one colour per line item; the total over the horizon is written at the bar's end.
The x axis leaves room for the widest total label, the legend sits below the plot (never over a bar),
the title says the hours, data size and horizon ranked for, and the footnote the assumptions.
`layout_setups_chart` returns what it drew so tests can check, with matplotlib's text boxes, that no
label leaves the axes or overlaps another.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from nomadrig.advise.setups import LINE_ITEMS, FieldGuide

COLOURS = {"hardware": "#4c72b0", "electricity": "#dd8452", "cloud": "#55a868", "admin": "#c44e52",
           "data": "#8172b3", "travel": "#937860"}


@dataclass
class SetupsLayout:
    figure: Any
    axes: Any
    totals: list[Any]  # the total labels at the bars' ends
    legend: Any
    title: Any
    footnote: Any


def _title(guide: FieldGuide) -> str:
    return (f"The field guide's five setups for {guide.hours_per_week:g} GPU h/week, {guide.data_gb:g} GB of data, "
            f"over {guide.horizon_months} months: total cost, cheapest first")


def _footnote(guide: FieldGuide) -> str:
    hidden = guide.hidden
    admin = ", ".join(f"{name} {hours:g} h" for name, hours in hidden.admin_hours_month.items())
    notes = [f"Admin at ${hidden.admin_usd_hour:g}/h a month: {admin}. Tower trips "
             f"{hidden.tower_trips_per_year:g}/year at ${hidden.trip_usd:g}. Hardware net of its value at the horizon. "
             "Hatched: cannot do the week's work in 168 h (ranked last).", *guide.caveats]
    return "\n".join(textwrap.fill(note, 160) for note in notes).replace("$", r"\$")  # "$" starts mathtext


def _label(setup_name: str, rank: int, feasible: bool, hours: float) -> str:
    return f"{rank}. {setup_name}" + ("" if feasible else f"\n(needs {hours:.0f} GPU h/week)")


def layout_setups_chart(guide: FieldGuide) -> SetupsLayout:
    """Draw the ranking; the caller saves or inspects the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.6), dpi=120)
    setups = list(guide.setups)
    ys = list(range(len(setups)))[::-1]  # rank 1 at the top
    for item in LINE_ITEMS:
        lefts = [sum(s.lines[i] for i in LINE_ITEMS[:LINE_ITEMS.index(item)]) for s in setups]
        widths = [s.lines[item] for s in setups]
        ax.barh(ys, widths, left=lefts, color=COLOURS[item], label=item, height=0.6,
                hatch=["" if s.feasible else "//" for s in setups], edgecolor="white")
    top = max(s.total_usd for s in setups)
    ax.set_xlim(0, top * 1.3 if top > 0 else 1)
    ax.set_yticks(ys, [_label(s.name, i, s.feasible, s.gpu_hours_week) for i, s in enumerate(setups, 1)], fontsize=9)
    ax.set_xlabel(f"USD over {guide.horizon_months} months")
    ax.grid(axis="x", alpha=0.3)
    totals = [ax.text(s.total_usd + top * 0.01, y, f"\\${s.total_usd:,.0f}", va="center", ha="left", fontsize=8)
              for s, y in zip(setups, ys, strict=True)]
    title = ax.set_title(textwrap.fill(_title(guide), 100), fontsize=10)
    footnote = fig.text(0.01, 0.01, _footnote(guide), fontsize=7, va="bottom", ha="left")
    lines = _footnote(guide).count("\n") + 1
    bottom = 0.02 + lines * 9.5 / (5.6 * 72) + 0.09  # footnote, then a row for the legend above it
    fig.tight_layout(rect=(0, bottom, 1, 1))
    legend = fig.legend(loc="lower center", ncol=len(LINE_ITEMS), fontsize=8, frameon=False,
                        bbox_to_anchor=(0.5, bottom - 0.075))
    fig.canvas.draw()
    return SetupsLayout(fig, ax, totals, legend, title, footnote)


def render_setups_chart(guide: FieldGuide, path: str) -> None:
    """Write the ranking chart as a PNG."""
    import matplotlib.pyplot as plt

    layout = layout_setups_chart(guide)
    layout.figure.savefig(path)
    plt.close(layout.figure)

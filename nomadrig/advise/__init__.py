"""`nomadrig advise`: cloud or tower, like for like, with the catalog's prices (model) and one chart (chart);
the field guide's five setups ranked with their hidden costs (setups) and their chart (setups_chart).

matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

from nomadrig.advise.model import (
    HOURS_PER_MONTH,
    WEEKS_PER_MONTH,
    Advice,
    AdviceInputs,
    Option,
    advise,
    cheapest_region,
    cloud_hours,
    crossings,
    hours_per_week_from_usage,
    pick_tower,
    tower_book_value,
    tower_cash,
    tower_hours,
    tower_power_usd_month,
)
from nomadrig.advise.setups import SETUPS, FieldGuide, HiddenCosts, Setup, field_guide
from nomadrig.advise.towers import tower_spec

__all__ = [
    "HOURS_PER_MONTH",
    "WEEKS_PER_MONTH",
    "Advice",
    "AdviceInputs",
    "FieldGuide",
    "HiddenCosts",
    "Option",
    "SETUPS",
    "Setup",
    "advise",
    "cheapest_region",
    "cloud_hours",
    "crossings",
    "field_guide",
    "hours_per_week_from_usage",
    "pick_tower",
    "render_chart",
    "tower_book_value",
    "tower_cash",
    "tower_hours",
    "tower_power_usd_month",
    "tower_spec",
]


def render_chart(advice: Advice, path: str) -> None:
    """Write the advise chart as a PNG (imports matplotlib)."""
    from nomadrig.advise.chart import render_chart as render

    render(advice, path)

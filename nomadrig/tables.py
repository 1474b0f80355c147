"""Text that is data, printed as written: rich never reads team-file text, tags or cloud answers as markup.

A leaf beside the CLI: the catalog's and the reaper's reports build their
tables with it too.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table


def literal(value: object) -> str:
    """`value` as console markup that prints exactly as written.

    Team-file text, stack outputs, tags, labels and cloud answers are data:
    rich would read ``[red]`` in them as a style, ``[link=...]`` as a link,
    and raise MarkupError on a stray ``[/]``. Use this for every such value in
    a line that also carries markup; a line that is data only is printed with
    ``markup=False`` instead.
    """
    return escape(str(value))


class DataTable(Table):
    """A rich table whose title, caption and text cells are data, printed as written, never read as markup.

    A cell that is deliberately styled is passed as a ``rich.text.Text`` (or
    another renderable), which is kept as it is.
    """

    def __init__(self, *headers: str, title: str | None = None, caption: str | None = None, **kwargs: Any) -> None:
        super().__init__(*headers, title=None if title is None else literal(title),
                         caption=None if caption is None else literal(caption), **kwargs)

    def add_row(self, *renderables: RenderableType | None, **kwargs: Any) -> None:
        super().add_row(*(literal(r) if isinstance(r, str) else r for r in renderables), **kwargs)

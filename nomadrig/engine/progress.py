"""Progress of a Pulumi update, resource by resource, from the engine's event stream.

A box takes minutes to come up; the user should see which resource is being
created, replaced or deleted and for how long, not a silent prompt. The
Automation API hands us structured engine events (``on_event``); `UpdateProgress`
folds them into rows (pure bookkeeping, tested directly), and `ProgressDisplay`
shows the rows as a rich live table on a terminal or as one line per finished
resource elsewhere (CI logs, pipes).

Events arrive on the Automation API's watcher thread, so the display locks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

# Ops that change nothing are counted but not shown: an idempotent `up` would
# otherwise list every resource of the stack.
QUIET_OPS = frozenset({"same", "read"})
ROOT_TYPE = "pulumi:pulumi:Stack"
OP_WORDS = {
    "create": ("creating", "created"),
    "update": ("updating", "updated"),
    "delete": ("deleting", "deleted"),
    "replace": ("replacing", "replaced"),
    "create-replacement": ("creating replacement", "created replacement"),
    "delete-replaced": ("deleting replaced", "deleted replaced"),
    "import": ("importing", "imported"),
    "refresh": ("refreshing", "refreshed"),
    "discard": ("forgetting", "forgot (retained)"),
}


def is_default_provider(type_: str, urn: str) -> bool:
    """A provider the engine made by itself (``pulumi:providers:aws::default_7_1_0``), not one the program declared.

    The real engine reports it as a resource like any other; Pulumi's own display hides it, and so do we:
    the user declared a box, not the plugin instance that creates it.
    """
    return type_.startswith("pulumi:providers:") and urn_name(urn).startswith("default")


def urn_name(urn: str) -> str:
    """The logical name at the end of a URN (``urn:pulumi:stack::project::type::name``)."""
    return urn.rsplit("::", 1)[-1] if "::" in urn else urn


@dataclass
class ResourceRow:
    urn: str
    type: str
    name: str
    op: str
    planning: bool
    started: float
    finished: float | None = None
    failed: bool = False
    retained: bool = False

    @property
    def status(self) -> str:
        going, done = OP_WORDS.get(self.op, (self.op, self.op))
        if self.planning:
            return f"will {self.op}"
        if self.failed:
            return f"{self.op} failed"
        if self.finished is None:
            return going
        if self.retained and self.op == "delete":
            return "retained (not deleted)"
        return done

    def elapsed(self, now: float) -> float:
        return (self.finished if self.finished is not None else now) - self.started


@dataclass
class UpdateProgress:
    """What the event stream said so far: resources, errors, policy findings, the summary."""

    stack: str
    action: str
    clock: Callable[[], float] = time.monotonic
    rows: dict[str, ResourceRow] = field(default_factory=dict)
    quiet: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    policy: list[str] = field(default_factory=list)
    summary: dict[str, int] | None = None
    cancelled: bool = False

    def handle(self, event: Any) -> str | None:
        """Fold one engine event in; return a line worth printing when not live (a finished resource)."""
        now = self.clock()
        if getattr(event, "resource_pre_event", None):
            meta = event.resource_pre_event.metadata
            op = _op(meta.op)
            if meta.type == ROOT_TYPE or is_default_provider(meta.type, meta.urn):
                return None
            if op in QUIET_OPS:
                self.quiet[op] = self.quiet.get(op, 0) + 1
                return None
            retained = bool(meta.old and meta.old.retain_on_delete)
            self.rows[meta.urn] = ResourceRow(meta.urn, meta.type, urn_name(meta.urn), op,
                                              bool(event.resource_pre_event.planning), now, retained=retained)
            return None
        if getattr(event, "res_outputs_event", None):
            row = self.rows.get(event.res_outputs_event.metadata.urn)
            if row is None or row.planning:
                return None
            row.finished = now
            return f"  {row.status:<24} {row.type} {row.name} ({row.elapsed(now):.1f}s)"
        if getattr(event, "res_op_failed_event", None):
            row = self.rows.get(event.res_op_failed_event.metadata.urn)
            if row is not None:
                row.failed, row.finished = True, now
                return f"  {row.status:<24} {row.type} {row.name} ({row.elapsed(now):.1f}s)"
            return None
        if getattr(event, "diagnostic_event", None):
            diag = event.diagnostic_event
            if diag.severity == "error":
                where = f"{urn_name(diag.urn)}: " if diag.urn else ""
                self.errors.append(where + diag.message.strip())
            return None
        if getattr(event, "policy_event", None):
            pol = event.policy_event
            where = f" ({urn_name(pol.resource_urn)})" if pol.resource_urn else ""
            line = f"{pol.enforcement_level} {pol.policy_pack_name}/{pol.policy_name}{where}: {pol.message.strip()}"
            self.policy.append(line)
            return "  policy " + line
        if getattr(event, "summary_event", None):
            self.summary = {_op(k): int(v) for k, v in event.summary_event.resource_changes.items()}
            return None
        if getattr(event, "cancel_event", None):
            self.cancelled = True
        return None

    def table(self) -> Table:
        now = self.clock()
        # Stack, type and resource names come from the team file and the state: data, never markup.
        table = Table(title=escape(f"{self.action} {self.stack}"), title_justify="left", expand=False)
        for col in ("status", "type", "name", "time"):
            table.add_column(col, justify="right" if col == "time" else "left")
        for row in self.rows.values():
            style = "red" if row.failed else ("green" if row.finished is not None else "yellow")
            elapsed = "" if row.planning else f"{row.elapsed(now):.0f}s"
            table.add_row(Text(row.status, style=style), Text(row.type), Text(row.name), elapsed)
        unchanged = sum(self.quiet.values())
        if unchanged:
            table.caption = f"{unchanged} unchanged"
        return table

    def summary_line(self) -> str:
        if not self.summary:
            return "no changes"
        parts = [f"{count} {op}" for op, count in sorted(self.summary.items()) if count]
        return ", ".join(parts) or "no changes"


def _op(op: Any) -> str:
    return str(getattr(op, "value", op))


class ProgressDisplay:
    """Shows an `UpdateProgress`: a live table on a terminal, plain lines otherwise."""

    def __init__(self, progress: UpdateProgress, console: Console) -> None:
        self.progress = progress
        self.console = console
        self._lock = threading.Lock()
        self._live: Any = None

    def __enter__(self) -> ProgressDisplay:
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self.progress.table(), console=self.console, refresh_per_second=4,
                              transient=False)
            self._live.__enter__()
        else:
            self.console.print(f"{self.progress.action} {self.progress.stack} ...", markup=False, highlight=False)
        return self

    def on_event(self, event: Any) -> None:
        with self._lock:
            line = self.progress.handle(event)
            if self._live is not None:
                self._live.update(self.progress.table())
            elif line:
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._live is not None:
                self._live.update(self.progress.table())
                self._live.__exit__(None, None, None)
                self._live = None

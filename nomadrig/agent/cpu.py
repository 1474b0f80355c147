"""CPU signal: the one-minute load average divided by the number of cores.

The load average is already smoothed over the minute between two timer runs,
so one read per run suffices, and it counts tasks waiting on disk too (a job
reading its dataset is activity).
"""

from __future__ import annotations

import os
from typing import Any, Callable


def parse_loadavg(text: str) -> float:
    """The one-minute load from ``/proc/loadavg`` (``0.52 0.58 0.59 1/467 12345``)."""
    fields = text.split()
    if len(fields) < 3:
        raise ValueError(f"unexpected /proc/loadavg content: {text[:80]!r}")
    return float(fields[0])


def count_cores(stat_text: str | None) -> int:
    """Cores from the ``cpuN`` lines of ``/proc/stat``, or ``os.cpu_count()`` if unreadable."""
    if stat_text:
        cores = sum(1 for line in stat_text.splitlines() if line.startswith("cpu") and line[3:4].isdigit())
        if cores:
            return cores
    return os.cpu_count() or 1


def sample_cpu(read: Callable[[str], str | None]) -> dict[str, Any]:
    """One CPU observation; ``read(name)`` returns a ``/proc`` file's text or None."""
    text = read("loadavg")
    if text is None:
        return {"status": "error", "detail": "cannot read /proc/loadavg", "load1": None, "cores": None}
    try:
        load1 = parse_loadavg(text)
    except ValueError as error:
        return {"status": "error", "detail": str(error), "load1": None, "cores": None}
    return {"status": "ok", "detail": "", "load1": load1, "cores": count_cores(read("stat"))}

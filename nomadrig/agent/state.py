"""The agent's memory between timer runs: ``<state_dir>/agent.json``.

Each run appends its sample (with the action it took) and rewrites the file
atomically, so a crash or a power cut leaves the previous complete history,
never a truncated one that could reset or fake idleness.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
from typing import Any

from .config import AgentConfig
from .fsutil import atomic_write_json, read_text

STATE_FILE = "agent.json"
STATUS_FILE = "status.json"
LOCK_FILE = "agent.lock"
STATE_VERSION = 1

log = logging.getLogger("nomadrig-agent")


def history_limit(config: AgentConfig) -> int:
    """Samples to keep: twice what the idle window plus grace needs, so early or extra runs fit."""
    needed = math.ceil((config.idle_seconds + config.grace_seconds) / config.interval_seconds)
    return 2 * needed + config.max_gap_intervals + 10


def load_history(state_dir: str) -> list[dict[str, Any]]:
    """The stored samples, oldest first. A damaged file is set aside and the count restarts."""
    path = os.path.join(state_dir, STATE_FILE)
    text = read_text(path)
    if text is None:
        return []
    try:
        data = json.loads(text)
        samples = data["samples"]
        if not isinstance(samples, list) or not all(isinstance(s, dict) and "t" in s for s in samples):
            raise ValueError("samples is not a list of samples")
    except (ValueError, KeyError, TypeError) as error:
        aside = path + ".damaged"
        log.warning("%s is damaged (%s); moved to %s, idle count restarts", path, error, aside)
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        return []
    return samples


def save_history(state_dir: str, samples: list[dict[str, Any]], config: AgentConfig) -> list[dict[str, Any]]:
    """Keep the newest samples within :func:`history_limit` and write them atomically."""
    kept = samples[-history_limit(config) :]
    atomic_write_json(
        os.path.join(state_dir, STATE_FILE), {"version": STATE_VERSION, "samples": kept}, compact=True
    )
    return kept


def write_status(state_dir: str, status: dict[str, Any]) -> None:
    atomic_write_json(os.path.join(state_dir, STATUS_FILE), status)


class StateLock:
    """An exclusive lock on the state dir so a manual ``tick`` and the timer never interleave."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, LOCK_FILE)
        self.handle = None

    def __enter__(self) -> StateLock:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.handle = open(self.path, "a")  # noqa: SIM115 - held for the with-block
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

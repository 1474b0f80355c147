"""Crash-safe JSON files: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any


def atomic_write_json(path: str, data: Any, mode: int = 0o644, compact: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it over, fsync the dir.

    The directory fsync makes the rename itself survive a power cut, which
    matters because the agent's state decides whether a box is stopped.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            if compact:
                json.dump(data, out, separators=(",", ":"), sort_keys=True)
            else:
                json.dump(data, out, indent=1, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_text(path: str):
    """A file's text, or None when it does not exist or cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None

"""Reading what box users control, as root: bounded, never through a symlink, FIFO or device, and printable.

Any user can write their own Jupyter runtime folder, and the agent reads it as
root every minute. A file there may be huge, a FIFO that blocks ``open()``
forever, a symlink to ``/dev/zero``, invalid UTF-8, or JSON with ``1e400`` or
nested a million deep; a "server" on loopback may answer anything, slowly.
Each of these must cost only its own signal (reported as unknown), never the
tick and never the other signals.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any


class Refused(ValueError):
    """A user file or answer the agent will not use; the message says why (it is shown in ``status``)."""


def read_limited(path: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, opened without following a final symlink.

    ``O_NONBLOCK`` makes opening a FIFO return at once (then refused as not a
    regular file); a hard link could make root read a file the user cannot.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise Refused("a symlink, not followed") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise Refused("not a plain file, not read")
        data = os.read(fd, max_bytes + 1)  # one read: a regular file returns all it has, up to the count
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise Refused(f"over {max_bytes} bytes, not read")
    return data


def _number(text: str) -> float:
    """A JSON number, or Refused: NaN, Infinity and literals that overflow (``1e400``) are not numbers here."""
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        raise Refused(f"{text[:20]} is not a finite number")
    return number


def load_json(data: bytes) -> Any:
    """JSON from untrusted bytes: strict UTF-8, finite numbers only, depth errors reported."""
    try:
        return json.loads(data.decode("utf-8"), parse_float=_number, parse_constant=_number)
    except RecursionError:
        raise Refused("JSON nested too deeply") from None


def printable(value: object, limit: int = 300) -> str:
    """One line of plain text for the journal, ``status.json`` and terminals: control characters escaped.

    Kernel ids, file names and error messages can come from users; a newline
    would forge a log line and an ANSI escape would rewrite an admin's screen.
    """
    text = str(value)
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:limit])
    return shown + "..." if len(text) > limit else shown


def why(error: BaseException) -> str:
    """The reason for a report: a Refused message as is, anything else with its kind."""
    return str(error) if isinstance(error, Refused) else f"{type(error).__name__}: {error}"

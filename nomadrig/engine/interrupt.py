"""Getting a Ctrl-C to the Pulumi CLI exactly once.

On a Ctrl-C the CLI stops cleanly by itself: it lets the operations in flight
finish, saves the state and releases the stack's lock; a *second* SIGINT
makes it exit at once and can leave pending operations behind. So:

- from a terminal, the Ctrl-C already reached the CLI (it runs in nomadrig's
  foreground process group): nomadrig must not send another;
- when only nomadrig got the signal (``kill -INT``, a supervisor, no
  terminal), nomadrig forwards one SIGINT to the CLI it started.

``pulumi cancel`` is no substitute on self-managed backends (file, s3, gs,
azblob): there it only deletes the lock file (pulumi/pulumi#9100), which
would let a second update start while the first is still writing state.
On Pulumi Cloud it asks the service to cancel the update, which is clean.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def ctrl_c_reached_children() -> bool:
    """True when the interrupt came from our terminal, whose foreground group includes the CLI."""
    try:
        return sys.stdin.isatty() and os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def child_pids() -> list[int]:
    """Direct children of this process (the running Pulumi CLI): /proc on Linux, else `pgrep -P`."""
    me = os.getpid()
    proc = Path("/proc")
    if proc.is_dir():
        children = []
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may contain spaces and parentheses, so split after the last ")".
            fields = stat[stat.rfind(")") + 2:].split()
            if len(fields) > 1 and fields[1] == str(me):
                children.append(int(entry.name))
        return children
    try:
        out = subprocess.run(["pgrep", "-P", str(me)], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(pid) for pid in out.split() if pid.isdigit()]


def forward_interrupt() -> int:
    """Send one SIGINT to each child; returns how many got it."""
    sent = 0
    for pid in child_pids():
        try:
            os.kill(pid, signal.SIGINT)
            sent += 1
        except ProcessLookupError:
            continue
    return sent


def is_service_backend(backend_url: str) -> bool:
    """Pulumi Cloud (or a self-hosted service) cancels updates; self-managed backends only break locks."""
    return backend_url.startswith(("https://", "http://"))


@contextmanager
def ctrl_c_as_a_flag() -> Iterator[Callable[[], bool]]:
    """Inside the block, a Ctrl-C only raises a flag the main thread polls; a second one raises at once.

    The main thread waits on worker threads (the CLI's update, the towers' runs). A KeyboardInterrupt
    raised at an arbitrary point there can land before the code that handles it, or inside a queue's or
    an Event's lock and leave it broken ("release unlocked lock"), so the first Ctrl-C is not raised.
    Off the main thread (where no handler can be set) Ctrl-C stays Python's own.
    """
    pressed: list[bool] = []

    def on_sigint(_signum: int, _frame: object) -> None:
        if pressed:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for the runs
        pressed.append(True)

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        yield lambda: False
        return
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)

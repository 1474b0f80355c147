"""Wait for the Pulumi CLI build that ``scripts/setup.sh --test --engine-background`` left running.

A cold build of the CLI takes tens of minutes on two cores, so setup can start it
in the background and let the test run begin; the tests that run the real engine
are ordered last (tests/conftest.py) and wait here for the build to finish. The
background job writes three files into ``.cache/engine-build/``: ``pid`` (the job),
``log`` (the build's output) and, last, ``exit`` (its exit status). No ``pid``
file means no background build was started, and there is nothing to wait for.

A failed build is a test failure, not a skip, where Go is installed: CI must not
pass with the real-engine tests quietly skipped.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO / ".cache" / "engine-build"
#: How long the tests wait for a running build before failing: a cold build under load takes about 30 minutes.
DEFAULT_WAIT_S = float(os.environ.get("NOMADRIG_ENGINE_WAIT_S", "3600"))
RERUN_HINT = "Run `bash scripts/setup.sh --test` again (it rebuilds and waits), or `bash scripts/build-engine.sh`."


class EngineBuildFailed(Exception):
    """The background build failed, vanished or outlived the wait; the message says which and what to do."""


def _alive(pid: int) -> bool:
    """Whether a process with this id still runs: it exists (signal 0) and is not a zombie nobody reaped.

    The job's parent, setup.sh, has exited, so an init that does not reap (as
    in some CI containers) would leave a dead job looking alive for ever.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask: trust the signal
    return state not in ("Z", "X")


def _log_tail(build_dir: Path, lines: int = 25) -> str:
    """The last lines of the build log, indented, for a failure message."""
    log = build_dir / "log"
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _exit_status(build_dir: Path) -> int | None:
    """The finished build's exit status, or None while it runs (the file is written last, atomically)."""
    status = build_dir / "exit"
    if not status.exists():
        return None
    text = status.read_text().strip()
    return int(text) if text.lstrip("-").isdigit() else -1


def wait_for_engine_build(
    build_dir: Path = BUILD_DIR,
    *,
    timeout_s: float = DEFAULT_WAIT_S,
    say: Callable[[str], None] = print,
    poll_s: float = 5.0,
) -> None:
    """Return once no background build is running; raise EngineBuildFailed if it did not succeed.

    ``say`` gets one line when waiting starts (where the log is) and one when it
    ends, so a long pause in the test run explains itself.
    """
    pid_file = build_dir / "pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip() or 0)
    started = time.monotonic()
    announced = False
    while (status := _exit_status(build_dir)) is None:
        if not _alive(pid):
            raise EngineBuildFailed(
                f"{build_dir}: the Pulumi CLI build (pid {pid}) ended without writing its exit status "
                f"(killed?); its log ends:\n{_log_tail(build_dir)}\n  {RERUN_HINT}"
            )
        if time.monotonic() - started > timeout_s:
            raise EngineBuildFailed(
                f"{build_dir}: the Pulumi CLI build (pid {pid}) is still running after {timeout_s:.0f} s "
                f"(NOMADRIG_ENGINE_WAIT_S); its log ends:\n{_log_tail(build_dir)}\n"
                "  Let it finish (`tail -f` the log), then run the tests again."
            )
        if not announced:
            say(f"waiting for the Pulumi CLI build started by scripts/setup.sh (log: {build_dir / 'log'}) ...")
            announced = True
        time.sleep(poll_s)
    if announced:
        say(f"the Pulumi CLI build finished after a {time.monotonic() - started:.0f} s wait (exit {status})")
    if status != 0 and shutil.which("go") is not None:
        raise EngineBuildFailed(
            f"{build_dir / 'log'}: the Pulumi CLI build failed (exit {status}); it ends:\n"
            f"{_log_tail(build_dir)}\n  Fix the cause above, then: {RERUN_HINT}"
        )

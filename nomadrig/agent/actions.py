"""What the agent does about a decision: tell users, stop the box, or just report.

Every message goes to the journal (stdout of the oneshot service); logged-in
users see warnings through ``wall``. A failing ``wall`` never blocks a
shutdown, and a failing poweroff is reported so the next run retries.
"""

from __future__ import annotations

import logging
import subprocess

from .config import AgentConfig
from .decision import Decision, format_duration

log = logging.getLogger("nomadrig-agent")


def run_logged(argv: list[str]) -> bool:
    """Run a command of the config; a failure is logged with its output, never raised."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.error("%s failed: %s", argv[0], error)
        return False
    if done.returncode != 0:
        log.error("%s exited %s: %s", " ".join(argv), done.returncode, (done.stderr or done.stdout).strip()[:300])
        return False
    return True


def warning_message(decision: Decision, config: AgentConfig) -> str:
    idle_for = format_duration(decision.quiet_seconds)
    left = format_duration(decision.shutdown_in_seconds or 0)
    return (
        f"nomadrig: this box has been idle for {idle_for} (no GPU, CPU, SSH, notebook or lease activity). "
        f"It will shut down (stop, data kept) in {left} unless there is activity. "
        "To keep it up for a long job: sudo nomadrig-agent hold 6h"
    )


def perform(decision: Decision, config: AgentConfig) -> list[str]:
    """Carry out the side effects of ``decision``; returns what was done, for the log and tests.

    The shutdown itself is :func:`power_off`, called by the tick after the
    state recording the shutdown is safely on disk.
    """
    done = []
    if decision.cancelled_warning:
        active = [name for name, s in decision.signals.items() if s["state"] == "active"]
        # A machine in report mode warns only before a reboot for a pending update (towers); others shut down.
        cancelled = "reboot" if config.mode == "report" else "shutdown"
        message = f"nomadrig: idle {cancelled} cancelled, activity seen ({', '.join(active) or 'see status'})."
        if run_logged(config.wall_command + [message]):
            done.append("wall-cancel")
    if (
        decision.action == "warn"
        and decision.notify_warning
        and not decision.reboot_reasons  # a reboot's warning is the reboot module's
        and run_logged(config.wall_command + [warning_message(decision, config)])
    ):
        done.append("wall-warn")
    if decision.action == "shutdown":
        idle_for = format_duration(decision.quiet_seconds)
        message = f"nomadrig: idle for {idle_for}, shutting down now (the box stops; data is kept)."
        if run_logged(config.wall_command + [message]):
            done.append("wall-shutdown")
    return done


def power_off(config: AgentConfig) -> bool:
    """Run the poweroff command (``systemctl poweroff``: on a cloud box that stops it)."""
    log.warning("idle: powering off with %s", " ".join(config.poweroff_command))
    return run_logged(config.poweroff_command)

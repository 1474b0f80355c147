"""The idle decision: a pure function of the recorded samples, the config and the time.

Rules, in the order they bite:

* A sample is *active* when any signal is active, *unknown* when CPU or SSH
  could not be read (they always exist on Linux, so failing means the agent
  is blind), and *quiet* otherwise. GPU, Jupyter, the lease and cloud-init
  fall back: when they cannot be read the decision is made on the rest and
  says so. So a box user who breaks their own Jupyter files can neither stop
  the box by it nor keep it up forever; a reading that fails in any way,
  however malformed the sample, is unknown for that signal only.
* Idleness is counted in *observed* seconds of consecutive quiet samples.
  Within one boot the boot-time clock measures the time between samples, so
  a wall-clock jump (forward or back) neither adds nor removes idle time.
  Across a reboot the time the box was down is not counted, but a short
  reboot does not restart the count either. A pause longer than
  ``max_gap_intervals`` timer periods was not observed: the count restarts.
* The box is idle when the count reaches ``idle_minutes``. In ``shutdown``
  mode the agent first warns, then shuts down once ``grace_minutes`` more of
  observed quiet time have passed since the warning; any activity in between
  cancels. The action each run took is stored in its sample, so the grace
  period survives across timer runs and reboots without sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import AgentConfig
from .untrusted import printable

SIGNALS = ("gpu", "cpu", "ssh", "jupyter", "lease", "cloud_init")
# Unreadable => the whole sample is unknown (not quiet).
REQUIRED_SIGNALS = ("cpu", "ssh")
# The wall clock may drift from the boot clock by this much between two runs without comment.
CLOCK_JUMP_TOLERANCE_SECONDS = 30.0


@dataclass(frozen=True)
class SignalReading:
    """One signal in one sample: ``active``, ``quiet`` or ``unknown``, and why."""

    state: str
    detail: str


@dataclass(frozen=True)
class Decision:
    """What the agent concluded and what it should do now.

    ``idle_since`` is the start of the current quiet stretch (observed time,
    expressed on the latest sample's wall clock), None while active.
    ``notify_warning`` is true only on the run that starts the grace period,
    so users are warned once, not every minute. ``cancelled_warning`` is true
    when a warning was given and activity has since ended the quiet stretch.
    """

    idle: bool
    idle_since: float | None
    reasons: list[str]
    action: str = "none"
    quiet_seconds: float = 0.0
    signals: dict[str, dict[str, str]] = field(default_factory=dict)
    notify_warning: bool = False
    cancelled_warning: bool = False
    shutdown_in_seconds: float | None = None
    #: The pending updates the machine reboots for (``reboot_when_pending``, see ``reboot``).
    reboot_reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def format_duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60.0
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60.0:.1f} h"


def _gpu(part: dict[str, Any], config: AgentConfig) -> SignalReading:
    if part.get("status") != "ok":
        what = "nvidia-smi missing" if part.get("status") == "missing" else "nvidia-smi failed"
        return SignalReading("unknown", "{} ({}); deciding on the other signals".format(what, part.get("detail", "")))
    devices = part.get("devices") or []
    processes = part.get("processes")
    process_count = part.get("count_processes", len(processes) if processes is not None else 0)
    busy = [d for d in devices if d.get("util") is not None and d["util"] >= config.gpu_util_threshold]
    if busy:
        return SignalReading(
            "active",
            ", ".join("GPU {} at {:.0f}%".format(d["index"], d["util"]) for d in busy)
            + f" (threshold {config.gpu_util_threshold}%)",
        )
    memory = sum(p.get("mem") or 0 for p in processes or [])
    if config.gpu_process_is_activity and process_count:
        return SignalReading("active", f"{process_count} compute process(es) hold {memory:.0f} MiB")
    known = [d for d in devices if d.get("util") is not None]
    if not known:
        return SignalReading("unknown", "nvidia-smi reports no utilisation ([N/A]); deciding on the other signals")
    detail = "{} at {}".format(
        "GPU" if len(known) == 1 else "GPUs",
        ", ".join("{:.0f}%".format(d["util"]) for d in known),
    )
    if process_count:
        detail += (
            f"; {process_count} process(es) hold {memory:.0f} MiB but computed nothing"
            " (gpu_process_is_activity is false)"
        )
    elif processes is None:
        detail += "; compute processes unknown"
    return SignalReading("quiet", detail)


def _cpu(part: dict[str, Any], config: AgentConfig) -> SignalReading:
    if part.get("status") != "ok" or part.get("load1") is None:
        return SignalReading("unknown", "CPU load unreadable ({})".format(part.get("detail", "")))
    cores = max(1, int(part.get("cores") or 1))
    per_core = float(part["load1"]) / cores
    detail = "load {:.2f} on {} core(s) = {:.3f} per core (threshold {})".format(
        part["load1"], cores, per_core, config.cpu_load_threshold
    )
    return SignalReading("active" if per_core >= config.cpu_load_threshold else "quiet", detail)


def _ssh(part: dict[str, Any], config: AgentConfig) -> SignalReading:
    if part.get("status") != "ok":
        return SignalReading("unknown", "SSH connections unreadable ({})".format(part.get("detail", "")))
    connections = part.get("connections") or []
    count = part.get("count_connections", len(connections))
    port = part.get("port", config.ssh_port)
    if not count:
        return SignalReading("quiet", f"no established connection to port {port}")
    kinds: dict[str, int] = {}
    for connection in connections:
        kinds[connection.get("kind", "remote")] = kinds.get(connection.get("kind", "remote"), 0) + 1
    labels = {"loopback": "from localhost (SSM/tunnel)", "iap": "from the GCP IAP range", "remote": "remote"}
    return SignalReading(
        "active",
        "{} established connection(s) to port {}: {}".format(
            count, port, ", ".join(f"{n} {labels.get(k, k)}" for k, n in sorted(kinds.items()))
        ),
    )


def _jupyter(part: dict[str, Any], sample_time: float, config: AgentConfig) -> SignalReading:
    """Busy or recently active kernels are activity; a time ahead of the sample (beyond clock skew) is not."""
    if part.get("status") != "ok":
        return SignalReading(
            "unknown", "Jupyter unreadable ({}); deciding on the other signals".format(part.get("detail", ""))
        )
    kernels = part.get("kernels") or []
    if not kernels:
        return SignalReading("quiet", "no Jupyter kernels")
    recent = 1.5 * config.interval_seconds
    for kernel in kernels:
        if kernel.get("state") == "busy":
            return SignalReading("active", "kernel {} is executing".format(kernel.get("id", "?")[:8]))
    latest = max((k.get("last_activity") or 0.0) for k in kernels)
    if latest and -CLOCK_JUMP_TOLERANCE_SECONDS <= sample_time - latest <= recent:
        return SignalReading("active", f"a kernel executed or started {format_duration(sample_time - latest)} ago")
    count = part.get("count_kernels", len(kernels))
    since = (
        f"last activity {format_duration(sample_time - latest)} before this sample"
        if latest
        else ("no activity recorded")
    )
    return SignalReading("quiet", f"{count} kernel(s), {since}")


def _lease(part: dict[str, Any], sample_time: float) -> SignalReading:
    if part.get("status") != "ok":
        return SignalReading(
            "unknown", "{}; deciding on the other signals".format(part.get("detail", "lease unreadable"))
        )
    until = part.get("until")
    if until is None:
        return SignalReading("quiet", "no lease")
    if isinstance(until, bool) or not isinstance(until, (int, float)) or not math.isfinite(until):
        return SignalReading("unknown", f"lease end {until!r} is not a time; deciding on the other signals")
    who = " by {}".format(part["by"]) if part.get("by") else ""
    if sample_time < until:
        return SignalReading(
            "active", f"held{who} until {format_time(until)} ({format_duration(until - sample_time)} left)"
        )
    return SignalReading("quiet", f"lease{who} expired at {format_time(until)}")


def _cloud_init(part: dict[str, Any]) -> SignalReading:
    if part.get("status", "ok") != "ok":
        return SignalReading("unknown", "cloud-init state unreadable ({}); deciding on the other signals".format(
            part.get("detail", "")))
    if part.get("running"):
        return SignalReading("active", "cloud-init is still setting the box up")
    return SignalReading("quiet", part.get("detail", "cloud-init not running"))


def read_signals(sample: dict[str, Any], config: AgentConfig) -> dict[str, SignalReading]:
    """Each signal's state in one sample; a signal absent from the sample is unknown."""
    t = float(sample["t"])
    readers = {
        "gpu": lambda part: _gpu(part, config),
        "cpu": lambda part: _cpu(part, config),
        "ssh": lambda part: _ssh(part, config),
        "jupyter": lambda part: _jupyter(part, t, config),
        "lease": lambda part: _lease(part, t),
        "cloud_init": _cloud_init,
    }
    readings = {}
    for name in SIGNALS:
        part = sample.get(name)
        try:
            reading = readers[name](part) if isinstance(part, dict) else SignalReading("unknown", "not in the sample")
        except Exception as error:  # noqa: BLE001 - a malformed part is this signal's problem only
            reading = SignalReading("unknown", f"{name} unreadable in the sample ({type(error).__name__}: {error})")
        readings[name] = SignalReading(reading.state, printable(reading.detail))
    return readings


def sample_activity(readings: dict[str, SignalReading]) -> str:
    """``active`` if any signal is; ``unknown`` if a required one is; else ``quiet``."""
    if any(r.state == "active" for r in readings.values()):
        return "active"
    if any(readings[name].state == "unknown" for name in REQUIRED_SIGNALS):
        return "unknown"
    return "quiet"


def observed_elapsed(prev: dict[str, Any], cur: dict[str, Any], config: AgentConfig) -> tuple[float | None, str]:
    """Seconds between two samples that count as watched, or None when that time is unknown.

    Returns the count (None: unknown) and a note for the reasons (empty when unremarkable).
    """
    wall_delta = float(cur["t"]) - float(prev["t"])
    same_boot = prev.get("boot_id") == cur.get("boot_id") and cur.get("boot_id") not in (None, "", "unknown")
    if prev.get("action") in ("shutdown", "reboot"):
        return None, "the agent {} at {}; this boot starts a new count".format(
            "shut the box down" if prev["action"] == "shutdown" else "rebooted", format_time(prev["t"]))
    if same_boot:
        mono_delta = float(cur["mono"]) - float(prev["mono"])
        if mono_delta < 0:
            return None, "boot clock went backwards between samples; time unknown, count restarted"
        if mono_delta > config.max_gap_seconds:
            return (
                None,
                "no sample for {} (more than {} timer periods) before {}: unobserved, count restarted".format(
                    format_duration(mono_delta), config.max_gap_intervals, format_time(cur["t"])
                ),
            )
        jump = wall_delta - mono_delta
        if abs(jump) > CLOCK_JUMP_TOLERANCE_SECONDS:
            return (
                mono_delta,
                "wall clock jumped {} by {} before {}; counted the {} actually observed".format(
                    "forward" if jump > 0 else "backward",
                    format_duration(jump),
                    format_time(cur["t"]),
                    format_duration(mono_delta),
                ),
            )
        return mono_delta, ""
    if wall_delta < 0 or wall_delta > config.max_gap_seconds:
        return (
            None,
            "rebooted before {} and the wall clock cannot date the pause ({}{}): count restarted".format(
                format_time(cur["t"]), "-" if wall_delta < 0 else "", format_duration(wall_delta)
            ),
        )
    return 0.0, "rebooted before {} (down about {}): count kept, the time down not counted".format(
        format_time(cur["t"]), format_duration(wall_delta)
    )


@dataclass
class _Stretch:
    quiet: float = 0.0
    warned_at: float | None = None
    notes: list[str] = field(default_factory=list)


def decide(
    samples_history: Sequence[dict[str, Any]],
    config: AgentConfig,
    now: float,
    reboot_for: Sequence[str] = (),
    reboot_note: str = "",
) -> Decision:
    """Decide from the samples (oldest first; each may carry the ``action`` its run took).

    ``now`` is the wall time of the decision: when the latest sample is more
    than ``max_gap_intervals`` timer periods away from it, the history is
    stale and nothing is concluded from it. ``reboot_for`` names the pending
    updates an idle machine reboots for, after the warning and the grace
    period, instead of staying up; ``reboot_note`` says what waits (both from
    ``reboot.reboot_wanted``, on towers only).
    """
    if not samples_history:
        return Decision(False, None, ["no sample yet"])
    stretch: _Stretch | None = None
    restart_note = ""
    prev: dict[str, Any] | None = None
    readings: dict[str, SignalReading] = {}
    for sample in samples_history:
        readings = read_signals(sample, config)
        activity = sample_activity(readings)
        elapsed, note = observed_elapsed(prev, sample, config) if prev is not None else (None, "")
        if activity != "quiet":
            stretch, restart_note = None, ""
        elif stretch is None or elapsed is None:
            restart_note = note if stretch is not None else ""
            stretch = _Stretch()
        else:
            stretch.quiet += elapsed
            if note:
                stretch.notes.append(note)
        if stretch is not None and sample.get("action") == "warn" and stretch.warned_at is None:
            stretch.warned_at = stretch.quiet
        prev = sample

    last = samples_history[-1]
    previous_action = samples_history[-2].get("action") if len(samples_history) > 1 else None
    signals = {name: {"state": r.state, "detail": r.detail} for name, r in readings.items()}
    signal_lines = [f"{name}: {r.state} - {r.detail}" for name, r in readings.items()]
    signal_lines += [reboot_note] if reboot_note else []
    age = now - float(last["t"])

    def not_idle(headline: str, since: float | None = None, quiet: float = 0.0, notes: Sequence[str] = ()) -> Decision:
        return Decision(
            False,
            since,
            [headline] + signal_lines + list(notes),
            "none",
            quiet,
            signals,
            cancelled_warning=previous_action == "warn",
        )

    if age > config.max_gap_seconds or age < -config.max_gap_seconds:
        return not_idle(
            "not idle: the latest sample is from {} ({} {}); not deciding on stale data".format(
                format_time(last["t"]), format_duration(age), "ago" if age > 0 else "ahead"
            )
        )
    activity = sample_activity(readings)
    if activity == "active":
        active = [name for name, r in readings.items() if r.state == "active"]
        return not_idle("not idle: active signal(s): {}".format(", ".join(active)))
    if activity == "unknown" or stretch is None:
        blind = [name for name in REQUIRED_SIGNALS if readings[name].state == "unknown"]
        return not_idle("not idle: cannot read {}, so quiet cannot be told from blind".format(", ".join(blind)))

    since = float(last["t"]) - stretch.quiet
    notes = ([restart_note] if restart_note and stretch.quiet < config.idle_seconds else []) + stretch.notes
    if stretch.quiet < config.idle_seconds:
        return not_idle(
            f"not idle yet: every signal quiet for {format_duration(stretch.quiet)} of observed time, "
            f"window {config.idle_minutes} min",
            since,
            stretch.quiet,
            notes,
        )

    headline = (
        f"idle: every signal quiet for {format_duration(stretch.quiet)} of observed time "
        f"(window {config.idle_minutes} min)"
    )
    final = "reboot" if reboot_for else "shutdown" if config.mode == "shutdown" else "report"
    action, notify, left = _action(config, stretch, final)
    if action == "warn":
        headline += f"; {final} in {format_duration(left or 0.0)} unless there is activity"
    elif action != "report":
        headline += "; shutting down" if action == "shutdown" else "; rebooting"
    else:
        headline += "; report mode, the box stays up"
    return Decision(
        True,
        since,
        [headline] + signal_lines + notes,
        action,
        stretch.quiet,
        signals,
        notify_warning=notify,
        shutdown_in_seconds=left,
        reboot_reasons=list(reboot_for),
    )


def _action(config: AgentConfig, stretch: _Stretch, final: str) -> tuple[str, bool, float | None]:
    """(action, warn users now?, grace seconds left) for an idle box whose stretch ends in ``final``.

    ``final`` is ``report`` (stay up), ``shutdown`` or ``reboot``; the last two
    come after a warning and the grace period.
    """
    if final == "report":
        return "report", False, None
    if config.grace_seconds <= 0:
        return final, False, 0.0
    if stretch.warned_at is None:
        return "warn", True, config.grace_seconds
    waited = stretch.quiet - stretch.warned_at
    if waited >= config.grace_seconds:
        return final, False, 0.0
    return "warn", False, config.grace_seconds - waited

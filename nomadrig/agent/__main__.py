"""``nomadrig-agent``: the command the timer runs, and the one users ask why.

    nomadrig-agent tick              sample, persist, decide, act (the timer runs this)
    nomadrig-agent status [--json]   why the box is or is not idle, per signal
    nomadrig-agent sample [--json]   one raw sample of every signal (for recording)
    nomadrig-agent hold 6h|90m|1d    keep the box up for a while (a lease)
    nomadrig-agent release           end the lease

Exit status: 0 done, 1 could not do it (e.g. permissions), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from .actions import perform, power_off
from .config import AgentConfig, ConfigError, Paths, load_config
from .decision import Decision, decide, format_duration, format_time
from .lease import parse_duration, remove_lease, write_lease
from .sampler import Clock, summarise_for_history, take_sample
from .state import StateLock, load_history, save_history, write_status

log = logging.getLogger("nomadrig-agent")


def _status_record(decision: Decision, config: AgentConfig, now: float) -> dict[str, Any]:
    record = decision.to_dict()
    record.update(
        {
            "updated_at": now,
            "mode": config.mode,
            "idle_minutes": config.idle_minutes,
            "grace_minutes": config.grace_minutes,
            "reboot_when_pending": config.reboot_when_pending,
        }
    )
    return record


def _decide(history: list[dict[str, Any]], config: AgentConfig, state_dir: str, ticking: bool) -> Decision:
    """The decision on the history, with what waits for a reboot where the latest sample read it (towers).

    ``ticking``: the timer's run, which may drop the record of a reboot that worked (see ``reboot``).
    """
    sample = history[-1]
    if "reboot" not in sample:
        return decide(history, config, now=sample["t"])
    # Imported here: only machines in report mode sample pending reboots, and only they ship the module.
    from .reboot import last_reboot, reboot_wanted

    last = last_reboot(state_dir, bool(sample["reboot"].get("pending")), forget=ticking)
    reasons, note = reboot_wanted(sample, config, last)
    return decide(history, config, now=sample["t"], reboot_for=reasons, reboot_note=note)


def command_tick(config: AgentConfig, paths: Paths) -> int:
    """One timer run. The state that records a shutdown is on disk before the poweroff starts."""
    state_dir = paths.state_dir(config)
    with StateLock(state_dir):
        history = load_history(state_dir)
        sample = summarise_for_history(take_sample(config, paths))
        history.append(sample)
        decision = _decide(history, config, state_dir, ticking=True)
        sample["action"] = decision.action
        history = save_history(state_dir, history, config)
        write_status(state_dir, _status_record(decision, config, sample["t"]))
        log.info("%s", decision.reasons[0])
        for name, signal in decision.signals.items():
            if signal["state"] == "unknown":
                log.warning("%s: %s", name, signal["detail"])
        for line in decision.reasons[1:]:
            log.debug("  %s", line)
        done = perform(decision, config)
        if done:
            log.info("done: %s", ", ".join(done))
        if decision.action == "shutdown" and not power_off(config):
            sample["action"] = "shutdown_failed"
            save_history(state_dir, history, config)
            return 1
        if decision.reboot_reasons:
            from .reboot import carry_out

            if not carry_out(decision, config, state_dir, sample["t"]):
                sample["action"] = "reboot_failed"
                save_history(state_dir, history, config)
                return 1
    return 0


def _decide_now(config: AgentConfig, paths: Paths) -> Decision:
    """A decision on the stored history plus a fresh sample, without storing anything."""
    state_dir = paths.state_dir(config)
    try:
        history = load_history(state_dir) if os.access(state_dir, os.R_OK) else []
    except OSError:
        history = []
    sample = summarise_for_history(take_sample(config, paths))
    return _decide(history + [sample], config, state_dir, ticking=False)


def command_status(config: AgentConfig, paths: Paths, as_json: bool) -> int:
    decision = _decide_now(config, paths)
    if as_json:
        print(json.dumps(_status_record(decision, config, Clock().wall()), indent=2, sort_keys=True))
        return 0
    print(decision.reasons[0])
    print(f"mode {config.mode}, idle window {config.idle_minutes} min, grace {config.grace_minutes} min")
    for name, signal in decision.signals.items():
        print("  {:<11} {:<8} {}".format(name, signal["state"], signal["detail"]))
    for note in decision.reasons[1 + len(decision.signals) :]:
        print(f"  note: {note}")
    if decision.idle_since is not None:
        print(f"quiet since {format_time(decision.idle_since)} ({format_duration(decision.quiet_seconds)})")
    return 0


def command_sample(config: AgentConfig, paths: Paths) -> int:
    print(json.dumps(take_sample(config, paths), indent=2, sort_keys=True))
    return 0


def command_hold(config: AgentConfig, paths: Paths, duration: str, reason: str) -> int:
    try:
        seconds = parse_duration(duration)
    except ValueError as error:
        print(f"nomadrig-agent hold: {error}", file=sys.stderr)
        return 2
    if seconds > config.max_hold_hours * 3600:
        print(
            f"nomadrig-agent hold: {duration} is longer than max_hold_hours "
            f"({config.max_hold_hours} h) in the agent config; hold for less, or raise max_hold_hours",
            file=sys.stderr,
        )
        return 2
    by = os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown"
    lease = write_lease(paths.state_dir(config), Clock().wall(), seconds, by, reason)
    print(
        "held until {} ({}); `nomadrig-agent release` ends it early".format(
            format_time(lease["until"]), format_duration(seconds)
        )
    )
    return 0


def command_release(config: AgentConfig, paths: Paths) -> int:
    if remove_lease(paths.state_dir(config)):
        print("lease released; the idle count applies again")
    else:
        print("there was no lease")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nomadrig-agent", description="nomadrig idle agent")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every signal, not only the verdict")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    commands.add_parser("tick", help="sample, persist, decide and act (what the timer runs)")
    status = commands.add_parser("status", help="why the box is or is not idle, per signal")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    sample = commands.add_parser("sample", help="print one raw sample of every signal as JSON")
    sample.add_argument("--json", action="store_true", help="JSON output (the only format)")
    hold = commands.add_parser("hold", help="keep the box up for a duration: 90m, 6h, 1d")
    hold.add_argument("duration")
    hold.add_argument("--reason", default="", help="shown in status")
    commands.add_parser("release", help="end the lease early")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    paths = Paths.from_env()
    try:
        config = load_config(paths)
        if args.command == "tick":
            return command_tick(config, paths)
        if args.command == "status":
            return command_status(config, paths, args.json)
        if args.command == "sample":
            return command_sample(config, paths)
        if args.command == "hold":
            return command_hold(config, paths, args.duration, args.reason)
        return command_release(config, paths)
    except ConfigError as error:
        print(f"nomadrig-agent: {error}", file=sys.stderr)
        return 2
    except PermissionError as error:
        print(
            "nomadrig-agent: {}: {}; run it with sudo".format(error.filename or "state dir", error.strerror),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

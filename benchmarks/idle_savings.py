"""Benchmark: billed GPU-hours and dollars for one team-month under four teardown rules.

Replays the SYNTHETIC trace in benchmarks/traces/ (see its generator) minute by
minute, one box per nomad, priced with the shipped catalog's on-demand prices:

- always-on:         the box runs from the nomad's first activity to the end of the month;
- fixed 24 h TTL:    every box is destroyed 24 h after creation, recreated at the next activity;
- 1 h after session: the box stops one hour after the last SSH connection closes;
- nomadrig:          the real idle agent decision (`nomadrig.agent.decision.decide`, shutdown mode,
                     the nomad's idle minutes, 10 min grace) every minute, plus the real reaper
                     verdicts (`nomadrig.reaper.verdicts.judge`) every hour with the team policy
                     from examples/team.yaml, fed the box's 5-minute CPU maxima (what CloudWatch
                     / Cloud Monitoring would show).

What the agent sees per minute: a session is SSH + CPU load; a training run
is GPU utilisation + CPU load; a forgotten SSH connection is SSH only; else
quiet. A stopped or destroyed box is started again when its nomad next
becomes active (boot time not billed). "training cut" counts the minutes of
training runs a rule killed before they ended (the work a rule costs).

Usage: python benchmarks/idle_savings.py [--trace benchmarks/traces/team_30d.json]
       [--out benchmarks/results/idle_savings.txt]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RULES = ("always-on", "fixed 24 h TTL", "1 h after session", "nomadrig agent + reaper")


@dataclass
class Activity:
    """Per-minute activity of one nomad, from the trace, for one replay.

    A training run dies with its box: `kill` records the minutes it had left
    and the run counts as activity no more (nobody restarts it by itself).
    """

    session: bytearray
    training: bytearray
    idle_ssh: bytearray
    train_end: list[int]
    dead_until: int = 0
    cut_minutes: int = 0

    def fresh(self) -> Activity:
        return Activity(self.session, self.training, self.idle_ssh, self.train_end)

    def trains(self, minute: int) -> bool:
        return bool(self.training[minute]) and minute >= self.dead_until

    def any(self, minute: int) -> bool:
        return bool(self.session[minute] or self.idle_ssh[minute]) or self.trains(minute)

    def ssh(self, minute: int) -> bool:
        return bool(self.session[minute] or self.idle_ssh[minute])

    def cpu_busy(self, minute: int) -> bool:
        return bool(self.session[minute]) or self.trains(minute)

    def kill(self, minute: int) -> None:
        """The box goes away at `minute`: a training run still going is cut short."""
        if self.trains(minute):
            self.cut_minutes += self.train_end[minute] - minute
            self.dead_until = self.train_end[minute]


@dataclass
class Outcome:
    running_minutes: int = 0
    training_cut_minutes: int = 0
    counts: Counter[str] = field(default_factory=Counter)


def load_activity(trace: dict[str, Any]) -> dict[str, Activity]:
    minutes = trace["days"] * 1440
    activity = {
        n["name"]: Activity(bytearray(minutes), bytearray(minutes), bytearray(minutes), [0] * minutes)
        for n in trace["nomads"]
    }
    for event in trace["events"]:
        act = activity[event["nomad"]]
        series = getattr(act, event["kind"])
        for minute in range(event["start"], event["end"]):
            series[minute] = 1
            if event["kind"] == "training":
                act.train_end[minute] = max(act.train_end[minute], event["end"])
    return activity


def simulate_always_on(act: Activity, total: int) -> bytearray:
    running = bytearray(total)
    first = next((m for m in range(total) if act.any(m)), total)
    running[first:] = b"\x01" * (total - first)
    return running


def simulate_ttl(act: Activity, total: int, ttl_minutes: int = 24 * 60) -> bytearray:
    running = bytearray(total)
    created: int | None = None
    for minute in range(total):
        if created is not None and minute - created >= ttl_minutes:
            act.kill(minute)
            created = None
        if created is None and act.any(minute):
            created = minute
        running[minute] = created is not None
    return running


def simulate_after_session(act: Activity, total: int, grace_minutes: int = 60) -> bytearray:
    running = bytearray(total)
    up, last_ssh = False, -1
    for minute in range(total):
        if act.ssh(minute):
            last_ssh = minute
            up = True
        elif up and minute - last_ssh > grace_minutes:
            act.kill(minute)
            up = False
        running[minute] = up
    return running


def agent_sample(act: Activity, minute: int, t: float, mono: float, boot: str) -> dict[str, Any]:
    """What the agent's sampler would record this minute (shapes from nomadrig.agent.decision)."""
    return {
        "t": t,
        "mono": mono,
        "boot_id": boot,
        "cpu": {"status": "ok", "load1": 2.0 if act.cpu_busy(minute) else 0.05, "cores": 4},
        "ssh": {"status": "ok", "connections": [{"kind": "loopback"}] if act.ssh(minute) else []},
        "gpu": {"status": "ok", "devices": [{"index": 0, "util": 92 if act.trains(minute) else 0}],
                "processes": []},
        "jupyter": {"status": "ok", "kernels": []},
        "lease": {"status": "ok", "until": None},
        "cloud_init": {"running": False},
    }


def simulate_nomadrig(
    act: Activity, total: int, nomad: dict[str, Any], policy: Any, start: datetime, outcome: Outcome
) -> bytearray:
    """The agent every minute (unless the trace says it is missing) and the reaper every hour."""
    from nomadrig.agent.config import AgentConfig
    from nomadrig.agent.decision import decide
    from nomadrig.reaper.inventory import CpuWindow, ManagedInstance
    from nomadrig.reaper.ports import StackRef
    from nomadrig.reaper.verdicts import Action, judge

    config = AgentConfig(idle_minutes=nomad["idle_minutes"], mode="shutdown", grace_minutes=10)
    running = bytearray(total)
    state = "absent"  # absent | running | stopped
    created = started = stopped = 0
    history: list[dict[str, Any]] = []
    boots = 0
    cpu_pct = bytearray(total)  # what the cloud's CPU metric shows (percent, rounded)
    stack = StackRef(f"team-{nomad['name']}", nomad["name"], nomad["cloud"], nomad["region"], "box")
    base = start.timestamp()
    for minute in range(total):
        if state != "running" and act.any(minute):
            if state == "absent":
                created = minute
                outcome.counts["box created"] += 1
            state, started, history, boots = "running", minute, [], boots + 1
        if state == "running":
            running[minute] = 1
            cpu_pct[minute] = 60 if act.cpu_busy(minute) else 1
            if nomad["agent"] == "ok":
                sample = agent_sample(act, minute, base + minute * 60, (minute - started) * 60.0, f"b{boots}")
                history.append(sample)
                decision = decide(history, config, base + minute * 60 + 1)
                sample["action"] = decision.action
                if decision.action == "shutdown":
                    act.kill(minute + 1)
                    state, stopped = "stopped", minute + 1
                    outcome.counts["stopped by agent"] += 1
                elif not decision.idle and decision.quiet_seconds == 0:
                    history = history[-1:]  # the quiet stretch restarts here: older samples cannot matter
        if minute % 60 == 59 and state != "absent":
            now = start + timedelta(minutes=minute + 1)
            window = policy.max_idle_minutes
            cpu = None
            if state == "running":
                lo = max(started, minute + 1 - window)
                periods = [cpu_pct[m : m + 5] for m in range(lo, minute + 1, 5)]
                cpu = CpuWindow(window, max(max(p) for p in periods) if periods else None, len(periods), window // 5)
            instance = ManagedInstance(
                cloud=nomad["cloud"], region=nomad["region"], location=nomad["region"], instance_id="box",
                name=nomad["name"], state=state, instance_type=nomad["instance_type"],
                launched_at=start + timedelta(minutes=started),
                stopped_since=start + timedelta(minutes=stopped) if state == "stopped" else None,
                tags={"managed": "true", "team": policy.team, "ttl": str(nomad["ttl_hours"]),
                      "created": (start + timedelta(minutes=created)).isoformat()},
            )
            verdict = judge(instance, stack, cpu, policy, now)
            if verdict.action == Action.STOP:
                act.kill(minute + 1)
                state, stopped = "stopped", minute + 1
                outcome.counts["stopped by reaper"] += 1
            elif verdict.action == Action.DESTROY:
                outcome.counts["destroyed by reaper (" + ("TTL" if "TTL" in verdict.reason else "stopped") + ")"] += 1
                act.kill(minute + 1)
                state = "absent"
    return running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay a usage trace under four teardown rules.")
    parser.add_argument("--trace", type=Path, default=ROOT / "benchmarks/traces/team_30d.json")
    parser.add_argument("--team", type=Path, default=ROOT / "examples/team.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/idle_savings.txt")
    args = parser.parse_args(argv)

    try:
        import nomadrig.agent.decision  # noqa: F401
    except ImportError as error:
        print(f"the idle agent's decision function is missing ({error}); cannot replay the agent", file=sys.stderr)
        return 1
    from nomadrig.catalog import load_catalog
    from nomadrig.reaper.verdicts import ReapPolicy
    from nomadrig.team.load import load_team

    wall = time.perf_counter()
    trace = json.loads(args.trace.read_text())
    team = load_team(args.team)
    policy = ReapPolicy.from_team(team)
    catalog = load_catalog()
    total = trace["days"] * 1440
    start = datetime.fromisoformat(trace["start"].replace("Z", "+00:00")).astimezone(UTC)
    activity = load_activity(trace)

    rows: dict[str, dict[str, Outcome]] = {rule: {} for rule in RULES}
    prices: dict[str, float] = {}
    for nomad in trace["nomads"]:
        price = catalog.price(nomad["cloud"], nomad["instance_type"], nomad["region"])
        if price is None or price.on_demand_usd_hr is None:
            print(f"no catalog price for {nomad['cloud']} {nomad['instance_type']} {nomad['region']}", file=sys.stderr)
            return 1
        prices[nomad["name"]] = price.on_demand_usd_hr
        trace_activity = activity[nomad["name"]]
        for rule in RULES:
            act = trace_activity.fresh()
            outcome = Outcome()
            if rule == "always-on":
                running = simulate_always_on(act, total)
            elif rule == "fixed 24 h TTL":
                running = simulate_ttl(act, total)
            elif rule == "1 h after session":
                running = simulate_after_session(act, total)
            else:
                running = simulate_nomadrig(act, total, nomad, policy, start, outcome)
            outcome.running_minutes = sum(running)
            outcome.training_cut_minutes = act.cut_minutes
            rows[rule][nomad["name"]] = outcome

    active_hours = sum(sum(1 for m in range(total) if a.fresh().any(m)) for a in activity.values()) / 60
    lines = [
        f"idle savings, SYNTHETIC trace {args.trace.name} (seed {trace['seed']}, {trace['days']} days, "
        f"{len(trace['nomads'])} nomads, generator {trace['generator']}); not measured usage",
        f"prices: catalog on-demand USD/h ({', '.join(f'{n} {p:.3f}' for n, p in prices.items())})",
        f"hours with any activity (session, training or open SSH), all nomads: {active_hours:.0f}",
        "",
        f"{'rule':<26}{'GPU-hours':>10}{'USD':>10}{'vs always-on':>14}{'training cut (h)':>18}",
    ]
    always = sum(o.running_minutes * prices[n] / 60 for n, o in rows["always-on"].items())
    for rule in RULES:
        hours = sum(o.running_minutes for o in rows[rule].values()) / 60
        dollars = sum(o.running_minutes * prices[n] / 60 for n, o in rows[rule].items())
        cut = sum(o.training_cut_minutes for o in rows[rule].values()) / 60
        saving = f"-{100 * (1 - dollars / always):.0f}%" if rule != "always-on" else ""
        lines.append(f"{rule:<26}{hours:>10.0f}{dollars:>10.0f}{saving:>14}{cut:>18.1f}")
    lines.append("")
    lines.append("per nomad, GPU-hours (always-on / 24 h TTL / 1 h after session / nomadrig):")
    for nomad in trace["nomads"]:
        name = nomad["name"]
        hours = " / ".join(f"{rows[r][name].running_minutes / 60:.0f}" for r in RULES)
        extra = ", agent missing (reaper only)" if nomad["agent"] != "ok" else ""
        counts = ", ".join(f"{k} {v}" for k, v in sorted(rows[RULES[3]][name].counts.items()))
        lines.append(f"  {name:<10} {hours}  [{counts}{extra}]")
    lines.append(
        f"policy: examples/team.yaml max_idle_minutes {policy.max_idle_minutes}, "
        f"stopped_destroy_after_hours {policy.stopped_destroy_after_hours:g}; agent grace 10 min; "
        "boot time and storage not billed"
    )
    lines.append(
        f"machine: Python {platform.python_version()}; replay took {time.perf_counter() - wall:.1f} s; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

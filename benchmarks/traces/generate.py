"""Generate the SYNTHETIC 30-day usage trace that benchmarks/idle_savings.py replays.

Nothing here is measured from a real team: it is a seeded random model of how
a small remote ML team might use its cloud boxes, written down so that anyone
can read, change and regenerate it (same seed, same file):

- six nomads in six time zones, each with the instance type, region, idle
  minutes and TTL of a plausible team file;
- work days: Monday-Friday, each nomad works 85% of them (sick days, travel);
  a morning session starting 08:00-10:00 local time lasting 2-4 h, a lunch
  break of 45-90 min, an afternoon session of 2-4 h;
- training runs: on 30% of work days a run starts in the afternoon session and
  keeps the GPU busy for 2-14 h, past the end of the session;
- forgotten SSH connections: on 15% of work days the laptop stays connected
  after the afternoon session until the next morning (SSH open, nothing runs);
- one nomad finishes their project on day 9 and never comes back (a forgotten box);
- one nomad takes a vacation on days 12-22;
- one nomad's box has no working idle agent (only the reaper can stop it).

Event times are minutes from the trace start (a Monday, 00:00 UTC).
Usage: python benchmarks/traces/generate.py [--seed 20261126] [--out benchmarks/traces/team_30d.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

DAYS = 30
START = "2026-11-02T00:00:00Z"  # a Monday
NOMADS: list[dict[str, Any]] = [
    {"name": "ada", "cloud": "aws", "instance_type": "g5.xlarge", "region": "eu-west-1", "utc_offset_h": 1,
     "idle_minutes": 60, "ttl_hours": 168, "agent": "ok"},
    {"name": "grace", "cloud": "gcp", "instance_type": "g2-standard-8", "region": "us-central1",
     "utc_offset_h": -6, "idle_minutes": 30, "ttl_hours": 168, "agent": "ok"},
    {"name": "linus", "cloud": "aws", "instance_type": "g4dn.xlarge", "region": "us-east-1", "utc_offset_h": -5,
     "idle_minutes": 45, "ttl_hours": 168, "agent": "missing"},
    {"name": "katherine", "cloud": "aws", "instance_type": "g5.2xlarge", "region": "us-west-2",
     "utc_offset_h": -8, "idle_minutes": 60, "ttl_hours": 336, "agent": "ok"},
    {"name": "edsger", "cloud": "gcp", "instance_type": "g2-standard-8", "region": "europe-west4",
     "utc_offset_h": 1, "idle_minutes": 60, "ttl_hours": 168, "agent": "ok", "last_day": 9},
    {"name": "radia", "cloud": "aws", "instance_type": "g5.xlarge", "region": "eu-west-1", "utc_offset_h": 2,
     "idle_minutes": 90, "ttl_hours": 168, "agent": "ok", "vacation": [12, 22]},
]


def generate(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for nomad in NOMADS:
        for day in range(DAYS):
            if day % 7 >= 5 or rng.random() > 0.85:
                continue
            if day > nomad.get("last_day", DAYS):
                continue
            vacation = nomad.get("vacation")
            if vacation and vacation[0] <= day <= vacation[1]:
                continue
            day_start = day * 1440 - nomad["utc_offset_h"] * 60
            morning = day_start + rng.randint(8 * 60, 10 * 60)
            morning_end = morning + rng.randint(120, 240)
            afternoon = morning_end + rng.randint(45, 90)
            afternoon_end = afternoon + rng.randint(120, 240)
            events.append({"nomad": nomad["name"], "kind": "session", "start": morning, "end": morning_end})
            events.append({"nomad": nomad["name"], "kind": "session", "start": afternoon, "end": afternoon_end})
            if rng.random() < 0.30:
                run_start = rng.randint(afternoon, afternoon_end - 30)
                events.append({"nomad": nomad["name"], "kind": "training", "start": run_start,
                               "end": run_start + rng.randint(120, 14 * 60)})
            if rng.random() < 0.15:
                events.append({"nomad": nomad["name"], "kind": "idle_ssh", "start": afternoon_end,
                               "end": day_start + 1440 + 8 * 60})
    events = [e for e in events if e["start"] >= 0 and e["start"] < DAYS * 1440]
    for event in events:
        event["end"] = min(event["end"], DAYS * 1440)
    events.sort(key=lambda e: (e["start"], e["nomad"]))
    return {
        "synthetic": True,
        "note": "SYNTHETIC trace from a seeded random model (see generator docstring); not measured usage.",
        "generator": "benchmarks/traces/generate.py",
        "seed": seed,
        "start": START,
        "days": DAYS,
        "nomads": NOMADS,
        "events": events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate the synthetic idle-savings trace.")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("team_30d.json"))
    args = parser.parse_args()
    args.out.write_text(json.dumps(generate(args.seed), indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

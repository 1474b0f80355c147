"""Leases: ``nomadrig-agent hold 6h`` keeps a box up through a quiet stretch of a long job.

The lease is a small JSON file in the state dir, so it survives reboots and is
visible to every later timer run. It is a signal like the others: the box is
busy while the lease has not expired.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from .fsutil import atomic_write_json, read_text

LEASE_FILE = "lease.json"
_DURATION = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in ``90m``, ``6h`` or ``1d``; raises ValueError naming the accepted forms."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"duration {text!r}: write a positive whole number with m, h or d, e.g. 90m, 6h, 1d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def write_lease(state_dir: str, now: float, seconds: int, by: str, reason: str = "") -> dict[str, Any]:
    lease = {"until": now + seconds, "set_at": now, "by": by, "reason": reason}
    atomic_write_json(os.path.join(state_dir, LEASE_FILE), lease)
    return lease


def remove_lease(state_dir: str) -> bool:
    """Delete the lease; True when there was one."""
    try:
        os.unlink(os.path.join(state_dir, LEASE_FILE))
    except FileNotFoundError:
        return False
    return True


def sample_lease(state_dir: str) -> dict[str, Any]:
    """The current lease as a sample field; an unreadable file is reported, not trusted."""
    path = os.path.join(state_dir, LEASE_FILE)
    text: str | None = read_text(path)
    if text is None:
        if os.path.exists(path):
            return {"status": "error", "detail": f"cannot read {path}", "until": None, "by": ""}
        return {"status": "ok", "detail": "", "until": None, "by": ""}
    try:
        lease = json.loads(text)
        until = float(lease["until"])
    except (ValueError, KeyError, TypeError):
        return {
            "status": "error",
            "until": None,
            "by": "",
            "detail": f"{path} is damaged; run `nomadrig-agent release` and hold again",
        }
    return {
        "status": "ok",
        "detail": str(lease.get("reason", "")),
        "until": until,
        "by": str(lease.get("by", "")),
    }

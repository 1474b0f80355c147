"""Cloud-init signal: a box still being set up is busy, whatever its load says.

cloud-init writes ``/run/cloud-init/result.json`` when its last stage ends; the
directory exists from the first stage on. Directory without result: running.
"""

from __future__ import annotations

import os
from typing import Any


def sample_cloud_init(run_dir: str) -> dict[str, Any]:
    if not os.path.isdir(run_dir):
        return {"status": "ok", "running": False, "detail": "no cloud-init on this machine"}
    if os.path.exists(os.path.join(run_dir, "result.json")):
        return {"status": "ok", "running": False, "detail": "cloud-init finished"}
    return {"status": "ok", "running": True, "detail": "cloud-init is still running"}

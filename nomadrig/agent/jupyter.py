"""Jupyter signal: kernels that executed recently.

An open notebook whose kernel has not run anything for hours is the classic
forgotten box, so a kernel merely existing is not activity; its last
execution is. Two sources, best first:

* a running Jupyter server announces itself in ``jpserver-*.json`` (or
  ``nbserver-*.json``) in its runtime dir with its port and token; its
  ``/api/kernels`` lists each kernel's ``execution_state`` and
  ``last_activity``. The agent asks on loopback only.
* kernels without a server (``jupyter console``, editors) leave
  ``kernel-*.json`` connection files; their mtime is when they started.
"""

from __future__ import annotations

import calendar
import glob
import json
import os
import re
import urllib.error
import urllib.request
from typing import Any, Callable

RUNTIME_GLOBS = (
    "/root/.local/share/jupyter/runtime",
    "/home/*/.local/share/jupyter/runtime",
    "/run/user/*/jupyter",
)
API_TIMEOUT_SECONDS = 3
_ISO = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")

# (url, token) -> parsed JSON; a seam so tests answer without a server.
Fetcher = Callable[[str, str], Any]


def parse_iso_timestamp(text: str) -> float:
    """Epoch seconds from Jupyter's ``2026-11-26T15:04:05.123456Z`` (UTC when no offset)."""
    match = _ISO.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    seconds = float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    if match.group(7):
        seconds += float("0." + match.group(7))
    offset = match.group(8)
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds


def runtime_dirs(under_root: Callable[[str], str], extra: list[str]) -> list[str]:
    """Existing runtime dirs of every user (the agent runs as root), plus configured ones."""
    found = []
    for pattern in list(RUNTIME_GLOBS) + list(extra):
        found.extend(sorted(glob.glob(under_root(pattern))))
    return [path for path in dict.fromkeys(found) if os.path.isdir(path)]


def fetch_json(url: str, token: str) -> Any:
    """GET a loopback URL directly: no proxy from the environment may see the token."""
    headers = {"Authorization": f"token {token}"} if token else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, headers=headers), timeout=API_TIMEOUT_SECONDS) as response:
        return json.loads(response.read().decode("utf-8"))


def kernels_from_server(info: dict[str, Any], fetch: Fetcher) -> list[dict[str, Any]]:
    """Ask one server for its kernels on 127.0.0.1, whatever address it announced."""
    port = int(info["port"])
    base = str(info.get("base_url") or "/")
    if not base.endswith("/"):
        base += "/"
    url = f"http://127.0.0.1:{port}{base}api/kernels"
    kernels = []
    for kernel in fetch(url, str(info.get("token") or "")):
        last = kernel.get("last_activity")
        kernels.append(
            {
                "id": str(kernel.get("id", ""))[:36],
                "source": "api",
                "state": str(kernel.get("execution_state", "unknown")),
                "last_activity": parse_iso_timestamp(last) if last else None,
            }
        )
    return kernels


def sample_jupyter(dirs: list[str], fetch: Fetcher = fetch_json) -> dict[str, Any]:
    """One Jupyter observation over all runtime dirs; server answers win over connection files."""
    kernels: list[dict[str, Any]] = []
    problems: list[str] = []
    api_ids = set()
    for directory in dirs:
        for server_file in sorted(
            glob.glob(os.path.join(directory, "jpserver-*.json"))
            + glob.glob(os.path.join(directory, "nbserver-*.json"))
        ):
            try:
                with open(server_file, encoding="utf-8") as handle:
                    info = json.load(handle)
                served = kernels_from_server(info, fetch)
            except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError) as error:
                problems.append(f"{os.path.basename(server_file)}: {error}")
                continue
            kernels.extend(served)
            api_ids.update(kernel["id"] for kernel in served)
    for directory in dirs:
        for kernel_file in sorted(glob.glob(os.path.join(directory, "kernel-*.json"))):
            kernel_id = os.path.basename(kernel_file)[len("kernel-") : -len(".json")]
            if kernel_id in api_ids:
                continue
            try:
                started: float | None = os.stat(kernel_file).st_mtime
            except OSError:
                continue
            kernels.append({"id": kernel_id[:36], "source": "file", "state": "unknown", "last_activity": started})
    if problems and not kernels:
        return {"status": "error", "detail": "; ".join(problems)[:300], "kernels": []}
    return {"status": "ok", "detail": "; ".join(problems)[:300], "kernels": kernels}

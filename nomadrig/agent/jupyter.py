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

Everything here belongs to the box's users, and the agent runs as root: files
are read bounded and never through a symlink (see ``untrusted``), the server
is asked only on loopback, with no proxy and no redirect, within a size and a
time budget, and every value in its answer is checked. One broken server file
is reported by name and costs only itself.
"""

from __future__ import annotations

import calendar
import glob
import http.client
import os
import re
import stat
import time
import urllib.parse
from typing import Any, Callable

from .untrusted import Refused, load_json, printable, read_limited, why

RUNTIME_GLOBS = (
    "/root/.local/share/jupyter/runtime",
    "/home/*/.local/share/jupyter/runtime",
    "/run/user/*/jupyter",
)
API_TIMEOUT_SECONDS = 3
# All servers together: the timer runs every minute, so one tick must stay well inside it.
BUDGET_SECONDS = 10
MAX_SERVER_FILES = 16
MAX_DIR_ENTRIES = 2000
MAX_ANSWER_BYTES = 1024 * 1024  # server files are read up to 64 KiB
MAX_KERNELS = 256
LOOPBACK = ("127.0.0.1", "::1", "localhost")
_ISO = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$", re.ASCII)
# A URL path without anything that could end the path (?, #, space) or smuggle another host or a header.
_BASE_URL = re.compile(r"/[A-Za-z0-9._~%!$&'()*+,;=:@/-]{0,1023}")
_TOKEN = re.compile(r"[\x21-\x7e]{0,512}")  # printable ASCII, no space: one header value, nothing more
_KERNEL_ID = re.compile(r"[^0-9A-Za-z-]")

# (url, token) -> parsed JSON; a seam so tests answer without a server.
Fetcher = Callable[[str, str], Any]


def parse_iso_timestamp(text: str) -> float:
    """Epoch seconds from Jupyter's ``2026-11-26T15:04:05.123456Z`` (UTC when no offset)."""
    match = _ISO.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO timestamp: {printable(text, 40)!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    seconds = float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    if match.group(7):
        seconds += float("0." + match.group(7)[:9])
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
    """GET `url` on loopback only: no proxy, no redirect, at most MAX_ANSWER_BYTES within the timeout."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK or not parts.port:
        raise Refused("not a loopback HTTP address")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=API_TIMEOUT_SECONDS)
    try:
        connection.request("GET", parts.path or "/", headers={"Authorization": f"token {token}"} if token else {})
        response = connection.getresponse()
        if response.status != 200:
            raise Refused(f"the server answered HTTP {response.status}")
        deadline, body = time.monotonic() + API_TIMEOUT_SECONDS, b""
        while True:
            chunk = response.read1(65536)
            if not chunk:
                return load_json(body)
            body += chunk
            if len(body) > MAX_ANSWER_BYTES or time.monotonic() > deadline:
                raise Refused("answer too big or too slow")
    finally:
        connection.close()


def server_address(info: Any) -> tuple[int, str, str]:
    """(port, base URL ending in /, token) from a server file's JSON; Refused names the bad field."""
    if not isinstance(info, dict):
        raise Refused("not a JSON object")
    port = info.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise Refused(f"port {printable(port, 20)} is not a TCP port (1-65535)")
    base = info.get("base_url") or "/"
    if not isinstance(base, str) or not _BASE_URL.fullmatch(base):
        raise Refused(f"base_url {printable(base, 40)!r} is not a URL path")
    token = info.get("token") or ""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise Refused("token is not printable ASCII")
    return port, base if base.endswith("/") else base + "/", token


def _kernel(raw: Any) -> dict[str, Any]:
    """One kernel of a server's answer, each field checked; a bad time is unknown, not an error."""
    if not isinstance(raw, dict):
        raise Refused("a kernel is not a JSON object")
    state = raw.get("execution_state")
    last = raw.get("last_activity")
    try:
        activity = parse_iso_timestamp(last) if isinstance(last, str) else None
    except ValueError:
        activity = None
    return {
        "id": _KERNEL_ID.sub("", str(raw.get("id", "")))[:36],
        "source": "api",
        "state": state if state in ("busy", "idle") else "unknown",  # the decision needs no other state
        "last_activity": activity,
    }


def kernels_from_server(info: Any, fetch: Fetcher) -> list[dict[str, Any]]:
    """Ask one server for its kernels on 127.0.0.1, whatever address it announced."""
    port, base, token = server_address(info)
    answer = fetch(f"http://127.0.0.1:{port}{base}api/kernels", token)
    if not isinstance(answer, list):
        raise Refused("the kernels are not a JSON list")
    return [_kernel(kernel) for kernel in answer[:MAX_KERNELS]]


def _names(directory: str) -> list[str]:
    """Up to MAX_DIR_ENTRIES names in a runtime dir, sorted (a user may fill it with millions)."""
    names = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if len(names) >= MAX_DIR_ENTRIES:
                break
            names.append(entry.name)
    return sorted(names)


def sample_jupyter(dirs: list[str], fetch: Fetcher = fetch_json) -> dict[str, Any]:
    """One Jupyter observation over all runtime dirs; server answers win over connection files.

    Bounded whatever users put there: at most MAX_DIR_ENTRIES names a folder,
    MAX_SERVER_FILES servers asked within BUDGET_SECONDS, 64 KiB a server file.
    A server file that cannot be used is named in ``detail``; it hides nothing else.
    """
    kernels: list[dict[str, Any]] = []
    problems: list[str] = []
    api_ids = set()
    listed: list[tuple[str, list[str]]] = []
    for directory in dirs:
        try:
            listed.append((directory, _names(directory)))
        except OSError as error:
            problems.append(f"{printable(directory, 80)}: {why(error)}")
    servers = [(d, n) for d, names in listed for n in names
               if n.startswith(("jpserver-", "nbserver-")) and n.endswith(".json")]  # not jpserver-*-open.html
    deadline = time.monotonic() + BUDGET_SECONDS
    for number, (directory, name) in enumerate(servers):
        try:
            if number >= MAX_SERVER_FILES or time.monotonic() > deadline:
                raise Refused(f"skipped: over {MAX_SERVER_FILES} servers or {BUDGET_SECONDS} s")
            served = kernels_from_server(load_json(read_limited(os.path.join(directory, name), 65536)), fetch)
        except Exception as error:  # noqa: BLE001 - a user's file or server costs only itself
            problems.append(f"{printable(name, 80)}: {why(error)}")
            continue
        kernels.extend(served)
        api_ids.update(kernel["id"] for kernel in served)
    for directory, names in listed:
        for name in names:
            kernel_id = _KERNEL_ID.sub("", name[7:-5])[:36]  # kernel-<id>.json
            if not (name.startswith("kernel-") and name.endswith(".json")) or kernel_id in api_ids:
                continue
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and len(kernels) < MAX_DIR_ENTRIES:
                kernels.append({"id": kernel_id, "source": "file", "state": "unknown", "last_activity": info.st_mtime})
    detail = printable("; ".join(problems))
    if problems and not kernels:
        return {"status": "error", "detail": detail, "kernels": []}
    return {"status": "ok", "detail": detail, "kernels": kernels}

"""GPU signal: utilisation, memory and compute processes from ``nvidia-smi``.

``nvidia-smi`` is the one interface that works with every driver branch and
inside every distribution, so the agent parses its CSV output rather than
binding NVML. A missing or failing ``nvidia-smi`` is a normal state (a box
without a GPU, a driver mid-upgrade): it is recorded with the reason and the
decision falls back on the other signals.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Callable

GPU_QUERY = ["--query-gpu=utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"]
APPS_QUERY = ["--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader,nounits"]
TIMEOUT_SECONDS = 20

# (returncode, stdout, stderr); a seam so tests feed recorded outputs.
Runner = Callable[[list[str]], tuple[int, str, str]]


def _number(field: str) -> float | None:
    """``nvidia-smi`` prints ``[N/A]``, ``[Not Supported]`` or ``N/A`` where a value is unknown."""
    text = field.strip()
    if not text or text.startswith("[") or text.upper() == "N/A":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _is_value(field: str) -> bool:
    """A number or one of nvidia-smi's unknown-value markers (not a word of an error message)."""
    text = field.strip()
    return _number(text) is not None or text.upper() in ("[N/A]", "N/A", "[NOT SUPPORTED]", "[UNKNOWN ERROR]")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_gpu_csv(text: str) -> list[dict[str, Any]]:
    """Parse ``utilization.gpu, memory.used, memory.total`` rows, one GPU per line in index order.

    Raises ``ValueError`` when a line is not such a row, e.g. an error message
    printed on stdout with exit status 0 (some driver states do that).
    """
    devices = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3 or not all(_is_value(part) for part in parts):
            raise ValueError(f"unexpected nvidia-smi output: {line.strip()[:200]!r}")
        util, used, total = (_number(part) for part in parts)
        devices.append(
            {
                "index": len(devices),
                "util": util,
                "mem_used": used,
                "mem_total": total,
            }
        )
    return devices


def parse_apps_csv(text: str) -> list[dict[str, Any]]:
    """Parse ``pid, process_name, used_memory`` rows; an empty output means no processes.

    Process names may contain commas, so the pid is the first field and the
    memory the last; everything between is the name.
    """
    processes = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.lower().startswith("no running"):
            continue
        parts = [part.strip() for part in stripped.split(",")]
        if len(parts) < 3 or _number(parts[0]) is None:
            raise ValueError(f"unexpected nvidia-smi output: {stripped[:200]!r}")
        processes.append(
            {
                "pid": int(float(parts[0])),
                "name": ",".join(parts[1:-1]),
                "mem": _number(parts[-1]),
            }
        )
    return processes


def find_nvidia_smi(override: str) -> str | None:
    """The configured path if set (whether or not it exists), else ``nvidia-smi`` on PATH."""
    if override:
        return override
    return shutil.which("nvidia-smi") or ("/usr/bin/nvidia-smi" if os.path.exists("/usr/bin/nvidia-smi") else None)


def run_command(argv: list[str]) -> tuple[int, str, str]:
    """Run ``argv`` with a timeout; a hung driver must not hang the timer run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found"
    except PermissionError:
        return 126, "", f"{argv[0]}: permission denied"
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]}: no answer within {TIMEOUT_SECONDS} s"
    return done.returncode, done.stdout, done.stderr


def sample_gpu(nvidia_smi: str | None, runner: Runner = run_command) -> dict[str, Any]:
    """One GPU observation: ``status`` is ``ok``, ``missing`` (no nvidia-smi) or ``error``."""
    if nvidia_smi is None:
        return {"status": "missing", "detail": "nvidia-smi not found on PATH", "devices": [], "processes": []}
    code, out, err = runner([nvidia_smi] + GPU_QUERY)
    if code == 127:
        return {"status": "missing", "detail": f"{nvidia_smi} not found", "devices": [], "processes": []}
    if code != 0:
        message = _first_line(out) or _first_line(err) or "no output"
        return {
            "status": "error",
            "detail": f"nvidia-smi exited {code}: {message[:200]}",
            "devices": [],
            "processes": [],
        }
    try:
        devices = parse_gpu_csv(out)
    except ValueError as error:
        return {"status": "error", "detail": str(error), "devices": [], "processes": []}
    if not devices:
        return {"status": "error", "detail": "nvidia-smi listed no GPU", "devices": [], "processes": []}
    result: dict[str, Any] = {"status": "ok", "detail": "", "devices": devices, "processes": []}
    code, out, err = runner([nvidia_smi] + APPS_QUERY)
    if code != 0:
        message = (_first_line(out) or _first_line(err))[:200]
        result["detail"] = f"compute processes unknown: nvidia-smi exited {code}: {message}"
        result["processes"] = None
        return result
    try:
        result["processes"] = parse_apps_csv(out)
    except ValueError as error:
        result["detail"] = f"compute processes unknown: {error}"
        result["processes"] = None
    return result

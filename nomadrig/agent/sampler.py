"""One raw sample: every signal at one instant, plus the clocks that date it.

A sample carries three clocks because each lies differently: the wall clock
can jump (NTP, a wrong RTC at boot), the boot-time clock restarts at every
boot, and the boot id says which boot a boot-time reading belongs to. The
decision compares them to tell observed time from time nobody watched.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from . import SAMPLE_VERSION
from .cloudinit import sample_cloud_init
from .config import AgentConfig, Paths
from .cpu import sample_cpu
from .fsutil import read_text
from .gpu import Runner, find_nvidia_smi, run_command, sample_gpu
from .jupyter import Fetcher, fetch_json, runtime_dirs, sample_jupyter
from .lease import sample_lease
from .netstat import sample_ssh
from .untrusted import printable, why


def boot_time_seconds() -> float:
    """Seconds since boot including suspend (CLOCK_BOOTTIME), so a suspend shows up as a gap."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is not None:
        try:
            return time.clock_gettime(clock)
        except OSError:
            pass
    return time.monotonic()


class Clock:
    """Wall and boot clocks; tests pass their own."""

    def wall(self) -> float:
        return time.time()

    def boot(self) -> float:
        return boot_time_seconds()


def guarded(name: str, observe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One signal's observation; whatever goes wrong in it is recorded as its error, never raised.

    Sources read what box users control (see ``untrusted``): a failure there
    must neither end the tick nor hide the other signals.
    """
    try:
        part = observe()
        if not isinstance(part, dict):
            raise TypeError(f"the {name} sampler returned {type(part).__name__}")
        return part
    except Exception as error:  # noqa: BLE001 - the isolation boundary of one signal
        return {"status": "error", "detail": printable(f"{name} could not be sampled: {why(error)}")}


def take_sample(
    config: AgentConfig,
    paths: Paths,
    clock: Clock | None = None,
    runner: Runner = run_command,
    fetch: Fetcher = fetch_json,
) -> dict[str, Any]:
    """Observe every signal once. Never raises for a signal: failures are recorded in it (see `guarded`)."""
    clock = clock or Clock()

    def read_proc(name: str) -> str | None:
        return read_text(paths.in_proc(name))

    boot_id = (read_proc("sys/kernel/random/boot_id") or "").strip() or "unknown"
    started_wall, started_boot = clock.wall(), clock.boot()
    sample: dict[str, Any] = {
        "v": SAMPLE_VERSION,
        "t": round(started_wall, 3),
        "mono": round(started_boot, 3),
        "boot_id": boot_id,
    }
    sources: dict[str, Callable[[], dict[str, Any]]] = {
        "gpu": lambda: sample_gpu(find_nvidia_smi(config.nvidia_smi), runner),
        "cpu": lambda: sample_cpu(read_proc),
        "ssh": lambda: sample_ssh(read_proc, config.ssh_port),
        "jupyter": lambda: sample_jupyter(runtime_dirs(paths.under_root, config.jupyter_runtime_dirs), fetch),
        "lease": lambda: sample_lease(paths.state_dir(config)),
        "cloud_init": lambda: sample_cloud_init(paths.under_root("/run/cloud-init")),
    }
    if config.mode == "report":
        # Not a sign of activity: what reboot_when_pending acts on once the machine is idle. Imported here:
        # the module is not shipped to cloud boxes, which stop when idle (a stopped box reboots anyway).
        from .reboot import MODULES_DIR, installed_kernels, sample_reboot

        sources["reboot"] = lambda: sample_reboot(lambda path: read_text(paths.under_root(path)), runner,
                                                  lambda: installed_kernels(paths.under_root(MODULES_DIR)))
    for name, observe in sources.items():
        sample[name] = guarded(name, observe)
    sample["took_s"] = round(clock.boot() - started_boot, 3)
    return sample


def summarise_for_history(sample: dict[str, Any], keep: int = 8) -> dict[str, Any]:
    """A copy small enough to keep hundreds of: long lists are cut to ``keep`` items plus a count.

    The decision needs counts and, for kernels, the busiest and most recent
    ones (kept first); a box with many SSH tunnels or GPU processes must not
    grow the state file without bound.
    """
    trimmed = dict(sample)
    for signal, key in (("ssh", "connections"), ("gpu", "processes"), ("jupyter", "kernels")):
        part = sample.get(signal)
        if isinstance(part, dict) and isinstance(part.get(key), list) and len(part[key]) > keep:
            items = part[key]
            if key == "kernels":  # well-formed: the Jupyter sampler checks every field it keeps
                items = sorted(
                    items, key=lambda k: (k.get("state") == "busy", k.get("last_activity") or 0), reverse=True
                )
            copy = dict(part)
            copy["count_" + key] = len(part[key])
            copy[key] = items[:keep]
            trimmed[signal] = copy
    return trimmed


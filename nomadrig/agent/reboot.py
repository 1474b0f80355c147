"""Whether an installed update waits for a reboot: what ``reboot_when_pending`` acts on.

Two sources, both written by root only:

* ``/run/reboot-required``: Debian's unattended-upgrades (its kernel
  post-install hook) and Ubuntu's update-notifier create it after an update
  that only a reboot loads, such as a new kernel; ``/run/reboot-required.pkgs``
  names the packages. ``/run`` is a tmpfs, so the reboot itself clears it.
* The NVIDIA kernel module: the version loaded (``/sys/module/nvidia/version``)
  against the one ``modinfo`` finds on disk for the running kernel. After a
  driver update the two differ, and every new CUDA program fails with
  "Driver/library version mismatch" until a reboot loads the new module.
  Read from the module, not from a library path, so Debian's DKMS module,
  Ubuntu's and NVIDIA's packages are read the same way.

What would make the reboot harmful blocks it: a newest installed kernel (the
one the boot loader takes) without an NVIDIA module, while the running one
has a module loaded. DKMS may have failed to build it, or, on Ubuntu,
unattended-upgrades installed a kernel while holding back its signed-module
package (it needs a newer driver than the pin allows). Rebooting would bring
the tower up without its GPUs; the verify role reports the same state.

The reasons are kept stable from sample to sample (no times in them): they
are compared with those of the agent's last reboot, never to reboot twice for
the same thing. Only machines in report mode (towers) run this module; a box
that stops when idle loads its updates at its next start, and its user data
has no room for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from typing import Any, Callable

from .actions import run_logged
from .config import AgentConfig
from .decision import Decision, format_duration, format_time
from .fsutil import atomic_write_json, read_text
from .gpu import Runner
from .untrusted import printable

#: An NVIDIA driver version as the module reports it: 535.309.01, 550.163.01, 580.95.05.
DRIVER_VERSION_RE = re.compile(r"\d{3}\.\d{1,3}(?:\.\d{1,3})?")
#: Package names shown from reboot-required.pkgs: at most this many.
MAX_NAMED_PACKAGES = 5
#: In the state directory: when the agent last rebooted the machine, and for what.
REBOOT_FILE = "reboot.json"
#: Where kernels keep their modules; an installed kernel's release has a ``kernel`` directory there
#: (a removed kernel can leave a directory holding only DKMS's leftovers).
MODULES_DIR = "/lib/modules"
#: A kernel release as the kernel packages of Debian and Ubuntu name it: 6.1.0-28-amd64, 6.8.0-49-generic.
KERNEL_RELEASE_RE = re.compile(r"[0-9][0-9A-Za-z.+_~-]{0,63}")

log = logging.getLogger("nomadrig-agent")


def driver_reason(loaded: str | None, on_disk: str | None) -> str | None:
    """Why the NVIDIA module needs a reboot, or None: a loaded module that differs from the one on disk.

    Nothing loaded is not a pending reboot: a module that failed to load after
    a reboot would otherwise reboot the machine again and again.
    """
    if loaded is None or on_disk is None:
        return None
    loaded, on_disk = loaded.strip(), on_disk.strip()
    if not DRIVER_VERSION_RE.fullmatch(loaded) or not DRIVER_VERSION_RE.fullmatch(on_disk) or loaded == on_disk:
        return None
    return f"NVIDIA driver {on_disk} is installed, {loaded} is loaded"


def required_reason(flag: str | None, packages: str | None) -> str | None:
    """Why a package asked for a reboot (``/run/reboot-required``), naming the packages it lists."""
    if flag is None:
        return None
    names = sorted({printable(line.strip()) for line in (packages or "").splitlines() if line.strip()})
    if not names:
        return "an update asks for a reboot (/run/reboot-required)"
    shown = ", ".join(names[:MAX_NAMED_PACKAGES]) + (f" and {len(names) - MAX_NAMED_PACKAGES} more"
                                                       if len(names) > MAX_NAMED_PACKAGES else "")
    return f"an update asks for a reboot (/run/reboot-required: {shown})"


def kernel_sort_key(release: str) -> tuple[tuple[int, int | str], ...]:
    """Order kernel releases as the boot loader's version sort does: digit runs as numbers.

    6.1.0-28-amd64 sorts after 6.1.0-9-amd64, which a plain string sort gets wrong.
    """
    return tuple((0, int(run)) if run.isdigit() else (1, run) for run in re.findall(r"\d+|\D+", release))


def installed_kernels(modules_dir: str) -> list[str]:
    """The releases of the installed kernels under ``modules_dir``, oldest first."""
    try:
        names = os.listdir(modules_dir)
    except OSError:
        return []
    return sorted((name for name in names
                   if KERNEL_RELEASE_RE.fullmatch(name) and os.path.isdir(os.path.join(modules_dir, name, "kernel"))),
                  key=kernel_sort_key)


def newest_kernel_blocker(
    running: str | None, kernels: list[str], module_version: Callable[[str], str | None]
) -> str | None:
    """Why rebooting would lose the GPUs, or None: the newest kernel has no NVIDIA module.

    Only called while a module is loaded (the GPUs work now). ``module_version(release)``
    is modinfo's answer for that kernel, None where it finds no module.
    """
    running = (running or "").strip()
    if not kernels or not running:
        return None
    newest = kernels[-1]
    if newest == running or module_version(newest) is not None:
        return None
    return (f"the newest installed kernel, {newest}, has no NVIDIA module, and the next boot takes it: "
            f"rebooting would bring the machine up without its GPUs, so the agent does not reboot. "
            f"Fix: nomadrig tower apply (it installs or builds the module for that kernel), "
            f"or remove that kernel if it is not wanted")


def sample_reboot(
    read: Callable[[str], str | None], runner: Runner, kernels: Callable[[], list[str]] = lambda: []
) -> dict[str, Any]:
    """The sample's ``reboot`` part: ``pending``, the reasons and what blocks the reboot.

    Box paths are read through ``read``; ``kernels`` lists the installed kernel releases, oldest first.
    """
    loaded = read("/sys/module/nvidia/version")

    def module_version(kernel: str | None = None) -> str | None:
        """modinfo's version of the NVIDIA module for ``kernel`` (the running one by default), or None."""
        code, out, _ = runner(["modinfo", *(["-k", kernel] if kernel else []), "-F", "version", "nvidia"])
        return out if code == 0 and out.strip() else None

    on_disk = module_version() if loaded is not None else None
    reasons = [reason for reason in (
        required_reason(read("/run/reboot-required"), read("/run/reboot-required.pkgs")),
        driver_reason(loaded, on_disk),
    ) if reason]
    part: dict[str, Any] = {"status": "ok", "pending": bool(reasons), "reasons": reasons}
    if reasons and loaded is not None:
        blocker = newest_kernel_blocker(read("/proc/sys/kernel/osrelease"), kernels(), module_version)
        if blocker:
            part["blocked"] = blocker
    return part


def last_reboot(state_dir: str, pending: bool, forget: bool) -> dict[str, Any] | None:
    """The agent's record of its last reboot (``t``, ``reasons``), or None.

    With ``forget`` (the timer's run, not a user's ``status``) it is dropped
    as soon as nothing is pending: that reboot worked, and a later update may
    reboot the machine again.
    """
    path = os.path.join(state_dir, REBOOT_FILE)
    if not pending:
        if forget:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return None
    try:
        record = json.loads(read_text(path) or "null")
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("reasons"), list) else None


def reboot_wanted(
    sample: dict[str, Any], config: AgentConfig, last: dict[str, Any] | None
) -> tuple[list[str], str]:
    """(the updates to reboot for once idle, a note on what waits), from the sample's ``reboot`` part.

    The same reasons as the last reboot's mean that rebooting does not clear
    them (a module that does not build, a flag something rewrites at boot):
    rebooting again would only interrupt the machine in a loop.
    """
    part = sample.get("reboot")
    if not isinstance(part, dict) or not part.get("pending"):
        return [], ""
    reasons = sorted(printable(reason) for reason in part.get("reasons") or [] if isinstance(reason, str))
    pending = "a reboot is pending: " + "; ".join(reasons)
    if not reasons or config.mode != "report":
        return [], ""
    if not config.reboot_when_pending:
        return [], pending + " (reboot_when_pending is off: reboot it yourself)"
    if isinstance(part.get("blocked"), str):
        return [], f"{pending}; but {printable(part['blocked'])}"
    if isinstance(last, dict) and last.get("reasons") == reasons:
        when = last.get("t")
        at = format_time(when) if isinstance(when, (int, float)) and math.isfinite(when) else "an earlier run"
        return [], f"{pending}; the agent's reboot at {at} did not clear it, so it does not reboot again"
    return reasons, pending + "; the agent reboots the machine once it is idle"


def carry_out(decision: Decision, config: AgentConfig, state_dir: str, when: float) -> bool:
    """Warn once, or reboot, for the pending updates the decision names; False when the reboot failed.

    The record of the reboot is on disk before the reboot starts: the next
    boot's decision reads it.
    """
    updates = "; ".join(decision.reboot_reasons)
    if decision.action == "warn" and decision.notify_warning:
        run_logged(config.wall_command + [
            f"nomadrig: this machine has been idle for {format_duration(decision.quiet_seconds)} and an update "
            f"waits for a reboot ({updates}). It will reboot in {format_duration(decision.shutdown_in_seconds or 0)} "
            "unless there is activity. To keep it up for a long job: sudo nomadrig-agent hold 6h"])
    if decision.action != "reboot":
        return True
    run_logged(config.wall_command + [f"nomadrig: idle, rebooting now to load: {updates}."])
    atomic_write_json(os.path.join(state_dir, REBOOT_FILE), {"t": when, "reasons": decision.reboot_reasons})
    log.warning("idle with an update waiting for a reboot: rebooting with %s", " ".join(config.reboot_command))
    return run_logged(config.reboot_command)

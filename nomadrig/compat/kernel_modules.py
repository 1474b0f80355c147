"""Ubuntu's NVIDIA kernel modules on one tower: Canonical's signed precompiled ones, DKMS, or a refusal.

Why a decision at all: with UEFI Secure Boot on, the kernel loads only signed modules, and the module
DKMS builds on the tower is unsigned (unless a Machine Owner Key was enrolled). Canonical builds and
signs the NVIDIA modules for its own kernels ("Linux Restricted Modules", source package
linux-restricted-modules) and publishes them as

* ``linux-modules-nvidia-<B>-server[-open]-<kernel release>``, e.g. ``...-595-server-7.0.0-30-generic``
  (packages.ubuntu.com/resolute/kernel/linux-modules-nvidia-595-server-7.0.0-30-generic; NVIDIA GPU
  Operator, "Installing Precompiled and Canonical Signed Drivers on Ubuntu": "linux-modules-nvidia-
  ${DRIVER_BRANCH}-server-${KERNEL_VERSION} - Meta package for nvidia driver modules, signatures and
  kernel interfaces");
* ``linux-modules-nvidia-<B>-server[-open]-<flavour>``, the flavour metapackage that depends on the
  newest kernel's package at its exact version, e.g. ``linux-modules-nvidia-580-server-open-nvidia``
  -> ``linux-modules-nvidia-580-server-open-7.0.0-1016-nvidia (= 7.0.0-1016.16+3)`` and
  ``nvidia-kernel-common-580-server (>= 580.173.02)`` (packages.ubuntu.com/resolute-updates/kernel/
  linux-modules-nvidia-580-server-open-nvidia); flavours include generic, generic-64k, lowlatency, aws,
  azure, gcp, oracle, nvidia and the HWE lines generic-hwe-22.04 / -24.04 (same source's "similar
  packages" lists),

with the userspace from packages that pull no DKMS: ``nvidia-headless-no-dkms-<B>-server[-open]``
("NVIDIA headless metapackage - no DKMS", packages.ubuntu.com/noble-updates/nvidia-headless-no-dkms-470-
server), ``nvidia-utils-<B>-server`` and ``nvidia-compute-utils-<B>-server`` (GPU Operator, same page).

The rules, in order:

1. The kernel release comes from the tower and goes into a package name, so it must be a string a
   kernel release can be (``_SAFE_RELEASE``); anything else is refused, whatever Secure Boot says.
2. Where the archive offers ``linux-modules-nvidia-<B>-server[-open]-<running release>`` and the no-DKMS
   userspace, the precompiled modules are chosen, Secure Boot or not: Canonical's own ``ubuntu-drivers``
   does the same whenever they exist (canonical/ubuntu-drivers-common, UbuntuDrivers/detect.py,
   get_linux_modules_metapackage), and they need no compiler, no headers and no build at each kernel update.
   The flavour metapackage follows the tower's installed kernel metapackage, as ubuntu-drivers does
   (``linux-image-generic-hwe-22.04`` -> ``...-generic-hwe-22.04``), so future kernels get their modules
   and a GA metapackage never drags an HWE tower back to the GA kernel.
3. Otherwise DKMS, when Secure Boot is off or cannot be read (as before), or when the team enrolled the
   Machine Owner Key DKMS signs its modules with.
4. Otherwise (Secure Boot on, no signed modules for this kernel) a refusal that names what to change.

Pure: no I/O, the same answer for the same input, never raises on input of the right types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: How the Secure Boot state is written (preflight's words).
SECURE_BOOT_STATES = ("enabled", "disabled", "unknown")
MODULE_FLAVOURS = ("open", "proprietary")

#: A kernel release that may go into a Debian package name: digits first, then only what package names allow
#: (lower-case letters, digits, ".", "+", "-"; Debian Policy 5.6.1), short. Nothing that apt reads as a
#: version (=), a wildcard (* ?), a regex, a list (, |), a path or a second line gets through.
_SAFE_RELEASE = re.compile(r"[0-9]+\.[0-9]+[a-z0-9.+-]{0,60}")
#: Ubuntu's kernel releases: <upstream>-<ABI>-<flavour>, e.g. 6.8.0-45-generic, 5.15.0-1051-aws, 6.8.0-1036-nvidia,
#: 7.0.0-30-generic-64k. Canonical builds signed NVIDIA modules only for these.
_UBUNTU_RELEASE = re.compile(
    r"(?P<upstream>[0-9]+\.[0-9]+\.[0-9]+)-(?P<abi>[0-9]+)-(?P<flavour>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)")
_BRANCH = re.compile(r"[0-9]{3}")
#: An installed kernel image metapackage (linux-image-generic, linux-image-generic-hwe-22.04), not an image
#: of one release (linux-image-6.8.0-45-generic).
_IMAGE_META = re.compile(r"linux-image-(?P<flavour>[a-z][a-z0-9.-]*)")


@dataclass(frozen=True)
class UbuntuKernel:
    """An Ubuntu kernel release split into its parts: 6.8.0-45-generic -> 6.8.0, 45, generic."""

    upstream: str
    abi: str
    flavour: str

    @property
    def release(self) -> str:
        return f"{self.upstream}-{self.abi}-{self.flavour}"


@dataclass(frozen=True)
class ModulesPlan:
    """Which kernel modules to install on an Ubuntu tower and which packages carry them.

    ``path`` is "precompiled" (Canonical's signed modules) or "dkms" (built on the tower);
    ``packages`` is what apt installs; ``other_path_prefixes`` names the package families of the
    other path, which a switch removes in the same apt transaction.
    """

    path: str
    packages: tuple[str, ...]
    other_path_prefixes: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return True

    def as_dict(self) -> dict[str, object]:
        return {"ok": True, "path": self.path, "packages": list(self.packages),
                "other_path_prefixes": list(self.other_path_prefixes), "notes": list(self.notes), "message": ""}


@dataclass(frozen=True)
class ModulesRefusal:
    """No module path can work; ``field`` is what is wrong, ``fix`` what the user does."""

    field: str
    message: str
    fix: str

    @property
    def ok(self) -> bool:
        return False

    def render(self) -> str:
        return f"{self.field}: {self.message} Fix: {self.fix}"

    def as_dict(self) -> dict[str, object]:
        return {"ok": False, "path": "", "packages": [], "other_path_prefixes": [], "notes": [],
                "message": self.render()}


def parse_ubuntu_kernel(release: str) -> UbuntuKernel | None:
    """The parts of an Ubuntu kernel release, or None for any other string (a custom or foreign kernel)."""
    if not isinstance(release, str) or not _SAFE_RELEASE.fullmatch(release):
        return None
    match = _UBUNTU_RELEASE.fullmatch(release)
    return UbuntuKernel(match["upstream"], match["abi"], match["flavour"]) if match else None


def lrm_prefix(branch: str, flavour: str) -> str:
    """linux-modules-nvidia-580-server-open: the start of every LRM package name of a branch and flavour."""
    return f"linux-modules-nvidia-{branch}-server{'-open' if flavour == 'open' else ''}"


def secure_boot_state(efi_dir_exists: bool, efivar: bytes | None, mokutil: str | None = None) -> str:
    """Secure Boot as "enabled" / "disabled" / "unknown", from what the tower shows.

    No /sys/firmware/efi: the machine booted through legacy BIOS, which has no Secure Boot ("disabled").
    The SecureBoot variable (EFI global variable GUID 8be4df61-93ca-11d2-aa0d-00e098032b8c) read through
    efivarfs is 4 bytes of attributes, little-endian, then the data (Linux, Documentation/filesystems/
    efivarfs.rst: "the first 4 bytes of the output are not the real EFI variable data, but the variable
    attributes"); its one data byte is 1 when Secure Boot is on. Without a readable variable,
    ``mokutil --sb-state``'s "SecureBoot enabled|disabled" line decides; else "unknown".
    """
    if not efi_dir_exists:
        return "disabled"
    if efivar is not None and len(efivar) == 5:
        return {1: "enabled", 0: "disabled"}.get(efivar[4], "unknown")
    words = re.search(r"(?m)^SecureBoot (enabled|disabled)\s*$", mokutil or "")
    return words[1] if words else "unknown"


def choose_ubuntu_modules(branch: str, flavour: str, kernel_release: str, secure_boot: str,
                          offered: Iterable[str], installed: Iterable[str] = (),
                          mok_enrolled: bool = False) -> ModulesPlan | ModulesRefusal:
    """The modules for an Ubuntu tower (module docstring: the rules and their sources).

    ``offered``: package names the tower's archive has (``apt-cache pkgnames``); ``installed``: the
    tower's installed package names (for its kernel image metapackages); ``mok_enrolled``: the team says
    the key DKMS signs its modules with is enrolled in the firmware, so a DKMS module loads under Secure Boot.
    """
    if not isinstance(branch, str) or not _BRANCH.fullmatch(branch):
        return ModulesRefusal("nvidia_driver_branch", f"{branch!r} is not a driver branch.",
                              'set the tower\'s driver_branch to three digits, e.g. "580".')
    if flavour not in MODULE_FLAVOURS:
        return ModulesRefusal("nvidia_driver_kernel_modules", f"{flavour!r} is not a kernel module flavour.",
                              "set kernel_modules: open or kernel_modules: proprietary.")
    if secure_boot not in SECURE_BOOT_STATES:
        return ModulesRefusal("Secure Boot state", f"{secure_boot!r} is not one of {', '.join(SECURE_BOOT_STATES)}.",
                              "report this: the role's probe of /sys/firmware/efi gave a state it does not know.")
    if not isinstance(kernel_release, str) or not _SAFE_RELEASE.fullmatch(kernel_release):
        return ModulesRefusal(
            "running kernel (uname -r)",
            f"the tower reports {_shown(kernel_release)}, which is not a kernel release nomadrig will put into a "
            "package name (digits, then only a-z 0-9 . + -).",
            "boot one of Ubuntu's kernels (apt install linux-generic, then reboot), then run again.")
    offered_set = {name for name in offered if isinstance(name, str)}
    installed_set = {name for name in installed if isinstance(name, str)}
    prefix = lrm_prefix(branch, flavour)
    suffix = "-open" if flavour == "open" else ""
    userspace = (f"nvidia-headless-no-dkms-{branch}-server{suffix}", f"nvidia-utils-{branch}-server",
                 f"nvidia-compute-utils-{branch}-server")
    dkms_families = (f"nvidia-driver-{branch}-server", f"nvidia-dkms-{branch}-server")
    lrm_families = ("linux-modules-nvidia-", "nvidia-headless-no-dkms-")
    running = f"{prefix}-{kernel_release}"
    kernel = parse_ubuntu_kernel(kernel_release)

    if running in offered_set and all(name in offered_set for name in userspace):
        metas = _flavour_metapackages(prefix, kernel, offered_set, installed_set)
        notes = [] if metas else [
            f"no kernel metapackage names a flavour {prefix}-<flavour> exists for, so only {running} is installed: "
            "a newer kernel gets no NVIDIA modules until the next run (install linux-generic or your flavour's "
            "linux-<flavour> to keep kernels and modules coming together)."]
        return ModulesPlan("precompiled", (*metas, running, *userspace), dkms_families, tuple(notes))

    if secure_boot != "enabled" or mok_enrolled:
        notes = ([] if secure_boot == "disabled"
                 else ["Secure Boot is on: the DKMS-built module loads only while it is signed with the enrolled "
                       "Machine Owner Key (nvidia_driver_mok_enrolled)."] if secure_boot == "enabled"
                 else ["the Secure Boot state could not be read; if it is on, the DKMS-built module will not load "
                       "(check with `mokutil --sb-state`)."])
        return ModulesPlan("dkms", (f"nvidia-driver-{branch}-server{suffix}",), lrm_families, tuple(notes))

    signed = [k for name in offered_set if name.startswith(prefix + "-")
              and (k := parse_ubuntu_kernel(name.removeprefix(prefix + "-"))) is not None]
    same_flavour = [k for k in signed if kernel is not None and k.flavour == kernel.flavour]
    built_for = [k.release for k in sorted(same_flavour or signed, key=_kernel_order)]
    meta = f"{prefix}-{kernel.flavour}" if kernel is not None else ""
    if kernel is None:
        why = (f"the running kernel {kernel_release} is not one of Ubuntu's (<version>-<abi>-<flavour>), and Canonical "
               "signs NVIDIA modules only for its own kernels")
    else:
        why = f"the archive has no {running} (Canonical's signed modules for the running kernel)"
    pulls = f"; apt install {meta} pulls the newest" if meta in offered_set else ""
    boot = (f"boot a kernel the archive has signed modules for ({', '.join(built_for[-3:])}{pulls}) and run again"
            if built_for else "boot an Ubuntu kernel whose signed modules the archive has, and run again")
    return ModulesRefusal(
        "Secure Boot",
        f"Secure Boot is enabled and {why}; a module DKMS builds on the tower is unsigned and will not load.",
        f"{boot}; or enroll the Machine Owner Key DKMS signs with (sudo mokutil --import "
        "/var/lib/shim-signed/mok/MOK.der, reboot, pick \"Enroll MOK\") and set nvidia_driver_mok_enrolled: true; "
        "or disable Secure Boot in the firmware setup.")


def _kernel_order(kernel: UbuntuKernel) -> tuple[tuple[int, ...], int, str]:
    """Oldest first: 5.15.0-99 before 5.15.0-125 (as numbers, not as text)."""
    return tuple(int(part) for part in kernel.upstream.split(".")), int(kernel.abi), kernel.flavour


def _flavour_metapackages(prefix: str, kernel: UbuntuKernel | None, offered: set[str],
                          installed: set[str]) -> list[str]:
    """The LRM flavour metapackages that follow the tower's installed kernel image metapackages.

    ubuntu-drivers takes the flavour from the installed linux-image metapackage; where none is
    installed (a tower that never gets new kernels by itself) the running kernel's own flavour serves.
    """
    from_images = sorted({f"{prefix}-{m['flavour']}" for name in installed
                          if (m := _IMAGE_META.fullmatch(name)) and f"{prefix}-{m['flavour']}" in offered})
    if from_images:
        return from_images
    if kernel is not None and f"{prefix}-{kernel.flavour}" in offered:
        return [f"{prefix}-{kernel.flavour}"]
    return []


def _shown(value: object) -> str:
    """A hostile value as a message may show it: quoted, one line, short."""
    text = repr(value if isinstance(value, str) else str(value))
    # Braces escaped: the message passes through Ansible, which would template "{{ ... }}".
    text = text.replace("{", "\\x7b").replace("}", "\\x7d")
    return text if len(text) <= 80 else text[:77] + "..."

"""Ansible filters over nomadrig's pure decision about Ubuntu's NVIDIA kernel modules.

The decision and the Secure Boot parsing live in ``nomadrig.compat.kernel_modules`` (tested
without Ansible); these filters only carry the tower's observations to them and the answer back
as plain data. They run on the controller, where nomadrig is installed next to Ansible.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from nomadrig.compat.kernel_modules import choose_ubuntu_modules, secure_boot_state


def nomadrig_secure_boot(efi_dir_exists: Any, efivar_b64: Any = None, mokutil: Any = None) -> str:
    """enabled / disabled / unknown, from whether the EFI dir exists, the slurped variable and mokutil's output."""
    data = None
    if isinstance(efivar_b64, str) and efivar_b64:
        try:
            data = base64.b64decode(efivar_b64, validate=True)
        except (binascii.Error, ValueError):
            data = None
    return secure_boot_state(bool(efi_dir_exists), data, mokutil if isinstance(mokutil, str) else None)


def nomadrig_ubuntu_modules(branch: Any, flavour: Any, kernel_release: Any, secure_boot: Any,
                            offered: Any = (), installed: Any = (), mok_enrolled: Any = False) -> dict[str, object]:
    """The decision as a dict: ok, path, packages, other_path_prefixes, notes, message (the refusal)."""
    return choose_ubuntu_modules(str(branch), str(flavour), str(kernel_release), str(secure_boot),
                                 list(offered or ()), list(installed or ()), mok_enrolled is True).as_dict()


class FilterModule:
    """nomadrig_secure_boot and nomadrig_ubuntu_modules."""

    def filters(self) -> dict[str, Any]:
        return {"nomadrig_secure_boot": nomadrig_secure_boot, "nomadrig_ubuntu_modules": nomadrig_ubuntu_modules}

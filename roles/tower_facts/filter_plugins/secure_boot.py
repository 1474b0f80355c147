"""Ansible filter over nomadrig's pure parsing of the Secure Boot state.

The parsing lives in ``nomadrig.compat.kernel_modules.secure_boot_state`` (tested without Ansible);
this filter only carries the tower's observations to it. It runs on the controller, where nomadrig is
installed next to Ansible.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from nomadrig.compat.kernel_modules import secure_boot_state


def nomadrig_secure_boot(efi_dir_exists: Any, efivar_b64: Any = None, mokutil: Any = None) -> str:
    """enabled / disabled / unknown, from whether the EFI dir exists, the slurped variable and mokutil's output."""
    data = None
    if isinstance(efivar_b64, str) and efivar_b64:
        try:
            data = base64.b64decode(efivar_b64, validate=True)
        except (binascii.Error, ValueError):
            data = None
    return secure_boot_state(bool(efi_dir_exists), data, mokutil if isinstance(mokutil, str) else None)


class FilterModule:
    """nomadrig_secure_boot."""

    def filters(self) -> dict[str, Any]:
        return {"nomadrig_secure_boot": nomadrig_secure_boot}

"""Ansible filter over nomadrig's pure decision about Ubuntu's NVIDIA kernel modules.

The decision lives in ``nomadrig.compat.kernel_modules`` (tested without Ansible); this filter only
carries the tower's observations to it and the answer back as plain data (the Secure Boot state it
takes is tower_facts_secure_boot, read by the tower_facts role). It runs on the controller, where
nomadrig is installed next to Ansible.
"""

from __future__ import annotations

from typing import Any

from nomadrig.compat.kernel_modules import choose_ubuntu_modules


def nomadrig_ubuntu_modules(branch: Any, flavour: Any, kernel_release: Any, secure_boot: Any,
                            offered: Any = (), installed: Any = (), mok_enrolled: Any = False) -> dict[str, object]:
    """The decision as a dict: ok, path, packages, other_path_prefixes, notes, message (the refusal)."""
    return choose_ubuntu_modules(str(branch), str(flavour), str(kernel_release), str(secure_boot),
                                 list(offered or ()), list(installed or ()), mok_enrolled is True).as_dict()


class FilterModule:
    """nomadrig_ubuntu_modules."""

    def filters(self) -> dict[str, Any]:
        return {"nomadrig_ubuntu_modules": nomadrig_ubuntu_modules}

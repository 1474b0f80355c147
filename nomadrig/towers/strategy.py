"""Which Ansible strategy a tower run uses: Mitogen's where it is safe, Ansible's own elsewhere.

Mitogen runs each task in a Python interpreter it keeps alive on the tower over one SSH
connection, instead of sending and starting a module per task. On a configured tower
that halves a rerun (benchmarks/results/tower_converge.txt). Two cases keep Ansible's
``linear`` strategy:

* a run allowed to reboot the tower (``nvidia_driver_allow_reboot``): Mitogen's
  handling of ``ansible.builtin.reboot`` has open bugs (mitogen-hq/mitogen#1251), and a
  first apply that loses its connection mid-reboot would leave the GPU stack half done;
* a user who chose a strategy (``ANSIBLE_STRATEGY`` in the environment): theirs wins,
  so ``ANSIBLE_STRATEGY=linear`` turns Mitogen off for one run.

Mitogen is a dependency of nomadrig; where it cannot be imported the run falls back to
``linear`` rather than failing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MITOGEN = "mitogen_linear"
LINEAR = "linear"

def _mitogen_strategy_dir() -> Path | None:
    """The folder holding Mitogen's strategy plugins, found without importing Mitogen (start-up stays fast)."""
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "plugins" / "strategy"
    return folder if (folder / f"{MITOGEN}.py").is_file() else None


def choose_strategy(variables: Mapping[str, Any], inherited: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The strategy's name and the environment that selects it (empty: Ansible's default or the user's)."""
    if inherited.get("ANSIBLE_STRATEGY"):
        return inherited["ANSIBLE_STRATEGY"], {}
    # Read as the role reads it (a bool argument, which Ansible converts with this function), so -e yes counts.
    from ansible.module_utils.parsing.convert_bool import boolean

    if boolean(variables.get("nvidia_driver_allow_reboot", False), strict=False):
        return LINEAR, {}
    plugins = _mitogen_strategy_dir()
    if plugins is None:
        return LINEAR, {}
    return MITOGEN, {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": MITOGEN}

"""Towers: the only code that talks to ansible-runner.

- `variables`: what one tower should be, as the roles' variables (`tower_vars`), how
  Ansible reaches it (`inventory`), a digest of both (`tower_vars_hash`) and the nomads'
  WireGuard configs (`peer_configs`).
- `ansible_inputs`: every string handed to Ansible marked ``!unsafe``, the child's environment scrubbed.
- `runner`: a run (`run`, `run_in_child`), its report (`RunReport`, `latest_report`), the tower's key.
- `child`: ``python -m nomadrig.towers.child``, a run in a fresh process for the `Tower` provider.
"""

from nomadrig.towers.ansible_inputs import scrubbed_env, unsafe_yaml, write_ansible_inputs
from nomadrig.towers.runner import (
    MODES,
    PROJECT_ROOT,
    TOWER_PUBLIC_KEY_FILE,
    Mode,
    RunOptions,
    RunReport,
    latest_report,
    read_tower_public_key,
    run,
    run_in_child,
)
from nomadrig.towers.variables import (
    OPEN_UNSUPPORTED_GPUS_OPTION,
    ROLES,
    WIREGUARD_INTERFACE,
    WIREGUARD_NETWORK,
    check_tower_policy,
    find_tower,
    install_vars,
    inventory,
    peer_configs,
    tower_nomads,
    tower_vars,
    tower_vars_hash,
    wireguard_address,
)

__all__ = [
    "MODES", "OPEN_UNSUPPORTED_GPUS_OPTION", "PROJECT_ROOT", "ROLES", "TOWER_PUBLIC_KEY_FILE", "WIREGUARD_INTERFACE",
    "WIREGUARD_NETWORK", "Mode", "RunOptions", "RunReport", "check_tower_policy", "find_tower", "install_vars",
    "inventory", "latest_report", "peer_configs", "read_tower_public_key", "run", "run_in_child", "scrubbed_env",
    "tower_nomads", "tower_vars", "tower_vars_hash", "unsafe_yaml", "wireguard_address", "write_ansible_inputs",
]

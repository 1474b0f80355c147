"""What one tower should be, as Ansible variables: the nomads it serves, its GPUs' install plan, WireGuard.

Pure functions of the team file (and the shipped GPU catalog): `tower_vars`
is what every run hands the roles, `inventory` how Ansible reaches the
machine (`tower_vars_hash` digests the two), `peer_configs` the nomads'
WireGuard client configs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomadrig import paths
from nomadrig.errors import BadInputError, InputProblem
from nomadrig.team.model import SUPPORTED_OS, Nomad, Team, Tower

if TYPE_CHECKING:
    pass


#: Roles in playbooks/tower.yml order; every variable is prefixed with one. Not tower_facts, their shared
#: dependency: what it sets (tower_facts_in_container, tower_facts_secure_boot) is no team's to override, so
#: only its one input passes (TOWER_FACTS_INPUTS). Nor cuda_repo, which nvidia_driver and cuda include: its
#: variables (cuda_repo_base, ...) pass as cuda_ ones.
ROLES = (
    "preflight",
    "base",
    "hardening",
    "nvidia_driver",
    "cuda",
    "frameworks",
    "gpu_containers",
    "remote_access",
    "agent",
    "verify",
)
#: tower_facts' declared inputs (its meta/argument_specs.yml): only tests point them elsewhere.
TOWER_FACTS_INPUTS = ("tower_facts_efi_dir",)

#: The tower's WireGuard address space; the tower is .1, nomads follow in team-file order.
WIREGUARD_NETWORK = IPv4Network("10.77.0.0/24")
#: The tower's WireGuard interface: remote_access creates it, hardening may admit SSH only through it.
WIREGUARD_INTERFACE = "wg0"


# -- variables ------------------------------------------------------------------


def tower_nomads(team: Team, tower: Tower) -> list[Nomad]:
    """The nomads who get an account on the tower: those it names, else everyone."""
    if not tower.nomads:
        return list(team.nomads)
    by_name = {n.name: n for n in team.nomads}
    missing = [name for name in tower.nomads if name not in by_name]
    if missing:
        index = team.towers.index(tower)
        raise BadInputError(
            "team file",
            [
                InputProblem(
                    f"towers[{index}].nomads",
                    f"names {', '.join(map(repr, missing))}, who are not in nomads.",
                    "Add them under nomads: or remove them from the tower's list.",
                )
            ],
        )
    return [by_name[name] for name in tower.nomads]


def wireguard_address(position: int) -> str:
    """The WireGuard address of the nomad at position (0-based) in the tower's list."""
    hosts = list(WIREGUARD_NETWORK.hosts())
    if position + 1 >= len(hosts):
        raise ValueError(f"more than {len(hosts) - 1} nomads do not fit in {WIREGUARD_NETWORK}")
    return f"{hosts[position + 1]}/32"


def ssh_only_over_wireguard(tower: Tower, nomads: list[Nomad]) -> bool:
    """Whether the firewall admits SSH only through the tunnel: the tower says, else yes where one exists.

    The tunnel exists for a tower once one of its nomads has a WireGuard key.
    """
    if tower.ssh_only_over_wireguard is not None:
        return tower.ssh_only_over_wireguard
    return any(n.wireguard_public_key for n in nomads)


def _gpu_vars(team: Team, tower: Tower) -> list[dict[str, Any]]:
    from nomadrig.catalog import load_catalog

    catalog = load_catalog()
    index = team.towers.index(tower)
    gpus: list[dict[str, Any]] = []
    problems: list[InputProblem] = []
    for i, gpu in enumerate(tower.gpus):
        model = catalog.gpu(gpu.model)
        if model is None or model.tdp_w is None:
            reason = "is not in the GPU catalog" if model is None else "has no known TDP in the catalog"
            problems.append(
                InputProblem(
                    f"towers[{index}].gpus[{i}].model",
                    f"{gpu.model!r} {reason}, so the PSU headroom cannot be checked.",
                    "Use one of the catalog's GPU models with a known TDP: "
                    + ", ".join(sorted(g.model for g in catalog.gpu_models() if g.tdp_w is not None)) + ".",
                )
            )
            continue
        gpus.append({"model": model.model, "count": gpu.count, "tdp_w": model.tdp_w})
    if problems:
        raise BadInputError("team file", problems)
    return gpus


#: The kernel module parameter that lets open modules before 545 drive GeForce and workstation GPUs.
OPEN_UNSUPPORTED_GPUS_OPTION = "NVreg_OpenRmEnableUnsupportedGpus=1"


def install_vars(team: Team, tower: Tower) -> dict[str, Any]:
    """The roles' view of the tower's install plan (`spec.install_plan`): one decision, every role reads it.

    The driver role gets the branch, the kernel-module flavour and the module options; cuda the toolkit;
    frameworks the exact wheels and their index (wheels bring their own CUDA runtime, so only the
    driver branch constrains them); preflight the PCI ids of the declared GPUs and of every GPU the
    compatibility matrix knows, to compare with what the tower really holds.
    """
    from nomadrig.compat import load_matrix
    from nomadrig.spec import install_plan

    plan = install_plan(team, tower)
    matrix = load_matrix()
    return {
        "preflight_planned_gpus": [
            {"model": gpu.model, "count": gpu.count, "pci_ids": list(matrix.pci_ids.get(known.model, ()))}
            for gpu in tower.gpus
            if (known := matrix.gpu(gpu.model)) is not None
        ],
        "preflight_known_gpu_pci_ids": matrix.pci_models(),
        "preflight_driver_plan": f"driver branch {plan.driver_branch} with {plan.kernel_modules} kernel modules",
        # Ubuntu's archive has Canonical's signed modules; nvidia_driver decides on the tower (compat.kernel_modules).
        "preflight_signed_modules": plan.channel == "distro" and plan.os.startswith("ubuntu-"),
        "nvidia_driver_channel": plan.channel,
        "nvidia_driver_branch": plan.driver_branch,
        "nvidia_driver_kernel_modules": plan.kernel_modules,
        "nvidia_driver_module_options": [OPEN_UNSUPPORTED_GPUS_OPTION] if plan.open_unsupported_gpus_param else [],
        "cuda_channel": plan.channel,
        "cuda_version": plan.cuda_toolkit,
        "frameworks_cuda_version": plan.cuda_toolkit,
        "frameworks_python": plan.python,
        "frameworks_pins": [
            {"framework": pin.framework, "packages": list(pin.requirements), "index": pin.index_url}
            for pin in plan.frameworks
        ],
    }


def check_tower_policy(team: Team, tower: Tower) -> None:
    """Refuse (exit 1, nothing run) a tower the policy's mandatory tower rules reject: the same rules as `plan`."""
    from nomadrig.policy import PolicyContext, PolicyRefused, check_tower, mandatory
    from nomadrig.spec import tower_spec

    blocking = mandatory(check_tower(tower_spec(team, tower), PolicyContext.from_team(team)))
    if blocking:
        raise PolicyRefused(f"tower {tower.name}", blocking)


def tower_vars(
    team: Team, tower: Tower, *, overrides: Mapping[str, Any] | None = None, upgrade: bool = False
) -> dict[str, Any]:
    """The role variables for one tower, from the team file, then ``overrides``.

    ``upgrade`` (`tower apply --upgrade`) lets the GPU stack's roles take the
    newest build of what they install: the driver within its branch, the
    toolkit within its version, the container toolkit's newest release.

    Pure apart from reading the shipped GPU catalog. Overrides must name a
    role's variable (``<role>_...``): a typo would otherwise be ignored by
    Ansible and the default silently used.
    """
    nomads = tower_nomads(team, tower)
    policy = team.policy
    variables: dict[str, Any] = {
        "preflight_min_ram_gb": policy.tower_min_ram_gb,
        "preflight_min_free_disk_gb": policy.tower_min_free_disk_gb,
        "preflight_data_encryption": policy.tower_data_encryption,
        "preflight_psu_margin_pct": policy.psu_margin_pct,
        "preflight_gpus": _gpu_vars(team, tower),
        "preflight_cpu_tdp_w": tower.cpu_tdp_watts,
        "preflight_psu_watts": tower.psu_watts,
        "preflight_gpu_power_limit_w": tower.gpu_power_limit_watts or 0,
        "nvidia_driver_power_limit_w": tower.gpu_power_limit_watts or 0,
        "preflight_supported_os": list(SUPPORTED_OS),
        "base_nomads": [{"name": n.name, "ssh_key": n.ssh_key, "comment": n.email or n.name} for n in nomads],
        "base_admins": list(tower.admins),
        "base_docker_users": list(tower.docker_users) if tower.gpu_containers else [],
        "hardening_ssh_port": tower.ssh_port,
        "hardening_wireguard_port": tower.wireguard_port,
        "hardening_ssh_only_over_wireguard": ssh_only_over_wireguard(tower, nomads),
        "hardening_wireguard_interface": WIREGUARD_INTERFACE,
        **install_vars(team, tower),
        "frameworks_list": list(tower.frameworks),
        "frameworks_device": "cuda" if tower.gpus else "cpu",
        "gpu_containers_enabled": tower.gpu_containers,
        "remote_access_wireguard_port": tower.wireguard_port,
        "remote_access_interface": WIREGUARD_INTERFACE,
        "remote_access_network": str(WIREGUARD_NETWORK),
        "remote_access_peers": [
            {"name": n.name, "public_key": n.wireguard_public_key, "address": wireguard_address(i)}
            for i, n in enumerate(nomads)
            if n.wireguard_public_key
        ],
        "verify_require_gpu": bool(tower.gpus),
        # verify fails when nvidia-smi lists fewer; it compares the driver with nvidia_driver_branch itself.
        "verify_expected_gpu_count": sum(gpu.count for gpu in tower.gpus),
        # The agent's sources on this machine; the role's default finds them in a checkout only.
        "agent_source_dir": str(paths.agent_source_dir()),
        # unattended: the driver's pin admits every build of its branch and unattended-upgrades may take them.
        "nvidia_driver_unattended_upgrades": tower.gpu_stack_updates == "unattended",
        "base_unattended_gpu_stack": tower.gpu_stack_updates == "unattended",
        "agent_reboot_when_pending": tower.reboot_when_idle,
        "nvidia_driver_upgrade": upgrade,
        "cuda_upgrade": upgrade,
        "gpu_containers_upgrade": upgrade,
    }
    if overrides:
        unknown = [key for key in overrides
                   if not key.startswith(tuple(f"{role}_" for role in ROLES)) and key not in TOWER_FACTS_INPUTS]
        if unknown:
            raise BadInputError(
                "overrides",
                [
                    InputProblem(
                        key,
                        "is not a tower role variable.",
                        f"Prefix it with a role name: {', '.join(ROLES)}.",
                    )
                    for key in unknown
                ],
            )
        variables.update(overrides)
    return variables


def inventory(tower: Tower, *, ssh_key_file: Path | None, strict_host_keys: bool = True) -> dict[str, Any]:
    """The Ansible inventory for one tower: group ``towers``, one host."""
    host: dict[str, Any] = {
        "ansible_host": tower.address,
        "ansible_port": tower.ssh_port,
        "ansible_user": tower.ssh_user,
        "ansible_python_interpreter": "auto_silent",
    }
    if ssh_key_file is not None:
        host["ansible_ssh_private_key_file"] = str(Path(ssh_key_file).expanduser())
        # Offer only this key: agent keys tried first would use up sshd's MaxAuthTries (hardening sets 3).
        host["ansible_ssh_extra_args"] = "-o IdentitiesOnly=yes"
    if not strict_host_keys:
        host["ansible_ssh_common_args"] = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    return {"towers": {"hosts": {tower.name: host}}}


def tower_vars_hash(team: Team | Mapping[str, Any], tower_name: str, options: Mapping[str, Any]) -> str:
    """SHA-256 of the variables and inventory a run would use for the tower.

    `team`: the team, or its JSON as the `Tower` resource carries it (`TowerSpec.team_json`); `options`: the
    run's ``overrides``, ``ssh_key_file`` and ``strict_host_keys``.
    """
    team = team if isinstance(team, Team) else Team.model_validate(team)
    tower = find_tower(team, tower_name)
    material = {
        "vars": tower_vars(team, tower, overrides=options.get("overrides") or {}),
        "inventory": inventory(
            tower,
            ssh_key_file=Path(options["ssh_key_file"]) if options.get("ssh_key_file") else None,
            strict_host_keys=bool(options.get("strict_host_keys", True)),
        ),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def find_tower(team: Team, name: str) -> Tower:
    """The tower called name, or an error listing the ones that exist."""
    for tower in team.towers:
        if tower.name == name:
            return tower
    known = ", ".join(t.name for t in team.towers) or "none declared"
    raise BadInputError(
        "team file", [InputProblem("towers", f"no tower named {name!r} (towers: {known}).", "Use one of those names.")]
    )


# -- WireGuard peers ---------------------------------------------------------------


def peer_configs(team: Team, tower: Tower, tower_public_key: str) -> dict[str, str]:
    """Each nomad's wg-quick client config for the tower.

    The private key line is an instruction, not a key: nomads generate their
    key pair on their own laptop, and only the public half goes in the team file.
    """
    configs: dict[str, str] = {}
    tower_address = next(WIREGUARD_NETWORK.hosts())
    endpoint_host = f"[{tower.address}]" if ":" in tower.address else tower.address  # IPv6 needs brackets
    for position, nomad in enumerate(tower_nomads(team, tower)):
        note = (
            ""
            if nomad.wireguard_public_key
            else "# NOTE: nomads[].wireguard_public_key is empty for you: the tower will not accept this\n"
            "# peer until you add the public key to the team file and run `nomadrig tower apply` again.\n"
        )
        configs[nomad.name] = (
            f"# WireGuard config for {nomad.name} -> tower {tower.name} (/etc/wireguard/{tower.name}.conf)\n"
            f"{note}"
            "[Interface]\n"
            "# On your laptop: wg genkey | tee privatekey | wg pubkey > publickey\n"
            "# Paste privatekey below (it never leaves your laptop); publickey goes in the team file.\n"
            "PrivateKey = <output of `wg genkey`>\n"
            f"Address = {wireguard_address(position)}\n"
            "\n"
            "[Peer]\n"
            f"PublicKey = {tower_public_key}\n"
            f"Endpoint = {endpoint_host}:{tower.wireguard_port}\n"
            f"AllowedIPs = {tower_address}/32\n"
            "PersistentKeepalive = 25\n"
        )
    return configs

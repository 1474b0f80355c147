"""Handing inputs to Ansible: every string `!unsafe`, files private, the child's environment scrubbed.

Text from the team file is never evaluated as a template on the admin's
machine, and cloud credentials, tokens and the passphrase reach neither
ansible-playbook nor the run dir (ansible-runner records the child's whole
environment there).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    pass

# -- handing inputs to Ansible ------------------------------------------------------


class _UnsafeDumper(yaml.SafeDumper):
    """YAML in which every string, key or value, is tagged ``!unsafe``: Ansible never templates it."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # an anchor would share one tagged node; plain copies are simpler to audit


def _represent_unsafe(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Double quotes with escapes: newlines, NUL, U+2028 and the like come back byte for byte.
    if dumper.resolve(yaml.ScalarNode, value, (True, False)) != _YAML_STR:
        # Text that reads as a number, boolean, null or date ("550", "12.4", "2684"): Ansible 2.19 loads
        # `!unsafe "550"` as the integer 550 (and "12.10" would become 12.1). Such text holds no "{", so
        # no template; a plain quoted string keeps it text.
        return dumper.represent_scalar(_YAML_STR, value, style='"')
    return dumper.represent_scalar("!unsafe", value, style='"')


_YAML_STR = "tag:yaml.org,2002:str"


_UnsafeDumper.add_representer(str, _represent_unsafe)


def unsafe_yaml(data: Any) -> str:
    """data as YAML for Ansible with every string marked ``!unsafe``, whatever its depth or origin.

    Team-file text (names, e-mails, key comments, addresses) must never be
    evaluated as a template: ``{{ lookup('pipe', ...) }}`` in a value would run
    on the admin's machine. Marking every string, not a list of known fields,
    keeps a field added later just as inert. Numbers and booleans stay typed.
    Text that YAML would read as another type ("550", "12.4") is written as a
    plain quoted string instead: Ansible reads ``!unsafe "550"`` as the number
    550, and such text cannot hold a template.
    """
    return yaml.dump(data, Dumper=_UnsafeDumper, allow_unicode=False, width=1 << 30, sort_keys=False)


def write_ansible_inputs(private_dir: Path, variables: Mapping[str, Any] | None, hosts: Mapping[str, Any]) -> Path:
    """Write the extra variables (``env/extravars``) and the inventory as unsafe YAML; return the inventory.

    ansible-runner would write them as JSON, which cannot carry ``!unsafe``,
    so nomadrig writes both files itself and hands ansible-runner their paths.
    """
    for sub in ("env", "inventory"):
        (private_dir / sub).mkdir(mode=0o700, exist_ok=True)
    if variables is not None:
        _write_private(private_dir / "env" / "extravars", unsafe_yaml(dict(variables)))
    inventory_file = private_dir / "inventory" / "hosts.yml"
    _write_private(inventory_file, unsafe_yaml(dict(hosts)))
    return inventory_file


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it names hosts, users and key paths)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(text)


#: Variables a playbook run keeps from nomadrig's own environment, by name or prefix. Everything
#: else (cloud credentials, NOMADRIG_PASSPHRASE, tokens) never reaches ansible-playbook, nor the
#: artefacts in which ansible-runner records the child's whole environment (artifacts/*/command).
_ENV_KEEP = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "SSH_AUTH_SOCK"})
_ENV_KEEP_PREFIXES = ("LC_", "ANSIBLE_")
#: A kept ANSIBLE_* variable is dropped all the same when its name says it holds a secret.
_SECRET_NAME_RE = re.compile(r"PASS|TOKEN|SECRET|CRED|KEY|AUTH", re.IGNORECASE)


def _kept_from_environment(name: str) -> bool:
    """Whether a variable of the caller's environment may reach the playbook (an allowlist)."""
    if name in _ENV_KEEP:
        return True
    return name.startswith(_ENV_KEEP_PREFIXES) and not _SECRET_NAME_RE.search(name)


def scrubbed_env(child_env: Mapping[str, str], inherited: Mapping[str, str], ours: Mapping[str, str]) -> dict[str, str]:
    """The environment ansible-runner built for its child, less what it copied from ours unasked.

    ansible-runner seeds the child with a copy of ``inherited`` (``os.environ``)
    and then adds its own settings and nomadrig's (``ours``). What nomadrig set,
    and any value that differs from the inherited one (ansible-runner's), stays;
    an inherited variable stays only if ``_kept_from_environment`` allows its name.
    """
    return {
        name: value
        for name, value in child_env.items()
        if name in ours or inherited.get(name) != value or _kept_from_environment(name)
    }

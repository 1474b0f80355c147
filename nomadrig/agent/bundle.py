"""The agent as a list of files to install: one source for cloud-init and the ``agent`` role.

Cloud boxes get these files through cloud-init ``write_files`` (rendered by
the stack into ``templates/cloud-init.yaml.j2``); towers get the same package
files and units from ``roles/agent``, which copies them from this directory.

Layout on a box::

    /opt/nomadrig/agent/nomadrig_agent/*.py     the package (imported as nomadrig_agent)
    /usr/local/bin/nomadrig-agent               wrapper: python3 -I, then nomadrig_agent.__main__
    /etc/nomadrig/agent.json                    the validated config
    /etc/systemd/system/nomadrig-agent.service  oneshot: nomadrig-agent tick
    /etc/systemd/system/nomadrig-agent.timer    every 60 s (a drop-in when the interval differs)
"""

from __future__ import annotations

import ast
import base64
import gzip
import json
import os
from dataclasses import dataclass
from typing import Any

from .config import CONFIG_PATH, AgentConfig

PACKAGE_SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
UNITS_SOURCE_DIR = os.path.join(PACKAGE_SOURCE_DIR, "units")
INSTALL_DIR = "/opt/nomadrig/agent"
PACKAGE_INSTALL_DIR = INSTALL_DIR + "/nomadrig_agent"
WRAPPER_PATH = "/usr/local/bin/nomadrig-agent"
UNIT_DIR = "/etc/systemd/system"
SERVICE_NAME = "nomadrig-agent.service"
TIMER_NAME = "nomadrig-agent.timer"
DEFAULT_TIMER_SECONDS = 60
# Install-side code that the box never runs.
NOT_SHIPPED = frozenset({"bundle.py"})
# What an installer runs once the files are in place.
ENABLE_COMMANDS = (
    ("systemctl", "daemon-reload"),
    ("systemctl", "enable", "--now", TIMER_NAME),
)


@dataclass(frozen=True)
class AgentFile:
    """One file to install: absolute path on the box, octal permission bits, text content."""

    path: str
    mode: int
    content: str


def package_modules() -> list[str]:
    """The module file names shipped to boxes: every ``*.py`` here but this installer, sorted."""
    return sorted(name for name in os.listdir(PACKAGE_SOURCE_DIR) if name.endswith(".py") and name not in NOT_SHIPPED)


def compact_source(source: str) -> str:
    """The same module without docstrings and comments, for size-limited user data.

    EC2 caps user data at 16 KB; the annotated sources are several times that.
    Re-emitting the syntax tree keeps the code identical in meaning.
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree) + "\n"


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def timer_dropin(interval_seconds: int) -> str:
    """Override the timer period; the empty assignment clears the unit's own value first."""
    return f"[Timer]\nOnUnitActiveSec=\nOnUnitActiveSec={interval_seconds}s\n"


def agent_files(config: dict[str, Any], compact: bool = False) -> list[AgentFile]:
    """Every file that installs the agent with ``config`` (the ``/etc/nomadrig/agent.json`` fields).

    ``config`` is validated first, so a typo fails here, at plan time, with the
    field named, not on a box an hour later. The timer period follows
    ``interval_seconds`` so the agent's gap detection and the timer agree.
    ``compact`` strips docstrings and comments from the modules (see
    :func:`compact_source`).
    """
    validated = AgentConfig.from_dict(dict(config), source="agent config")
    files = []
    for name in package_modules():
        source = _read(os.path.join(PACKAGE_SOURCE_DIR, name))
        files.append(AgentFile(f"{PACKAGE_INSTALL_DIR}/{name}", 0o644, compact_source(source) if compact else source))
    files.append(AgentFile(WRAPPER_PATH, 0o755, _read(os.path.join(UNITS_SOURCE_DIR, "nomadrig-agent"))))
    config_text = json.dumps(validated.to_dict(), indent=2, sort_keys=True) + "\n"
    files.append(AgentFile(CONFIG_PATH, 0o644, config_text))
    for unit in (SERVICE_NAME, TIMER_NAME):
        files.append(AgentFile(f"{UNIT_DIR}/{unit}", 0o644, _read(os.path.join(UNITS_SOURCE_DIR, unit))))
    if validated.interval_seconds != DEFAULT_TIMER_SECONDS:
        dropin = f"{UNIT_DIR}/{TIMER_NAME}.d/interval.conf"
        files.append(AgentFile(dropin, 0o644, timer_dropin(validated.interval_seconds)))
    return files


def cloud_init_write_files(config: dict[str, Any], compact: bool = True, encode: bool = False) -> list[dict[str, str]]:
    """``write_files`` entries for a cloud-config.

    Defaults suit EC2's 16 KB user-data cap: compact sources as plain text, so
    the stack can gzip the whole user data (cloud-init unpacks gzip itself),
    which compresses far better than per-file ``gz+b64``. ``encode=True``
    gives per-file ``gz+b64`` entries instead, deterministic (no timestamp) so
    the Pulumi diff only changes when a file does.
    """
    entries = []
    for item in agent_files(config, compact=compact):
        entry = {"path": item.path, "permissions": f"0{item.mode:o}", "owner": "root:root"}
        if encode:
            entry["encoding"] = "gz+b64"
            entry["content"] = base64.b64encode(gzip.compress(item.content.encode("utf-8"), mtime=0)).decode("ascii")
        else:
            entry["content"] = item.content
        entries.append(entry)
    return entries


def cloud_init_runcmd() -> list[list[str]]:
    """``runcmd`` entries that start the timer once cloud-init has written the files."""
    return [list(command) for command in ENABLE_COMMANDS]

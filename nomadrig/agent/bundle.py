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
from collections.abc import Iterator
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
# Modules only a machine in report mode imports (towers: reboot when idle); a box that stops when idle
# does without them, which keeps its user data within EC2's cap.
REPORT_MODE_ONLY = frozenset({"reboot.py"})
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
    """The same module without docstrings, comments or function annotations, short local names, one-space indents.

    EC2 caps user data at 16 KB; the annotated sources are several times that.
    Re-emitting the syntax tree keeps the code identical in meaning: function
    annotations are never evaluated (every module has ``from __future__ import
    annotations``; class-body annotations, which dataclasses read, are kept),
    local variables are private to their function (see `_shorten_locals`), and
    ``ast.unparse`` writes every string on one line, so the leading spaces of
    each line are indentation only. tests/test_agent_cli.py runs the compact
    package against the original on the same inputs.
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
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            _strip_annotations(node)
    _shorten_locals(tree)
    lines = []
    for line in ast.unparse(tree).split("\n"):
        code = line.lstrip(" ")
        lines.append(" " * ((len(line) - len(code)) // 4) + code)
    return "\n".join(lines) + "\n"


def _strip_annotations(function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
    """Drop a function's parameter and return annotations, and turn annotated assignments in it into plain ones."""
    for arg in _arguments(function.args):
        arg.annotation = None
    if isinstance(function, ast.Lambda):
        return
    function.returns = None
    for node in ast.walk(function):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if isinstance(statements, list) and statements:
                kept = [_plain_assignment(s) for s in statements]
                setattr(node, field, [s for s in kept if s is not None] or [ast.Pass()])


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_DYNAMIC_SCOPE = frozenset({"locals", "vars", "eval", "exec", "dir"})


def _shorten_locals(tree: ast.Module) -> None:
    """Rename the local variables of every top-level function and method to ``_0``, ``_1``, ...

    Only names that are certainly private to the function change: assigned in
    its own scope (not only in a nested function or comprehension, where the
    same name could be a global read elsewhere), and neither a parameter (callers may pass it by keyword) of it or of a
    function nested in it, nor declared global or nonlocal, nor bound by an
    import, def or class. Nested functions are renamed with their outer one,
    one mapping for both, so closures keep their meaning; a function that
    reads its scope dynamically (``locals()``, ``eval``...) is left as it is.
    """
    taken = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    for function in _outermost_functions(tree):
        nodes = list(ast.walk(function))
        if any(isinstance(n, ast.Name) and n.id in _DYNAMIC_SCOPE for n in nodes):
            continue
        own = list(_own_scope(function))
        stored = {n.id for n in own if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
        stored |= {n.name for n in own if isinstance(n, ast.ExceptHandler) and n.name}
        kept = {a.arg for n in nodes if isinstance(n, _SCOPES) for a in _arguments(n.args)}
        kept |= {name for n in nodes if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
        kept |= {(a.asname or a.name).split(".")[0] for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))
                 for a in n.names}
        kept |= {n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        fresh = (f"_{i}" for i in range(10**6) if f"_{i}" not in taken)
        mapping = {name: next(fresh) for name in sorted(stored - kept)}
        for node in nodes:
            if isinstance(node, ast.Name) and node.id in mapping:
                node.id = mapping[node.id]
            elif isinstance(node, ast.ExceptHandler) and node.name in mapping:
                node.name = mapping[node.name]


def _own_scope(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of `function`'s own scope: not inside a nested function, lambda, class or comprehension."""
    pending: list[ast.AST] = [*function.body]
    while pending:
        node = pending.pop()
        yield node
        if not isinstance(node, (*_SCOPES, ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            pending.extend(ast.iter_child_nodes(node))


def _outermost_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods of module-level classes (functions nested in them go with them)."""
    found = []
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        found += [m for m in members if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return found


def _arguments(arguments: ast.arguments) -> list[ast.arg]:
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
    return [a for a in every if a is not None]


def _plain_assignment(statement: ast.stmt) -> ast.stmt | None:
    """``x: T = v`` -> ``x = v``; a bare ``x: T`` (no value, no effect) is dropped."""
    if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
        return statement
    if statement.value is None:
        return None
    return ast.copy_location(ast.Assign(targets=[statement.target], value=statement.value), statement)


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
        if name in REPORT_MODE_ONLY and validated.mode != "report":
            continue
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

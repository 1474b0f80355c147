"""The code's layout: no import cycle, one concept per folder, each package's public face in its ``__init__``.

The import graph is built from the source (``ast``), so an import hidden in a
function or under ``TYPE_CHECKING`` counts as much as one at the top: a cycle
hidden that way still breaks the day someone moves the import, or imports the
modules in another order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The import name of each source folder: stacks/ installs as nomadrig.stacks (setup.py).
SOURCE_ROOTS = {"nomadrig": REPO / "nomadrig", "nomadrig.stacks": REPO / "stacks"}


def modules_of(roots: Mapping[str, Path]) -> dict[str, Path]:
    """Every module's dotted name and file; a package is its ``__init__.py``."""
    found: dict[str, Path] = {}
    for prefix, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            if name in found:  # nomadrig/stacks does not exist: a second source of one name is a layout bug
                raise AssertionError(f"{name} comes from both {found[name]} and {path}")
            found[name] = path
    return found


def _imported_modules(module: str, is_package: bool, node: ast.Import | ast.ImportFrom,
                      modules: Mapping[str, Path]) -> Iterator[str]:
    """The modules one import statement loads: ``import M``, or for ``from M import x`` the module ``M.x``
    where x is one, else ``M`` itself (x is then a name M defines, so M must have run)."""
    if isinstance(node, ast.Import):
        yield from (_in_tree(alias.name) for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    base = _in_tree(base)
    for alias in node.names:
        yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base


def _in_tree(name: str) -> str:
    """stacks/ is imported as nomadrig.stacks; a checkout's ``stacks.x`` means the same module."""
    return f"nomadrig.{name}" if name == "stacks" or name.startswith("stacks.") else name


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules its import statements load, wherever in the file they stand.

    Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, so
    those packages are edges too, except the importer's own packages, which
    Python has already started (and which are the only way into it).
    """
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        own = set(_ancestors(name))
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _imported_modules(name, path.name == "__init__.py", node, modules):
                if target in modules:
                    edges.add(target)
                    edges.update(a for a in _ancestors(target) if a in modules and a not in own)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it starts, or None. Iterative DFS: no recursion limit."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(graph):
        if start in state:
            continue
        path: list[str] = [start]
        pending: list[Iterator[str]] = [iter(sorted(graph[start]))]
        state[start] = 1
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                pending.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                pending.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _tree(tmp_path: Path, files: Mapping[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return modules_of({"pkg": tmp_path / "pkg"})


@pytest.mark.parametrize("files", [
    pytest.param({"__init__.py": "", "a.py": "def f():\n    from pkg import b\n", "b.py": "import pkg.a\n"},
                 id="lazy import"),
    pytest.param({"__init__.py": "", "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                  "    from pkg.b import B\n", "b.py": "from .a import f\n"}, id="type-checking and relative"),
    pytest.param({"__init__.py": "", "sub/__init__.py": "from pkg.sub.load import x\n",
                  "sub/model.py": "", "sub/load.py": "from pkg.rules import r\n",
                  "rules.py": "from pkg.sub.model import M\n"}, id="through a package's __init__"),
])
def test_the_graph_finds_a_cycle_however_it_is_hidden(tmp_path, files):
    assert find_cycle(import_graph(_tree(tmp_path, files))) is not None


def test_a_package_importing_its_own_modules_is_no_cycle(tmp_path):
    files = {"__init__.py": "", "sub/__init__.py": "from pkg.sub.model import M\n",
             "sub/model.py": "from pkg.sub import helpers\n", "sub/helpers.py": "", "rules.py": "from pkg.sub.model import M\n"}
    assert find_cycle(import_graph(_tree(tmp_path, files))) is None


def test_nomadrig_has_no_import_cycle():
    cycle = find_cycle(import_graph(modules_of(SOURCE_ROOTS)))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_top_level_module_carries_another_modules_name_as_a_prefix():
    top = sorted(p.stem if p.is_file() else p.name for p in (REPO / "nomadrig").iterdir()
                 if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file())
    prefixed = [(a, b) for a in top for b in top if a != b and b.startswith(f"{a}_")]
    assert not prefixed, f"modules named after another one: {prefixed}; make the prefix a package"


def test_every_package_names_its_public_api_and_why_it_exists():
    for name, path in modules_of(SOURCE_ROOTS).items():
        if path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{path.relative_to(REPO)}: say what the package is for"
        exported = [node for node in tree.body if isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)]
        assert exported, f"{path.relative_to(REPO)}: name the public API in __all__"
        names = ast.literal_eval(exported[0].value)
        defined = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                   for alias in node.names}
        defined |= {t.id for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
        defined |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
        submodules = {other.rsplit(".", 1)[1] for other in modules_of(SOURCE_ROOTS) if other.startswith(f"{name}.")
                      and other.count(".") == name.count(".") + 1}
        missing = sorted(set(names) - defined - submodules)
        assert not missing, f"{path.relative_to(REPO)}: __all__ names what it does not define: {missing}"

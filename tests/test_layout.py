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


#: The team file's package. Under stacks/ only ``__main__`` (a stack run by hand) loads a team file: every
#: program takes the specs `nomadrig.spec` resolved from it once, so no program re-derives them its own way.
TEAM_PACKAGE = "nomadrig.team"
SEES_THE_TEAM = {"nomadrig.stacks.__main__"}


def _annotations(tree: ast.AST) -> Iterator[ast.expr]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            for arg in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                        arguments.vararg, arguments.kwarg):
                if arg is not None and arg.annotation is not None:
                    yield arg.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _names_team(node: ast.AST) -> bool:
    """Whether an expression names ``Team``, also inside a string annotation (``"Team | None"``)."""
    for part in ast.walk(node):
        if isinstance(part, ast.Name) and part.id == "Team" or isinstance(part, ast.Attribute) and part.attr == "Team":
            return True
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            try:
                if _names_team(ast.parse(part.value, mode="eval")):
                    return True
            except SyntaxError:
                continue
    return False


def team_uses(name: str, path: Path, modules: Mapping[str, Path]) -> list[str]:
    """Where a module imports the team file's package or the name ``Team``, or names it in an annotation or
    anywhere in its code (a call, an isinstance): ``<file>:<line>: <what>``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    where = f"{path.name}:"
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            loaded = list(_imported_modules(name, path.name == "__init__.py", node, modules))
            if any(m == TEAM_PACKAGE or m.startswith(TEAM_PACKAGE + ".") for m in loaded) or (
                    isinstance(node, ast.ImportFrom) and any(a.name == "Team" for a in node.names)):
                found.append(f"{where}{node.lineno}: imports {', '.join(loaded)}")
        elif isinstance(node, ast.Name | ast.Attribute) and _names_team(node):
            found.append(f"{where}{node.lineno}: uses Team")
    found += [f"{where}{a.lineno}: annotates with Team" for a in _annotations(tree) if _names_team(a)]
    return sorted(set(found))


@pytest.mark.parametrize("source", [
    pytest.param("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nomadrig.team.model import Team\n",
                 id="type-checking import"),
    pytest.param("def f():\n    from nomadrig.team import load\n", id="lazy import of the package"),
    pytest.param("import nomadrig.team.model as m\n", id="module import"),
    pytest.param("from nomadrig.spec import Team\n", id="the name from elsewhere"),
    pytest.param("def f(team: 'Team | None') -> None: ...\n", id="string annotation"),
    pytest.param("def f(team: m.Team) -> None: ...\n", id="qualified annotation"),
    pytest.param("x: 'list[Team]' = []\n", id="annotated assignment"),
    pytest.param("def f() -> list['Team']: ...\n", id="string inside an annotation"),
])
def test_the_team_check_finds_the_team_however_it_comes_in(tmp_path, source):
    modules = _tree(tmp_path, {"__init__.py": "", "mod.py": source})
    assert team_uses("pkg.mod", modules["pkg.mod"], modules)


def test_the_team_check_passes_specs_a_team_name_and_the_word_in_text(tmp_path):
    source = ("from nomadrig.spec import NetworkSpec\n\ndef f(spec: NetworkSpec, team: str) -> str:\n"
              '    """Reads no Team."""\n    return spec.team\n')
    modules = _tree(tmp_path, {"__init__.py": "", "mod.py": source})
    assert team_uses("pkg.mod", modules["pkg.mod"], modules) == []


def test_no_stacks_module_but_main_sees_the_team():
    modules = modules_of(SOURCE_ROOTS)
    stacks = {name: path for name, path in modules.items() if name.startswith("nomadrig.stacks")}
    assert set(stacks) >= SEES_THE_TEAM | {"nomadrig.stacks.program", "nomadrig.stacks.args"}
    found = {name: uses for name, path in stacks.items() if name not in SEES_THE_TEAM
             for uses in [team_uses(name, path, modules)] if uses}
    assert not found, ("the stacks take specs (nomadrig.spec), not the Team; resolve what they need into a "
                       f"spec instead: {found}")

"""YAML parsing that remembers where every value came from.

Validation errors must point at a line in the user's file, and PyYAML's plain
loader forgets lines and silently keeps the last of two duplicate keys. We
compose the node tree ourselves, build plain Python data from it, and keep a
map from field path to line number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import InputProblem

PathKey = tuple[str | int, ...]


def format_path(path: PathKey) -> str:
    """Render ("nomads", 2, "ssh_key") as nomads[2].ssh_key."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class LocatedDocument:
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)
    problems: list[InputProblem] = field(default_factory=list)

    def line_of(self, path: PathKey) -> int | None:
        """The line of the path, or of its nearest ancestor the file has."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


class _Builder:
    def __init__(self) -> None:
        self.lines: dict[PathKey, int] = {}
        self.problems: list[InputProblem] = []
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            self._constructor.flatten_mapping(node)
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    self.problems.append(
                        InputProblem(format_path(path), f"a key must be plain text, not {key!r}",
                                     line=key_node.start_mark.line + 1)
                    )
                    continue
                key = str(key)
                if key in result:
                    self.problems.append(
                        InputProblem(
                            format_path((*path, key)),
                            f"duplicate key {key!r} (first at line {self.lines.get((*path, key))})",
                            "Keep one of them; YAML would silently use the last.",
                            line=key_node.start_mark.line + 1,
                        )
                    )
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)


def load_located(text: str, filename: str) -> LocatedDocument:
    """Parse YAML text; syntax errors become an InputProblem with the parser's line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or "the YAML cannot be parsed"
        return LocatedDocument(
            None,
            problems=[
                InputProblem("", f"YAML syntax error: {what}",
                             "Check indentation and quoting on that line (tabs are not allowed).", line=line)
            ],
        )
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        return LocatedDocument(None, problems=[InputProblem("", f"YAML error: {exc}")])
    if node is None:
        return LocatedDocument(None)
    builder = _Builder()
    try:
        data = builder.build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        return LocatedDocument(
            None,
            problems=[InputProblem("", f"YAML error: {exc.problem}", line=mark.line + 1 if mark else None)],
        )
    return LocatedDocument(data, builder.lines, builder.problems)

"""YAML parsing that remembers where every value came from, and cannot be made to explode.

Validation errors must point at a line in the user's file, and PyYAML's plain
loader forgets lines and silently keeps the last of two duplicate keys. We
build plain Python data straight from the parser's events, keep a map from
field path to line number, and refuse duplicate keys.

A team file arrives through pull requests, so it is hostile until read. Three
YAML features turn a few hundred bytes into minutes of CPU and gigabytes of
memory, and each is bounded here before it can:

- aliases: nine nested aliases of nine items each (the "billion laughs") stand
  for 9**9 values. An alias here is a reference to the value already built,
  never a copy, and each one adds the size of what it stands for to a budget
  of MAX_ALIAS_EXPANSION values, since whoever walks the data later (pydantic,
  a message quoting it) walks every copy. An alias inside the value it names
  (``team: &x [*x]``) is refused outright.
- nesting: recursive code (a composer, pydantic, ``repr``) needs one stack
  frame per level, so 10,000 nested brackets end in RecursionError. The data
  may nest MAX_DEPTH levels, counted through aliases too: far deeper than any
  team file, far shallower than Python's stack. Building from events needs no
  recursion at all.
- scalars: Python refuses ``int()`` of more than 4,300 digits and an invalid
  date raises; both become a located problem instead of a crash, and a value
  longer than MAX_SCALAR_CHARS is refused before anything reads it.

Events come from libyaml's C parser where PyYAML has it (PyYAML's wheels do):
its scan of 10,000 nested brackets takes milliseconds where the pure-Python
scanner takes about a second, and building from events skips the node tree, so
a big team file reads several times faster than through PyYAML's composer
(benchmarks/validate_scale.py). Tags and implicit types are resolved by
PyYAML's own safe resolver and constructors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from nomadrig.errors import InputProblem

PathKey = tuple[str | int, ...]

MAX_DEPTH = 64  # nested lists/mappings; a team file needs 5
MAX_ALIAS_EXPANSION = 100_000  # values aliases stand for in all; a 10,000-nomad file needs none
MAX_SCALAR_CHARS = 65_536  # the longest legitimate value, an RSA-16384 public key, is under 3,000
_TAG = "tag:yaml.org,2002:"
STR_TAG, INT_TAG, MERGE_TAG = _TAG + "str", _TAG + "int", _TAG + "merge"
#: Scalar types the safe constructor builds; any other tag on a scalar is refused where it stands.
SCALAR_TAGS = frozenset(_TAG + kind for kind in ("null", "bool", "int", "float", "binary", "timestamp", "str"))


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


class _Refused(Exception):
    """A limit was hit or the YAML is malformed: the whole document is refused with this one problem."""

    def __init__(self, problem: InputProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


_NO_KEY = object()  # a mapping waits for a key
_MERGE = object()  # the key was '<<': the value merges into the mapping
_BAD_KEY = object()  # the key was refused: its value is read and dropped
_INVALID = object()  # a scalar that could not be read; its problem is already recorded


@dataclass
class _Frame:
    """A list or mapping being built: where it is, what it holds so far, and what that costs.

    size counts the values it stands for (itself included, aliases expanded),
    height its levels of nesting: what whoever walks the data later pays.
    """

    value: list[Any] | dict[str, Any]
    path: PathKey
    anchor: str | None
    size: int = 1
    height: int = 1
    key: Any = _NO_KEY
    merges: list[tuple[Any, int]] = field(default_factory=list)  # '<<' values with their lines


def _events_class() -> type:
    """libyaml's parser (or PyYAML's, where libyaml is missing) with PyYAML's resolver for implicit types."""
    try:
        from yaml.cyaml import CParser
    except ImportError:  # pragma: no cover - PyYAML wheels ship libyaml
        return yaml.SafeLoader

    class _CEvents(CParser, Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            Resolver.__init__(self)

    return _CEvents


_Events = _events_class()


def _too_deep(line: int | None, path: PathKey = ()) -> _Refused:
    """The problem for data nested past MAX_DEPTH; the path is cut after a few levels to stay readable."""
    return _Refused(InputProblem(
        format_path(path[:4]) + ("..." if len(path) > 4 else ""),
        f"the data is nested more than {MAX_DEPTH} levels deep (lists or mappings inside each other, aliases "
        "included).",
        "A team file nests a few levels; remove the extra brackets or indentation (or the aliases that stack them).",
        line))


class _Builder:
    """Plain Python data from a stream of YAML events, with the line of every path and limits on its cost."""

    def __init__(self) -> None:
        self.lines: dict[PathKey, int] = {}
        self.problems: list[InputProblem] = []
        self.root: Any = None
        self._constructor = SafeConstructor()
        self._stack: list[_Frame] = []
        self._anchors: dict[str, tuple[Any, int, int, int]] = {}  # name -> (value, size, height, line)
        self._expanded = 0
        self._documents = 0
        self._tags: dict[tuple[str, Any], str] = {}  # implicit tags of short plain values, resolved once
        self._handlers = {ScalarEvent: self._on_scalar, SequenceStartEvent: self._open,
                          MappingStartEvent: self._open, SequenceEndEvent: self._close,
                          MappingEndEvent: self._close, AliasEvent: self._on_alias,
                          DocumentStartEvent: self._on_document}

    def run(self, text: str) -> None:
        """Feed every event of the text; syntax errors surface as yaml.MarkedYAMLError."""
        self._events = _Events(text)
        handlers = self._handlers
        try:
            while not isinstance(event := self._events.get_event(), StreamEndEvent):
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event)
        finally:
            self._events.dispose()

    def _on_document(self, event: DocumentStartEvent) -> None:
        self._documents += 1
        if self._documents > 1:
            raise _Refused(InputProblem("", "the file holds more than one YAML document (a second '---').",
                                        "Keep one document: remove the '---' line and what follows, or merge them.",
                                        event.start_mark.line + 1))

    def _path_here(self) -> PathKey:
        """The path of the value that starts now (a mapping's own path while its key is read)."""
        if not self._stack:
            return ()
        frame = self._stack[-1]
        if isinstance(frame.value, list):
            return (*frame.path, len(frame.value))
        if isinstance(frame.key, str):
            return (*frame.path, frame.key)
        return (*frame.path, "<<") if frame.key is _MERGE else frame.path

    def _on_scalar(self, event: ScalarEvent) -> None:
        line = event.start_mark.line + 1
        self._add(self._scalar(event, line), 1, 0, line, self._claim(event.anchor, line))

    def _open(self, event: SequenceStartEvent | MappingStartEvent) -> None:
        line = event.start_mark.line + 1
        path = self._path_here()
        if len(self._stack) >= MAX_DEPTH:
            raise _too_deep(line, path)
        self.lines.setdefault(path, line)
        value: list[Any] | dict[str, Any] = [] if isinstance(event, SequenceStartEvent) else {}
        self._stack.append(_Frame(value, path, self._claim(event.anchor, line)))

    def _close(self, event: SequenceEndEvent | MappingEndEvent) -> None:
        frame = self._stack.pop()
        if frame.merges:
            self._apply_merges(frame)
        self._add(frame.value, frame.size, frame.height, self.lines.get(frame.path, 0), frame.anchor)

    def _claim(self, anchor: str | None, line: int) -> str | None:
        """An anchor may be defined once (PyYAML's rule): a second one would silently change later aliases."""
        if anchor is None:
            return None
        first = self._anchors[anchor][3] if anchor in self._anchors else next(
            (self.lines.get(frame.path) for frame in self._stack if frame.anchor == anchor), None)
        if first is not None:
            raise _Refused(InputProblem("", f"the anchor &{anchor} is defined twice (first at line {first}).",
                                        "Rename one of them.", line))
        return anchor

    def _on_alias(self, event: AliasEvent) -> None:
        """The value the alias names (the same object, never a copy), paid for from the expansion budget."""
        name, line = event.anchor, event.start_mark.line + 1
        if any(frame.anchor == name for frame in self._stack):
            raise _Refused(InputProblem(
                "", f"the alias *{name} is inside the value &{name} names (a recursive alias); it would expand "
                "forever.", "Point the alias at a value defined before and outside it, or write the value out.", line))
        if name not in self._anchors:
            raise _Refused(InputProblem("", f"the alias *{name} names no anchor defined before it.",
                                        f"Define &{name} on a value above this line, or write the value out.", line))
        value, size, height, _ = self._anchors[name]
        frame = self._stack[-1] if self._stack else None
        if frame is not None and frame.key is _NO_KEY and isinstance(frame.value, dict):
            self._add(value, size, height, line, None)  # a key: kept only when plain text, so never walked
            return
        self._expanded += size
        if self._expanded > MAX_ALIAS_EXPANSION:
            raise _Refused(InputProblem(
                format_path(self._path_here()), f"the aliases up to here stand for more than "
                f"{MAX_ALIAS_EXPANSION:,} values (aliases of aliases multiply: an alias bomb).",
                "Write the values out, or use fewer levels of aliases.", line))
        if len(self._stack) + height > MAX_DEPTH:
            raise _too_deep(line, self._path_here())
        self._add(value, size, height, line, None)

    def _add(self, value: Any, size: int, height: int, line: int, anchor: str | None) -> None:
        """Put a finished value where it belongs: the root, the next list item, a mapping's key or value."""
        frame = self._stack[-1] if self._stack else None
        if frame is not None and frame.key is _NO_KEY and isinstance(frame.value, dict):
            frame.key = self._key(value, frame, line)
            return
        if value is _INVALID:  # its problem is recorded; None holds its place
            value = None
        if anchor is not None:
            self._anchors[anchor] = (value, size, height, line)
        if frame is None:
            self.lines.setdefault((), line)
            self.root = value
            return
        frame.size += size
        if height >= frame.height:
            frame.height = height + 1
        if isinstance(frame.value, list):
            self.lines.setdefault((*frame.path, len(frame.value)), line)
            frame.value.append(value)
        elif frame.key is _MERGE:
            frame.merges.append((value, line))
        elif frame.key is not _BAD_KEY:
            frame.value[frame.key] = value
        frame.key = _NO_KEY

    def _key(self, key: Any, frame: _Frame, line: int) -> Any:
        """A mapping key as text; a list or mapping (or an alias of one) is refused, a duplicate reported."""
        if key is _MERGE or key is _INVALID:
            return _MERGE if key is _MERGE else _BAD_KEY
        if not isinstance(key, str):
            if not isinstance(key, int | float | bool) and key is not None:
                kind = {list: "a list", dict: "a mapping"}.get(type(key), type(key).__name__)
                self.problems.append(InputProblem(format_path(frame.path), f"a key must be plain text, not {kind}.",
                                                  "Write 'name: value' with a plain name before the colon.", line))
                return _BAD_KEY
            key = str(key)
        path = (*frame.path, key)
        if key in frame.value:
            self.problems.append(InputProblem(
                format_path(path), f"duplicate key {key!r} (first at line {self.lines.get(path)})",
                "Keep one of them; YAML would silently use the last.", line))
        self.lines[path] = line
        return key

    def _apply_merges(self, frame: _Frame) -> None:
        """YAML's merge key: mappings (earlier ones win) fill in the keys the mapping does not set itself."""
        assert isinstance(frame.value, dict)
        for value, line in frame.merges:
            for source in value if isinstance(value, list) else [value]:
                if not isinstance(source, dict):
                    self.problems.append(InputProblem(
                        format_path(frame.path), "'<<' (merge) must be followed by a mapping, an alias of one or a "
                        "list of them.", "Write '<<: *name' where '&name' marks a mapping, or list the keys out.",
                        line))
                    break
                for key, item in source.items():
                    if key not in frame.value:
                        frame.value[key] = item
                        self.lines.setdefault((*frame.path, key), line)

    def _scalar(self, event: ScalarEvent, line: int) -> Any:
        """The scalar's value by YAML's safe rules; what Python cannot represent becomes a located problem."""
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolve(event.value, event.implicit)
        if tag == STR_TAG and len(event.value) <= MAX_SCALAR_CHARS:
            return event.value
        if tag == MERGE_TAG and self._stack and self._stack[-1].key is _NO_KEY:
            return _MERGE
        problem = _scalar_problem(event.value, tag)
        if problem is None:
            try:
                node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
                return SafeConstructor.yaml_constructors[tag](self._constructor, node)
            except (ValueError, OverflowError) as exc:  # a date like 2024-13-45
                problem = (f"{event.value[:40]!r} cannot be read as a {tag.rsplit(':', 1)[-1]}: {exc}.",
                           "Quote it if it is meant as text.")
            except ConstructorError as exc:
                problem = (f"YAML error: {exc.problem}", "Quote it if it is meant as text.")
        self.problems.append(InputProblem(format_path(self._path_here()), *problem, line))
        return _INVALID

    def _resolve(self, value: str, implicit: Any) -> str:
        """PyYAML's implicit tag of a plain value; short values repeat (true, 60, aws), so each resolves once."""
        if len(value) > 40:
            return self._events.resolve(ScalarNode, value, implicit)
        tag = self._tags.get((value, implicit))
        if tag is None:
            tag = self._tags[(value, implicit)] = self._events.resolve(ScalarNode, value, implicit)
        return tag


def _scalar_problem(text: str, tag: str) -> tuple[str, str] | None:
    """Why a scalar cannot be built at all (too long, a huge number, a foreign tag), before building it."""
    if len(text) > MAX_SCALAR_CHARS:
        return (f"this value is {len(text):,} characters long; no field takes more than {MAX_SCALAR_CHARS:,}.",
                "Check what was pasted here.")
    if tag == INT_TAG and len(text) > 40:  # also spares int() its ValueError past 4,300 digits
        return (f"a number of {len(text):,} digits is beyond any value a team file takes.",
                "Write a number in the field's range (see examples/team.yaml).")
    if tag not in SCALAR_TAGS:
        return (f"the tag {tag!r} cannot be used here.",
                "Remove the tag (the '!...' before the value); a team file needs none.")
    return None


def _syntax_problem(exc: yaml.MarkedYAMLError) -> InputProblem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    what = exc.problem or "the YAML cannot be parsed"
    if "nesting depth" in what:  # libyaml's own limit on flow nesting, met while scanning ahead
        return _too_deep(line).problem
    return InputProblem("", f"YAML syntax error: {what}",
                        "Check indentation and quoting on that line (tabs are not allowed).", line=line)


def load_located(text: str, filename: str) -> LocatedDocument:
    """Parse YAML text; syntax errors and exceeded limits become one InputProblem with the line."""
    builder = _Builder()
    try:
        builder.run(text)
    except _Refused as refused:
        return LocatedDocument(None, problems=[refused.problem])
    except yaml.MarkedYAMLError as exc:
        return LocatedDocument(None, problems=[_syntax_problem(exc)])
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        return LocatedDocument(None, problems=[InputProblem("", f"YAML error: {exc}")])
    return LocatedDocument(builder.root, builder.lines, builder.problems)

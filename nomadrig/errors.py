"""Errors a user reads, and the exit codes they map to.

One place defines the exit codes so the CLI, the docs and the tests agree:
0 ok, 1 policy violation, 2 bad input, 3 cloud/engine failure.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

#: Printable ASCII is what free-text fields that reach files, command lines and templates may hold.
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_UNPRINTABLE_OR_SPACE = re.compile(r"[^\x21-\x7e]")
_SHOWN_CHARS = 60


class ExitCode(IntEnum):
    OK = 0
    POLICY_VIOLATION = 1
    BAD_INPUT = 2
    CLOUD_FAILURE = 3


@dataclass(frozen=True)
class InputProblem:
    """One thing wrong with a user's input, located as precisely as we can."""

    path: str  # field path like "nomads[2].ssh_key"; "" for the whole file
    message: str  # what is wrong, including the bad value
    fix: str = ""  # what to do about it
    line: int | None = None  # 1-based line in the file, where the parser knows it

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        head = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{head}\n  {self.fix}" if self.fix else head


def shown(value: Any) -> str:
    """A value as a message quotes it: its repr, cut short so a pasted megabyte stays one line."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text):,} characters)"


def describe_char(char: str) -> str:
    """Name a character for a message; the invisible ones (CR, U+2028, NUL...) by code point and name."""
    if "!" <= char <= "~":  # printable ASCII but the space
        return repr(char)
    name = unicodedata.name(char, "") or {"\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\t": "TAB",
                                          "\x0b": "LINE TABULATION", "\x0c": "FORM FEED", "\x00": "NUL",
                                          "\x85": "NEXT LINE", "\x1b": "ESCAPE"}.get(char, "a control character")
    return f"U+{ord(char):04X} ({name.lower()})"


def first_unprintable(text: str, spaces: bool = True) -> tuple[int, str] | None:
    """Where text first leaves printable ASCII (or holds a space, when spaces is False): (index, character)."""
    match = (_UNPRINTABLE if spaces else _UNPRINTABLE_OR_SPACE).search(text)
    return (match.start(), match.group()) if match else None


class ValueProblem(ValueError):
    """A value of the wrong shape, with what to do about it (validators raise it; messages show both)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class NomadrigError(Exception):
    """Base class for errors that end a command with a message instead of a traceback."""

    exit_code: ExitCode = ExitCode.CLOUD_FAILURE

    def render(self) -> str:
        return str(self)


@dataclass
class BadInputError(NomadrigError):
    """The user's input (team file, arguments) is wrong; nothing was done."""

    file: str
    problems: list[InputProblem] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        shown = self.problems[:12]
        lines = [p.render(self.file) for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"... and {len(self.problems) - len(shown)} more problems")
        return "\n".join(lines)


class CloudError(NomadrigError):
    """A cloud API, the Pulumi CLI or Ansible failed; the message says what to do."""

    exit_code = ExitCode.CLOUD_FAILURE

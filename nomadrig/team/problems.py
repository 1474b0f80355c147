"""pydantic's errors as located problems: the field path, the line, the value as shown, and the fix."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from nomadrig.errors import InputProblem, ValueProblem, shown
from nomadrig.team.model import Team
from nomadrig.yamlmap import LocatedDocument, PathKey, format_path


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def yaml_keys(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by the key a team file writes for them (the alias, where a field has one)."""
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at `path` (for listing allowed keys)."""
    model: Any = Team
    for part in path:
        if isinstance(part, int):
            continue
        field_info = yaml_keys(model).get(part) if hasattr(model, "model_fields") else None
        if field_info is None:
            return None
        annotation = field_info.annotation
        model = _unwrap_model(annotation)
        if model is None:
            return None
    return model


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


_NUMBER_FIX = "Write a number in the field's range, without quotes (see examples/team.yaml)."
#: pydantic's error kinds as (message, fix); {value} is the input as shown, {msg} pydantic's own words.
_KIND_MESSAGES: dict[str, tuple[str, str]] = {
    "missing": ("is required but missing.", "Add it (see examples/team.yaml)."),
    **dict.fromkeys(("greater_than", "greater_than_equal", "less_than", "less_than_equal"),
                    ("{value} is out of range: {msg}.", "Use a value within the range.")),
    "too_short": ("must not be empty.", "List at least one entry."),
    "too_long": ("has too many entries: {msg}.", "Shorten the list."),
    **dict.fromkeys(("model_type", "dict_type"),
                    ("expected a mapping of keys, got {value}.", "Write 'key: value' lines indented under it.")),
    "list_type": ("expected a list, got {value}.", "Write '- item' lines or [a, b]."),
    **dict.fromkeys(("int_type", "int_parsing"), ("{value} is not a whole number.", _NUMBER_FIX)),
    "int_parsing_size": ("{value} is far beyond the field's range.", _NUMBER_FIX),
    "int_from_float": ("{value} is not a whole number.", "Drop the decimals."),
    **dict.fromkeys(("float_type", "float_parsing"), ("expected a number, got {value}.", _NUMBER_FIX)),
    "finite_number": ("{value} is not a finite number (.inf and .nan are not amounts).", _NUMBER_FIX),
    "number_expected": ("{msg}", _NUMBER_FIX),
    **dict.fromkeys(("bool_type", "bool_parsing"), ("expected true or false, got {value}.", "Write true or false.")),
}


def pydantic_problems(exc: ValidationError, doc: LocatedDocument) -> list[InputProblem]:
    """Each pydantic error as a located problem: the field path, the value as shown, and the fix."""
    problems = []
    for err in exc.errors(include_url=False):
        loc: PathKey = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message, fix = _explain(err, loc)
        problems.append(InputProblem(format_path(loc) or "(top level)", message, fix, doc.line_of(loc)))
    return problems


def _explain(err: Any, loc: PathKey) -> tuple[str, str]:
    """What is wrong and what to do, for one pydantic error at loc."""
    value, kind = err.get("input"), err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = sorted(yaml_keys(parent)) if parent else []
        return (f"unknown key {shown(loc[-1])}.",
                f"Allowed here: {', '.join(allowed)}.{did_you_mean(loc[-1], allowed)}")
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
        return f"{shown(value)} is not allowed.", f"Allowed: {', '.join(choices)}.{did_you_mean(value, choices)}"
    if kind == "value_error":
        error = err.get("ctx", {}).get("error")
        if isinstance(error, ValueProblem):
            return error.message, error.fix
        return str(err["msg"]).removeprefix("Value error, "), ""
    if kind == "string_type":
        return (f"{shown(value)} must be text, not a {type(value).__name__}.",
                f'Quote it in YAML: "{value}".' if isinstance(value, int | float) else "Write it as quoted text.")
    message, fix = _KIND_MESSAGES.get(kind, ("{value}: {msg}.", ""))
    return message.format(value=shown(value), msg=err["msg"][:1].lower() + err["msg"][1:]), fix


_PATH_PART_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(text: str) -> PathKey:
    """'towers[0].gpus[1].model' -> ('towers', 0, 'gpus', 1, 'model'): the inverse of `format_path`."""
    return tuple(int(index) if index else name for name, index in _PATH_PART_RE.findall(text))

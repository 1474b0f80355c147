"""Read a team file: YAML with every value's line, then the shape, then the checks; a frozen `Team` or every problem.

Everything nomadrig does starts from this one file, so a mistake in it is
caught here, with the file, line, field path, bad value and the fix, before
anything is provisioned.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    ValidationError,
)

from nomadrig.errors import BadInputError, InputProblem
from nomadrig.team.checks import semantic_problems
from nomadrig.team.model import Team
from nomadrig.team.problems import pydantic_problems
from nomadrig.yamlmap import load_located


def parse_team(text: str, filename: str = "<team>") -> Team:
    """Validate team-file text; raise BadInputError with every problem found."""
    doc = load_located(text, filename)
    if doc.problems and doc.data is None:
        raise BadInputError(filename, doc.problems)
    if doc.data is None:
        raise BadInputError(filename, [InputProblem("", "the file is empty.",
                                                    "Start from examples/team.yaml.", 1)])
    if not isinstance(doc.data, dict):
        kind = type(doc.data).__name__
        raise BadInputError(filename, [InputProblem("", f"the file holds a {kind}, not a mapping of keys.",
                                                    "A team file starts with 'team: <name>' at the top level "
                                                    "(see examples/team.yaml).", 1)])
    if doc.problems:
        raise BadInputError(filename, doc.problems)
    try:
        team = Team.model_validate(doc.data)
    except ValidationError as exc:
        raise BadInputError(filename, pydantic_problems(exc, doc)) from None
    problems = semantic_problems(team, doc)
    if problems:
        raise BadInputError(filename, problems)
    return team


def load_team(path: str | Path) -> Team:
    """Read and validate a team file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(str(file), [InputProblem("", "no such file.",
                                                     "Pass the team file's path, e.g. examples/team.yaml.")]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise BadInputError(str(file), [InputProblem("", f"cannot read it: {exc.__class__.__name__}.",
                                                     "Pass a readable UTF-8 YAML file.")]) from None
    return parse_team(text, str(file))

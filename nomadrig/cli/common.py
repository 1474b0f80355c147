"""What every CLI command shares: finding the team file, printing, JSON, and turning errors into exit codes.

Commands live in several modules (boxes, towers, reaper); they all use these
helpers so the same input gives the same message and exit code everywhere.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from nomadrig.errors import BadInputError, ExitCode, InputProblem, NomadrigError

# emoji=False: a tag or name holding ":thumbs_up:" is printed as written, like any other data.
console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])

TEAM_FILE_HELP = "Team file (default: $NOMADRIG_TEAM, ./team.yaml, then ./examples/team.yaml)."
TeamFileOption = typer.Option(None, "--team", "-t", help=TEAM_FILE_HELP, show_default=False)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")

EPILOG = "Exit codes: 0 ok, 1 policy violation, 2 bad input, 3 cloud/engine failure, 130 interrupted."


def resolve_team_file(path: Path | None) -> Path:
    if path is not None:
        return path
    env = os.environ.get("NOMADRIG_TEAM")
    if env:
        return Path(env)
    for candidate in (Path("team.yaml"), Path("examples/team.yaml")):
        if candidate.exists():
            return candidate
    raise BadInputError("team.yaml", [InputProblem("", "no team file found.",
                                                   "Pass --team FILE or set NOMADRIG_TEAM; "
                                                   "start from examples/team.yaml.")])


def load_team_file(path: Path | None):  # -> Team (import kept lazy for start-up time)
    """The team file the command was given (or found), loaded and validated; says which on stderr.

    Said on stderr so that --json output stays clean, and said every time: a
    command that found ./team.yaml instead of the file meant is a surprise
    worth seeing before anything happens.
    """
    from nomadrig.team.load import load_team

    resolved = resolve_team_file(path)
    err_console.print(f"team file: {resolved}", markup=False, soft_wrap=True)
    return load_team(resolved)


def emit_json(data: Any) -> None:
    """JSON on stdout only, nothing else, so scripts can pipe it."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


INTERRUPTED = 130  # the shell's convention for SIGINT


class CommandRefused(NomadrigError):
    """A command that stopped before changing anything: its exit code, and the problems behind it for --json."""

    def __init__(self, message: str, exit_code: ExitCode, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.problems = problems or []


def error_object(code: int, message: str, problems: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What `--json` prints on stdout when a command fails: ``{"error": {"code", "message", "problems"}}``."""
    return {"error": {"code": code, "message": message, "problems": problems or []}}


def problems_of(exc: NomadrigError) -> list[dict[str, Any]]:
    """The located problems of an error, as JSON: file, line, field path, what is wrong, the fix."""
    if isinstance(exc, BadInputError):
        return [{"file": exc.file, "line": p.line, "path": p.path, "message": p.message, "fix": p.fix}
                for p in exc.problems]
    return list(getattr(exc, "problems", []) or [])


def handle_errors(func: F) -> F:
    """Map known errors to their exit codes; never show a traceback unless NOMADRIG_DEBUG is set.

    The message goes to stderr; a command run with --json also prints the
    error object on stdout, so a script reading stdout sees why it failed.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("json_out"))
        try:
            return func(*args, **kwargs)
        except NomadrigError as exc:
            if os.environ.get("NOMADRIG_DEBUG"):
                raise
            # soft_wrap: the terminal wraps; a command in the message (a fix to paste) keeps its one line
            err_console.print(exc.render(), markup=False, highlight=False, soft_wrap=True)
            if as_json:
                emit_json(error_object(int(exc.exit_code), exc.render(), problems_of(exc)))
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            if as_json:
                emit_json(error_object(INTERRUPTED, "interrupted"))
            raise typer.Exit(INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # the last line of defence: no traceback for users
            if os.environ.get("NOMADRIG_DEBUG"):
                raise
            message = f"internal error: {exc.__class__.__name__}: {exc}"
            err_console.print(message, markup=False)
            err_console.print("  Re-run with NOMADRIG_DEBUG=1 for the traceback and report it.", markup=False)
            if as_json:
                emit_json(error_object(int(ExitCode.CLOUD_FAILURE), message))
            raise typer.Exit(int(ExitCode.CLOUD_FAILURE)) from None

    return wrapper  # type: ignore[return-value]


def require_answer(yes: bool, option: str = "--yes") -> None:
    """Refuse (exit 2, nothing done) when a question would have to be asked and there is no terminal to ask on.

    A script or CI job must say --yes itself; call this before anything
    changes, and before the work of preparing the question where that is slow.
    """
    if not yes and not sys.stdin.isatty():
        raise BadInputError("command line", [InputProblem(option, "this command needs confirmation, and there is "
                                                                  "no terminal to ask on; nothing was changed.",
                                                          f"Add {option} once the above is what you want.")])


def confirm(question: str, *, yes: bool, option: str = "--yes") -> bool:
    """Ask `question` on the terminal (default no); True when the user said yes or passed --yes.

    The question goes to stderr, so --json stdout stays clean.
    """
    require_answer(yes, option)
    return yes or typer.confirm(question, default=False, err=True)

"""The nomadrig command line.

Exit codes: 0 ok, 1 policy violation, 2 bad input, 3 cloud or engine failure
(130 when interrupted). Start-up stays fast: cloud SDKs, Pulumi and Ansible are
imported inside the commands that use them.
"""

from __future__ import annotations

import typer

from nomadrig.cli.common import (
    EPILOG,
    INTERRUPTED,
    console,
    emit_json,
    err_console,
    error_object,
)

app = typer.Typer(
    name="nomadrig",
    help="Cloud GPU boxes, on-prem GPU towers and idle teardown for a small ML team, from one team file.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    """--version: print the installed version and stop (eager: before any command or team file is read)."""
    if value:
        from nomadrig import __version__

        console.print(f"nomadrig {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Cloud GPU boxes, on-prem GPU towers and idle teardown for a small ML team, from one team file."""


def _register_commands() -> None:
    """Every command group, in the order `--help` lists them; each imports its heavy dependencies lazily."""
    from nomadrig.cli.advise import register as advise_commands
    from nomadrig.cli.boxes import register as box_commands
    from nomadrig.cli.catalog import register as catalog_commands
    from nomadrig.cli.plan import register as plan_commands
    from nomadrig.cli.policy import register as policy_commands
    from nomadrig.cli.reap import register as reap_commands
    from nomadrig.cli.team import register as team_commands
    from nomadrig.cli.tower import register as tower_commands

    for register in (team_commands, catalog_commands, policy_commands, advise_commands, plan_commands,
                     box_commands, tower_commands, reap_commands):
        register(app)


_register_commands()


def main() -> None:
    """The `nomadrig` entry point: exit codes for what happens outside a command, too.

    Usage errors (an unknown option, a missing argument) exit 2 with the
    message on stderr and, under --json, the error object on stdout; Ctrl-C
    anywhere (even while the CLI starts) exits 130.
    """
    import sys

    as_json = "--json" in sys.argv[1:]
    try:
        code = app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C outside a command, or at a question
        err_console.print("interrupted", markup=False)
        if as_json:
            emit_json(error_object(INTERRUPTED, "interrupted"))
        code = INTERRUPTED
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        exc.show()  # type: ignore[attr-defined]
        if as_json:
            emit_json(error_object(exc.exit_code, exc.format_message()))  # type: ignore[attr-defined]
        code = exc.exit_code  # type: ignore[attr-defined]
    sys.exit(code if isinstance(code, int) else 0)


def _is_usage_error(exc: Exception) -> bool:
    """A click usage error (unknown option, missing argument, bad value): it can show itself and has a code.

    Told by shape, not class: typer ships its own copy of click, whose
    exception classes are not public.
    """
    return all(hasattr(exc, name) for name in ("show", "format_message")) and isinstance(
        getattr(exc, "exit_code", None), int)


if __name__ == "__main__":
    main()

"""The nomadrig command line (typer + rich).

`app` registers each command group explicitly (`app._register_commands`):
`team` (validate, cost), `catalog`, `policy`, `advise`, `plan`, `boxes` (up,
preview, down, restore, ls, outputs, ssh-config, start, stop), `tower` and
`reap`. `common` finds the team file, prints tables and JSON, and maps errors
to exit codes: 0 ok, 1 policy violation, 2 bad input, 3 cloud or engine
failure, 130 interrupted.
"""

from nomadrig.cli.app import app, main

__all__ = ["app", "main"]

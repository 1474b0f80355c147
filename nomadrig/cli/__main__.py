"""``python -m nomadrig.cli``: the same as the `nomadrig` command."""

from nomadrig.cli.app import main

main()

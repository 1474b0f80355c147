"""Errors raised by the catalog: bad data files and failed refreshes."""

from __future__ import annotations

from nomadrig.errors import CloudError, ExitCode, NomadrigError


class CatalogError(NomadrigError, ValueError):
    """A catalog file is malformed; the message names file:line:column and the fix."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, file: str, line: int, column: str, message: str, fix: str = "") -> None:
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        self.fix = fix
        text = f"{file}:{line}:{column}: {message}"
        super().__init__(f"{text}\n  {fix}" if fix else text)


class CatalogRefreshError(CloudError):
    """A price refresh could not run or failed; nothing was written."""

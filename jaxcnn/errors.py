"""Errors that the command line turns into one line and a non-zero exit.

Every problem with user input (a file, a flag, a workdir) raises a subclass of `JaxcnnError` whose message is
one line naming the culprit (`path:line: what is wrong`, or `--flag: what is wrong`). Anything else that escapes
is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


class JaxcnnError(Exception):
    """Base class of every user-facing error."""

    exit_code = 2


class ConfigError(JaxcnnError):
    """A bad flag, config value or config file."""


class DataError(JaxcnnError):
    """A data file that is missing, unreadable or malformed."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None,
                 offset: int | None = None):
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            elif offset is not None:
                where += f": byte {offset}"
            where += ": "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line
        self.offset = offset


class WorkdirError(JaxcnnError):
    """A workdir that is locked, holds another run's config, or lacks what a command needs."""


class TrainingError(JaxcnnError):
    """Training cannot go on (a non-finite loss or gradient)."""

    exit_code = 3

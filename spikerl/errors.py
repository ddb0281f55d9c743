"""The one exception type that the command line turns into a one-line error and exit code 2."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: the message names the problem and how to fix it.

    :param parameter: the name of the offending parameter or setting as the message spells it
        (``episodes``, ``compress.schedule``); the command line replaces it by its flag.
    """

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter

"""The one exception type that the command line turns into a one-line error and exit code 2."""


class UsageError(ValueError):
    """Bad input from the user: the message names the problem and how to fix it."""

"""The one exception type that the command line turns into a one-line error and exit code 2,
and the same treatment for the programs in ``scripts/``."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UsageError(ValueError):
    """Bad input from the user: the message names the problem and how to fix it.

    :param parameter: the name of the offending parameter or setting as the message spells it
        (``episodes``, ``compress.schedule``); the command line replaces it by its flag.
    """

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


def run_script(program: str, work: Callable[[], str]) -> int:
    """Run a script's ``work`` and return its exit code: 0 with the line ``work`` returns
    printed; 2 with one line on stderr for a ``UsageError`` or a file that cannot be read
    or written (``OSError``); 130 with the line ``interrupted`` after Ctrl-C, SIGTERM or SIGHUP
    (which stop the work as Ctrl-C does, so that it cleans up)."""
    from spikerl.checkpoints import stop_signals_as_interrupt  # checkpoints raises this module's UsageError

    try:
        with stop_signals_as_interrupt():
            done = work()
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
    except UsageError as error:
        print(f"{program}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""  # shutil.Error, an OSError, names no file
        print(f"{program}: cannot read or write{where} ({error.strerror or error}); check the paths", file=sys.stderr)
        return 2
    print(done)
    return 0

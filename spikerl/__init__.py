"""spikerl: deep Q-learning agents as spiking neural networks with one timestep per decision."""

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("spikerl")  # pyproject.toml's, as installed
except PackageNotFoundError:  # a source checkout run without installing it
    __version__ = "0+unknown"


def _started_as_the_spikerl_command() -> bool:
    """Whether this process is the ``spikerl`` command: its console script, or ``python -m
    spikerl`` (while ``-m`` imports the package it runs, ``sys.argv[0]`` is ``"-m"``)."""
    program = sys.argv[0] if sys.argv else ""
    return program == "-m" or Path(program).name == "spikerl"


try:  # registers SpikingMlpPolicy/SpikingCnnPolicy as SB3 DQN policy names (imports torch: seconds)
    import numpy  # noqa: F401  first: torch's own import of numpy can lose a Ctrl-C that lands in it

    from spikerl import policy as _policy  # noqa: F401
except KeyboardInterrupt:
    if not _started_as_the_spikerl_command():
        raise
    # a Ctrl-C while a command starts ends it as one later does (spikerl.cli.main), not in a traceback;
    # exec("") as in __main__: CPython would otherwise end `python -m` by SIGINT when the Ctrl-C ended a string exec
    print("spikerl: interrupted", file=sys.stderr)
    exec("")
    raise SystemExit(130) from None

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
    from spikerl import policy as _policy  # noqa: F401
except KeyboardInterrupt:
    if not _started_as_the_spikerl_command():
        raise
    # a Ctrl-C while a command starts ends it as one later does (spikerl.cli.main), not in a traceback
    print("spikerl: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

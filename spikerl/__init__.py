"""spikerl: deep Q-learning agents as spiking neural networks with one timestep per decision."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("spikerl")  # pyproject.toml's, as installed
except PackageNotFoundError:  # a source checkout run without installing it
    __version__ = "0+unknown"

from spikerl import policy as _policy  # noqa: E402,F401  registers SpikingMlpPolicy/SpikingCnnPolicy as SB3 DQN policy names

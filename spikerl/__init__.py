"""spikerl: deep Q-learning agents as spiking neural networks with one timestep per decision."""

__version__ = "0.1.0"

"""The files of a run folder, by role: the one place that knows their names.

``spikerl train`` writes a training run (``config.yaml``, checkpoints, ``ann.zip``, the
evaluation log and the training curve); ``spikerl compress`` writes a compression run
(``ann.zip``, one ``T<t>.zip`` per stage, ``results.json``, ``results.md`` and the plots).
The shipped ``agents/<EnvId>/`` folders are compression runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    """Paths of the files in the run folder ``path`` (nothing is read or created here).

    Functions that take a folder take a ``RunFolder`` or any path (it is path-like).
    """

    path: Path

    def __init__(self, path: str | os.PathLike[str]):
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:  # a RunFolder is path-like: it opens as its folder
        return str(self.path)

    # --- both kinds of run
    @property
    def ann(self) -> Path:
        """The ANN agent (SB3 DQN zip) that ``spikerl compress`` starts from."""
        return self.path / "ann.zip"

    # --- training runs (``spikerl train``)
    @property
    def config(self) -> Path:
        """The run's settings and command lines (``spikerl.config.RunConfig``)."""
        return self.path / "config.yaml"

    @property
    def checkpoint(self) -> Path:
        """The index of the periodic, resumable training checkpoint (``spikerl.training_checkpoint``)."""
        return self.path / "checkpoint.json"

    def checkpoint_tensors(self, num_timesteps: int | str) -> Path:
        """Weights, optimizer and torch random state of the checkpoint of step ``num_timesteps`` (``"*"``: a glob pattern)."""
        return self.path / f"checkpoint_{num_timesteps}.pt"

    def replay_buffer(self, num_timesteps: int | str) -> Path:
        """The replay buffer saved with the checkpoint of step ``num_timesteps`` (``"*"``: a glob pattern)."""
        return self.path / f"replay_buffer_{num_timesteps}.npz"

    @property
    def best_model(self) -> Path:
        """The policy with the best evaluation so far, of this run only."""
        return self.path / "best_model.pt"

    def training_files(self) -> list[Path]:
        """Every file of a training run present (removed when a run starts over with ``--force``)."""
        named = [self.config, self.checkpoint, self.best_model, self.evaluations, self.monitor, self.training_curve]
        return [path for path in named if path.is_file()] + [
            *self.path.glob(self.checkpoint_tensors("*").name), *self.path.glob(self.replay_buffer("*").name)
        ]

    def results(self) -> list[Path]:
        """Results a new run must not replace unprompted: agents, results, best models (also of
        spikerl's earlier, pickled format: ``checkpoint.zip``, ``best_model.zip``)."""
        named = [self.ann, self.best_model, self.path / "checkpoint.zip", self.path / "best_model.zip"]
        return [path for path in named if path.is_file()] + self.stages() + list(self.path.glob("results.*"))

    def stages(self) -> list[Path]:
        """The spiking agents of the stages retrained so far (``T<N>.zip``)."""
        return [path for path in self.path.glob("T*.zip") if re.fullmatch(r"T\d+\.zip", path.name)]

    @property
    def evaluations(self) -> Path:
        """SB3's evaluation log (``EvalCallback``)."""
        return self.path / "evaluations.npz"

    @property
    def monitor(self) -> Path:
        """The training episodes (SB3's ``Monitor`` CSV)."""
        return self.path / "0.monitor.csv"

    @property
    def training_curve(self) -> Path:
        return self.path / "training_curve.png"

    # --- compression runs (``spikerl compress``)
    def stage(self, timesteps: int) -> Path:
        """The spiking agent retrained at T = ``timesteps``."""
        return self.path / f"T{timesteps}.zip"

    @property
    def results_json(self) -> Path:
        """The per-stage results (``spikerl.results.CompressionResult``)."""
        return self.path / "results.json"

    @property
    def results_md(self) -> Path:
        """The results table, rendered from ``results.json``."""
        return self.path / "results.md"

    def plot(self, name: str) -> Path:
        """A plot of the compression run, ``name`` being one of ``PLOTS``."""
        return self.path / f"{name}.png"


#: Plots of a compression run (``spikerl.plots.plot_compression``), by name.
PLOTS = ("reward_vs_T", "spike_rates", "energy")

"""PNG plots of a compression run (reward vs T, spike rates, energy) and of a training run.

Figures are made with matplotlib's object API (``matplotlib.figure.Figure``), not pyplot, so
plotting neither needs nor changes the process's matplotlib backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spikerl.checkpoints import atomic_path
from spikerl.results import CompressionResult, Stage, StageRow
from spikerl.run_folder import RunFolder


def _figure(size: tuple[float, float] = (5.5, 3.8)) -> tuple[Figure, Axes]:
    figure = Figure(figsize=size)
    return figure, figure.add_subplot()


def as_written(text: str) -> str:
    """``text`` (a folder, env or layer name) for a plot label, shown as written: matplotlib
    reads text between two ``$`` as math, and fails on what it cannot parse."""
    return text.replace("$", r"\$")


def save_png(figure: Figure, path: Path) -> str:
    """Write ``figure`` as a PNG at ``path`` atomically; returns the file name."""
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    return path.name


def plot_compression(result: CompressionResult, folder: RunFolder) -> list[str]:
    """Write the plots ``spikerl.run_folder.PLOTS`` that have data; return their file names."""
    (ann,) = result.rows_of(Stage.ANN)
    stages, converted = result.rows_of(Stage.RETRAINED), result.rows_of(Stage.CONVERTED)
    names = []

    figure, axis = _figure()
    axis.axhline(ann.mean_reward, color="gray", linestyle="--", label="ANN")
    if stages:
        rewards, stds = [r.mean_reward for r in stages], [r.std_reward for r in stages]
        axis.errorbar(_timesteps(stages), rewards, stds, marker="o", capsize=3, label="SNN, retrained")
    if converted:
        axis.plot(_timesteps(converted), [r.mean_reward for r in converted], "x", color="red", label="SNN, converted only")
    ylabel = f"mean reward ({result.evaluation.episodes} episodes)"
    axis.set(xlabel="timesteps T per decision", ylabel=ylabel, title=as_written(result.env_id))
    axis.set_xticks(sorted({row.T for row in stages + converted if row.T is not None}))
    axis.invert_xaxis()
    axis.legend()
    names.append(save_png(figure, folder.plot("reward_vs_T")))

    if stages:
        layers = list(stages[0].spike_rates)
        figure, axis = _figure()
        width = 0.8 / len(stages)
        for index, row in enumerate(stages):
            rates = [row.spike_rates[layer] for layer in layers]
            axis.bar(np.arange(len(layers)) + index * width, rates, width, label=f"T={row.T}")
        axis.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, [as_written(layer) for layer in layers], rotation=20)
        axis.set(ylabel="spikes per neuron per timestep", title="spike rate per layer")
        axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
        names.append(save_png(figure, folder.plot("spike_rates")))

    figure, axis = _figure()
    labels = ["ANN"] + [f"T={row.T}" for row in stages]
    costs = [ann.cost] + [row.cost for row in stages]
    mac_nj = [cost["mac_energy_pj"] / 1000 for cost in costs]
    axis.bar(labels, mac_nj, color="gray", label="MACs (ANN; SNN first layer, analog input)")
    ac_nj = [cost["ac_energy_pj"] / 1000 for cost in costs]
    axis.bar(labels, ac_nj, bottom=mac_nj, color="tab:blue", label="ACs (SNN layers driven by spikes)")
    axis.set(ylabel="energy per decision (nJ, 45 nm estimate)", title="energy per decision")
    axis.legend(fontsize="small")
    names.append(save_png(figure, folder.plot("energy")))
    return names


def plot_training_curve(run_dir: Path, path: Path, frames_per_step: int = 1) -> None:
    """Evaluation reward (and training-episode reward) against agent steps, from a train run.

    ``frames_per_step`` converts Monitor lengths to agent steps (4 under Atari frame skipping).
    Episodes are taken in file order, which is the order they were played in: a resumed run
    appends to the Monitor file with its clock restarted, so SB3's ``load_results`` (which
    sorts by that clock) would shuffle them.
    """
    import pandas
    from stable_baselines3.common.monitor import get_monitor_files

    figure, axis = _figure((6, 3.8))
    files = get_monitor_files(str(run_dir))
    episodes = pandas.concat([pandas.read_csv(file, skiprows=1) for file in files]) if files else pandas.DataFrame()
    if len(episodes):
        steps = np.cumsum(episodes["l"].to_numpy()) / frames_per_step
        mean_of_10 = episodes["r"].rolling(10, min_periods=1).mean()
        axis.plot(steps, mean_of_10, color="lightsteelblue", label="training episodes (mean of 10)")
    log = RunFolder(run_dir).evaluations
    if log.is_file():
        evaluations = np.load(log)
        eval_steps, results = evaluations["timesteps"], evaluations["results"]
        axis.errorbar(eval_steps, results.mean(axis=1), results.std(axis=1), marker="o", capsize=3, label="evaluation")
    axis.set(xlabel="agent steps", ylabel="episode reward", title=as_written(run_dir.name))
    if len(episodes) or log.is_file():  # else an empty plot: no legend to draw
        axis.legend()
    save_png(figure, path)


def _timesteps(rows: list[StageRow]) -> list[int]:
    """T of each of the SNN ``rows`` (every converted or retrained row has one)."""
    return [row.T for row in rows if row.T is not None]

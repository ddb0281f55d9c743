"""results.md and plots from a compression run's results: one row per stage, the ANN first.

``spikerl report DIR`` rewrites both from ``DIR/results.json``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from spikerl.checkpoints import write_text
from spikerl.evaluate import count_distinct_episodes
from spikerl.results import CompressionResult, StageRow, read_results
from spikerl.run_folder import RunFolder


def _spike_rates(rates: dict[str, float]) -> str:
    return ", ".join(f"{name} {rate:.3f}" for name, rate in rates.items()) or "-"


def _episodes(row: StageRow) -> str:
    """``10``, or ``10 (5 distinct)`` where episodes replay one another (``count_distinct_episodes``)."""
    distinct = count_distinct_episodes(row.rewards, row.lengths, row.episode_digests)
    return f"{len(row.rewards)}" + (f" ({distinct} distinct)" if distinct is not None and distinct < len(row.rewards) else "")


def render_markdown(result: CompressionResult) -> str:
    """The results table of a ``spikerl compress`` run, with the settings and the commands."""
    protocol = result.evaluation
    lines = [
        f"# {result.env_id}: IIR-SNN compression",
        "",
        f"Evaluation: {protocol.episodes} episodes per row, environment seeds from {protocol.seed} "
        f"({protocol.n_envs} environments), greedy actions; the same episodes for every row "
        "(`n distinct`: the others replay one of them: the same observations, reward and length).",
        f"Objective `{result.objective}`, {result.steps_per_stage} steps per stage, "
        f"conversion percentile {result.percentile}, input encoding {result.encoding}, seed {result.seed}"
        + (f", retrained under sticky actions p={result.sticky_actions}." if result.sticky_actions is not None else "."),
        *([f"Sticky-action rows: repeat_action_probability {protocol.sticky_actions}."]
          if protocol.sticky_actions is not None else []),
        "Energy per decision: MAC 4.6 pJ, AC 0.9 pJ (45 nm); SNN layers fed by hidden neurons cost "
        "MACs x input spike rate x T accumulates, the first layer (and a spiking input's encoder) is computed once; "
        "with memory, every byte of weights, biases, membrane potentials and activations read or written costs "
        "24.96 pJ (see spikerl/energy.py).",
        "",
        "| stage | T | mean reward | std | episodes | mean length | spike rate per layer | MACs | ACs "
        "| energy / decision (nJ) | ANN / this energy "
        "| with memory (nJ) | ANN / this, with memory | membrane values kept | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result.rows:
        cost = row.cost
        lines.append(
            f"| {row.stage.value} | {row.T if row.T is not None else '-'} | {row.mean_reward:.2f} | {row.std_reward:.2f} "
            f"| {_episodes(row)} | {sum(row.lengths) / len(row.lengths):.1f} | {_spike_rates(row.spike_rates)} "
            f"| {cost['macs']:,.0f} | {cost['acs']:,.0f} | {cost['energy_pj'] / 1000:.1f} | {cost['ann_energy_ratio']:.1f}x "
            f"| {cost['total_energy_pj'] / 1000:.1f} | {cost['ann_total_energy_ratio']:.1f}x "
            f"| {cost['membrane_values']:,} | {row.wall_time_s:.1f} |"
        )
    lines += ["", *[f"![{Path(p).stem}]({p})" for p in result.plots], "", "Commands:", "", "```", *result.commands, "```", ""]
    return "\n".join(lines)


def write_report(
    folder: str | os.PathLike[str], result: CompressionResult | None = None, plots: bool = True
) -> CompressionResult:
    """Rewrite ``results.md`` (and, with ``plots``, the PNG plots) of the compression run in ``folder``.

    ``result`` defaults to the folder's ``results.json``; returns it with every row's cost
    computed afresh and, with ``plots``, the plot file names.
    """
    run = RunFolder(folder)
    result = (result if result is not None else read_results(run.path)).with_costs()
    if plots:
        from spikerl.plots import plot_compression

        result = dataclasses.replace(result, plots=plot_compression(result, run))
    write_text(run.results_md, render_markdown(result))
    return result

"""results.md and plots from results.json: one row per stage, the ANN first.

``spikerl report DIR`` rewrites both from ``DIR/results.json`` (and ``DIR/ann.zip`` for the
layer sizes when the results predate them).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from spikerl.checkpoints import write_text
from spikerl.config import RESULTS_JSON
from spikerl.energy import LayerCost, decision_cost, layer_costs


def network_costs(results: dict[str, Any], out_dir: Path) -> list[LayerCost]:
    """The per-layer MACs stored in the results, or computed from ``out_dir/ann.zip``."""
    if "layers" not in results:
        from spikerl.config import load_preset
        from spikerl.loading import load_agent

        env_id = results["env_id"]
        ann = load_agent(out_dir / "ann.zip", env_id, load_preset(env_id)["env"], "cpu")
        results["layers"] = [asdict(c) for c in layer_costs(ann.q_net, ann.observation_space)]
    return [LayerCost(**layer) for layer in results["layers"]]


def add_costs(results: dict[str, Any], costs: list[LayerCost]) -> None:
    """Give every row its operations, energy per decision and the ANN/SNN energy ratio.

    Spiking rows take ``results["spiking_layers"]`` where a spiking input layer changed the
    network (``spikerl.encoding``), ``costs`` (the ANN's layers) otherwise.
    """
    ann_energy = decision_cost(costs)["energy_pj"]
    spiking_costs = [LayerCost(**layer) for layer in results["spiking_layers"]] if "spiking_layers" in results else costs
    for row in results["rows"]:
        row["cost"] = decision_cost(costs if row["T"] is None else spiking_costs, row["spike_rates"], row["T"])
        row["cost"]["ann_energy_ratio"] = ann_energy / row["cost"]["energy_pj"]


def _spike_rates(rates: dict[str, float]) -> str:
    return ", ".join(f"{name} {rate:.3f}" for name, rate in rates.items()) or "-"


def render_markdown(results: dict[str, Any]) -> str:
    """The results table of a ``spikerl compress`` run, with the settings and the commands."""
    protocol = results["evaluation"]
    lines = [
        f"# {results['env_id']}: IIR-SNN compression",
        "",
        f"Evaluation: {protocol['episodes']} episodes per row, environment seeds from {protocol['seed']} "
        f"({protocol['n_envs']} environments), greedy actions; the same episodes for every row.",
        f"Objective `{results['objective']}`, {results['steps_per_stage']} steps per stage, "
        f"conversion percentile {results['percentile']}, input encoding {results.get('encoding', 'direct')}, seed {results['seed']}.",
        "Energy per decision: MAC 4.6 pJ, AC 0.9 pJ (45 nm); SNN layers after the first cost "
        "MACs x input spike rate x T accumulates (see spikerl/energy.py).",
        "",
        "| stage | T | mean reward | std | mean length | spike rate per layer | MACs | ACs | energy / decision (nJ) "
        "| ANN / this energy | membrane values kept | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        cost = row["cost"]
        lines.append(
            f"| {row['stage']} | {row['T'] if row['T'] is not None else '-'} | {row['mean_reward']:.2f} | {row['std_reward']:.2f} "
            f"| {sum(row['lengths']) / len(row['lengths']):.1f} | {_spike_rates(row['spike_rates'])} "
            f"| {cost['macs']:,.0f} | {cost['acs']:,.0f} | {cost['energy_pj'] / 1000:.1f} | {cost['ann_energy_ratio']:.1f}x "
            f"| {cost['membrane_values']:,} | {row['wall_time_s']:.1f} |"
        )
    plots = results.get("plots", [])
    lines += ["", *[f"![{Path(p).stem}]({p})" for p in plots], "", "Commands:", "", "```", *results["commands"], "```", ""]
    return "\n".join(lines)


def write_report(out_dir: str | Path, results: dict[str, Any] | None = None, plots: bool = True) -> dict[str, Any]:
    """Rewrite ``results.md`` (and the PNG plots) of the compression run in ``out_dir``."""
    out_dir = Path(out_dir)
    if results is None:
        results = json.loads((out_dir / RESULTS_JSON).read_text())
    add_costs(results, network_costs(results, out_dir))
    if plots:
        from spikerl.plots import plot_compression

        results["plots"] = plot_compression(results, out_dir)
    write_text(out_dir / "results.md", render_markdown(results))
    return results

"""results.md from results.json: one row per stage, the ANN first."""

from __future__ import annotations

from typing import Any


def _spike_rates(rates: dict[str, float]) -> str:
    return ", ".join(f"{name} {rate:.3f}" for name, rate in rates.items()) or "-"


def render_markdown(results: dict[str, Any]) -> str:
    """The results table of a ``spikerl compress`` run, with the settings and the command."""
    protocol = results["evaluation"]
    lines = [
        f"# {results['env_id']}: IIR-SNN compression",
        "",
        f"Evaluation: {protocol['episodes']} episodes per row, environment seeds from {protocol['seed']} "
        f"({protocol['n_envs']} environments), greedy actions; the same episodes for every row.",
        f"Objective `{results['objective']}`, {results['steps_per_stage']} steps per stage, "
        f"conversion percentile {results['percentile']}, seed {results['seed']}.",
        "",
        "| stage | T | mean reward | std | mean length | spike rate per layer | wall time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['stage']} | {row['T'] if row['T'] is not None else '-'} | {row['mean_reward']:.2f} | {row['std_reward']:.2f} "
            f"| {sum(row['lengths']) / len(row['lengths']):.1f} | {_spike_rates(row['spike_rates'])} | {row['wall_time_s']:.1f} |"
        )
    lines += ["", "Commands:", "", "```", *results["commands"], "```", ""]
    return "\n".join(lines)

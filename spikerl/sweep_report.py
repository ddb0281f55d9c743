"""The results view of a sweep: ``sweep.csv``, ``sweep.md`` and plots, from each cell's ``results.json``.

``sweep.csv``  one row per cell and stage (ANN, converted, each retrained T): the cell's settings
               and ANN (``agent_sha256``), reward, spike rates per layer and every operation/energy
               figure of the row's ``cost``.
``sweep.md``   cells that differ only in seed form a group; per group and stage the reward and
               the energy per decision as mean +- std [95% bootstrap CI] over seeds
               (``spikerl.stats.summarize``), then the failed and unfinished cells.
               It opens with the final stage of every group (``final_stage_table``): each seed's
               reward and their summary, energy per decision and its ratio to the ANN's, after
               the ANNs' own line.
``reward_vs_T.png`` / ``energy_vs_T.png``  per group, mean over seeds against T with the CI as error bars.
``final_reward.png``  per group, the final stage's reward of every seed and their mean with the CI.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from spikerl.checkpoints import write_text
from spikerl.errors import UsageError
from spikerl.plots import as_written, save_png
from spikerl.results import Stage, StageRow, read_results
from spikerl.run_folder import RunFolder
from spikerl.stats import Summary, summarize
from spikerl.sweep import foreign_result
from spikerl.sweep_grid import Cell, Plan

#: The plots of a sweep: file name -> (the CSV column plotted, its axis label).
PLOTS = {
    "reward_vs_T.png": ("mean_reward", "mean reward per episode"),
    "energy_vs_T.png": ("energy_nj", "energy per decision (nJ, 45 nm estimate)"),
}
#: The ANN's energy over a row's (``spikerl.energy.energy_ratios``): compute only, with memory.
RATIO_KEYS = ("ann_energy_ratio", "ann_total_energy_ratio")
#: The final stage of every group: each seed's reward, their mean and CI (``plot_final_rewards``).
FINAL_PLOT = "final_reward.png"


def write_sweep_report(out: Path, plan: Plan, failed: dict[str, str]) -> list[dict[str, Any]]:
    """Write ``sweep.csv``, ``sweep.md`` and the plots into ``out``; returns the CSV rows."""
    rows = collect_rows(out, plan)
    write_text(out / "sweep.csv", _csv(rows))
    plots = [name for name in PLOTS if _plot(rows, *PLOTS[name], out / name)]
    if plot_final_rewards(rows, out / FINAL_PLOT):
        plots.insert(0, FINAL_PLOT)
    write_text(out / "sweep.md", render_markdown(plan, rows, failed, plots))
    return rows


def collect_rows(out: Path, plan: Plan) -> list[dict[str, Any]]:
    """One flat dict per cell and stage of every cell that has results so far."""
    rows = []
    for cell in plan.cells:
        if not RunFolder(out / cell.folder).results_json.is_file():
            continue
        try:
            results = read_results(out / cell.folder)
        except UsageError:  # damaged: the cell is listed as unfinished
            continue
        if results.is_complete() and foreign_result(out, cell) is not None:  # another run's: not this cell's rows
            continue
        status = "done" if results.is_complete() else "unfinished"
        rows += [_flat_row(cell, row, status, results.agent_sha256) for row in results.rows]
    return rows


def _flat_row(cell: Cell, row: StageRow, status: str, agent_sha256: str | None) -> dict[str, Any]:
    flat: dict[str, Any] = {"cell": cell.folder, "group": cell.group, "seed": cell.seed, "status": status,
                            "agent_sha256": agent_sha256}
    flat.update({key: _text(value) for key, value in cell.own.items() if key != "seed"})
    flat.update({
        "stage": row.stage.value, "T": row.T, "mean_reward": row.mean_reward, "std_reward": row.std_reward,
        "episodes": len(row.rewards), "wall_time_s": row.wall_time_s,
    })
    flat.update({f"spike_rate {layer}": rate for layer, rate in row.spike_rates.items()})
    flat.update({key: value for key, value in row.cost.items() if isinstance(value, (int, float))})
    if "energy_pj" in row.cost:
        flat["energy_nj"] = row.cost["energy_pj"] / 1000
    return flat


def _text(value: Any) -> Any:
    return value if isinstance(value, (str, int, float)) else json.dumps(value)


def _csv(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _stage_label(row: dict[str, Any]) -> str:
    """``ANN``, ``T=3``, ``T=5 (converted)``, ``T=1, sticky actions``: one label per stage and protocol."""
    stage = Stage(row["stage"])
    label = "ANN" if row["T"] is None else f"T={row['T']}" + (" (converted)" if stage is Stage.CONVERTED else "")
    return label + (", sticky actions" if stage.is_sticky else "")


def group_stages(rows: list[dict[str, Any]], metric: str) -> dict[str, dict[str, Summary]]:
    """Per group, per stage label: the summary of ``metric`` over the group's seeds, in row order."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.get(metric) is not None:
            values[row["group"]][_stage_label(row)].append(float(row[metric]))
    return {group: {stage: summarize(v) for stage, v in stages.items()} for group, stages in values.items()}


def final_stages(rows: list[dict[str, Any]], stage: Stage = Stage.RETRAINED) -> dict[str, list[dict[str, Any]]]:
    """Per group, the final ``stage`` row (the lowest T) of each finished cell, in seed order;
    ``Stage.RETRAINED_STICKY`` gives the last stage's sticky-action rows, ``Stage.ANN`` the
    cell's one ANN row."""
    finals: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # group -> cell -> its final row
    for row in rows:
        if row["status"] == "done" and row["stage"] == stage.value:
            kept = finals[row["group"]].get(row["cell"])
            if kept is None or row["T"] < kept["T"]:
                finals[row["group"]][row["cell"]] = row
    return {group: sorted(cells.values(), key=lambda row: row["seed"]) for group, cells in finals.items()}


def final_stage_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: per group, the final stage's reward of every seed, mean +- std [95% CI] over
    seeds, the energy per decision, compute only and with memory access (nJ), and how many times
    the ANN's it is below, both as mean +- std [95% CI] over seeds; where the cells have
    sticky-action rows, their rewards too (every seed listed). The ANNs come first: in one line
    when every group compressed the same ANN files with the same results, else in a line before
    each run of consecutive groups that did ("ANN of the next 2 groups")."""
    finals, sticky = final_stages(rows), final_stages(rows, Stage.RETRAINED_STICKY)
    anns, anns_sticky = final_stages(rows, Stage.ANN), final_stages(rows, Stage.ANN_STICKY)
    with_sticky = bool(sticky or anns_sticky)
    lines = ["| cells | T | reward per seed | reward over seeds | energy / decision, compute (nJ) | with memory (nJ) "
             "| energy below the ANN's, compute / with memory (times) |"
             + (" sticky actions: reward per seed | over seeds |" if with_sticky else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if with_sticky else "")]
    identities = {group: _ann_identity(anns.get(group, []) + anns_sticky.get(group, [])) for group in finals}
    runs = [list(run) for _, run in itertools.groupby(finals, key=identities.__getitem__)]  # consecutive groups
    for run in runs:
        first = run[0]
        if first in anns:
            label = ("ANN of every group" if len(runs) == 1 else
                     f"ANN of the next {len(run)} groups" if len(run) > 1 else "ANN of the next group")
            lines.append(_table_line(label, anns[first], anns_sticky.get(first, []), with_sticky))
        lines += [_table_line(group, finals[group], sticky.get(group, []), with_sticky) for group in run]
    return lines


def _ann_identity(rows: list[dict[str, Any]]) -> frozenset[tuple[Any, ...]]:
    """What tells the ANN rows of one group from another's: the ANN files (their SHA-256) with
    each one's stage and reward (a given ANN that several seeds compressed counts once)."""
    return frozenset((row.get("agent_sha256"), row["stage"], row["mean_reward"]) for row in rows)


def _table_line(label: str, finals: list[dict[str, Any]], sticky: list[dict[str, Any]], with_sticky: bool) -> str:
    """One line of ``final_stage_table``: ``finals`` holds one stage's rows (ANN or SNN), a row per seed."""
    is_ann = bool(finals) and finals[0]["T"] is None
    compute, memory = (_summary_of(finals, key, scale=1000) for key in ("energy_pj", "total_energy_pj"))
    ratios = [_summary_of(finals, key) for key in RATIO_KEYS]
    ratio = "-" if is_ann or None in ratios else f"{_cell_text(ratios[0])} / {_cell_text(ratios[1])}"
    stage = "ANN" if is_ann else finals[0]["T"] if finals else "-"
    line = f"| {label} | {stage} | {_rewards_text(finals)} | {_cell_text(compute)} | {_cell_text(memory, 0)} | {ratio} |"
    return line + (f" {_rewards_text(sticky)} |" if with_sticky else "")


def _summary_of(rows: list[dict[str, Any]], key: str, scale: float = 1.0) -> Summary | None:
    """``row[key] / scale`` summarized over ``rows``; None where a row lacks it."""
    if not rows or any(key not in row for row in rows):
        return None
    return summarize(row[key] / scale for row in rows)


def _rewards_text(finals: list[dict[str, Any]]) -> str:
    """``0: 19.0, 1: 20.0 | 19.5 +- 0.7 [19.0, 20.0]``: every seed's reward, then their summary."""
    if not finals:
        return "- | -"
    per_seed = ", ".join(f"{row['seed']}: {row['mean_reward']:.1f}" for row in finals)
    return f"{per_seed} | {_cell_text(summarize(row['mean_reward'] for row in finals), 1)}"


def _cell_text(summary: Summary | None, digits: int = 1) -> str:
    if summary is None:
        return "-"
    if summary.n < 2:
        return f"{summary.mean:.{digits}f}"
    return f"{summary.mean:.{digits}f} +- {summary.std:.{digits}f} [{summary.ci_low:.{digits}f}, {summary.ci_high:.{digits}f}]"


def render_markdown(plan: Plan, rows: list[dict[str, Any]], failed: dict[str, str], plots: list[str]) -> str:
    """The sweep's tables: one per group of cells that differ only in seed."""
    rewards, energies = group_stages(rows, "mean_reward"), group_stages(rows, "energy_nj")
    done = {row["cell"] for row in rows if row["status"] == "done"}
    lines = [
        f"# Sweep of {plan.grid_file.name}: {plan.env_id}",
        "",
        (f"{len(done)} of {len(plan.cells)} cells done, {len(failed)} failed. Each entry: mean +- std over the group's "
         "seeds [95% percentile-bootstrap CI of the mean] (a single seed: its value). Reward: the mean of each seed's "
         "evaluation episodes; energy per decision: spikerl's 45 nm compute estimate (see spikerl/energy.py)."),
        "",
    ]
    if any(row["status"] == "done" for row in rows):
        lines += ["## Final stage of every group", "", *final_stage_table(rows), ""]
    for group in dict.fromkeys(row["group"] for row in rows):
        seeds = sorted({row["seed"] for row in rows if row["group"] == group})
        lines += [f"## {group}", "", f"seeds {', '.join(map(str, seeds))}", "",
                  "| stage | n | reward | energy / decision (nJ) |", "|---|---|---|---|"]
        for stage, reward in rewards[group].items():
            energy = energies.get(group, {}).get(stage)
            lines.append(f"| {stage} | {reward.n} | {_cell_text(reward, 2)} | {_cell_text(energy)} |")
        lines.append("")
    unfinished = [c.folder for c in plan.cells if c.folder not in done and c.folder not in failed]
    if failed:
        lines += ["## Failed cells", "", *[f"- `{folder}`: {error}" for folder, error in failed.items()], ""]
    if unfinished:
        lines += ["## Unfinished cells", "", *[f"- `{folder}`" for folder in unfinished], ""]
    lines += [*[f"![{Path(name).stem}]({name})" for name in plots], ""]
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], metric: str, label: str, path: Path) -> bool:
    """Per group, the mean of ``metric`` over seeds against T (retrained stages), CI as error bars."""
    summaries = group_stages([row for row in rows if row["stage"] == Stage.RETRAINED.value], metric)
    if not summaries:
        return False
    figure = Figure(figsize=(7.5, 4.2))
    axis = figure.subplots()
    for index, (group, stages) in enumerate(summaries.items()):
        dodge = (index - (len(summaries) - 1) / 2) * 0.04  # keeps the error bars of groups apart
        ts = [int(stage.removeprefix("T=")) + dodge for stage in stages]
        means = [s.mean for s in stages.values()]
        errors = [[0 if math.isnan(s.ci_low) else s.mean - s.ci_low for s in stages.values()],
                  [0 if math.isnan(s.ci_high) else s.ci_high - s.mean for s in stages.values()]]
        axis.errorbar(ts, means, errors, marker="o", capsize=3, label=as_written(group))
    axis.set_xticks(sorted({int(stage.removeprefix("T=")) for stages in summaries.values() for stage in stages}))
    axis.set(xlabel="timesteps T per decision", ylabel=label, title=f"{label.split(' (')[0]} (mean over seeds, 95% CI)")
    axis.invert_xaxis()
    axis.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    save_png(figure, path)
    return True


def plot_final_rewards(rows: list[dict[str, Any]], path: Path) -> bool:
    """Per group (one line each), the final stage's reward of every seed (dots) and their mean with
    the 95% CI (a bar), so that the spread across seeds shows beside the difference between groups."""
    finals = final_stages(rows)
    if not finals:
        return False
    figure = Figure(figsize=(9, 0.9 + 0.32 * len(finals)))
    axis = figure.subplots()
    for position, stage_rows in enumerate(finals.values()):
        rewards = [row["mean_reward"] for row in stage_rows]
        summary = summarize(rewards)
        axis.scatter(rewards, [position] * len(rewards), s=14, color="tab:blue", alpha=0.6, zorder=3)
        low, high = (summary.mean, summary.mean) if summary.n < 2 else (summary.ci_low, summary.ci_high)
        axis.errorbar([summary.mean], [position], xerr=[[summary.mean - low], [high - summary.mean]], fmt="|",
                      color="black", markersize=12, capsize=3, zorder=2)
    labels = [as_written(f"{group} (T={stage_rows[0]['T']})") for group, stage_rows in finals.items()]
    axis.set_yticks(range(len(finals)), labels, fontsize="x-small")
    axis.invert_yaxis()
    axis.set(xlabel="mean reward per episode (dots: seeds; bar: their mean, 95% bootstrap CI)",
             title="final stage of every group")
    axis.grid(axis="x", alpha=0.3)
    save_png(figure, path)
    return True

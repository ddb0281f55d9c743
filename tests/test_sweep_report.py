"""The sweep's results view (statistics over seeds, the final-stage table),
scripts/readme_sweep.py's and scripts/keep_sweep.py's refusals and scripts/adopt_runs.py;
none of it needs Ray."""

import json
import math
import os
import shutil

import pytest

from conftest import SHIPPED_CARTPOLE
from spikerl.checkpoints import write_json
from spikerl.cli import main
from spikerl.stats import summarize
from spikerl.sweep import SWEEP_JSON, check_same_plan
from spikerl.sweep_grid import load_grid
from spikerl.sweep_report import final_stage_table, group_stages

# --- statistics ------------------------------------------------------------------------------


def test_summarize_gives_mean_std_and_a_seeded_bootstrap_interval():
    summary = summarize([1.0, 2.0, 3.0, 10.0])
    assert (summary.n, summary.mean) == (4, 4.0)
    assert summary.std == pytest.approx(4.0825, abs=1e-4)  # sample std (ddof=1)
    assert 1.0 <= summary.ci_low < summary.mean < summary.ci_high <= 10.0
    assert summarize([1.0, 2.0, 3.0, 10.0]) == summary  # seeded: the same values give the same interval
    assert summarize([5.0, 5.0, 5.0]).ci_low == summarize([5.0, 5.0, 5.0]).ci_high == 5.0
    single = summarize([7.0])
    assert single.n == 1 and single.mean == 7.0 and math.isnan(single.std) and math.isnan(single.ci_low)
    with pytest.raises(ValueError):
        summarize([])


def _stage_row(group, seed, stage, reward, energy_pj=1000.0, ann_file="ann"):
    """A flat row of ``collect_rows`` as a finished cell of ``group`` gives it; ``ann_file`` names its ANN."""
    ann = stage.startswith("ANN")
    return {"cell": f"{group}/seed={seed}", "group": group, "seed": seed, "status": "done", "stage": stage,
            "agent_sha256": f"{ann_file} of seed {seed}",
            "T": None if ann else 1, "mean_reward": reward, "energy_pj": energy_pj, "total_energy_pj": 2 * energy_pj,
            "ann_energy_ratio": 1.0 if ann else 40_000.0 / energy_pj, "ann_total_energy_ratio": 1.0 if ann else 10.0}


def test_sticky_action_rows_are_summarized_apart_from_the_default_protocol():
    stages = [("ANN", 20.0, 40.0), ("retrained", 19.0, 1.0), ("ANN, sticky actions", 10.0, 40.0),
              ("retrained, sticky actions", 5.0, 1.0)]
    rows = [_stage_row("all cells", seed, stage, reward + seed, energy * 1000) for seed in (0, 1)
            for stage, reward, energy in stages]
    rewards = group_stages(rows, "mean_reward")["all cells"]
    assert {stage: summary.mean for stage, summary in rewards.items()} == {
        "ANN": 20.5, "T=1": 19.5, "ANN, sticky actions": 10.5, "T=1, sticky actions": 5.5}
    header, _, ann, line = final_stage_table(rows)
    assert "sticky actions: reward per seed" in header and "energy below the ANN's" in header
    rewards = "| all cells | 1 | 0: 19.0, 1: 20.0 | 19.5 +- 0.7 [19.0, 20.0] |"  # every seed, then their summary
    energies = " 1.0 +- 0.0 [1.0, 1.0] | 2 +- 0 [2, 2] |"  # nJ, compute and with memory
    below_the_ann = " 40.0 +- 0.0 [40.0, 40.0] / 10.0 +- 0.0 [10.0, 10.0] |"  # times, compute / with memory
    assert line.startswith(rewards + energies + below_the_ann)
    assert line.endswith("| 0: 5.0, 1: 6.0 | 5.5 +- 0.7 [5.0, 6.0] |")
    assert ann.startswith("| ANN of every group | ANN | 0: 20.0, 1: 21.0 |") and "| - |" in ann
    assert ann.endswith("| 0: 10.0, 1: 11.0 | 10.5 +- 0.7 [10.0, 11.0] |")


def test_the_ann_line_is_shared_only_where_every_group_compressed_the_same_anns():
    def table(ann_rewards, ann_files=("ann", "ann")):
        rows = [_stage_row(group, seed, stage, ann_reward if stage == "ANN" else 19.0, ann_file=ann_file)
                for group, ann_reward, ann_file in zip(("direct", "iir"), ann_rewards, ann_files) for seed in (0, 1)
                for stage in ("ANN", "retrained")]
        return [line.split(" | ")[:2] for line in final_stage_table(rows)[2:]]

    apart = [["| ANN of the next group", "ANN"], ["| direct", "1"], ["| ANN of the next group", "ANN"], ["| iir", "1"]]
    assert table([20.0, 20.0]) == [["| ANN of every group", "ANN"], ["| direct", "1"], ["| iir", "1"]]
    assert table([20.0, 18.0]) == apart
    assert table([20.0, 20.0], ann_files=("ann", "other ann")) == apart  # the same rewards from other ANNs


def test_consecutive_groups_of_one_given_ann_share_its_line_whatever_their_seeds():
    groups = [("iir", "shipped", (0, 1)), ("direct", "shipped", (0, 1)), ("iir earlier", "earlier", (0,)),
              ("iir longer", "shipped", (0,))]
    rows = [{**_stage_row(group, seed, stage, 20.0 if stage == "ANN" else 19.0), "agent_sha256": ann}
            for group, ann, seeds in groups for seed in seeds for stage in ("ANN", "retrained")]
    labels = [line.split(" | ")[0] for line in final_stage_table(rows)[2:]]
    assert labels == ["| ANN of the next 2 groups", "| iir", "| direct", "| ANN of the next group", "| iir earlier",
                      "| ANN of the next group", "| iir longer"]


# --- scripts/readme_sweep.py -------------------------------------------------------------------


@pytest.fixture
def readme_sweep(run_script):
    """Run scripts/readme_sweep.py's main with the given arguments; returns (exit code, stderr)."""
    return lambda *args: run_script("readme_sweep", *args)[::2]


def test_readme_sweep_refuses_in_one_line_and_writes_nothing(tmp_path, readme_sweep):
    grid = tmp_path / "grid.yaml"
    grid.write_text("env: CartPole-v1\ngrid: {seed: [0, 1]}\n")
    other = tmp_path / "other.yaml"
    other.write_text("env: CartPole-v1\ngrid: {seed: [0]}\n")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    readme = tmp_path / "README.md"
    text = "# title\n<!-- /t -->\n<!-- t -->\n"
    readme.write_text(text)

    two_blocks = tmp_path / "two.md"
    two_blocks.write_text("<!-- t -->\n<!-- /t -->\ntext\n<!-- t -->\n<!-- /t -->\n")
    fifo = tmp_path / "fifo.md"
    os.mkfifo(fifo)
    (tmp_path / "utf16.md").write_text("<!-- t -->\n<!-- /t -->\n", encoding="utf-16")
    cases = [
        (tmp_path / "missing.md", "cannot read"),
        (fifo, "is not a regular file"),  # the read hung
        (tmp_path / "utf16.md", "is not UTF-8 text"),  # a traceback
        (readme, "has no '<!-- t -->' line followed by a '<!-- /t -->' line"),  # the markers in the wrong order
        (two_blocks, "has 2 '<!-- t -->' and 2 '<!-- /t -->' lines; keep one pair"),  # only the first was rewritten
    ]
    for path, message in cases:
        code, error = readme_sweep(grid, sweep, "t", "--readme", path)
        assert code == 2 and message in error and error.count("\n") == 1
    readme.write_text("# title\n<!-- t -->\n<!-- /t -->\n")
    code, error = readme_sweep(grid, sweep, "t", "--readme", readme)
    assert code == 2 and "holds no sweep" in error
    plan = load_grid(other)
    write_json(sweep / SWEEP_JSON, plan.as_json())
    code, error = readme_sweep(grid, sweep, "t", "--readme", readme)  # a sweep of other cells than grid.yaml's
    assert code == 2 and "holds a sweep of other cells" in error
    code, error = readme_sweep(other, sweep, "t", "--readme", readme)
    assert code == 2 and "holds no finished cell" in error and "--resume" in error
    assert readme.read_text() == "# title\n<!-- t -->\n<!-- /t -->\n" and not (tmp_path / "docs").exists()


def test_keep_sweep_refuses_in_one_line_and_copies_nothing(tmp_path, run_script):
    grid = tmp_path / "grid.yaml"
    grid.write_text("env: CartPole-v1\ngrid: {seed: [0, 1]}\n")
    sweep, keep = tmp_path / "sweep", tmp_path / "keep"
    sweep.mkdir()
    code, _, error = run_script("keep_sweep", grid, sweep, keep)
    assert code == 2 and "holds no sweep" in error and error.count("\n") == 1
    write_json(sweep / SWEEP_JSON, load_grid(grid).as_json())
    keep.mkdir()
    (keep / "notes.txt").write_text("mine\n")
    code, _, error = run_script("keep_sweep", grid, sweep, keep)  # a folder of other files
    assert code == 2 and f"{keep} holds files but no {SWEEP_JSON}" in error
    assert [path.name for path in keep.iterdir()] == ["notes.txt"]


# --- scripts/adopt_runs.py ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_preset):
    """A finished 'spikerl compress' run of the shipped CartPole ANN with the tiny preset (schedule 1)."""
    run = tmp_path_factory.mktemp("adopt") / "run"
    compress = ["compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--config", str(tiny_preset),
                "--out", str(run), "--no-progress"]
    assert main(compress) == 0
    return run


def _edited_copy(run, folder, edit):
    """A copy of ``run`` in ``folder`` whose results.json ``edit`` (a function of its data) changed."""
    shutil.copytree(run, folder)
    results = json.loads((folder / "results.json").read_text())
    edit(results)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_adopt_runs_takes_a_finished_run_as_the_cell_it_ran(tmp_path, run_script, tiny_preset, finished_run):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"env: CartPole-v1\nconfig: {tiny_preset}\nsettings:\n  agent: {SHIPPED_CARTPOLE / 'ann.zip'}\n"
                    "grid:\n  compress.schedule: [[2, 1], [1]]\n")
    sweep = tmp_path / "sweep"
    code, printed, _ = run_script("adopt_runs", grid, sweep, finished_run)
    assert code == 0 and printed.startswith(f"took 1 run into {sweep} (0 were there already); ")
    shutil.rmtree(sweep / "cells")
    half_copy = sweep / "cells" / ".schedule=1,seed=0.k1ll3d.spikerl.tmp"  # the copy of an adoption killed with -9
    shutil.copytree(finished_run, half_copy)
    code, printed, _ = run_script("adopt_runs", grid, sweep, finished_run)
    assert code == 0 and printed.startswith(f"took 1 run into {sweep} (0 were there already); ")
    assert "runs the 1 cell left" in printed
    cell = sweep / "cells" / "schedule=1,seed=0"
    assert (cell / "results.json").read_bytes() == (finished_run / "results.json").read_bytes()
    assert (cell / "T1.zip").is_file() and not list(cell.parent.glob(".*"))  # whole, no temporary folder left
    assert "1 of 2 cells done" in (sweep / "sweep.md").read_text()
    check_same_plan(sweep, load_grid(grid))
    code, printed, _ = run_script("adopt_runs", grid, sweep, finished_run)  # again: nothing to do
    assert code == 0 and "took 0 runs" in printed and "(1 were there already)" in printed

    other = _edited_copy(finished_run, tmp_path / "other", lambda results: results["rows"][-1].update(mean_reward=1.0))
    code, _, error = run_script("adopt_runs", grid, sweep, other)  # the cell holds a run already
    assert code == 2 and f"{cell} holds another run of its cell" in error and error.count("\n") == 1
    assert (cell / "results.json").read_bytes() == (finished_run / "results.json").read_bytes()
    shutil.rmtree(cell)
    _edited_copy(finished_run, cell, lambda results: results.update(plots=[]))
    code, _, error = run_script("adopt_runs", grid, sweep, finished_run)  # a cell the sweep left unfinished
    assert code == 2 and f"{cell} holds an unfinished run of its cell" in error and error.count("\n") == 1


@pytest.mark.parametrize("edit, message", [
    (lambda results: results.update(seed=3), "ran no cell of {grid}: the nearest, cells/schedule=1,seed=0, has seed=0 "
                                             "where the run has 3"),
    (lambda results: results["settings"]["compress"].update(percentile=50.0),
     "the nearest, cells/schedule=1,seed=0, has compress.percentile=90.0 where the run has 50.0"),
    (lambda results: results.update(plots=[]), "holds an unfinished run"),
    (lambda results: results.pop("settings"), "does not record its settings and ANN"),
])
def test_adopt_runs_refuses_a_run_of_no_cell_and_writes_nothing(tmp_path, run_script, tiny_preset, finished_run,
                                                                 edit, message):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"env: CartPole-v1\nconfig: {tiny_preset}\nsettings:\n  agent: {SHIPPED_CARTPOLE / 'ann.zip'}\n"
                    "grid:\n  compress.schedule: [[2, 1], [1]]\n")
    run = _edited_copy(finished_run, tmp_path / "run", edit)
    sweep = tmp_path / "sweep"
    code, _, error = run_script("adopt_runs", grid, sweep, finished_run, run)
    assert code == 2 and message.format(grid=grid) in error and error.count("\n") == 1
    assert not sweep.exists()


def test_adopt_runs_refuses_two_runs_of_one_cell_and_grids_that_train(tmp_path, run_script, tiny_preset, finished_run):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"env: CartPole-v1\nconfig: {tiny_preset}\nsettings:\n  agent: {SHIPPED_CARTPOLE / 'ann.zip'}\n"
                    "grid:\n  seed: [0]\n")
    copy = shutil.copytree(finished_run, tmp_path / "copy")
    code, _, error = run_script("adopt_runs", grid, tmp_path / "sweep", finished_run, copy)
    assert code == 2 and "two of the runs ran the cell cells/seed=0" in error
    training = tmp_path / "training.yaml"
    training.write_text(f"env: CartPole-v1\nconfig: {tiny_preset}\ngrid:\n  seed: [0, 1]\n")
    code, _, error = run_script("adopt_runs", training, tmp_path / "sweep", finished_run)
    assert code == 2 and "has no cell with a given agent" in error
    assert not (tmp_path / "sweep").exists()


def test_adopt_runs_refuses_a_run_holding_a_link_or_the_sweep(tmp_path, run_script, tiny_preset, finished_run):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"env: CartPole-v1\nconfig: {tiny_preset}\nsettings:\n  agent: {SHIPPED_CARTPOLE / 'ann.zip'}\n"
                    "grid:\n  seed: [0]\n")
    run = shutil.copytree(finished_run, tmp_path / "run")
    (run / "up").symlink_to("..")  # copying would follow it, out of the folder and round a loop
    code, _, error = run_script("adopt_runs", grid, tmp_path / "sweep", run)
    assert code == 2 and f"{run} holds a symbolic link, {run / 'up'}" in error and error.count("\n") == 1
    assert not (tmp_path / "sweep").exists()
    (run / "up").unlink()
    code, _, error = run_script("adopt_runs", grid, run / "sweep", run)
    assert code == 2 and f"{run / 'sweep'} lies inside the run {run}" in error and not (run / "sweep").exists()

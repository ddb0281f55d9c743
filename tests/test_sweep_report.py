"""The sweep's results view (statistics over seeds, the final-stage table) and
scripts/readme_sweep.py's and scripts/keep_sweep.py's refusals; none of it needs Ray."""

import math

import pytest

from spikerl.checkpoints import write_json
from spikerl.stats import summarize
from spikerl.sweep import SWEEP_JSON
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

    apart = [["| direct", "ANN"], ["| direct", "1"], ["| iir", "ANN"], ["| iir", "1"]]
    assert table([20.0, 20.0]) == [["| ANN of every group", "ANN"], ["| direct", "1"], ["| iir", "1"]]
    assert table([20.0, 18.0]) == apart
    assert table([20.0, 20.0], ann_files=("ann", "other ann")) == apart  # the same rewards from other ANNs


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

    cases = [
        (tmp_path / "missing.md", "cannot read"),
        (readme, "has no '<!-- t -->' line followed by a '<!-- /t -->' line"),  # the markers in the wrong order
    ]
    for path, message in cases:
        code, error = readme_sweep(grid, sweep, "t", "--readme", path)
        assert code == 2 and message in error and error.count("\n") == 1
    readme.write_text("# title\n<!-- t -->\n<!-- /t -->\n")
    code, error = readme_sweep(grid, sweep, "t", "--readme", readme)
    assert code == 2 and "holds no sweep" in error
    plan = load_grid(other)
    write_json(sweep / SWEEP_JSON, {"grid_file": str(other), **plan.as_json()})
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
    write_json(sweep / SWEEP_JSON, {"grid_file": str(grid), **load_grid(grid).as_json()})
    keep.mkdir()
    (keep / "notes.txt").write_text("mine\n")
    code, _, error = run_script("keep_sweep", grid, sweep, keep)  # a folder of other files
    assert code == 2 and f"{keep} holds files but no {SWEEP_JSON}" in error
    assert [path.name for path in keep.iterdir()] == ["notes.txt"]

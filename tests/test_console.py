"""Console output: one progress-bar style (SB3's), --no-progress hides bars only, one line per training
evaluation; train and compress end with a summary paragraph."""

import numpy as np
import yaml

from conftest import REPO, SHIPPED_CARTPOLE
from spikerl.cli import main


def test_compress_without_progress_still_prints_stages_and_a_summary(tmp_path, capsys, tiny_preset):
    out = tmp_path / "snn"
    args = ["compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--config", str(tiny_preset), "--schedule", "1",
            "--steps-per-stage", "5"]
    assert main([*args, "--eval-episodes", "1", "--out", str(out), "--num-threads", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["ANN", "converted", "retrained"]
    assert (
        lines[-1].startswith("Compressed: at T=1 the spiking agent scores")
        and "less energy per decision than the ANN" in lines[-1]
    )
    assert str(out / "T1.zip") in lines[-1] and str(out / "results.md") in lines[-1]
    assert "distill" not in captured.err  # no progress bar


def test_train_ends_with_a_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "-n", "300", "--out", str(out), "--num-threads", "1", "--no-progress"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("Trained: ") and f"spikerl compress --agent {out / 'ann.zip'}" in last


def test_compress_shows_distillation_and_stage_evaluations_as_bars_in_one_style(tmp_path, capsys, tiny_preset):
    out = tmp_path / "snn"
    args = ["compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--config", str(tiny_preset), "--schedule", "1",
            "--steps-per-stage", "5"]
    assert main([*args, "--eval-episodes", "3", "--out", str(out), "--num-threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # rich's bar (SB3's progress_bar=True style), drawn once off a terminal, where it may wrap at 80 columns
    bars = [line for line in lines if "━" in line]
    assert [bar.split(" 100%")[0] for bar in bars] == [
        "evaluate ANN T=-", "evaluate converted T=1", "distill T=1", "evaluate retrained T=1"
    ]
    assert all(" 3/3 " in bar for bar in bars if bar.startswith("evaluate")) and " 5/5 " in bars[2]
    results = [line.split()[0] for line in lines if line.strip().split()[0] in ("ANN", "converted", "retrained")]
    assert results == ["ANN", "converted", "retrained"]


def test_evaluate_progress_counts_episodes_and_no_progress_hides_only_the_bar(capsys):
    args = ["evaluate", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--episodes", "12", "--num-threads", "1"]
    assert main(args) == 0
    shown = capsys.readouterr().out.splitlines()
    assert main([*args, "--no-progress"]) == 0
    hidden = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("evaluate 100%") and "12/12" in shown[0] and "episode/s" in shown[0]
    assert shown[1:] == hidden and not any("━" in line for line in hidden)


def test_train_prints_one_line_per_evaluation(tmp_path, capsys):
    preset = yaml.safe_load((REPO / "envs" / "CartPole-v1.yaml").read_text())
    preset["train"].update(eval_freq=100, eval_episodes=2)
    config = tmp_path / "preset.yaml"
    config.write_text(yaml.safe_dump(preset))
    out = tmp_path / "run"
    assert main(["train", "-n", "300", "--config", str(config), "--out", str(out), "--num-threads", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Episode length" not in printed and "Eval num_timesteps" not in printed and "New best" not in printed
    lines = [line for line in printed.splitlines() if line.startswith("evaluation at step")]
    log = np.load(out / "evaluations.npz")
    means = log["results"].mean(axis=1)
    expected = [
        f"evaluation at step {step}: {mean:.2f} +- {std:.2f} over 2 episodes" + (", new best" if mean > best else "")
        for step, mean, std, best in zip(
            log["timesteps"], means, log["results"].std(axis=1), np.maximum.accumulate(np.r_[-np.inf, means])
        )
    ]
    assert list(log["timesteps"][:3]) == [100, 200, 300] and lines == expected  # (DQN's train_freq 256 runs on to 512)
    assert lines[0].endswith(", new best")

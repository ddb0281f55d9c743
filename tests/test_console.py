"""Console output: one progress-bar style (SB3's on a terminal, a line per bar update in a log),
--no-progress hides bars only, one line per training evaluation; train and compress end with a
summary paragraph."""

import numpy as np
import pytest
import yaml

from conftest import REPO, SHIPPED_CARTPOLE
from spikerl.cli import main


@pytest.fixture(autouse=True)
def in_a_log(monkeypatch):
    """Bars as written to a log, whatever the environment says (rich honours FORCE_COLOR, TTY_COMPATIBLE)."""
    import spikerl.progress

    monkeypatch.setattr(spikerl.progress, "on_terminal", lambda: False)


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


@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.parametrize("objective", ["distill", "td"])
def test_compress_shows_retraining_and_stage_evaluations_as_bars_in_one_style(
    tmp_path, capsys, tiny_preset, monkeypatch, terminal, objective
):
    import spikerl.progress

    monkeypatch.setattr(spikerl.progress, "on_terminal", lambda: terminal)
    out = tmp_path / "snn"
    args = ["compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--config", str(tiny_preset), "--schedule", "1",
            "--objective", objective, "--steps-per-stage", "5" if objective == "distill" else "300"]
    assert main([*args, "--eval-episodes", "3", "--out", str(out), "--num-threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    if terminal:  # rich's bar (SB3's progress_bar=True style), drawn once here (no real terminal), maybe wrapped at 80 columns
        bars = {bar.split(" 100%")[0]: [bar] for bar in lines if "━" in bar}
    else:  # in a log: a bar's first state, then a line at most once a minute and its last state
        bars = {}
        for line in lines:
            if "%|" in line or line.endswith("step/s]"):  # a bar, or SB3 running past its total (no percentage)
                bars.setdefault(line.split(": ")[0], []).append(line)
        assert all(":   0%|" in shown[0] and len(shown) == 2 for shown in bars.values())
    retraining = "distill T=1" if objective == "distill" else "td T=1"
    assert list(bars) == ["evaluate ANN T=-", "evaluate converted T=1", retraining, "evaluate retrained T=1"]
    assert all(" 3/3 " in shown[-1] for description, shown in bars.items() if description.startswith("evaluate"))
    assert " 5/5 " in bars[retraining][-1] if objective == "distill" else "step" in bars[retraining][-1]
    results = [line.split()[0] for line in lines if line.strip().split()[0] in ("ANN", "converted", "retrained")]
    assert results == ["ANN", "converted", "retrained"]


def test_train_shows_its_steps_as_lines_in_a_log(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "-n", "300", "--out", str(out), "--num-threads", "1"]) == 0
    bars = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train: ")]
    assert bars[0].startswith("train:   0%|") and "0/300" in bars[0] and "step" in bars[0]
    assert main(["train", "--resume", str(out)]) == 0  # finished: no steps, no bar
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("train: ")] == []


def test_evaluate_progress_counts_episodes_and_no_progress_hides_only_the_bar(capsys):
    args = ["evaluate", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--episodes", "12", "--num-threads", "1"]
    assert main(args) == 0
    shown = capsys.readouterr().out.splitlines()
    assert main([*args, "--no-progress"]) == 0
    hidden = capsys.readouterr().out.splitlines()
    bars = [line for line in shown if line.startswith("evaluate: ")]  # in a log: the first and the last state
    assert bars == shown[:2] and "0/12" in bars[0] and "12/12" in bars[1] and "episode/s" in bars[1]
    assert shown[2:] == hidden and not any("%|" in line for line in hidden)


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

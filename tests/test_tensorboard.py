"""`--tensorboard DIR` on train and compress: the scalars SB3 users expect, and per compression stage."""

import sys

import pytest

from conftest import SHIPPED_CARTPOLE
from spikerl.cli import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar logged in the TensorBoard run ``folder``: tag -> [(step, value)]."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_compress_logs_losses_rewards_spike_rates_and_thresholds_per_stage(tmp_path, capsys, tiny_preset):
    args = ["compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--config", str(tiny_preset)]
    args += ["--schedule", "2,1", "--steps-per-stage", "20"]
    args += [
        "--eval-episodes",
        "2",
        "--out",
        str(tmp_path / "snn"),
        "--tensorboard",
        str(tmp_path / "tb"),
        "--num-threads",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    scalars = _scalars(tmp_path / "tb" / "compress")
    assert [step for step, _ in scalars["distill/loss"]] == list(range(40))  # every step of both stages
    assert len(scalars["distill/learning_rate"]) == 40
    assert [value for _, value in scalars["stage/T"]] == [0, 2, 2, 1]  # ANN, converted, retrained T=2 and T=1
    assert [step for step, _ in scalars["stage/mean_reward"]] == [0, 0, 20, 40]
    for layer in ("q_net.1", "q_net.3"):
        assert len(scalars[f"spike_rate/{layer}"]) == 3 and len(scalars[f"threshold/{layer}"]) == 3


def test_a_resumed_compression_logs_its_steps_after_the_finished_stages(tmp_path, capsys, tiny_preset):
    import json

    args = ["compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--config", str(tiny_preset), "--schedule", "2,1",
            "--steps-per-stage", "20", "--eval-episodes", "2", "--out", str(tmp_path / "snn"), "--num-threads", "1",
            "--no-progress"]
    assert main(args) == 0
    results = json.loads((tmp_path / "snn" / "results.json").read_text())
    results["rows"] = results["rows"][:-1]  # as if stopped during the T=1 stage
    (tmp_path / "snn" / "results.json").write_text(json.dumps(results))
    (tmp_path / "snn" / "T1.zip").unlink()
    assert main([*args, "--resume", "--tensorboard", str(tmp_path / "tb")]) == 0
    scalars = _scalars(tmp_path / "tb" / "compress")
    assert [step for step, _ in scalars["distill/loss"]] == list(range(20, 40))  # T=1's steps, after T=2's 20


def test_train_logs_sb3_scalars(tmp_path, capsys):
    args = [
        "train",
        "-n",
        "1100",
        "--out",
        str(tmp_path / "run"),
        "--tensorboard",
        str(tmp_path / "tb"),
        "--num-threads",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    scalars = _scalars(tmp_path / "tb" / "DQN_1")
    assert "rollout/ep_rew_mean" in scalars and "train/loss" in scalars


def test_missing_tensorboard_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    args = ["train", "-n", "100", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb"), "--no-progress"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "spikerl[tensorboard]" in error and error.count("\n") == 1


@pytest.mark.parametrize("command", ["train", "compress"])
def test_an_unwritable_tensorboard_folder_is_one_line_before_any_work(tmp_path, capsys, command):
    (tmp_path / "a_file").write_text("")
    agent = ["--agent", str(SHIPPED_CARTPOLE / "ann.zip")] if command == "compress" else ["-n", "100"]
    args = [command, *agent, "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "a_file" / "tb")]
    assert main([*args, "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "cannot write TensorBoard logs to" in error and "--tensorboard" in error and error.count("\n") == 1
    assert not (tmp_path / "run").exists()

"""Atari Pong end to end on a budget CI can afford: wrappers, training, conversion, compression."""

import json

import pytest

from conftest import SHIPPED_CARTPOLE
from spikerl.cli import main
from spikerl.compress import compress
from spikerl.config import load_preset, with_overrides
from spikerl.envs import make_env, with_sticky_actions
from spikerl.errors import UsageError
from spikerl.train import train


def tiny_pong_preset():
    return with_overrides(load_preset("PongNoFrameskip-v4"), {
        "env": {"env_kwargs": {"max_episode_steps": 400}},  # raw frames: 100 agent steps per episode
        "train": {"n_timesteps": 300, "eval_freq": 10_000, "save_replay_buffer": False, "sticky_actions": 0.25,
                  "dqn": {"buffer_size": 500, "learning_starts": 200, "batch_size": 32}},
        "compress": {"schedule": [2, 1], "steps_per_stage": 3, "stage_eval_episodes": 1, "calibration_samples": 64,
                     "teacher_states": 64,
                     "distill": {"student_states": 64, "batch_size": 16}},
        "evaluate": {"episodes": 1, "n_envs": 1},
    })


def test_pong_env_matches_the_paper_wrappers():
    env = make_env("PongNoFrameskip-v4", load_preset("PongNoFrameskip-v4").env, seed=0)
    assert env.observation_space.shape == (4, 84, 84) and env.action_space.n == 6
    env.close()


@pytest.mark.slow
def test_pong_train_convert_compress(tmp_path, monkeypatch):
    preset = tiny_pong_preset()
    sticky_probabilities = []

    def make_env_and_note_its_sticky_actions(*args, **kwargs):
        env = make_env(*args, **kwargs)
        sticky_probabilities.append(env.get_attr("unwrapped")[0].ale.getFloat("repeat_action_probability"))
        return env

    monkeypatch.setattr("spikerl.train.make_env", make_env_and_note_its_sticky_actions)
    ann = train("PongNoFrameskip-v4", preset, tmp_path / "run", seed=0, device="cpu", progress=False, verbose=0)
    # train.sticky_actions: the spaces check, training and its evaluations
    assert sticky_probabilities == [0.25, 0.25, 0.25]
    results = compress(ann, "PongNoFrameskip-v4", preset, tmp_path / "snn", device="cpu", progress=False)
    assert [(row.stage.value, row.T) for row in results.rows] == [
        ("ANN", None), ("converted", 2), ("retrained", 2), ("retrained", 1),
        ("ANN, sticky actions", None), ("retrained, sticky actions", 1),  # the preset's evaluate.sticky_actions
    ]
    rows = json.loads((tmp_path / "snn" / "results.json").read_text())["rows"]
    assert "encoder" in rows[-1]["spike_rates"]  # the preset's threshold input spikes
    assert len(rows[-1]["spike_rates"]) == 5  # the encoder, three conv layers and the hidden linear layer
    assert all(row["lengths"][0] <= 400 for row in rows)  # the cap holds: no full games on CI
    assert (tmp_path / "snn" / "T1.zip").is_file()

    monkeypatch.setattr("spikerl.compress.make_env", make_env_and_note_its_sticky_actions)
    sticky_probabilities.clear()
    spiking_input = compress(
        ann, "PongNoFrameskip-v4",
        with_overrides(preset, {"compress": {"encoding": "threshold+event", "schedule": [1], "sticky_actions": 0.5}}),
        tmp_path / "events", device="cpu", progress=False,
    )
    assert sticky_probabilities == [0.5]  # compress.sticky_actions: the retraining rollouts; evaluations keep the protocol
    last = spiking_input.rows[2]
    assert last.stage.value == "retrained" and "encoder" in last.spike_rates
    first_conv = next(layer for layer in spiking_input.spiking_layers if layer["name"] == "features_extractor.cnn.0")
    assert first_conv["input_layer"] == "encoder" and last.cost["macs"] == 0  # every weighted layer takes spikes
    assert "input encoding threshold+event, seed 0, retrained under sticky actions p=0.5." in (
        tmp_path / "events" / "results.md").read_text()


def test_sticky_actions_reach_the_emulator():
    env_config = with_sticky_actions(load_preset("PongNoFrameskip-v4").env, 0.25, "PongNoFrameskip-v4")
    env = make_env("PongNoFrameskip-v4", env_config, seed=0)
    assert env.get_attr("unwrapped")[0].ale.getFloat("repeat_action_probability") == 0.25
    env.close()
    with pytest.raises(UsageError, match=r"must be in \[0, 1\), got 1.0"):
        with_sticky_actions(env_config, 1.0, "PongNoFrameskip-v4")


def test_training_sticky_actions_of_a_non_atari_env_are_refused(tmp_path):
    preset = with_overrides(load_preset("CartPole-v1"), {"train": {"sticky_actions": 0.25}})
    with pytest.raises(UsageError, match="sticky actions are an Atari .*; drop train.sticky_actions"):
        train("CartPole-v1", preset, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_sticky_actions_of_a_non_atari_env_are_refused(capsys, tmp_path):
    code = main(["evaluate", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--sticky-actions"])
    error = capsys.readouterr().err
    assert code == 2 and "sticky actions are an Atari (ALE) setting" in error and error.count("\n") == 1
    assert error.strip().endswith("drop --sticky-actions")  # the flag that set it
    code = main(["compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--out", str(tmp_path / "snn"),
                 "--set", "compress.sticky_actions=0.25"])
    error = capsys.readouterr().err
    assert code == 2 and "sticky actions are an Atari (ALE) setting" in error and error.count("\n") == 1
    assert error.strip().endswith("drop compress.sticky_actions")
    assert not (tmp_path / "snn").exists()

"""Atari Pong end to end on a budget CI can afford: wrappers, training, conversion, compression."""

import json

import pytest

from spikerl.compress import compress
from spikerl.config import load_preset, with_overrides
from spikerl.envs import make_env
from spikerl.train import train


def tiny_pong_preset():
    return with_overrides(load_preset("PongNoFrameskip-v4"), {
        "env": {"env_kwargs": {"max_episode_steps": 400}},  # raw frames: 100 agent steps per episode
        "train": {"n_timesteps": 300, "eval_freq": 10_000, "save_replay_buffer": False,
                  "dqn": {"buffer_size": 500, "learning_starts": 200, "batch_size": 32}},
        "compress": {"schedule": [2, 1], "steps_per_stage": 3, "calibration_samples": 64, "teacher_states": 64,
                     "distill": {"student_states": 64, "batch_size": 16}},
        "evaluate": {"episodes": 1, "n_envs": 1},
    })


def test_pong_env_matches_the_paper_wrappers():
    env = make_env("PongNoFrameskip-v4", load_preset("PongNoFrameskip-v4").env, seed=0)
    assert env.observation_space.shape == (4, 84, 84) and env.action_space.n == 6
    env.close()


@pytest.mark.slow
def test_pong_train_convert_compress(tmp_path):
    preset = tiny_pong_preset()
    ann = train("PongNoFrameskip-v4", preset, tmp_path / "run", seed=0, device="cpu", progress=False, verbose=0)
    results = compress(ann, "PongNoFrameskip-v4", preset, tmp_path / "snn", device="cpu", progress=False)
    assert [(row.stage.value, row.T) for row in results.rows] == [
        ("ANN", None), ("converted", 2), ("retrained", 2), ("retrained", 1)
    ]
    rows = json.loads((tmp_path / "snn" / "results.json").read_text())["rows"]
    assert len(rows[-1]["spike_rates"]) == 4  # three conv layers and the hidden linear layer
    assert all(row["lengths"][0] <= 400 for row in rows)  # the cap holds: no full games on CI
    assert (tmp_path / "snn" / "T1.zip").is_file()

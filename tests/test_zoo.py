"""rl-baselines3-zoo interop: zoo hyperparameters as presets, zoo playing spikerl run folders
(training and compress), zoo training spikerl's policies by name."""

import os
import subprocess
import sys

import pytest
import yaml
from stable_baselines3 import DQN

from conftest import REPO, SHIPPED_CARTPOLE
from spikerl.cli import main
from spikerl.config import load_preset
from spikerl.errors import UsageError
from spikerl.snn import SpikingQNetwork

pytest.importorskip("rl_zoo3")

# rl-baselines3-zoo's hyperparams/dqn.yml entry for CartPole-v1, as zoo ships it
ZOO_CARTPOLE = """\
CartPole-v1:
  n_timesteps: !!float 5e4
  policy: 'MlpPolicy'
  learning_rate: !!float 2.3e-3
  batch_size: 64
  buffer_size: 100000
  learning_starts: 1000
  gamma: 0.99
  target_update_interval: 10
  train_freq: 256
  gradient_steps: 128
  exploration_fraction: 0.16
  exploration_final_eps: 0.04
  policy_kwargs: "dict(net_arch=[256, 256])"
"""


def _zoo(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    """``python -m rl_zoo3.<module> ARGS`` with this checkout's spikerl importable (--gym-packages)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", f"rl_zoo3.{module}", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def test_zoo_block_is_a_preset_and_zoo_enjoy_plays_the_run_folder(tmp_path, capsys):
    hyperparameters = tmp_path / "dqn.yml"
    hyperparameters.write_text(ZOO_CARTPOLE)
    settings = load_preset("CartPole-v1", hyperparameters)
    assert settings.train.policy == "MlpPolicy" and settings.train.n_timesteps == 50_000
    assert settings.train.dqn["policy_kwargs"] == {"net_arch": [256, 256]}
    assert settings.train.dqn["learning_rate"] == 2.3e-3
    assert settings.compress == load_preset("CartPole-v1").compress  # the rest from spikerl's preset

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--env",
                "CartPole-v1",
                "--config",
                str(hyperparameters),
                "-n",
                "300",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    played = _zoo(
        "enjoy",
        "--algo",
        "dqn",
        "--env",
        "CartPole-v1",
        "-f",
        str(run),
        "--no-render",
        "-n",
        "200",
        "--num-threads",
        "1",
        cwd=tmp_path,
    )
    assert played.returncode == 0, played.stderr
    assert f"Loading {run / 'dqn' / 'CartPole-v1.zip'}" in played.stdout and "Mean reward" in played.stdout


@pytest.mark.parametrize(
    "policy_kwargs, message",
    [
        ("dict(net_arch=__import__('os').system('touch PWNED'))", "not a literal value"),
        ("dict(activation_fn=nn.ReLU)", "not a literal value"),
        ("dict(net_arch=[64,", "not a Python expression"),
        ("{**defaults, 'net_arch': [64]}", "unpacking is not a literal value"),
        pytest.param("1+" * 200_000 + "1", "'1\\+1\\+1.*' is not a Python expression", id="nested too deeply to parse"),
    ],
)
def test_zoo_strings_are_never_evaluated(tmp_path, policy_kwargs, message):
    hyperparameters = tmp_path / "dqn.yml"
    hyperparameters.write_text(ZOO_CARTPOLE.replace('"dict(net_arch=[256, 256])"', repr(policy_kwargs)))
    with pytest.raises(UsageError, match=message):
        load_preset("CartPole-v1", hyperparameters)
    assert not (tmp_path / "PWNED").exists() and not (REPO / "PWNED").exists()


def test_zoo_trains_spiking_policy_by_name_and_spikerl_reads_its_folder(tmp_path, capsys):
    hyperparameters = tmp_path / "spiking.yml"
    hyperparameters.write_text(
        "CartPole-v1:\n  n_timesteps: 300\n  policy: SpikingMlpPolicy\n  learning_starts: 100\n"
        '  train_freq: 16\n  gradient_steps: 2\n  policy_kwargs: "dict(net_arch=[32, 32], timesteps=2)"\n'
    )
    trained = _zoo(
        "train",
        "--algo",
        "dqn",
        "--env",
        "CartPole-v1",
        "-conf",
        str(hyperparameters),
        "--gym-packages",
        "spikerl",
        "-f",
        str(tmp_path / "logs"),
        "--eval-freq",
        "-1",
        "--num-threads",
        "1",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    agent = tmp_path / "logs" / "dqn" / "CartPole-v1_1" / "CartPole-v1.zip"
    assert main(["evaluate", "--agent", str(agent), "--episodes", "1", "--num-threads", "1"]) == 0  # env from the zoo folder
    assert "(SNN, T=2) on CartPole-v1" in capsys.readouterr().out


def test_zoo_enjoy_plays_the_spiking_agent_of_a_compress_folder(tmp_path, capsys):
    out = tmp_path / "snn"
    args = ["compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--schedule", "1", "--steps-per-stage", "5"]
    assert main([*args, "--eval-episodes", "1", "--out", str(out), "--num-threads", "1", "--no-progress"]) == 0
    assert f"rl-zoo3 layout of T=1 in {out / 'dqn'}" in capsys.readouterr().out
    model = out / "dqn" / "CartPole-v1.zip"
    assert model.read_bytes() == (out / "T1.zip").read_bytes()  # the last stage of the schedule, as spikerl saved it
    config = yaml.safe_load((out / "dqn" / "CartPole-v1" / "config.yml").read_text())
    assert config["policy"] == "SpikingMlpPolicy" and config["policy_kwargs"]["timesteps"] == 1
    played = _zoo(
        "enjoy", "--algo", "dqn", "--env", "CartPole-v1", "-f", str(out), "--no-render", "-n", "50", "--num-threads", "1",
        cwd=tmp_path,
    )
    assert played.returncode == 0, played.stderr
    assert f"Loading {model}" in played.stdout
    q_net = DQN.load(model).q_net  # what zoo loaded
    assert isinstance(q_net, SpikingQNetwork) and q_net.timesteps == 1


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("n_timesteps: !!float 5e4", "n_timesteps: .inf", "n_timesteps must be a whole number"),
        ("n_timesteps: !!float 5e4", "n_timesteps: .nan", "n_timesteps must be a whole number"),
        ("n_timesteps: !!float 5e4", f"n_timesteps: {'9' * 400}", "n_timesteps must be at most"),
        ("  batch_size: 64", "  batch_size: 64\n  n_envs: abc", "n_envs must be a whole number"),
        ("  batch_size: 64", "  batch_size: 64\n  n_envs: [1]", "n_envs must be a whole number"),
        ('"dict(net_arch=[256, 256])"', '"{[1]: 2}"', "dictionary keys must be strings or numbers"),
        ("  batch_size: 64", "  batch_size: 64\n  env_wrapper: {stable_baselines3.common.atari_wrappers.AtariWrapper: abc}",
         "env_wrapper .* is not supported"),
    ],
)
def test_malformed_zoo_hyperparameters_are_one_error(tmp_path, old, new, message):
    hyperparameters = tmp_path / "dqn.yml"
    hyperparameters.write_text(ZOO_CARTPOLE.replace(old, new))
    with pytest.raises(UsageError, match=message):
        load_preset("CartPole-v1", hyperparameters)


@pytest.mark.parametrize("linked", ["dqn", "dqn/CartPole-v1"])
def test_zoo_layout_is_not_written_through_a_linked_folder(tmp_path, linked):
    from spikerl.zoo import write_zoo_layout

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    (elsewhere / "CartPole-v1").mkdir(parents=True)
    (elsewhere / "CartPole-v1" / "config.yml").write_text("precious")
    (run / linked).parent.mkdir(parents=True, exist_ok=True)
    (run / linked).symlink_to(elsewhere if linked == "dqn" else elsewhere / "CartPole-v1")
    with pytest.raises(UsageError, match="is a symbolic link where spikerl keeps rl-zoo3's folder; delete the link"):
        write_zoo_layout(run, "CartPole-v1", 0, load_preset("CartPole-v1"), SHIPPED_CARTPOLE / "ann.zip")
    assert sorted(p.name for p in elsewhere.rglob("*")) == ["CartPole-v1", "config.yml"]
    assert (elsewhere / "CartPole-v1" / "config.yml").read_text() == "precious"


def test_zoo_layout_of_a_namespaced_env_id_is_where_zoo_looks(tmp_path):
    """rl-zoo3 writes ALE/Pong-v5 as ALE-Pong-v5 in paths (its EnvironmentName)."""
    from spikerl.zoo import env_of_zoo_folder, write_zoo_layout

    preset = load_preset("CartPole-v1")  # only the env id's spelling matters here
    model = write_zoo_layout(tmp_path / "run", "ALE/Pong-v5", 0, preset, SHIPPED_CARTPOLE / "ann.zip")
    assert model == tmp_path / "run" / "dqn" / "ALE-Pong-v5.zip" and model.is_file()
    assert (tmp_path / "run" / "dqn" / "ALE-Pong-v5" / "config.yml").is_file()
    assert env_of_zoo_folder(tmp_path / "run" / "dqn") == "ALE/Pong-v5"  # from its args.yml
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "dqn").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="is a symbolic link where spikerl keeps rl-zoo3's folder"):
        write_zoo_layout(tmp_path / "linked", "ALE/Pong-v5", 0, preset, SHIPPED_CARTPOLE / "ann.zip")
    assert not any((tmp_path / "elsewhere").iterdir())

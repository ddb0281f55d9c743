"""The command line on tiny budgets, and one clear error line for each kind of bad input."""

import json
import subprocess
import sys
import zipfile

import pytest
from stable_baselines3 import PPO

from conftest import run_cli


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """train -> compress 2,1 -> the run folders."""
    root = tmp_path_factory.mktemp("cli")
    train = run_cli("train", "--env", "CartPole-v1", "-n", "1100", "--out", str(root / "run"), "--no-progress")
    assert train.returncode == 0, train.stderr
    compress = run_cli(
        "compress", "--agent", str(root / "run" / "ann.zip"), "--schedule", "2,1", "--steps-per-stage", "5",
        "--eval-episodes", "2", "--out", str(root / "snn"), "--no-progress",
    )
    assert compress.returncode == 0, compress.stderr
    return root


def test_train_writes_a_loadable_ann(tiny_run):
    run = tiny_run / "run"
    for name in ("ann.zip", "checkpoint.json", "config.yaml", "0.monitor.csv", "training_curve.png"):
        assert (run / name).is_file(), name


def test_compress_writes_every_stage_and_results(tiny_run):
    snn = tiny_run / "snn"
    results = json.loads((snn / "results.json").read_text())
    assert [(row["stage"], row["T"]) for row in results["rows"]] == [
        ("ANN", None), ("converted", 2), ("retrained", 2), ("retrained", 1)
    ]
    assert all(len(row["rewards"]) == 2 for row in results["rows"])
    assert set(results["rows"][-1]["spike_rates"]) == {"q_net.1", "q_net.3"}
    assert (snn / "T2.zip").is_file() and (snn / "T1.zip").is_file() and (snn / "ann.zip").is_file()
    assert "| retrained | 1 |" in (snn / "results.md").read_text()


def test_evaluate_prints_rewards_and_spike_rates(tiny_run):
    # no --env: it is read from the compression's results.json beside the agent
    result = run_cli("evaluate", "--agent", str(tiny_run / "snn" / "T1.zip"), "--episodes", "2")
    assert result.returncode == 0, result.stderr
    assert "SNN, T=1" in result.stdout and "reward" in result.stdout and "spike rate q_net.3" in result.stdout


def test_snn_checkpoint_loads_with_plain_sb3_in_a_fresh_process(tiny_run):
    """The spiking agent loads with stable_baselines3.DQN.load and acts the same elsewhere."""
    code = (
        "import sys, numpy as np\n"
        "from stable_baselines3 import DQN\n"
        "model = DQN.load(sys.argv[1])\n"
        "obs = np.random.default_rng(0).normal(size=(64, 4)).astype('float32')\n"
        "print(type(model.policy).__name__, model.q_net.timesteps, model.predict(obs, deterministic=True)[0].tolist())\n"
    )
    agent = str(tiny_run / "snn" / "T1.zip")
    outputs = [subprocess.run([sys.executable, "-c", code, agent], capture_output=True, text=True, check=True).stdout for _ in range(2)]
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith("SpikingMlpPolicy 1 [")

    from stable_baselines3 import DQN
    import numpy as np

    model = DQN.load(agent)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    assert outputs[0].split(" ", 2)[2].strip() == str(model.predict(obs, deterministic=True)[0].tolist())


def _bad_agents(tmp):
    (tmp / "empty.zip").write_bytes(b"")
    (tmp / "folder").mkdir()
    good = next(iter(sorted((tmp.parent).glob("cli*/run/ann.zip"))), None)
    (tmp / "truncated.zip").write_bytes(good.read_bytes()[:2000] if good else b"PK\x03\x04")
    with zipfile.ZipFile(tmp / "other.zip", "w") as archive:
        archive.writestr("hello.txt", "not an agent")
    PPO("MlpPolicy", "CartPole-v1").save(tmp / "ppo.zip")
    return {
        "missing": (str(tmp / "nope.zip"), "not found"),
        "directory": (str(tmp / "folder"), "is a directory"),
        "empty": (str(tmp / "empty.zip"), "not a zip"),
        "truncated": (str(tmp / "truncated.zip"), "not a zip"),
        "not sb3": (str(tmp / "other.zip"), "not a Stable-Baselines3 checkpoint"),
        "another algorithm": (str(tmp / "ppo.zip"), "DQN"),
    }


@pytest.fixture(scope="module")
def bad_agents(tmp_path_factory, tiny_run):
    return _bad_agents(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "truncated", "not sb3", "another algorithm"])
def test_bad_agent_files_give_one_error_line(bad_agents, case, tmp_path):
    path, message = bad_agents[case]
    result = run_cli("compress", "--agent", path, "--env", "CartPole-v1", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--schedule", "2,0"], "positive integers"),
        (["--schedule", "3,-1"], "positive integers"),
        (["--schedule", "1,2"], "decrease strictly"),
        (["--schedule", "a,b"], "comma-separated"),
        (["--percentile", "0"], "(0, 100]"),
        (["--percentile", "101"], "(0, 100]"),
        (["--objective", "mse"], "unknown --objective"),
        (["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["--env", "Acrobot-v1", "--config", "envs/CartPole-v1.yaml"], "space"),
    ],
)
def test_bad_compress_options_give_one_error_line(tiny_run, args, message, tmp_path):
    result = run_cli("compress", "--agent", str(tiny_run / "run" / "ann.zip"), "--out", str(tmp_path / "o"), *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_unknown_env_for_train(tmp_path):
    result = run_cli("train", "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "NoSuchEnv-v0" in result.stderr and result.stderr.count("\n") == 1

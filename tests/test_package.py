"""`spikerl package`: a Hub folder in huggingface_sb3's layout whose zip loads with plain DQN.load."""

import importlib.util
import json

import numpy as np
import yaml
from stable_baselines3 import DQN

from conftest import SHIPPED_CARTPOLE
from spikerl.cli import main


def test_package_writes_the_hub_layout_and_the_zip_loads(tmp_path, capsys):
    out = tmp_path / "hub"
    video_steps = "20" if importlib.util.find_spec("pygame") else "0"  # CartPole renders with pygame
    args = ["package", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--out", str(out), "--episodes", "3", "--num-threads", "1"]
    assert main([*args, "--video-steps", video_steps]) == 0
    assert str(out) in capsys.readouterr().out

    results = json.loads((out / "results.json").read_text())
    assert {"mean_reward", "std_reward", "is_deterministic", "n_eval_episodes", "eval_datetime"} <= set(results)
    assert results["n_eval_episodes"] == 3 and results["mean_reward"] == 500.0  # the shipped T=1 agent balances every game
    assert results["spikerl"]["timesteps"] == 1 and results["spikerl"]["ann_energy_ratio"] > 1
    config = json.loads((out / "config.json").read_text())
    assert "system_info" in config and config["policy_kwargs"]["timesteps"] == 1
    card = (out / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "stable-baselines3" and "CartPole-v1" in metadata["tags"]
    assert metadata["model-index"][0]["results"][0]["metrics"][0]["value"] == "500.00 +/- 0.00"
    assert (out / "dqn-CartPole-v1" / "policy.pth").is_file()
    assert (out / "replay.mp4").is_file() == (video_steps != "0")

    packaged, shipped = (
        DQN.load(out / "dqn-CartPole-v1.zip", device="cpu"),
        DQN.load(SHIPPED_CARTPOLE / "T1.zip", device="cpu"),
    )
    states = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    assert np.array_equal(packaged.predict(states, deterministic=True)[0], shipped.predict(states, deterministic=True)[0])

    assert main([*args, "--video-steps", "0"]) == 2  # never writes into a folder that holds something
    assert "already exists" in capsys.readouterr().err


def test_an_unwritable_out_is_refused_before_the_evaluation(tmp_path, capsys, monkeypatch):
    import spikerl.package

    def not_reached(*args, **kwargs):
        raise AssertionError("the agent was evaluated before --out was checked")

    monkeypatch.setattr(spikerl.package, "evaluate_agent", not_reached)
    (tmp_path / "a_file").write_text("")
    code = main(["package", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--out", str(tmp_path / "a_file" / "hub")])
    error = capsys.readouterr().err
    assert code == 2 and "cannot write beside" in error and "--out" in error and error.count("\n") == 1


def test_package_refuses_entries_it_could_not_unpack_before_evaluating(tmp_path, capsys, monkeypatch):
    import zipfile

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated before the zip's entries were checked")

    monkeypatch.setattr("spikerl.package.evaluate_agent", no_evaluation)
    with zipfile.ZipFile(SHIPPED_CARTPOLE / "T1.zip") as shipped:
        members = {name: shipped.read(name) for name in shipped.namelist()}
    for index, odd in enumerate(["policy.pth/x", "x" * 300, ".."]):  # an OSError traceback unpacking the first two
        agent = tmp_path / f"agent{index}.zip"
        with zipfile.ZipFile(agent, "w") as archive:
            for name, content in {**members, odd: b""}.items():
                archive.writestr(name, content)
        args = ["package", "--agent", str(agent), "--env", "CartPole-v1", "--out", str(tmp_path / f"hub{index}")]
        assert main([*args, "--video-steps", "0"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "which no SB3 checkpoint has" in error, error
        assert not (tmp_path / f"hub{index}").exists()


def test_package_refuses_a_link_as_out_before_evaluating(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("spikerl.package.evaluate_agent", lambda *a, **k: (_ for _ in ()).throw(AssertionError("evaluated")))
    (tmp_path / "empty").mkdir()
    for name, target in (("link", tmp_path / "empty"), ("dangling", tmp_path / "nowhere")):  # tracebacks at the end
        (tmp_path / name).symlink_to(target)
        args = ["package", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--out", str(tmp_path / name), "--video-steps", "0"]
        assert main(args) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "is a symbolic link; choose a folder path for --out" in error

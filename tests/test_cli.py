"""The command line on tiny budgets, in-process; one clear error line for each kind of bad input."""

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch
import yaml
from stable_baselines3 import DQN, PPO

from conftest import REPO, SHIPPED_CARTPOLE
from spikerl.cli import main
from spikerl.config import load_preset, with_overrides
from spikerl.results import read_results, write_results


def run(capsys, *args):
    """``spikerl ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, err, *needles):
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_preset):
    """train -> compress 2,1 (the tiny preset's budgets) -> the run folders."""
    root = tmp_path_factory.mktemp("cli")
    train = ["train", "--env", "CartPole-v1", "--config", str(tiny_preset), "-n", "700", "--out", str(root / "run")]
    assert main([*train, "--no-progress"]) == 0
    compress = [
        "compress", "--agent", str(root / "run" / "ann.zip"), "--config", str(tiny_preset), "--schedule", "2,1",
        "--steps-per-stage", "5", "--eval-episodes", "2", "--out", str(root / "snn"), "--no-progress",
    ]
    assert main(compress) == 0
    return root


def test_train_writes_a_loadable_ann(tiny_run, tiny_preset):
    run_folder = tiny_run / "run"
    for name in ("ann.zip", "checkpoint.json", "config.yaml", "0.monitor.csv", "training_curve.png"):
        assert (run_folder / name).is_file(), name
    config = yaml.safe_load((run_folder / "config.yaml").read_text())
    assert config["train"]["n_timesteps"] == 700  # the preset as run, with the command line's -n
    command = f"spikerl train --env CartPole-v1 --config {tiny_preset} -n 700 --out {run_folder} --no-progress"
    assert config["commands"] == [command]


def test_compress_writes_every_stage_and_results(tiny_run):
    snn = tiny_run / "snn"
    results = json.loads((snn / "results.json").read_text())
    assert [(row["stage"], row["T"]) for row in results["rows"]] == [
        ("ANN", None), ("converted", 2), ("retrained", 2), ("retrained", 1)
    ]
    assert all(len(row["rewards"]) == 2 for row in results["rows"])
    assert set(results["rows"][-1]["spike_rates"]) == {"q_net.1", "q_net.3"}
    assert len(results["agent_sha256"]) == 64 and results["commands"][0].startswith("spikerl train")
    assert all(row["cost"]["energy_pj"] > 0 for row in results["rows"])
    assert (snn / "T2.zip").is_file() and (snn / "T1.zip").is_file() and (snn / "ann.zip").is_file()
    assert "| retrained | 1 |" in (snn / "results.md").read_text()
    assert set(results["plots"]) == {"reward_vs_T.png", "spike_rates.png", "energy.png"}


def test_evaluate_prints_rewards_and_spike_rates(tiny_run, capsys):
    # no --env: it is read from the compression's results.json beside the agent
    code, out, err = run(capsys, "evaluate", "--agent", tiny_run / "snn" / "T1.zip", "--episodes", "2")
    assert code == 0, err
    assert "SNN, T=1" in out and "reward" in out and "spike rate q_net.3" in out


def test_evaluation_counts_the_episodes_that_differ():
    from spikerl.evaluate import Evaluation

    # the shipped Pong ANN's first deterministic games: two starts replay one game to the frame
    rewards, lengths = [21.0, 21.0, 20.0, 21.0, 20.0], [6567, 6567, 6698, 6570, 6567]
    assert Evaluation(rewards, lengths, episode_digests=["a", "a", "b", "c", "d"]).distinct_episodes == 4
    assert Evaluation([500.0] * 3, [500] * 3, episode_digests=["a", "b", "c"]).distinct_episodes == 3  # other frames
    assert Evaluation(rewards, lengths).distinct_episodes is None  # results written before digests: unknown


def test_results_md_counts_replayed_episodes_where_the_actions_were_recorded():
    from spikerl.report import render_markdown
    from spikerl.results import read_results

    result = read_results(SHIPPED_CARTPOLE)  # written before digests: no count
    ann, *rows = result.rows
    episodes = len(ann.rewards)
    replayed = dataclasses.replace(ann, rewards=[500.0] * episodes, lengths=[500] * episodes,
                                   episode_digests=["one game"] * (episodes - 1) + ["another"])
    lines = render_markdown(dataclasses.replace(result, rows=[replayed, *rows]).with_costs()).splitlines()
    assert f"| 500.00 | 0.00 | {episodes} (2 distinct) |" in next(line for line in lines if line.startswith("| ANN |"))
    assert f"| {episodes} |" in next(line for line in lines if line.startswith("| retrained |"))


def test_episode_digests_tell_a_replayed_game_from_another_with_the_same_score(cartpole_ann):
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from spikerl.evaluate import _EpisodeWatch, count_distinct_episodes
    from spikerl.progress import progress_bar

    class SameStart(gym.Wrapper):
        def reset(self, **kwargs):
            return self.env.reset(seed=0)

    model = DQN.load(cartpole_ann, device="cpu")
    for wrapper, distinct in ((SameStart, 1), (lambda env: env, 4)):  # every game from one start, or each its own
        env = DummyVecEnv([lambda wrapper=wrapper: Monitor(wrapper(gym.make("CartPole-v1")))] * 2)
        env.seed(3)
        with progress_bar(4, "", "episode", False) as bar:
            watch = _EpisodeWatch(bar, 2)
            rewards, lengths = evaluate_policy(model, env, n_eval_episodes=4, return_episode_rewards=True, callback=watch)
        assert rewards == [500.0] * 4 and len(watch.digests) == 4  # one score: only the frames tell the games apart
        assert count_distinct_episodes(rewards, lengths, watch.digests) == distinct


def test_report_rewrites_results_md(tiny_run, capsys, tmp_path):
    folder = tmp_path / "snn"
    shutil.copytree(tiny_run / "snn", folder)
    before = (folder / "results.md").read_text()
    (folder / "results.md").unlink()
    stored = json.loads((folder / "results.json").read_text())
    stale = json.loads(json.dumps(stored))
    stale["rows"][-1]["cost"]["energy_pj"] = 1.0  # as an older energy model computed it
    (folder / "results.json").write_text(json.dumps(stale))
    code, _, err = run(capsys, "report", folder)
    assert code == 0, err
    assert (folder / "results.md").read_text() == before
    assert json.loads((folder / "results.json").read_text()) == stored  # the costs afresh, all else kept


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: text[: len(text) // 2], "JSONDecodeError"),
        (lambda text: text.replace('"retrained"', '"fine-tuned"'), "rows[2].stage must be one of ANN, converted, retrained"),
        (lambda text: text.replace('"percentile": 90.0', '"percentile": "high"'), "percentile must be a number"),
        (lambda text: text + " " * (16 << 20), "larger than 16 MiB"),  # valid JSON, but read whole before
    ],
)
def test_report_refuses_damaged_results(tiny_run, capsys, tmp_path, damage, message):
    folder = tmp_path / "snn"
    shutil.copytree(tiny_run / "snn", folder)
    (folder / "results.json").write_text(damage((folder / "results.json").read_text()))
    assert_one_error_line(*run(capsys, "report", folder)[::2], "is damaged", message)


def test_resume_skips_conversion_and_finished_stages(tiny_run, tiny_preset, capsys, tmp_path, monkeypatch):
    """A run stopped after T=2 resumes at T=1 from T2.zip: no calibration, no conversion, no rerun of T=2."""
    folder = tmp_path / "snn"
    shutil.copytree(tiny_run / "snn", folder)
    results = json.loads((folder / "results.json").read_text())
    results["rows"] = results["rows"][:-1]
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "T1.zip").unlink()
    import spikerl.compress

    def refuse(*args, **kwargs):
        raise AssertionError("resume must not convert again")

    monkeypatch.setattr(spikerl.compress, "convert", refuse)
    monkeypatch.setattr(spikerl.compress, "collect_observations", refuse)
    code, _, err = run(
        capsys, "compress", "--agent", tiny_run / "run" / "ann.zip", "--config", tiny_preset, "--schedule", "2,1",
        "--steps-per-stage", "5", "--eval-episodes", "2", "--out", folder, "--no-progress", "--resume",
    )
    assert code == 0, err
    rows = json.loads((folder / "results.json").read_text())["rows"]
    assert [(row["stage"], row["T"]) for row in rows] == [("ANN", None), ("converted", 2), ("retrained", 2), ("retrained", 1)]
    assert rows[:3] == results["rows"]
    assert (folder / "T1.zip").is_file()


def test_train_refuses_a_compression_folder_even_with_force(tiny_run, tiny_preset, capsys, tmp_path):
    folder = tmp_path / "snn"
    shutil.copytree(tiny_run / "snn", folder)
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    for extra in ([], ["--force"]):
        code, _, err = run(capsys, "train", "--env", "CartPole-v1", "--config", tiny_preset, "--out", folder, *extra)
        assert_one_error_line(code, err, f"{folder} holds a compression run (T1.zip, T2.zip, results.json)")
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before


def test_a_foreign_config_beside_the_agent_is_no_obstacle_with_env(tiny_preset, capsys, tmp_path):
    (tmp_path / "agent").mkdir()
    shutil.copyfile(SHIPPED_CARTPOLE / "ann.zip", tmp_path / "agent" / "ann.zip")
    (tmp_path / "agent" / "config.yaml").write_text("some: other tool's settings\n")
    code, _, err = run(capsys, "compress", "--agent", tmp_path / "agent" / "ann.zip", "--env", "CartPole-v1", "--config",
                       tiny_preset, "--schedule", "1", "--steps-per-stage", "2", "--eval-episodes", "1",
                       "--out", tmp_path / "snn", "--no-progress")
    assert code == 0, err
    commands = json.loads((tmp_path / "snn" / "results.json").read_text())["commands"]
    assert len(commands) == 1 and commands[0].startswith("spikerl compress")  # no training commands recorded


def test_compress_refuses_the_training_run_folder_of_its_own_ann(tiny_run, tiny_preset, capsys, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(tiny_run / "run", folder)
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    for extra in ([], ["--force"]):
        code, _, err = run(capsys, "compress", "--agent", folder / "ann.zip", "--config", tiny_preset, "--out", folder,
                           *extra)
        assert_one_error_line(code, err, f"{folder} holds a training run (", f"such as {folder}_snn")
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before


def test_resume_of_a_finished_compression_keeps_its_last_stage_at_its_own_T(tiny_run, tiny_preset, capsys, tmp_path):
    """With every stage done, the student restored from T1.zip is a T=1 network (the rows still to play,
    such as Atari's sticky-action row, and rl-zoo3's config.yml are of that T), not the schedule's first T."""
    folder = tmp_path / "snn"
    shutil.copytree(tiny_run / "snn", folder)
    rows = json.loads((folder / "results.json").read_text())["rows"]
    code, _, err = run(
        capsys, "compress", "--agent", tiny_run / "run" / "ann.zip", "--config", tiny_preset, "--schedule", "2,1",
        "--steps-per-stage", "5", "--eval-episodes", "2", "--out", folder, "--no-progress", "--resume",
    )
    assert code == 0, err
    assert json.loads((folder / "results.json").read_text())["rows"] == rows
    [zoo_config] = folder.glob("dqn/*/config.yml")
    assert yaml.safe_load(zoo_config.read_text())["policy_kwargs"]["timesteps"] == 1


def test_a_resumed_td_run_counts_its_agent_steps_on_from_the_finished_stages(tiny_run, tiny_preset, capsys, tmp_path,
                                                                            monkeypatch):
    """SB3's learning_starts (here 8 agent steps) counts over all the stages: after T=2's 5 steps and
    a stop, the T=1 stage starts at step 5, not 0."""
    import spikerl.retrain

    folder = tmp_path / "snn"
    td = ["--objective", "td", "--steps-per-stage", "5", "--set", "compress.td.dqn.learning_starts=8"]
    compress = ["compress", "--agent", tiny_run / "run" / "ann.zip", "--config", tiny_preset, "--schedule", "2,1",
                "--eval-episodes", "2", "--out", folder, "--no-progress", *td]
    assert run(capsys, *compress)[0] == 0
    results = json.loads((folder / "results.json").read_text())
    results["rows"] = results["rows"][:-1]  # as if stopped during the T=1 stage
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "T1.zip").unlink()
    started_at, retrain = [], spikerl.retrain.TDRetrainer.retrain

    def record_and_retrain(self, steps):
        started_at.append(self.student.num_timesteps)
        retrain(self, steps)

    monkeypatch.setattr(spikerl.retrain.TDRetrainer, "retrain", record_and_retrain)
    code, _, err = run(capsys, *compress, "--resume")
    assert code == 0, err
    assert started_at == [5]


@pytest.mark.parametrize(("changed", "message"), [
    (["--steps-per-stage", "6"], "steps_per_stage=5, not 6"),
    (["--set", "compress.distill.learning_rate=0.5"], "compress.distill.learning_rate=0.001, not 0.5"),
    (["--set", "env.env_kwargs={max_episode_steps: 50}"], "env.env_kwargs.max_episode_steps=None, not 50"),
])
def test_resume_refuses_other_settings(tiny_run, tiny_preset, capsys, tmp_path, changed, message):
    folder = tmp_path / "snn"
    shutil.copytree(tiny_run / "snn", folder)
    steps = [] if changed[0] == "--steps-per-stage" else ["--steps-per-stage", "5"]
    code, _, err = run(
        capsys, "compress", "--agent", tiny_run / "run" / "ann.zip", "--config", tiny_preset, "--schedule", "2,1",
        "--eval-episodes", "2", "--out", folder, "--resume", *steps, *changed,
    )
    assert_one_error_line(code, err, message)


def test_resume_of_results_from_before_settings_were_recorded_checks_the_header_only(tiny_run, tiny_preset, capsys,
                                                                                      tmp_path):
    folder = tmp_path / "snn"
    shutil.copytree(tiny_run / "snn", folder)
    results = json.loads((folder / "results.json").read_text())
    assert results.pop("settings")["compress"]["schedule"] == [2, 1]
    (folder / "results.json").write_text(json.dumps(results))
    code, _, err = run(
        capsys, "compress", "--agent", tiny_run / "run" / "ann.zip", "--config", tiny_preset, "--schedule", "2,1",
        "--eval-episodes", "2", "--out", folder, "--resume", "--steps-per-stage", "5", "--no-progress",
        "--set", "compress.distill.learning_rate=0.5",
    )
    assert code == 0, err


def test_thread_counts_of_a_bigger_machine_read_back_here():
    """A run's config.yaml from a 64-core machine (env.num_threads 64) is read and resumed on any machine."""
    from spikerl.config import with_dotted

    assert with_dotted(load_preset("CartPole-v1"), {"env.num_threads": 64}).env.num_threads == 64


def test_steps_per_stage_of_the_preset_follow_the_objective():
    """The CartPole preset budgets each objective in its own unit; one number (a flag, a grid cell) sets both."""
    preset = load_preset("CartPole-v1")
    assert preset.compress.objective == "distill" and preset.compress.stage_steps == 3000
    assert with_overrides(preset, {"compress": {"objective": "td"}}).compress.stage_steps == 10000
    assert with_overrides(preset, {"compress": {"objective": "td", "steps_per_stage": 60}}).compress.stage_steps == 60


def test_objective_flag_without_steps_in_the_preset_names_the_preset_key(tmp_path, capsys):
    preset = yaml.safe_load(open(REPO / "envs" / "CartPole-v1.yaml"))
    preset["compress"]["steps_per_stage"] = {"distill": 3000}
    config = tmp_path / "distill_only.yaml"
    config.write_text(yaml.safe_dump(preset))
    code, _, err = run(capsys, "compress", "--agent", SHIPPED_CARTPOLE / "ann.zip", "--config", config,
                       "--objective", "td", "--out", tmp_path / "out")
    assert_one_error_line(code, err, "compress.steps_per_stage has no entry for objective td")  # not --steps-per-stage
    assert not (tmp_path / "out").exists()


def test_td_objective_retrains_every_stage(tmp_path, capsys):
    """The paper's TD objective on a tiny budget: every stage is trained by SB3's loop and recorded."""
    preset = yaml.safe_load(open(REPO / "envs" / "CartPole-v1.yaml"))
    preset["compress"]["td"]["dqn"].update(learning_starts=20, buffer_size=500, batch_size=16, train_freq=1, gradient_steps=1)
    preset["compress"]["td"].update(teacher_transitions=50)
    config = tmp_path / "td.yaml"
    config.write_text(yaml.safe_dump(preset))
    code, _, err = run(
        capsys, "compress", "--agent", SHIPPED_CARTPOLE / "ann.zip", "--config", config, "--objective", "td",
        "--schedule", "2,1", "--steps-per-stage", "60", "--eval-episodes", "2", "--out", tmp_path / "td", "--no-progress",
    )
    assert code == 0, err
    results = json.loads((tmp_path / "td" / "results.json").read_text())
    assert results["objective"] == "td" and results["steps_per_stage"] == 60  # the flag overrides the preset's {distill, td}
    assert [(row["stage"], row["T"]) for row in results["rows"]][2:] == [("retrained", 2), ("retrained", 1)]
    def first_layer(timesteps):
        with zipfile.ZipFile(tmp_path / "td" / f"T{timesteps}.zip") as archive:
            return torch.load(archive.open("policy.pth"), weights_only=True)["q_net.q_net.0.weight"]

    weights = [first_layer(t) for t in (2, 1)]
    assert not torch.equal(*weights)  # the T=1 stage took gradient steps


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
    output = subprocess.run([sys.executable, "-c", code, agent], capture_output=True, text=True, check=True).stdout
    assert output.startswith("SpikingMlpPolicy 1 [")

    import numpy as np
    from stable_baselines3 import DQN

    model = DQN.load(agent)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    assert output.split(" ", 2)[2].strip() == str(model.predict(obs, deterministic=True)[0].tolist())  # the same actions here


def _bad_agents(tmp):
    (tmp / "empty.zip").write_bytes(b"")
    (tmp / "folder").mkdir()
    good = SHIPPED_CARTPOLE / "ann.zip"
    (tmp / "truncated.zip").write_bytes(good.read_bytes()[:2000])
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
def bad_agents(tmp_path_factory):
    return _bad_agents(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "truncated", "not sb3", "another algorithm"])
def test_bad_agent_files_give_one_error_line(bad_agents, case, tmp_path, capsys):
    path, message = bad_agents[case]
    code, _, err = run(capsys, "compress", "--agent", path, "--env", "CartPole-v1", "--out", tmp_path / "out")
    assert_one_error_line(code, err, message)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--schedule", "2,0"], "--schedule[1] must be at least 1"),
        (["--schedule", "3,-1"], "--schedule[1] must be at least 1"),
        (["--schedule", "99999999999999999999"], "--schedule[0] must be at most 64"),
        (["--schedule", "1,2"], "--schedule must decrease strictly"),
        (["--schedule", "a,b"], "comma-separated"),
        (["--percentile", "0"], "--percentile must be greater than 0"),
        (["--percentile", "101"], "--percentile must be at most 100"),
        (["--percentile", "nan"], "--percentile must be a finite number"),
        (["--steps-per-stage", "-1"], "--steps-per-stage must be at least 0"),
        (["--eval-episodes", "0"], "--eval-episodes must be at least 1"),
        (["--num-threads", "100000"], "--num-threads must be at most"),
        (["--seed", "1000000"], "--seed must be in [0, 1000000)"),
        (["--seed", "900000", "--objective", "td"], "--seed 900000 with the td objective"),
        (["--objective", "td", "--steps-per-stage", "10", "--set", "compress.td.dqn.learning_starts=50"],
         "the td objective would make no gradient step: compress.td.dqn.learning_starts (50) is not below"),
        (["--objective", "mse"], "invalid choice: 'mse'"),
        (["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["--env", "Acrobot-v1", "--config", "envs/CartPole-v1.yaml"], "space"),
    ],
)
def test_bad_compress_options_give_one_error_line(args, message, tmp_path, capsys, no_work):
    if args[:2] == ["--env", "Acrobot-v1"]:  # the mismatch shows when the agent is loaded
        no_work.allow_loading()
    code, _, err = run(capsys, "compress", "--agent", SHIPPED_CARTPOLE / "ann.zip", "--out", tmp_path / "o", *args)
    assert_one_error_line(code, err, message)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--episodes", "0"], "--episodes must be at least 1"),
        (["--episodes", str(10**30)], "--episodes must be at most 1000000"),
        (["--seed", "5"], "evaluation seeds start at"),
        (["--num-threads", "0"], "--num-threads must be at least 1"),
    ],
)
def test_bad_evaluate_options_are_refused_before_loading(args, message, capsys, no_work):
    assert_one_error_line(*run(capsys, "evaluate", "--agent", SHIPPED_CARTPOLE / "T1.zip", *args)[::2], message)


def test_train_starts_from_a_trained_agents_weights(tiny_run, tiny_preset, tmp_path, capsys):
    trained = tiny_run / "run" / "ann.zip"
    # 40 steps: before learning starts (100) and the target network's first sync (50), so the
    # weights must be the trained agent's own
    code, _, err = run(capsys, "train", "--env", "CartPole-v1", "--config", tiny_preset, "-n", "40", "-i", trained,
                       "--out", tmp_path / "again", "--no-progress")
    assert code == 0, err
    started, before = DQN.load(tmp_path / "again" / "ann.zip"), DQN.load(trained)
    for name, tensor in before.policy.state_dict().items():
        assert torch.equal(started.policy.state_dict()[name], tensor), name


def test_bfloat16_training_runs_its_gradient_steps_in_bfloat16(tiny_preset, tmp_path, capsys, monkeypatch):
    from spikerl.train import BFloat16DQN

    q_value_dtypes = set()
    sb3_train = BFloat16DQN.train

    def train_and_record(model, gradient_steps, batch_size=100):
        hook = model.q_net.register_forward_hook(lambda module, inputs, output: q_value_dtypes.add(output.dtype))
        try:
            sb3_train(model, gradient_steps, batch_size)
        finally:
            hook.remove()

    monkeypatch.setattr(BFloat16DQN, "train", train_and_record)
    monkeypatch.setattr("spikerl.train._cpu_has_bfloat16", lambda: False)  # as on an AVX2-only CPU
    code, _, err = run(capsys, "train", "--env", "CartPole-v1", "--config", tiny_preset, "-n", "300",
                       "--set", "train.bfloat16=true", "--out", tmp_path / "run", "--no-progress")
    assert code == 0, err
    warning = "spikerl train: warning: torch has no fast bfloat16 kernels for this CPU"
    assert len([line for line in err.splitlines() if line.startswith(warning)]) == 1
    assert q_value_dtypes == {torch.bfloat16}
    ann = DQN.load(tmp_path / "run" / "ann.zip")  # plain SB3, float32 weights
    assert {tensor.dtype for tensor in ann.policy.state_dict().values()} == {torch.float32}


@pytest.mark.parametrize(("agent", "message"), [
    (SHIPPED_CARTPOLE / "T1.zip", "holds a SpikingMlpPolicy, not the DQNPolicy this run trains"),
    (SHIPPED_CARTPOLE / "ann.zip", "differs from the one this run trains (q_net.q_net.0.bias: (256,) there, (32,) here)"),
])
def test_train_refuses_a_trained_agent_of_another_network(agent, message, tiny_preset, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--env", "CartPole-v1", "--config", tiny_preset, "-i", agent, "--out", tmp_path / "x")
    assert_one_error_line(code, err, message)
    assert not (tmp_path / "x").exists()


def test_a_finished_run_resumed_keeps_its_ann_byte_for_byte_and_its_compression_resumes(tiny_run, tiny_preset, tmp_path,
                                                                                        capsys):
    import hashlib

    run_folder, snn = tmp_path / "run", tmp_path / "snn"
    shutil.copytree(tiny_run / "run", run_folder)
    shutil.copytree(tiny_run / "snn", snn)
    before = hashlib.sha256((run_folder / "ann.zip").read_bytes()).hexdigest()
    assert run(capsys, "train", "--resume", run_folder, "--no-progress")[0] == 0  # as scripts/quickstart.sh run again
    assert hashlib.sha256((run_folder / "ann.zip").read_bytes()).hexdigest() == before
    assert (run_folder / "dqn" / "CartPole-v1.zip").read_bytes() == (run_folder / "ann.zip").read_bytes()
    code, _, err = run(capsys, "compress", "--agent", run_folder / "ann.zip", "--config", tiny_preset, "--schedule", "2,1",
                       "--steps-per-stage", "5", "--eval-episodes", "2", "--out", snn, "--resume", "--no-progress")
    assert code == 0, err  # the compression of tiny_run's ann.zip: the same ANN


@pytest.mark.parametrize("given", [["--env", "PongNoFrameskip-v4"], ["--seed", "3"], ["--config", "envs/CartPole-v1.yaml"],
                                   ["--out", "elsewhere"]])
def test_train_resume_refuses_what_the_run_fixes_itself(tiny_run, capsys, given):
    code, _, err = run(capsys, "train", "--resume", tiny_run / "run", *given)
    assert_one_error_line(code, err, f"continues that run with its own env, seed, settings and folder; drop {given[0]}")


def test_ship_agent_copies_a_finished_compression_and_its_training_run(tiny_run, tmp_path, run_script):
    agent = tmp_path / "agent"
    code, out, _ = run_script("ship_agent", tiny_run / "snn", agent)
    shipped = {str(path.relative_to(agent)) for path in agent.rglob("*") if path.is_file()}
    logs = [name for name in ("evaluations.npz", "0.monitor.csv") if (tiny_run / "run" / name).is_file()]
    training = {f"training/{name}" for name in logs}
    assert code == 0 and shipped == {
        "T2.zip", "T1.zip", "ann.zip", "results.json", "results.md", "reward_vs_T.png", "spike_rates.png", "energy.png",
        "training_curve.png", "training/config.yaml", *training,
    }, out
    assert (agent / "T1.zip").read_bytes() == (tiny_run / "snn" / "T1.zip").read_bytes()
    (agent / "T5.zip").write_bytes(b"an earlier agent's stage")
    code, _, err = run_script("ship_agent", tiny_run / "snn", agent)  # an agent is there now: --force replaces it
    assert code == 2 and "already holds T1.zip, T2.zip, T5.zip" in err and "--force" in err
    assert run_script("ship_agent", tiny_run / "snn", agent, "--force")[0] == 0
    assert not (agent / "T5.zip").exists() and not list(tmp_path.glob(".agent*"))  # nothing of the earlier one left
    code, _, err = run_script("ship_agent", tiny_run / "run", agent)
    assert code == 2 and "holds no results.json" in err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    result = read_results(tiny_run / "snn")
    write_results(unfinished, dataclasses.replace(result, plots=[]))  # stopped before its plots
    code, _, err = run_script("ship_agent", unfinished, tmp_path / "other")
    assert code == 2 and "unfinished compression" in err and not (tmp_path / "other").exists()
    (tmp_path / "a_file").write_text("precious")  # replaced by the agent folder, even without --force
    for force in ([], ["--force"]):
        code, _, err = run_script("ship_agent", tiny_run / "snn", tmp_path / "a_file", *force)
        assert code == 2 and "is a file, not an agent folder" in err and (tmp_path / "a_file").read_text() == "precious"


def test_every_evaluation_is_followed_by_a_checkpoint_and_a_resume_drops_what_a_lost_stretch_logged(
    tiny_preset, tmp_path, capsys, monkeypatch
):
    import numpy as np

    import spikerl.train

    saved_at, save = [], spikerl.train.save_checkpoint

    def save_and_record(model, folder, run_id, with_replay_buffer):
        saved_at.append(model.num_timesteps)
        save(model, folder, run_id, with_replay_buffer)

    monkeypatch.setattr(spikerl.train, "save_checkpoint", save_and_record)
    folder = tmp_path / "run"
    train = ("train", "--env", "CartPole-v1", "--config", tiny_preset, "--out", folder, "--no-progress")
    assert run(capsys, *train, "-n", "300", "--set", "train.eval_freq=100", "train.checkpoint_freq=150")[0] == 0
    # after each evaluation (100, 200, 300), every 150 steps but at evaluation steps (150, not 300), and on the
    # way out (at 304: SB3 stops at a multiple of the preset's train_freq, 16)
    assert saved_at == [100, 150, 200, 300, 304]
    # as if killed at step 350, after an evaluation there and before its checkpoint: that evaluation is of a
    # stretch the resumed run plays again from 304, and leaves the log
    with np.load(folder / "evaluations.npz") as log:
        timesteps, results, lengths = log["timesteps"], log["results"], log["ep_lengths"]
    np.savez(folder / "evaluations.npz", timesteps=np.append(timesteps, 350), results=np.vstack([results, results[-1]]),
             ep_lengths=np.vstack([lengths, lengths[-1]]))
    # and the training episodes it finished, and one cut by the kill
    episodes = (folder / "0.monitor.csv").read_text()
    (folder / "0.monitor.csv").write_text(episodes + "777.0,777,9.5\n888.0,888,9.9\n999.0,9")
    assert run(capsys, "train", "--resume", folder, "-n", "400", "--no-progress")[0] == 0
    with np.load(folder / "evaluations.npz") as log:
        assert log["timesteps"].tolist() == [100, 200, 300, 400]
    resumed = (folder / "0.monitor.csv").read_text()
    assert resumed.startswith(episodes) and not {"777.0", "888.0", "999.0"} & set(resumed.replace("\n", ",").split(","))
    assert len(resumed.splitlines()) > len(episodes.splitlines())  # the resumed run's own episodes follow


def test_a_run_stopped_during_an_evaluation_evaluates_that_step_when_resumed(tiny_preset, tmp_path, capsys, monkeypatch):
    import numpy as np
    import stable_baselines3.common.callbacks

    evaluate, calls = stable_baselines3.common.callbacks.evaluate_policy, []

    def stopped_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the evaluation at step 200: the checkpoint is taken at 200
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(stable_baselines3.common.callbacks, "evaluate_policy", stopped_at_the_second)
    folder = tmp_path / "run"
    train = ("train", "--env", "CartPole-v1", "--config", tiny_preset, "--out", folder, "--no-progress")
    assert run(capsys, *train, "-n", "400", "--set", "train.eval_freq=100", "train.dqn.train_freq=4")[0] == 130
    assert json.loads((folder / "checkpoint.json").read_text())["counters"]["num_timesteps"] == 200
    assert run(capsys, "train", "--resume", folder, "--no-progress")[0] == 0
    with np.load(folder / "evaluations.npz") as log:
        assert log["timesteps"].tolist() == [100, 200, 300, 400]


def test_a_resumed_run_keeps_a_best_evaluation_of_zero_as_its_best(tiny_preset, tmp_path, capsys):
    # MountainCar's episodes end at -200 (no tiny training reaches the flag): a kept best of 0.0 must stay the best
    folder = tmp_path / "run"
    train = ("train", "--env", "MountainCar-v0", "--config", tiny_preset, "--out", folder, "--no-progress")
    assert run(capsys, *train, "-n", "200", "--set", "train.eval_freq=100")[0] == 0
    best = torch.load(folder / "best_model.pt", weights_only=True)
    torch.save({**best, "mean_reward": 0.0}, folder / "best_model.pt")
    code, out, _ = run(capsys, "train", "--resume", folder, "-n", "300", "--no-progress")
    assert code == 0 and "evaluation at step 300: -200.00" in out and "new best" not in out, out
    assert torch.load(folder / "best_model.pt", weights_only=True)["mean_reward"] == 0.0


def test_train_resume_refuses_another_number_of_evaluation_episodes(tiny_run, capsys):
    code, _, err = run(capsys, "train", "--resume", tiny_run / "run", "--set", "train.eval_episodes=3")
    assert_one_error_line(code, err, "train.eval_episodes is 2 in the run being resumed, not 3")


def test_train_refuses_a_trained_agent_on_resume(tiny_run, capsys):
    code, _, err = run(capsys, "train", "--resume", tiny_run / "run", "-i", SHIPPED_CARTPOLE / "ann.zip")
    assert_one_error_line(code, err, "--trained-agent starts a new run")


def test_unknown_env_for_train(tmp_path, capsys):
    assert_one_error_line(*run(capsys, "train", "--env", "NoSuchEnv-v0", "--out", tmp_path / "x")[::2], "NoSuchEnv-v0")
    assert not (tmp_path / "x").exists()


def test_train_n_timesteps_is_bounded(tmp_path, capsys, no_work):
    code, _, err = run(capsys, "train", "-n", "0", "--out", tmp_path / "x")
    assert_one_error_line(code, err, "-n/--n-timesteps must be at least 1")


# --- bad presets: one line naming the file and the key, exit 2, before any work

def _preset():
    return yaml.safe_load(open(REPO / "envs" / "CartPole-v1.yaml"))


def _edited(key, value=None, drop=False):
    """The CartPole preset with ``key`` (dotted, e.g. ``train.dqn.gamma``) set to ``value`` or dropped, as YAML bytes."""
    def make():
        preset = _preset()
        *parents, last = key.split(".")
        section = preset
        for parent in parents:
            section = section[parent]
        if drop:
            del section[last]
        else:
            section[last] = value
        return yaml.safe_dump(preset).encode()
    return make


BILLION_LAUGHS = "".join(  # 0.5 KB of YAML whose aliases expand to 10**9 values
    f"a{level}: &a{level} [{', '.join([f'*a{level - 1}' if level else 'x'] * 10)}]\n" for level in range(9)
)

BAD_PRESETS = {
    "missing key": (_edited("train.n_timesteps", drop=True), "missing key train.n_timesteps"),
    "missing compress key": (_edited("compress.steps_per_stage", drop=True), "missing key compress.steps_per_stage"),
    "unknown key": (_edited("compress.distill.learning_rte", 0.1), "unknown key compress.distill.learning_rte"),
    "unknown section": (_edited("evalute", {"episodes": 3}), "unknown key evalute"),
    "unknown DQN keyword": (_edited("train.dqn.learnin_rate", 0.1), "unknown key train.dqn.learnin_rate"),
    "unknown neuron keyword": (_edited("compress.neuron_kwargs", {"treshold": 1}), "unknown key compress.neuron_kwargs.tresh"),
    "wrong type": (_edited("train.n_timesteps", "lots"), "train.n_timesteps must be an integer, got 'lots'"),
    "wrong type of list": (_edited("compress.schedule", "5,4"), "compress.schedule must be a list"),
    "wrong type of bool": (_edited("env.atari", "yes please"), "env.atari must be true or false"),
    "section not a mapping": (_edited("train", 3), "train must be a mapping"),
    "zero frequency": (_edited("train.checkpoint_freq", 0), "train.checkpoint_freq must be at least 1, got 0"),
    "NaN gamma": (lambda: _preset_text().replace("gamma: 0.99", "gamma: .nan").encode(), "train.dqn.gamma must be a finite"),
    "gamma above 1": (_edited("compress.td.dqn.gamma", 2), "compress.td.dqn.gamma must be at most 1"),
    "unknown objective": (_edited("compress.objective", "mse"), "compress.objective must be one of distill, td"),
    "schedule not decreasing": (_edited("compress.schedule", [1, 2]), "compress.schedule must decrease strictly"),
    "steps for an unknown objective": (
        _edited("compress.steps_per_stage", {"distill": 3000, "mse": 5}), "compress.steps_per_stage has unknown objective mse"
    ),
    "no steps for the objective": (
        _edited("compress.steps_per_stage", {"td": 10000}), "compress.steps_per_stage has no entry for objective distill"
    ),
    "negative steps of an objective": (
        _edited("compress.steps_per_stage", {"distill": -1}), "compress.steps_per_stage.distill must be at least 0"
    ),
    "training seed for evaluation": (_edited("evaluate.seed", 5), "evaluate.seed must be at least 1000000"),
    "too many threads": (_edited("env.num_threads", 10**6), "env.num_threads must be at most"),
    "unknown policy": (_edited("train.policy", "PPOPolicy"), "train.policy must be one of"),
    "not a mapping": (lambda: b"- just\n- a list\n", "the top level must be a mapping"),
    "not YAML": (lambda: b"train: [unclosed\n", "is not valid YAML"),
    "not UTF-8": (lambda: _preset_text().encode("utf-16"), "is not UTF-8 text"),
    "aliases expanding to 10**9 values": (  # as the environment's arguments it hung every command
        lambda: _preset_with_env_kwargs("\n" + textwrap.indent(BILLION_LAUGHS, " " * 4)),
        "its aliases expand it by more than 100,000 values",
    ),
    "an alias inside itself": (  # so did this
        lambda: _preset_with_env_kwargs(" {a: &a [1, *a]}\n"),
        "an alias in it refers to a collection that contains the alias",
    ),
    "larger than a settings file": (lambda: b"#" * (1 << 20) + b"\n", "is larger than a settings file can be (1 MiB)"),
    "an integer of 5000 digits": (  # past what Python turns text into
        lambda: _preset_text().replace("n_timesteps: 50000", "n_timesteps: " + "1" * 5000).encode(),
        "holds a number too long to read (over 4300 digits, Python's limit); fix the file",
    ),
    "a hexadecimal integer of 5000 digits": (  # read, but past what Python turns into text
        lambda: _preset_text().replace("n_timesteps: 50000", "n_timesteps: 0x" + "f" * 5000).encode(),
        "train.n_timesteps must be at most 10000000000, got a number too long to print",
    ),
}


def _preset_text():
    return open(REPO / "envs" / "CartPole-v1.yaml").read()


def _preset_with_env_kwargs(yaml_text):
    return _preset_text().replace("env:\n", "env:\n  env_kwargs:" + yaml_text, 1).encode()


class NoWork:
    """Fails the test if an agent is loaded or evaluated, or training starts."""

    def __init__(self, monkeypatch):
        import spikerl.compress
        import spikerl.evaluate
        import spikerl.loading
        import spikerl.train

        self.monkeypatch, self.loading = monkeypatch, spikerl.loading
        patched = [
            (spikerl.loading, "load_agent"), (spikerl.compress, "load_agent"),
            (spikerl.evaluate, "evaluate_agent"), (spikerl.train, "train"),
        ]
        for module, name in patched:
            monkeypatch.setattr(module, name, self._refuse(name))

    @staticmethod
    def _refuse(name):
        def refuse(*args, **kwargs):
            raise AssertionError(f"{name} ran before the bad input was refused")
        return refuse

    def allow_loading(self):
        self.monkeypatch.undo()


@pytest.fixture
def no_work(monkeypatch):
    return NoWork(monkeypatch)


@pytest.mark.parametrize("case", list(BAD_PRESETS))
@pytest.mark.parametrize("command", ["evaluate", "compress", "train"])
def test_bad_preset_gives_one_line_before_any_work(case, command, tmp_path, capsys, no_work):
    content, message = BAD_PRESETS[case]
    config = tmp_path / "preset.yaml"
    config.write_bytes(content())
    agent = ["--agent", SHIPPED_CARTPOLE / ("T1.zip" if command == "evaluate" else "ann.zip")] if command != "train" else []
    out = [] if command == "evaluate" else ["--out", tmp_path / "out"]
    code, _, err = run(capsys, command, *agent, "--config", config, *out)
    assert_one_error_line(code, err, str(config), message)
    assert not (tmp_path / "out").exists()


def test_set_overrides_preset_settings_and_the_flags_win(tiny_preset, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--env", "CartPole-v1", "--config", tiny_preset, "--out", tmp_path / "run",
                       "--set", "train.dqn.learning_rate=2e-3", "train.n_timesteps=999", "env.num_threads=1",
                       "-n", "60", "--no-progress")
    assert code == 0, err
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["train"]["dqn"]["learning_rate"] == 2e-3  # YAML 1.1 reads 2e-3 as a string; --set as a number
    assert config["train"]["n_timesteps"] == 60  # -n wins over --set


@pytest.mark.parametrize("command", ["train", "compress", "evaluate"])
@pytest.mark.parametrize(("assignment", "message"), [
    ("seed=3", "argument --set: 'seed=3' is not SECTION.KEY=VALUE with SECTION one of train, compress, env, evaluate"),
    ("compress.schedule", "is not SECTION.KEY=VALUE"),
    ("compress.schedule=[2,", "the value of compress.schedule is not valid YAML"),
    ("compress.schedule=" + "[" * 5000 + "]" * 5000, "the value of compress.schedule is not valid YAML"),
    ("env.env_kwargs={a: &a [1, *a]}", "the value of env.env_kwargs cannot be read: an alias in it refers to"),
    ("train.n_timesteps=" + "1" * 5000, "the value of train.n_timesteps holds a number too long to read"),
    ("train.dqn.learning_rate=[" + "1" * 100 + "]", "learning_rate must be a number, got [111111111111111111...1111111"),
    ("compress.neuron_kwargs={threshold: abc}", "compress.neuron_kwargs.threshold must be a number, got 'abc'"),
    ("compress.neuron_kwargs={leak: 2}", "compress.neuron_kwargs.leak must be at most 1"),
    ("train.dqn.tensorboard_log=/proc/x", "train.dqn.tensorboard_log is spikerl's --tensorboard DIR"),
    ("evaluate.episodes=", "evaluate.episodes needs a value"),
    ("compress.no_such_key=1", "unknown key compress.no_such_key"),
    ("evaluate.episodes=many", "evaluate.episodes must be an integer"),
])
def test_bad_set_gives_one_line_before_any_work(command, assignment, message, tmp_path, capsys, no_work):
    agent = ["--agent", SHIPPED_CARTPOLE / ("T1.zip" if command == "evaluate" else "ann.zip")] if command != "train" else []
    out = [] if command == "evaluate" else ["--out", tmp_path / "out"]
    code, _, err = run(capsys, command, *agent, *out, "--set", assignment)
    assert_one_error_line(code, err, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("assignments", "message"), [
    (["train.dqn=5", "train.dqn.gamma=0.9"], "train.dqn.gamma sets a key inside train.dqn, which is also set as a whole"),
    (["train.dqn.gamma=0.9", "train.dqn=5"], "train.dqn is set as a whole and keys inside it are set too"),
    (["train.policy=SpikingMlpPolicy"], "(spiking policies are made by 'spikerl compress'), got 'SpikingMlpPolicy'"),
])
def test_set_refuses_a_setting_given_twice_and_a_spiking_policy_to_train(assignments, message, tmp_path, capsys, no_work):
    code, _, err = run(capsys, "train", "--env", "CartPole-v1", "--out", tmp_path / "x", "--set", *assignments)
    assert_one_error_line(code, err, message)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("assignment", "message"), [
    ("train.policy=CnnPolicy", "train.policy CnnPolicy takes image observations and CartPole-v1's are Box("),
    ("env.atari=true", "env.atari is true but CartPole-v1 is not an Atari (ALE) game"),
])
def test_train_refuses_settings_that_do_not_suit_the_env(assignment, message, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--env", "CartPole-v1", "--out", tmp_path / "x", "--set", assignment)
    assert_one_error_line(code, err, message)
    assert not (tmp_path / "x").exists()


def test_resume_refuses_settings_that_the_checkpoint_fixes(tiny_run, tmp_path, capsys):
    run_folder = shutil.copytree(tiny_run / "run", tmp_path / "run")
    before = (run_folder / "config.yaml").read_text()
    code, _, err = run(capsys, "train", "--resume", run_folder, "--set", "train.dqn.buffer_size=50")
    assert_one_error_line(code, err, "train.dqn.buffer_size is 2000 in the run being resumed, not 50")
    assert (run_folder / "config.yaml").read_text() == before


#: Options that take one of a fixed set of values, by subcommand: each must list them (argparse ``choices``).
ENUM_OPTIONS = {
    ("compress", "--objective"), ("compress", "--encoding"), ("evaluate", "--video-format"),
}


@pytest.mark.parametrize("command", ["train", "compress", "evaluate"])
@pytest.mark.parametrize("device, message", [
    ("tpu", "--device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("cuda:7", "--device cuda:7, but"),  # no CUDA here, or fewer than 8 GPUs
])
def test_devices_are_checked_in_one_line_before_any_work(command, device, message, capsys, tmp_path):
    agent = ["--agent", str(SHIPPED_CARTPOLE / ("ann.zip" if command == "compress" else "T1.zip"))]
    code = main([command, *(["--env", "CartPole-v1"] if command == "train" else agent), "--device", device,
                 *(["--out", str(tmp_path / "out")] if command != "evaluate" else [])])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def _subcommands() -> argparse._SubParsersAction:
    from spikerl.cli import build_parser

    (commands,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return commands


def test_every_option_of_every_subcommand_has_help_and_enum_options_have_choices(capsys):
    commands = _subcommands()
    assert all(choice.help for choice in commands._choices_actions)  # the one-line summaries of 'spikerl --help'
    subcommands = commands.choices
    assert set(subcommands) == {"train", "compress", "evaluate", "report", "export", "package", "sweep"}
    with_choices = set()
    for name, parser in subcommands.items():
        for action in parser._actions:
            assert action.help and action.help.strip(), f"spikerl {name} {action.option_strings or action.dest} has no help"
            if action.choices:
                with_choices.add((name, action.option_strings[-1]))
        assert main([name, "--help"]) == 0
        shown = " ".join(capsys.readouterr().out.split())
        for action in parser._actions:
            assert (action.option_strings[-1] if action.option_strings else action.dest) in shown
    assert ENUM_OPTIONS <= with_choices, f"without choices: {ENUM_OPTIONS - with_choices}"
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert all(name in top for name in subcommands)


def test_env_of_an_agent_comes_from_its_folders_results_unless_damaged(tmp_path):
    from spikerl.errors import UsageError
    from spikerl.loading import env_of_agent

    results = tmp_path / "results.json"
    shutil.copy(SHIPPED_CARTPOLE / "results.json", results)
    assert env_of_agent(str(tmp_path / "T1.zip"), None) == "CartPole-v1"
    text = results.read_text()
    for damaged in (text[:100], text + " " * (16 << 20)):  # cut short; valid but past the size a reader takes
        results.write_text(damaged)
        with pytest.raises(UsageError, match="cannot tell which environment"):
            env_of_agent(str(tmp_path / "T1.zip"), None)


def test_plots_show_dollar_signs_in_names_as_written(tmp_path, capsys):
    """matplotlib reads $...$ as math text and failed on what it could not parse (ann.zip was never written)."""
    from spikerl.plots import plot_training_curve

    folder = tmp_path / "lr$_$"
    folder.mkdir()
    text = (SHIPPED_CARTPOLE / "results.json").read_text()
    assert text.count('"q_net.1"') > 1
    (folder / "results.json").write_text(text.replace('"q_net.1"', '"q_$x^$"').replace('"CartPole-v1"', '"$\\\\bad$"'))
    code, _, err = run(capsys, "report", folder)
    assert code == 0, err
    plot_training_curve(folder, folder / "training_curve.png")
    assert (folder / "training_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("command", "assignment", "message"), [
    ("train", "train.dqn.optimize_memory_usage=true", "SB3's DQN refuses the settings train.dqn (ReplayBuffer does not"),
    ("train", "train.dqn.policy_kwargs={optimizer_kwargs: {eps: -1}}", "refuses the settings train.dqn (Invalid epsilon"),
    ("compress", "compress.td.dqn.replay_buffer_kwargs={x: 1}",
     "SB3's DQN refuses the spiking student's settings (compress.td.dqn, compress.neuron_kwargs: ReplayBuffer"),
])
def test_settings_sb3_refuses_end_in_one_line_before_results_are_written(command, assignment, message, tmp_path, capsys):
    agent = ["--agent", SHIPPED_CARTPOLE / "ann.zip", "--schedule", "1"] if command == "compress" else ["--env", "CartPole-v1"]
    code, _, err = run(capsys, command, *agent, "--out", tmp_path / "out", "--set", assignment, "--no-progress")
    assert_one_error_line(code, err, message)
    assert not [path.name for path in (tmp_path / "out").glob("*") if path.name != ".spikerl.lock" and path.suffix != ".csv"]


def test_settings_files_refused_for_their_size_say_so_once(tmp_path, capsys, no_work):
    """The size refusals were raised inside the readers' own error handling and wrapped a second time."""
    from spikerl.config import parse_yaml

    preset = tmp_path / "preset.yaml"
    preset.write_bytes(b"#" * (1 << 20) + b"\n")
    code, _, err = run(capsys, "train", "--config", preset, "--out", tmp_path / "out")
    assert_one_error_line(code, err, f"{preset} is larger than a settings file can be (1 MiB); fix the file")
    assert err.count(str(preset)) == 1 and "not valid YAML" not in err
    shutil.copy(SHIPPED_CARTPOLE / "results.json", tmp_path / "results.json")
    with open(tmp_path / "results.json", "a") as results:
        results.write(" " * (16 << 20))
    code, _, err = run(capsys, "report", tmp_path)
    assert_one_error_line(code, err, "results.json is damaged (larger than 16 MiB); restore it")
    assert err.count("is damaged") == 1
    # many values written out, no alias: read (only what aliases add is capped)
    assert len(parse_yaml(yaml.safe_dump({"cells": [{"seed": i, "x": i} for i in range(40_000)]}))["cells"]) == 40_000


def test_spikerls_own_refusal_while_the_student_is_built_keeps_its_message(tmp_path, capsys):
    code, _, err = run(capsys, "compress", "--agent", SHIPPED_CARTPOLE / "ann.zip", "--encoding", "threshold",
                       "--schedule", "1", "--out", tmp_path / "out", "--no-progress")
    assert_one_error_line(code, err, "encoding 'threshold' needs image observations")
    assert "SB3's DQN refuses" not in err and not (tmp_path / "out" / "results.json").exists()

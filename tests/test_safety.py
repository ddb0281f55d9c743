"""Untrusted checkpoints are never unpickled; more bad inputs; interrupted runs resume."""

import base64
import contextlib
import json
import os
import pickle
import pty
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest
import torch

from conftest import REPO, SHIPPED_CARTPOLE, hang_up_by_default, run_cli, run_cli_in_fresh_process
from spikerl.checkpoints import signals_held, stop_signals_as_interrupt


def checkpoint_step(run):
    """The step count of the training checkpoint in the run folder ``run``."""
    return json.loads((run / "checkpoint.json").read_text())["counters"]["num_timesteps"]


class FileCreatingPayload:
    """Unpickling this creates the file at ``path``: a stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def craft_agent(source, target, marker):
    """Copy ``source`` with every pickled field of its data replaced by the payload."""
    payload = base64.b64encode(pickle.dumps(FileCreatingPayload(marker))).decode()
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    for value in data.values():
        if isinstance(value, dict) and ":serialized:" in value:
            value[":serialized:"] = payload
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def test_crafted_payload_is_never_unpickled(tmp_path):
    crafted, marker = tmp_path / "crafted.zip", tmp_path / "pwned"
    craft_agent(SHIPPED_CARTPOLE / "T1.zip", crafted, marker)
    # The payload is live: SB3's own loader, which unpickles, creates the file.
    subprocess.run(
        [sys.executable, "-c", f"from stable_baselines3 import DQN; DQN.load({str(crafted)!r})"], capture_output=True
    )
    assert marker.exists()
    marker.unlink()
    for command in (
        ["evaluate", "--episodes", "1"],
        ["compress", "--out", str(tmp_path / "c"), "--schedule", "1", "--steps-per-stage", "1"],
    ):
        result = run_cli_in_fresh_process(*command[:1], "--agent", str(crafted), "--env", "CartPole-v1", *command[1:])
        assert not marker.exists(), command
        assert result.returncode in (0, 2) and "Traceback" not in result.stderr


def damaged_agent(tmp_path, name, edit):
    """A copy of the shipped T1 agent whose weights are passed through ``edit``."""
    with zipfile.ZipFile(SHIPPED_CARTPOLE / "T1.zip") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    import io

    weights = torch.load(io.BytesIO(members["policy.pth"]), weights_only=True)
    edit(weights)
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    members["policy.pth"] = buffer.getvalue()
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        for n, content in members.items():
            archive.writestr(n, content)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, value):
    agent = damaged_agent(tmp_path, "bad.zip", lambda w: w["q_net.q_net.0.weight"].__setitem__((0, 0), value))
    result = run_cli("evaluate", "--agent", str(agent), "--env", "CartPole-v1", "--episodes", "1")
    assert result.returncode == 2 and "NaN or infinite" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--episodes", "0"], "at least 1"),
        (["--seed", "5"], "evaluation seeds start at"),
        (["--episodes", "1", "--set", "env.env_kwargs.foo=1"], "with env.env_kwargs {'foo': 1} (CartPoleEnv.__init__()"),
        (["--episodes", "1", "--set", "env.env_kwargs.max_episode_steps=-5"], "`max_episode_steps` to be positive"),
    ],
)
def test_bad_evaluate_options(args, message):
    result = run_cli("evaluate", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), *args)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("beside", [None, "[" * 100_000])  # nothing, a results.json nested too deep to read
def test_cannot_guess_env_of_a_loose_agent(tmp_path, beside):
    agent = tmp_path / "agent.zip"
    agent.write_bytes((SHIPPED_CARTPOLE / "T1.zip").read_bytes())
    if beside is not None:
        (tmp_path / "results.json").write_text(beside)
    result = run_cli("evaluate", "--agent", str(agent))
    assert result.returncode == 2 and "pass --env" in result.stderr and result.stderr.count("\n") == 1


def test_spiking_agent_is_not_compressed_again(tmp_path):
    result = run_cli("compress", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "already a spiking agent" in result.stderr


@pytest.mark.parametrize("held", ["results.json", "ann.zip"])  # a compression's results, a training run's ANN
def test_output_folder_with_results_is_not_overwritten(tmp_path, held):
    (tmp_path / held).write_text("{}")
    result = run_cli("compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--out", str(tmp_path))
    assert result.returncode == 2 and "--force" in result.stderr
    assert (tmp_path / held).read_text() == "{}"


def test_compress_into_the_folder_of_its_own_ann_is_allowed(tmp_path, tiny_preset, capsys):
    from spikerl.cli import main

    ann = tmp_path / "ann.zip"
    ann.write_bytes((SHIPPED_CARTPOLE / "ann.zip").read_bytes())
    args = ["--env", "CartPole-v1", "--config", str(tiny_preset), "--schedule", "1", "--steps-per-stage", "2", "--no-progress"]
    assert main(["compress", "--agent", str(ann), "--out", str(tmp_path), *args]) == 0, capsys.readouterr().err
    assert ann.read_bytes() == (SHIPPED_CARTPOLE / "ann.zip").read_bytes() and (tmp_path / "T1.zip").is_file()


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--out", str(blocker / "sub"))
    assert result.returncode == 2 and "cannot write to output folder" in result.stderr
    result = run_cli("train", "--env", "CartPole-v1", "--out", str(blocker))
    assert result.returncode == 2 and f"cannot write to output folder {blocker} (a file is there)" in result.stderr


def test_a_training_log_that_is_a_link_or_a_fifo_is_refused_on_resume(tmp_path, tiny_preset):
    import shutil

    run = tmp_path / "run"
    assert run_cli("train", "--config", str(tiny_preset), "--out", str(run), "--no-progress").returncode == 0
    victim = tmp_path / "victim.csv"
    victim.write_text("someone else's file\n")
    for kind, make in (("link", lambda path: path.symlink_to(victim)), ("fifo", os.mkfifo)):
        folder = tmp_path / kind
        shutil.copytree(run, folder)
        (folder / "0.monitor.csv").unlink()
        make(folder / "0.monitor.csv")  # SB3's Monitor would append through the link, or block opening the FIFO
        resumed = run_cli_in_fresh_process("train", "--resume", str(folder), "-n", "900", "--no-progress", timeout=120)
        assert resumed.returncode == 2 and resumed.stderr.count("\n") == 1, resumed.stderr
        assert "where spikerl keeps its own file; delete" in resumed.stderr
    assert victim.read_text() == "someone else's file\n"


def test_train_takes_train_freq_in_episodes_as_yaml_writes_it(tmp_path, tiny_preset):
    run = tmp_path / "run"
    trained = run_cli("train", "--config", str(tiny_preset), "--out", str(run), "--no-progress",
                      "--set", "train.dqn.train_freq=[1, episode]")
    assert trained.returncode == 0, trained.stderr
    assert "train_freq" in (run / "config.yaml").read_text()
    refused = run_cli("train", "--config", str(tiny_preset), "--out", str(tmp_path / "other"), "--set",
                      "train.dqn.train_freq=[1, hour]")
    assert refused.returncode == 2 and "train.dqn.train_freq must be steps or [steps, step|episode]" in refused.stderr


@pytest.mark.parametrize("setting", ["train.dqn.learning_rate", "compress.percentile"])
def test_a_number_beyond_any_float_is_refused_in_one_line(setting):
    refused = run_cli("train", "--set", f"{setting}=1{'0' * 400}", "--no-progress")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "must be a finite number" in refused.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_ends_a_compression_as_ctrl_c_does(tmp_path, stop):
    out = tmp_path / "snn"
    with hang_up_by_default():  # under nohup the command would inherit an ignored SIGHUP
        compress = subprocess.Popen(
            [sys.executable, "-m", "spikerl", "compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--out", str(out),
             "--no-progress"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    deadline = time.time() + 120
    while compress.poll() is None and not (out / "results.json").is_file() and time.time() < deadline:
        time.sleep(0.05)  # until the ANN's row is saved: compress is under way
    compress.send_signal(stop)
    _, stderr = compress.communicate(timeout=120)
    assert compress.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().endswith("spikerl compress: interrupted")


@pytest.mark.slow
def test_train_refuses_to_overwrite_a_run_and_resumes_it(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", "-n", "600", "--out", str(run), "--no-progress").returncode == 0
    again = run_cli("train", "-n", "600", "--out", str(run))
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_cli("train", "--resume", str(run), "-n", "900", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint_step(run) >= 900
    (run / "checkpoint.json").unlink()  # as after a hard kill before the first checkpoint
    (run / "ann.zip").unlink()
    stale = run_cli("train", "-n", "600", "--out", str(run))
    assert stale.returncode == 2 and stale.stderr.count("\n") == 1
    assert "stopped before its first checkpoint (nothing to resume); delete it" in stale.stderr


@pytest.mark.slow
def test_killed_compress_resumes_after_its_last_stage(tmp_path, tiny_preset):
    out = tmp_path / "snn"
    args = [
        "compress",
        "--agent",
        str(SHIPPED_CARTPOLE / "ann.zip"),
        "--config",
        str(tiny_preset),
        "--schedule",
        "3,2,1",
        "--steps-per-stage",
        "100",
        "--eval-episodes",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "spikerl", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300

    def stages_done():
        try:
            return [row["T"] for row in json.loads((out / "results.json").read_text())["rows"] if row["stage"] == "retrained"]
        except FileNotFoundError:
            return []

    while not stages_done() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    results = json.loads((out / "results.json").read_text())  # still valid JSON
    finished = [row["T"] for row in results["rows"] if row["stage"] == "retrained"]
    assert 3 in finished and finished != [3, 2, 1]
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    results = json.loads((out / "results.json").read_text())
    assert [row["T"] for row in results["rows"] if row["stage"] == "retrained"] == [3, 2, 1]
    assert (out / "T1.zip").is_file()


@pytest.mark.slow
def test_killed_train_resumes_from_its_checkpoint(tmp_path, tiny_preset):
    run = tmp_path / "run"
    args = ["train", "--config", str(tiny_preset), "-n", "200000", "--out", str(run), "--no-progress"]
    process = subprocess.Popen(
        [sys.executable, "-m", "spikerl", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while not (run / "checkpoint.json").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr  # interrupted, not crashed
    assert b"Traceback" not in stderr
    stopped_at = checkpoint_step(run)
    assert 0 < stopped_at < 200_000
    assert [path.name for path in run.glob("replay_buffer_*.npz")] == [
        f"replay_buffer_{stopped_at}.npz"
    ]  # of that very checkpoint
    resumed = run_cli("train", "--resume", str(run), "-n", str(stopped_at + 1500), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint_step(run) >= stopped_at + 1500
    assert (run / "ann.zip").is_file()


@pytest.mark.slow
def test_closed_terminal_stops_train_with_its_checkpoint(tmp_path, tiny_preset):
    """SIGHUP (the terminal of a run started without nohup closed) stops training as Ctrl-C does,
    even though the terminal its progress bar drew on is gone."""
    run = tmp_path / "run"
    terminal, terminal_of_the_run = pty.openpty()
    args = ["train", "--config", str(tiny_preset), "-n", "200000", "--out", str(run)]  # the progress bar draws there
    with hang_up_by_default():
        process = subprocess.Popen(
            [sys.executable, "-m", "spikerl", *args], cwd=REPO, stdout=terminal_of_the_run, stderr=terminal_of_the_run
        )
    os.close(terminal_of_the_run)
    deadline = time.time() + 300
    while not (run / "checkpoint.json").exists() and time.time() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            os.read(terminal, 65536)  # a terminal that is read, as a user's is
        time.sleep(0.1)
    process.send_signal(signal.SIGHUP)
    os.close(terminal)  # the terminal is gone: writes to it fail from now on
    assert process.wait(timeout=120) == 130  # interrupted, not killed by the signal
    stopped_at = checkpoint_step(run)
    assert 0 < stopped_at < 200_000
    assert [path.name for path in run.glob("replay_buffer_*.npz")] == [f"replay_buffer_{stopped_at}.npz"]


def test_signals_ignored_before_stay_ignored():
    """Under nohup SIGHUP is ignored: neither train's stop handlers nor a held write take it back."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)  # SIGTERM still stops
            with signals_held():
                assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
                os.kill(os.getpid(), signal.SIGHUP)  # nothing happens
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_hang_up_during_a_held_write_lets_the_write_finish_and_print():
    terminal, terminal_of_the_child = pty.openpty()
    child = textwrap.dedent("""
        import os, sys, time
        from spikerl.checkpoints import signals_held
        with signals_held():
            print("ready", flush=True)
            time.sleep(2)  # the terminal closes and SIGHUP arrives meanwhile
            print("still printing", flush=True)  # to a gone terminal: EIO, unless detached
        """)
    with hang_up_by_default():
        process = subprocess.Popen([sys.executable, "-c", child], cwd=REPO, stdout=terminal_of_the_child,
                                   stderr=terminal_of_the_child)
    os.close(terminal_of_the_child)
    assert b"ready" in os.read(terminal, 1024)
    os.close(terminal)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=60) == -signal.SIGHUP  # the held SIGHUP ends it after the block, not an OSError

def test_a_second_stop_signal_while_train_saves_its_checkpoint_still_ends_as_the_first():
    child = textwrap.dedent("""
        import os, signal, sys
        from pathlib import Path
        from types import SimpleNamespace
        from stable_baselines3.common.callbacks import CallbackList
        import spikerl.train as train

        def learn(**_):
            raise KeyboardInterrupt  # the first stop: Ctrl-C during training

        def save_checkpoint(*_, **__):
            os.kill(os.getpid(), signal.SIGTERM)  # the second, while the checkpoint is written
            print("checkpoint written", flush=True)

        train.save_checkpoint = save_checkpoint
        settings = SimpleNamespace(n_timesteps=10, checkpoint_freq=5, eval_freq=5, save_replay_buffer=False)
        try:
            train._learn(SimpleNamespace(learn=learn, num_timesteps=3), Path("run"), "id", CallbackList([]), settings,
                         resume=False, progress=False)
        except KeyboardInterrupt:
            sys.exit(130)
        """)
    process = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert process.returncode == 130, process.stderr  # not killed by the SIGTERM
    assert "checkpoint written" in process.stdout


def test_python_m_spikerl_exits_130_when_ctrl_c_lands_in_a_string_exec(tmp_path):
    """A Ctrl-C inside a string ``exec`` (a dataclass being built) that ``main`` handles still exits 130, not by SIGINT."""
    (tmp_path / "ctrl_c_in_exec.py").write_text(textwrap.dedent("""
        import runpy, sys
        import spikerl.cli

        def interrupted(args):
            exec("raise KeyboardInterrupt")  # as Ctrl-C landing while a dataclass is built

        spikerl.cli._run_report = interrupted
        sys.argv = ["spikerl", "report", "some-run"]
        runpy.run_module("spikerl", run_name="__main__")
        """))
    process = subprocess.run([sys.executable, "-m", "ctrl_c_in_exec"], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert (process.returncode, process.stderr.strip()) == (130, "spikerl report: interrupted")


def test_ctrl_c_in_a_script_ends_it_in_one_line(capsys):
    from spikerl.errors import run_script

    def interrupted():
        raise KeyboardInterrupt

    assert run_script("adopt_runs", interrupted) == 130
    assert capsys.readouterr().err == "adopt_runs: interrupted\n"


def test_sigterm_stops_a_script_as_ctrl_c_does(capsys):
    """A SIGTERM killed scripts/ship_agent.py mid-copy and left its staging folder behind."""
    import signal

    from spikerl.errors import run_script

    cleaned = []

    def terminated():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
        finally:
            cleaned.append(True)
        return "not reached"

    assert run_script("ship_agent", terminated) == 130
    assert cleaned == [True] and capsys.readouterr().err == "ship_agent: interrupted\n"


@pytest.mark.parametrize("program, code", [("-m", 130), ("/usr/local/bin/spikerl", 130), ("my_script.py", -signal.SIGINT)],
                         ids=["python -m spikerl", "console script", "a library import"])
def test_ctrl_c_while_a_command_imports_torch_ends_it_in_one_line(tmp_path, program, code):
    # a Ctrl-C that lands while `import spikerl` imports torch, inside a string exec as torch's
    # dataclasses are built (where CPython would end `python -m` by SIGINT however it is handled)
    child = textwrap.dedent(f"""
        import sys

        class CtrlC:
            def find_spec(self, name, path=None, target=None):
                if name == "spikerl.policy":
                    exec("raise KeyboardInterrupt")

        sys.meta_path.insert(0, CtrlC())
        sys.argv = [{program!r}]  # what the program's own start leaves there: "-m" while -m imports the package
        import spikerl
        """)
    (tmp_path / "ctrl_c_at_import.py").write_text(child)
    process = subprocess.run([sys.executable, "-m", "ctrl_c_at_import"], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)  # run by -m, as the command
    assert process.returncode == code, process.stderr
    if code == 130:
        assert process.stderr == "spikerl: interrupted\n"
    else:  # a script of the user's keeps Python's own Ctrl-C
        assert "KeyboardInterrupt" in process.stderr


@pytest.mark.slow
def test_same_command_and_seed_give_the_same_results(tmp_path, tiny_preset):
    args = [
        "compress",
        "--agent",
        str(SHIPPED_CARTPOLE / "ann.zip"),
        "--config",
        str(tiny_preset),
        "--schedule",
        "2,1",
        "--steps-per-stage",
        "50",
        "--eval-episodes",
        "5",
        "--seed",
        "3",
        "--no-progress",
    ]
    rewards = []
    for name in ("a", "b"):
        assert run_cli(*args, "--out", str(tmp_path / name)).returncode == 0
        rows = json.loads((tmp_path / name / "results.json").read_text())["rows"]
        rewards.append([row["rewards"] for row in rows])
    assert rewards[0] == rewards[1]


def tiny_model(seed=0, n_steps=1):
    """A small DQN on CartPole whose replay buffer is SB3's n-step one when ``n_steps > 1``."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_vec_env

    return DQN(
        "MlpPolicy",
        make_vec_env("CartPole-v1", seed=seed),
        seed=seed,
        device="cpu",
        learning_starts=100,
        buffer_size=2000,
        train_freq=16,
        gradient_steps=4,
        batch_size=32,
        target_update_interval=50,
        n_steps=n_steps,
        policy_kwargs={"net_arch": [32, 32]},
    )


def state_of(model):
    """Everything of ``model`` a resumed run must continue from, as comparable Python values."""
    buffer = model.replay_buffer
    rows = buffer.buffer_size if buffer.full else buffer.pos
    optimizer = model.policy.optimizer.state_dict()
    return {
        "policy": {name: tensor.clone() for name, tensor in model.policy.state_dict().items()},
        "optimizer": {index: {k: v.clone() for k, v in values.items()} for index, values in optimizer["state"].items()},
        "counters": (
            model.num_timesteps,
            model._n_updates,
            model._n_calls,
            model._episode_num,
            model.exploration_rate,
            model._current_progress_remaining,
        ),
        "buffer": {
            name: getattr(buffer, name)[:rows].copy()
            for name in ("observations", "next_observations", "actions", "rewards", "dones")
        },
        "pos": (buffer.pos, buffer.full),
    }


def assert_same_state(a, b):
    assert a["counters"] == b["counters"] and a["pos"] == b["pos"]
    for name in a["policy"]:
        assert torch.equal(a["policy"][name], b["policy"][name]), name
    for index in a["optimizer"]:
        for key in a["optimizer"][index]:
            assert torch.equal(a["optimizer"][index][key], b["optimizer"][index][key]), (index, key)
    for name in a["buffer"]:
        assert (a["buffer"][name] == b["buffer"][name]).all(), name


def test_a_diverged_run_keeps_its_last_good_checkpoint(tmp_path):
    from spikerl.errors import UsageError
    from spikerl.training_checkpoint import read_index, save_checkpoint

    model = tiny_model()
    model.learn(200)
    save_checkpoint(model, tmp_path, "run", with_replay_buffer=True)
    good, good_step = {path.name: path.read_bytes() for path in tmp_path.iterdir()}, model.num_timesteps
    model.learn(100, reset_num_timesteps=False)
    with torch.no_grad():
        next(model.policy.parameters()).fill_(float("nan"))  # as a diverging run's weights
    with pytest.raises(UsageError, match="the training diverged: its Q-network holds NaN or infinite weights at step"):
        save_checkpoint(model, tmp_path, "run", with_replay_buffer=False)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == good
    assert read_index(tmp_path)["counters"]["num_timesteps"] == good_step


def test_a_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    import errno

    import spikerl.report
    from spikerl.cli import main
    from spikerl.errors import UsageError
    from spikerl.training_checkpoint import save_checkpoint

    model = tiny_model()
    model.learn(200)
    save_checkpoint(model, tmp_path, "run", with_replay_buffer=False)
    good = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    model.learn(100, reset_num_timesteps=False)

    def full_disk(*args, **kwargs):  # what torch.save raised on a full tmpfs
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0\nmore lines")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UsageError, match=r"cannot write the checkpoint of step \d+ .* make room on the disk, then continue"):
        save_checkpoint(model, tmp_path, "run", with_replay_buffer=False)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == good

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "results.md"))

    monkeypatch.setattr(spikerl.report, "write_report", no_space)
    assert main(["report", str(SHIPPED_CARTPOLE)]) == 2  # an OSError traceback before
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"no space left on the device writing in {tmp_path}; free some" in error


@pytest.mark.parametrize("n_steps", [1, 3])
def test_resume_restores_counters_optimizer_and_buffer_and_continues_identically(tmp_path, n_steps):
    """A model rebuilt from spikerl's checkpoint equals the saved one and trains on identically
    (both continuing in a fresh environment, which the checkpoint does not hold)."""
    import random

    import numpy as np
    from stable_baselines3.common.env_util import make_vec_env

    from spikerl.training_checkpoint import load_checkpoint, save_checkpoint

    def global_random_states():
        return pickle.dumps((np.random.get_state(), random.getstate(), torch.get_rng_state().tolist()))

    original = tiny_model(n_steps=n_steps)
    original.learn(400)
    save_checkpoint(original, tmp_path, "run", with_replay_buffer=True)
    at_save = global_random_states()
    restored = tiny_model(seed=7, n_steps=n_steps)  # another seed: everything must come from the files
    assert load_checkpoint(restored, tmp_path)["run_id"] == "run"
    assert global_random_states() == at_save
    saved = state_of(original)
    assert_same_state(saved, state_of(restored))
    assert saved["counters"][1] > 0 and saved["optimizer"]  # trained: updates and Adam moments exist
    original.set_env(make_vec_env("CartPole-v1", seed=11))  # the checkpoint starts a new episode too
    original.replay_buffer.timeouts[:] = restored.replay_buffer.timeouts  # where the resumed run marks the cut
    restored.set_env(make_vec_env("CartPole-v1", seed=11))
    for model in (original, restored):  # one process: both continue from the global random states of the save
        np.random.set_state(pickle.loads(at_save)[0])
        random.setstate(pickle.loads(at_save)[1])
        torch.set_rng_state(torch.tensor(pickle.loads(at_save)[2], dtype=torch.uint8))
        model.learn(300, reset_num_timesteps=False)
    assert_same_state(state_of(original), state_of(restored))


def test_checkpoints_without_a_buffer_keep_the_one_saved_at_the_last_stop(tmp_path):
    """A run killed after a resume (its later checkpoints hold no buffer) resumes with the buffer
    of its last stop, not an empty one; a checkpoint with a buffer replaces it, another run's
    is never named."""
    from spikerl.training_checkpoint import load_checkpoint, read_index, replay_buffer_step, save_checkpoint

    model = tiny_model()
    model.learn(300)
    save_checkpoint(model, tmp_path, "run", with_replay_buffer=True)  # the stop
    stop, at_stop = model.num_timesteps, state_of(model)["buffer"]
    model.learn(200, reset_num_timesteps=False)
    save_checkpoint(model, tmp_path, "run", with_replay_buffer=False)  # periodic, then a kill -9
    assert replay_buffer_step(read_index(tmp_path)) == stop
    assert [path.name for path in tmp_path.glob("replay_buffer_*")] == [f"replay_buffer_{stop}.npz"]
    restored = tiny_model(seed=7)
    load_checkpoint(restored, tmp_path)
    assert restored.num_timesteps == model.num_timesteps > stop and restored.replay_buffer.pos == stop
    restored_buffer = state_of(restored)["buffer"]
    for name, array in at_stop.items():
        assert (array == restored_buffer[name]).all(), name
    assert restored.learning_starts == model.learning_starts  # no refill with random actions

    save_checkpoint(model, tmp_path, "run", with_replay_buffer=True)  # the next stop replaces it
    assert [path.name for path in tmp_path.glob("replay_buffer_*")] == [f"replay_buffer_{model.num_timesteps}.npz"]
    save_checkpoint(model, tmp_path, "another-run", with_replay_buffer=False)
    assert replay_buffer_step(read_index(tmp_path)) is None
    assert not list(tmp_path.glob("replay_buffer_*"))


def test_best_model_of_another_run_is_never_adopted(tmp_path):
    from spikerl.training_checkpoint import load_best, save_best

    other, mine = tiny_model(seed=1), tiny_model(seed=2)
    save_best(other, tmp_path, "another-run", 500.0)
    before = {name: tensor.clone() for name, tensor in mine.policy.state_dict().items()}
    assert load_best(mine, tmp_path, "my-run") is None
    assert all(torch.equal(before[name], tensor) for name, tensor in mine.policy.state_dict().items())


def write_payload(path, marker):
    path.write_bytes(pickle.dumps(FileCreatingPayload(marker)))


def test_crafted_pickles_in_a_run_folder_never_run(tmp_path, tiny_preset):
    from spikerl.cli import main

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    assert main(["train", "--config", str(tiny_preset), "--out", str(run), "--no-progress", "--num-threads", "1"]) == 0
    step = checkpoint_step(run)
    craft_agent(SHIPPED_CARTPOLE / "ann.zip", run / "checkpoint.zip", marker)
    craft_agent(SHIPPED_CARTPOLE / "ann.zip", run / "best_model.zip", marker)
    write_payload(run / f"replay_buffer_{step}.pkl", marker)
    assert main(["train", "--resume", str(run), "-n", str(step + 200), "--no-progress"]) == 0
    assert checkpoint_step(run) >= step + 200
    # a folder holding only crafted files: refused, then (--force) trained over, never read
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    craft_agent(SHIPPED_CARTPOLE / "ann.zip", fresh / "best_model.zip", marker)
    write_payload(fresh / "replay_buffer_600.pkl", marker)
    (fresh / "checkpoint.zip").write_bytes((run / "checkpoint.zip").read_bytes())
    assert main(["train", "--config", str(tiny_preset), "--out", str(fresh), "--no-progress"]) == 2
    assert main(["train", "--resume", str(fresh), "--no-progress"]) == 2  # no config.yaml, nothing to resume
    (fresh / "config.yaml").write_text((run / "config.yaml").read_text())
    assert main(["train", "--resume", str(fresh), "--no-progress"]) == 2  # legacy checkpoint.zip: refused
    assert main(["train", "--config", str(tiny_preset), "--out", str(fresh), "--no-progress", "--force"]) == 0
    for agent in (run / "best_model.zip", run / "checkpoint.zip"):
        assert main(["evaluate", "--agent", str(agent), "--env", "CartPole-v1", "--episodes", "1"]) == 0
        assert (
            main(
                [
                    "compress",
                    "--agent",
                    str(agent),
                    "--env",
                    "CartPole-v1",
                    "--config",
                    str(tiny_preset),
                    "--out",
                    str(tmp_path / "snn"),
                    "--force",
                    "--no-progress",
                ]
            )
            == 0
        )
    assert not marker.exists()


def file_digests(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file() and path.name != ".spikerl.lock"}


def test_train_never_overwrites_results(tmp_path, tiny_preset, capsys):
    import shutil

    from spikerl.cli import main

    shipped = tmp_path / "CartPole-v1"
    shutil.copytree(SHIPPED_CARTPOLE, shipped)
    before = file_digests(shipped)
    assert main(["train", "--config", str(tiny_preset), "--out", str(shipped), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds a compression run (T1.zip, T2.zip" in error and "another --out" in error
    assert file_digests(shipped) == before


def test_train_never_deletes_the_files_of_a_run_whose_config_is_gone(tmp_path, tiny_preset, capsys):
    from spikerl.cli import main

    (tmp_path / "evaluations.npz").write_bytes(b"an earlier run's evaluations")
    (tmp_path / "0.monitor.csv").write_text("an earlier run's episodes")
    before = file_digests(tmp_path)
    assert main(["train", "--config", str(tiny_preset), "--out", str(tmp_path), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds files of another training run (0.monitor.csv, evaluations.npz)" in error
    assert file_digests(tmp_path) == before


def test_export_refuses_an_existing_file_unless_forced(tmp_path, capsys):
    from spikerl.cli import main

    out = tmp_path / "agent.nir"
    out.write_bytes(b"precious")
    args = ["export", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--out", str(out)]
    assert main(args) == 2
    assert "already exists; pass --force" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert main([*args, "--force"]) == 0 and out.read_bytes() != b"precious"
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []


def test_export_never_replaces_a_device_or_fifo_even_when_forced(tmp_path, capsys):
    import os

    from spikerl.cli import main

    fifo = tmp_path / "agent.nir"  # stands for /dev/null, which --force replaced with the graph
    os.mkfifo(fifo)
    for force in ([], ["--force"]):
        assert main(["export", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--out", str(fifo), *force]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "exists and is not a regular file; choose another --out" in error
        assert fifo.is_fifo() and sorted(os.listdir(tmp_path)) == ["agent.nir"]  # no lock file left beside it


def test_a_locked_folder_is_refused_with_the_holders_pid(tmp_path, capsys):
    import os

    from spikerl.cli import main
    from spikerl.locks import folder_lock

    out = tmp_path / "snn"
    with folder_lock(out):
        code = main(
            [
                "compress",
                "--agent",
                str(SHIPPED_CARTPOLE / "ann.zip"),
                "--out",
                str(out),
                "--schedule",
                "1",
                "--steps-per-stage",
                "1",
            ]
        )
    error = capsys.readouterr().err
    assert code == 2 and f"in use by another spikerl command (pid {os.getpid()})" in error and error.count("\n") == 1
    assert not out.exists()  # nothing written; the folder the lock created is gone again


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_kept(tmp_path, capsys):
    from spikerl.cli import main

    victim, folder = tmp_path / "victim.txt", tmp_path / "run"
    victim.write_text("precious")
    folder.mkdir()
    (folder / ".spikerl.lock").symlink_to(victim)
    assert main(["report", str(folder)]) == 2
    error = capsys.readouterr().err
    assert ".spikerl.lock is a symbolic link" in error and error.count("\n") == 1
    assert victim.read_text() == "precious"


def test_a_fifo_where_spikerl_keeps_a_file_is_refused_without_blocking(tmp_path):
    import os
    import signal

    from spikerl.checkpoints import open_own_file
    from spikerl.errors import UsageError

    os.mkfifo(tmp_path / "sweep.log")
    signal.alarm(10)  # opening a FIFO for writing blocks until a reader comes: fail, do not hang
    try:
        with pytest.raises(UsageError, match="is not a regular file"):
            open_own_file(tmp_path / "sweep.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    finally:
        signal.alarm(0)


def test_settings_sb3_refuses_are_one_line_and_the_fixed_command_then_runs(tmp_path, tiny_preset, capsys):
    from spikerl.cli import main

    run = ["train", "--config", str(tiny_preset), "-n", "300", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*run, "--set", "train.dqn.policy_kwargs.no_such_keyword=1"]) == 2
    error = capsys.readouterr().err
    assert "SB3's DQN refuses the settings train.dqn" in error and error.count("\n") == 1
    assert main(run) == 0  # what the refused run left (its Monitor log) is no other run's


def test_a_stop_while_train_hands_on_leaves_no_ann_and_resume_completes_it(tmp_path, tiny_preset, monkeypatch):
    """``ann.zip`` is written last: a sweep that finds it takes the rl-zoo3 layout and the curve as written too."""
    import spikerl.train
    from spikerl.cli import main

    run = tmp_path / "run"
    plot = spikerl.train.plot_training_curve

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(spikerl.train, "plot_training_curve", stopped)
    assert main(["train", "--config", str(tiny_preset), "-n", "300", "--out", str(run), "--no-progress"]) == 130
    assert not (run / "ann.zip").exists()
    monkeypatch.setattr(spikerl.train, "plot_training_curve", plot)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "ann.zip").is_file() and (run / "training_curve.png").is_file()
    assert (run / "dqn" / "CartPole-v1.zip").read_bytes() == (run / "ann.zip").read_bytes()


def test_stale_temporaries_are_removed_by_the_next_run(tmp_path):
    from spikerl.locks import folder_lock

    stale = tmp_path / ".results.json.abcd1234.spikerl.tmp"
    stale.write_text("half a file")
    evaluation_log = tmp_path / ".evaluations.npz.spikerl.tmp.npz"  # EvalCallback's scratch log (SB3 adds .npz)
    evaluation_log.write_text("half a file")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    with folder_lock(tmp_path):
        pass
    assert not stale.exists() and not evaluation_log.exists() and other.exists()


def test_ctrl_c_during_an_atomic_write_waits_for_the_file(tmp_path):
    import threading

    from spikerl.checkpoints import atomic_path

    target = tmp_path / "x.json"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever ran before
    try:
        with pytest.raises(KeyboardInterrupt):
            with atomic_path(target) as temporary:
                temporary.write_text("half")
                # to this thread itself: os.kill may hand it to another thread of the process, whose
                # C-level handler can run late on a loaded machine (seen once in a full suite run)
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                time.sleep(0.05)  # delivered now, and held back
                temporary.write_text("complete")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert target.read_text() == "complete"
    assert list(tmp_path.glob(".*.tmp")) == []


def test_resume_without_n_trains_to_the_runs_own_step_count(tmp_path, tiny_preset):
    import yaml

    from spikerl.cli import main

    run = tmp_path / "run"
    assert main(["train", "--config", str(tiny_preset), "--out", str(run), "-n", "300", "--no-progress"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["n_timesteps"] == 300
    step = checkpoint_step(run)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert checkpoint_step(run) == step  # 300 reached already: the preset's 600 is not the run's target


def test_compress_never_replaces_stage_agents_or_reports_it_did_not_write(tmp_path, capsys):
    from spikerl.cli import main

    for name in ("T1.zip", "results.md", "energy.png"):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        (out / name).write_text("precious")
        args = ["compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--schedule", "1", "--out", str(out)]
        assert main(args) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"holds {name} without a results.json" in error
        assert (out / name).read_text() == "precious"

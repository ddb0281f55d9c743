"""Untrusted checkpoints are never unpickled; more bad inputs; interrupted runs resume."""

import base64
import json
import pickle
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from conftest import REPO, SHIPPED_CARTPOLE, run_cli, run_cli_in_fresh_process


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
    subprocess.run([sys.executable, "-c", f"from stable_baselines3 import DQN; DQN.load({str(crafted)!r})"], capture_output=True)
    assert marker.exists()
    marker.unlink()
    for command in (["evaluate", "--episodes", "1"], ["compress", "--out", str(tmp_path / "c"), "--schedule", "1", "--steps-per-stage", "1"]):
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
    ],
)
def test_bad_evaluate_options(args, message):
    result = run_cli("evaluate", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), *args)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_cannot_guess_env_of_a_loose_agent(tmp_path):
    agent = tmp_path / "agent.zip"
    agent.write_bytes((SHIPPED_CARTPOLE / "T1.zip").read_bytes())
    result = run_cli("evaluate", "--agent", str(agent))
    assert result.returncode == 2 and "pass --env" in result.stderr


def test_spiking_agent_is_not_compressed_again(tmp_path):
    result = run_cli("compress", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "already a spiking agent" in result.stderr


def test_output_folder_with_results_is_not_overwritten(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    result = run_cli("compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--out", str(tmp_path))
    assert result.returncode == 2 and "--force" in result.stderr
    assert (tmp_path / "results.json").read_text() == "{}"


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--out", str(blocker / "sub"))
    assert result.returncode == 2 and "cannot write to output folder" in result.stderr


@pytest.mark.slow
def test_train_refuses_to_overwrite_a_run_and_resumes_it(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", "-n", "600", "--out", str(run), "--no-progress").returncode == 0
    again = run_cli("train", "-n", "600", "--out", str(run))
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_cli("train", "--resume", str(run), "-n", "900", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    from stable_baselines3 import DQN

    assert DQN.load(run / "checkpoint.zip").num_timesteps >= 900
    (run / "checkpoint.zip").unlink()  # as after a hard kill before the first checkpoint
    stale = run_cli("train", "-n", "600", "--out", str(run))
    assert stale.returncode == 2 and stale.stderr.count("\n") == 1
    assert "stopped before its first checkpoint (nothing to resume); delete it" in stale.stderr


@pytest.mark.slow
def test_killed_compress_resumes_after_its_last_stage(tmp_path):
    out = tmp_path / "snn"
    args = [
        "compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--schedule", "3,2,1", "--steps-per-stage", "400",
        "--eval-episodes", "2", "--out", str(out), "--no-progress",
    ]
    process = subprocess.Popen([sys.executable, "-m", "spikerl", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
def test_killed_train_resumes_from_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--env", "CartPole-v1", "-n", "200000", "--out", str(run), "--no-progress"]
    process = subprocess.Popen([sys.executable, "-m", "spikerl", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (run / "checkpoint.zip").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr  # interrupted, not crashed
    from stable_baselines3 import DQN

    stopped_at = DQN.load(run / "checkpoint.zip").num_timesteps
    assert 0 < stopped_at < 200_000
    assert list(run.glob(f"replay_buffer_{stopped_at}.pkl"))  # the buffer of that very checkpoint
    resumed = run_cli("train", "--resume", str(run), "-n", str(stopped_at + 1500), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert DQN.load(run / "checkpoint.zip").num_timesteps >= stopped_at + 1500
    assert (run / "ann.zip").is_file()


@pytest.mark.slow
def test_same_command_and_seed_give_the_same_results(tmp_path):
    args = [
        "compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--schedule", "2,1", "--steps-per-stage", "50",
        "--eval-episodes", "5", "--seed", "3", "--no-progress",
    ]
    rewards = []
    for name in ("a", "b"):
        assert run_cli(*args, "--out", str(tmp_path / name)).returncode == 0
        rows = json.loads((tmp_path / name / "results.json").read_text())["rows"]
        rewards.append([row["rewards"] for row in rows])
    assert rewards[0] == rewards[1]

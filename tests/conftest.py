import contextlib
import importlib.util
import io
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CARTPOLE = REPO / "agents" / "CartPole-v1"
SHIPPED_PONG = REPO / "agents" / "PongNoFrameskip-v4"

torch.set_num_threads(1)
# The subprocesses the tests start (fresh-process CLI runs, killed runs, README snippets) too: two
# torch threads beside other busy processes on a small machine are many times slower than one.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# A preset with tiny budgets (CartPole): training of a few hundred steps, and compression that
# calibrates and distils on a few hundred states (the CartPole preset's take 5000 ANN steps each).
TINY_PRESET = """
env: {num_threads: 1}
train:
  policy: MlpPolicy
  n_timesteps: 600
  eval_freq: 200
  eval_episodes: 2
  checkpoint_freq: 200
  dqn: {learning_rate: 1.0e-3, batch_size: 32, buffer_size: 2000, learning_starts: 100, train_freq: 16,
        gradient_steps: 4, target_update_interval: 50, policy_kwargs: {net_arch: [32, 32]}}
compress: {schedule: [1], objective: distill, steps_per_stage: 1, stage_eval_episodes: 1, calibration_samples: 128,
           teacher_states: 500, distill: {student_states: 200}}
evaluate: {episodes: 2}
"""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``spikerl ARGS`` in this process (``spikerl.cli.main``) from ``cwd`` (default: the
    repository); returns what the process would have: exit code, stdout, stderr (an uncaught
    exception: exit code 1 and its traceback). 3.5 s of imports cheaper than a fresh process."""
    from spikerl.cli import main

    stdout, stderr, threads, previous = io.StringIO(), io.StringIO(), torch.get_num_threads(), os.getcwd()
    os.chdir(cwd or REPO)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(list(args))
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(previous)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["spikerl", *args], code, stdout.getvalue(), stderr.getvalue())


def hang_up_by_default():
    """A block whose processes end on SIGHUP by default, as under a terminal, even when the
    tests run under ``nohup`` (which would hand its ignored SIGHUP down to them)."""
    from spikerl.checkpoints import signal_handlers

    return signal_handlers({signal.SIGHUP: signal.SIG_DFL})


def run_cli_in_fresh_process(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m spikerl ARGS`` in a fresh process, where that is the point (crafted
    payloads, a clean interpreter); returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "spikerl", *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout
    )


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory) -> Path:
    """``TINY_PRESET`` as a preset file (``--config``)."""
    path = tmp_path_factory.mktemp("preset") / "tiny.yaml"
    path.write_text(TINY_PRESET)
    return path


@pytest.fixture(scope="session")
def cartpole_ann() -> Path:
    """The shipped CartPole ANN agent (scores 500)."""
    path = SHIPPED_CARTPOLE / "ann.zip"
    assert path.is_file(), "agents/CartPole-v1/ann.zip is missing; ship it with 'spikerl train' (see README)"
    return path


@pytest.fixture
def run_script(monkeypatch, capsys):
    """Run ``scripts/NAME.py``'s ``main`` with the given arguments; returns (exit code, stdout, stderr)."""

    def run(name: str, *args):
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *map(str, args)])
        code = script.main()
        out, err = capsys.readouterr()
        return code, out, err

    return run

import contextlib
import io
import os
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


def run_cli_in_fresh_process(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m spikerl ARGS`` in a fresh process, where that is the point (crafted
    payloads, a clean interpreter); returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "spikerl", *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout
    )


@pytest.fixture(scope="session")
def cartpole_ann() -> Path:
    """The shipped CartPole ANN agent (scores 500)."""
    path = SHIPPED_CARTPOLE / "ann.zip"
    assert path.is_file(), "agents/CartPole-v1/ann.zip is missing; ship it with 'spikerl train' (see README)"
    return path

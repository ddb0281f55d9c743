import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CARTPOLE = REPO / "agents" / "CartPole-v1"
SHIPPED_PONG = REPO / "agents" / "PongNoFrameskip-v4"

torch.set_num_threads(1)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m spikerl ARGS`` in a fresh process; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "spikerl", *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout
    )


@pytest.fixture(scope="session")
def cartpole_ann() -> Path:
    """The shipped CartPole ANN agent (scores 500)."""
    path = SHIPPED_CARTPOLE / "ann.zip"
    assert path.is_file(), "agents/CartPole-v1/ann.zip is missing; ship it with 'spikerl train' (see README)"
    return path

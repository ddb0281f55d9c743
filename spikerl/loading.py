"""Opening agent checkpoints with one clear error for every way that can fail."""

from __future__ import annotations

import zipfile
from pathlib import Path

from stable_baselines3 import DQN

from spikerl.errors import UsageError


def load_agent(path: str | Path, device: str = "auto") -> DQN:
    """Load an SB3 DQN zip (ANN or spiking), or raise a ``UsageError`` naming the problem."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"agent file {path} not found; pass the .zip written by 'spikerl train' or 'spikerl compress'")
    if not path.is_file():
        raise UsageError(f"agent path {path} is a directory; pass the .zip file inside it (for example {path}/ann.zip)")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"agent file {path} is not a zip archive (empty, truncated or another format); pass an SB3 DQN .zip")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    if not {"data", "policy.pth"} <= names:
        raise UsageError(f"{path} is not a Stable-Baselines3 checkpoint (no data/policy.pth inside); pass an SB3 DQN .zip")
    try:
        return DQN.load(path, device=device)
    except Exception as error:  # SB3 raises many types for a checkpoint of another algorithm or version
        raise UsageError(
            f"cannot load {path} as a DQN agent ({type(error).__name__}: {error}); "
            "pass a DQN checkpoint (agents of other algorithms cannot be converted)"
        ) from None

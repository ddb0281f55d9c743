"""Writing SB3 checkpoints atomically, and keeping shipped ones small."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from spikerl.errors import UsageError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


@contextlib.contextmanager
def writable_folder(folder: str | Path) -> Iterator[Path]:
    """Create ``folder``; an ``OSError`` inside the block becomes a one-line ``UsageError``."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        yield Path(folder)
    except OSError as error:
        problem = f"cannot write to output folder {folder} ({error.strerror or error})"
        raise UsageError(f"{problem}; choose a writable out_dir", parameter="out_dir") from None


def save_model(model: BaseAlgorithm, path: str | Path, keep_optimizer_state: bool = True) -> None:
    """Save ``model`` as an SB3 zip at ``path`` atomically.

    ``keep_optimizer_state=False`` stores a fresh optimizer in place of the trained one (Adam
    moments halve a NatureCNN zip): the file still loads with plain ``DQN.load``.
    """
    optimizer = model.policy.optimizer
    if not keep_optimizer_state:
        model.policy.optimizer = type(optimizer)([dict(group) for group in optimizer.param_groups])
    try:
        with atomic_path(path) as temporary, open(temporary, "wb") as file:
            model.save(file)
    finally:
        model.policy.optimizer = optimizer


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)

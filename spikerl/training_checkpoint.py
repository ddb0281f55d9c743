"""spikerl's own checkpoint of a training run: resumable, and readable without unpickling.

SB3's ``save``/``load`` and ``save_replay_buffer`` pickle, so a run folder that travels
between machines could run code when resumed. This format stores only tensors, JSON and
NumPy arrays, read back with ``torch.load(weights_only=True)``, ``json`` and
``np.load(allow_pickle=False)``. The model itself is rebuilt from the run's preset (its
``config.yaml``) and the saved state is then copied into it.

Files in the run folder (``N`` is the step count the checkpoint was taken at):

``checkpoint.json``        the index, written last: format, run id, ``num_timesteps`` = N,
                           whether a replay buffer was saved and the step it was saved at
                           (``replay_buffer_step``, N or earlier), the SHA-256 of the files below
                           and of the index itself (``index_sha256``), SB3's counters (``_n_updates``,
                           ``_n_calls``, ``_episode_num``, progress, exploration rate, recent
                           episode statistics), the random states (Python, NumPy, the
                           action space's generator) and the training episodes logged in
                           ``0.monitor.csv`` so far (``monitor_rows``; a resume drops those after)
``checkpoint_N.pt``        tensors: ``policy`` (Q-network and target), ``optimizer``, the torch
                           CPU (and CUDA) random state
``replay_buffer_M.npz``    the filled rows of the replay buffer's arrays ``observations``,
                           ``next_observations`` (absent with ``optimize_memory_usage``),
                           ``actions``, ``rewards``, ``dones``, ``timeouts``: ``[rows, n_envs,
                           ...]``, plus ``pos``, ``full``, ``num_timesteps`` and, for SB3's
                           ``NStepReplayBuffer``, ``n_steps`` and ``gamma``
``best_model.pt``          the best evaluated policy: ``policy``, ``run_id``, ``mean_reward``,
                           ``num_timesteps``

The replay buffer (gigabytes for Atari) is written only when a run stops; a checkpoint taken
without one keeps the buffer of the run's last stop (``M`` < ``N``) and names it, so a run
killed after a resume still resumes with that buffer rather than an empty one (the
transitions of steps M to N are lost).

Each file is written atomically, the index after the files it names, and files it does not
name are removed after it: whatever the moment of a kill, the index names complete files.
The environment is not part of the checkpoint: a resumed run starts a new
episode (the cut is marked as a time-limit truncation in the buffer, so n-step returns
do not run across it). Everything else continues as if the run had not stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import random
import uuid
import zipfile
from collections import deque
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import NStepReplayBuffer

from spikerl.checkpoints import atomic_path, file_sha256, is_dense_tensor, write_json
from spikerl.errors import UsageError
from spikerl.run_folder import RunFolder
from spikerl.schema import quoted

FORMAT = "spikerl-training-checkpoint/1"
LEGACY_CHECKPOINT = "checkpoint.zip"  # SB3 format of earlier spikerl versions (pickled): never read
#: SB3 attributes saved in the index, as plain numbers.
COUNTERS = (
    "num_timesteps",
    "_n_updates",
    "_n_calls",
    "_episode_num",
    "_current_progress_remaining",
    "exploration_rate",
    "learning_starts",
)
BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
MAX_INDEX_BYTES = 1 << 20


def new_run_id() -> str:
    """A fresh identifier for a training run: files carrying another id are not this run's."""
    return uuid.uuid4().hex


def save_checkpoint(model: DQN, folder: Path, run_id: str, with_replay_buffer: bool) -> None:
    """Write ``model``'s training state into ``folder``, with its replay buffer if asked (else
    naming the buffer this run saved last, if any); ``UsageError`` and nothing written where its
    weights are not finite (a diverged run keeps its last good checkpoint)."""
    step = model.num_timesteps
    policy = model.policy.state_dict()
    if not all(torch.isfinite(tensor).all() for tensor in policy.values()):  # the run's last good checkpoint stays
        raise UsageError(
            f"the training diverged: its Q-network holds NaN or infinite weights at step {step}, so no checkpoint "
            f"was written there; resume {folder} from its last checkpoint with a lower train.dqn.learning_rate (--set)"
        )
    kept_buffer = None if with_replay_buffer else _saved_buffer(folder, run_id)
    tensors = {
        "policy": policy,
        "optimizer": model.policy.optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and model.device.type == "cuda":
        tensors["cuda_rng"] = torch.cuda.get_rng_state_all()
    digests = {}
    with atomic_path(RunFolder(folder).checkpoint_tensors(step)) as temporary:
        try:
            torch.save(tensors, temporary)
        except RuntimeError as error:  # torch's zip writer reports a full disk so ("iostream error")
            raise UsageError(
                f"cannot write the checkpoint of step {step} in {folder} (torch: {quoted(str(error))}); "
                "make room on the disk, then continue with --resume (the last checkpoint is kept)"
            ) from None
        digests["weights"] = file_sha256(temporary)
    if with_replay_buffer:
        with atomic_path(RunFolder(folder).replay_buffer(step)) as temporary, open(temporary, "wb") as file:
            np.savez(file, **_buffer_arrays(model))  # type: ignore[arg-type]  # numpy's stubs: a key could be allow_pickle
            file.close()
            digests["replay_buffer"] = file_sha256(temporary)
    buffer_step = step if with_replay_buffer else None
    if kept_buffer is not None:
        buffer_step, digests["replay_buffer"] = kept_buffer
    numpy_state = cast(tuple, np.random.get_state())  # numpy's stubs give the default (legacy) tuple a dict type too
    write_json(
        RunFolder(folder).checkpoint,
        with_index_digest(
            {
                "format": FORMAT,
                "run_id": run_id,
                "replay_buffer": buffer_step is not None,
                "replay_buffer_step": buffer_step,
                "sha256": digests,
                "counters": {name: getattr(model, name) for name in COUNTERS},
                "monitor_rows": _monitor_rows(RunFolder(folder).monitor),
                "episodes": {
                    "info": [{key: float(value) for key, value in info.items()} for info in model.ep_info_buffer or []],
                    "success": [bool(success) for success in model.ep_success_buffer or []],
                },
                "rng": {
                    "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
                    "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
                    "action_space": model.action_space.np_random.bit_generator.state,
                },
            }
        ),
    )
    _remove_other_steps(folder, step, buffer_step)


def monitor_episode_lines(text: str) -> list[str]:
    """The episode lines of SB3's ``Monitor`` CSV ``text``: the complete lines under its two
    header lines (a last line without its newline was cut by a kill)."""
    return [line for line in text.split("\n")[2:-1] if line]


def _monitor_rows(path: Path) -> int | None:
    """The training episodes logged in the Monitor CSV at ``path`` so far; None without a readable
    file (a resume then keeps them all)."""
    try:
        return len(monitor_episode_lines(path.read_text()))
    except (OSError, UnicodeDecodeError):
        return None


def _saved_buffer(folder: Path, run_id: str) -> tuple[int, str] | None:
    """The step and SHA-256 of the replay buffer that this run's current checkpoint in
    ``folder`` names, if it names one and the file is there; None otherwise (also for a
    damaged index, which the new checkpoint replaces)."""
    try:
        index = read_index(folder)
    except UsageError:
        return None
    step = replay_buffer_step(index)
    if index["run_id"] != run_id or step is None or not RunFolder(folder).replay_buffer(step).is_file():
        return None
    return step, index["sha256"]["replay_buffer"]


def replay_buffer_step(index: dict[str, Any]) -> int | None:
    """The step of the replay buffer a checkpoint index names (None without one); indexes of
    earlier spikerl versions name only a buffer of their own step."""
    if not index["replay_buffer"]:
        return None
    return index.get("replay_buffer_step", index["counters"]["num_timesteps"])


def with_index_digest(index: dict[str, Any]) -> dict[str, Any]:
    """``index`` with ``index_sha256``: the SHA-256 of its other fields as canonical JSON."""
    fields = {key: value for key, value in index.items() if key != "index_sha256"}
    return {**fields, "index_sha256": hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()}


def _check_digest(path: Path, expected: str) -> None:
    """``UsageError`` unless the file at ``path`` exists and has the SHA-256 the index recorded."""
    if not path.is_file():
        raise UsageError(f"{path} is missing, so the run cannot resume; delete the run folder and start again")
    if file_sha256(path) != expected:
        raise UsageError(
            f"{path} is damaged (its SHA-256 differs from the one recorded in {RunFolder(path.parent).checkpoint.name}); "
            "delete the run folder and start again"
        )


def _buffer_arrays(model: DQN) -> dict[str, np.ndarray]:
    """The filled rows of the replay buffer ``[rows, n_envs, ...]`` and its scalars."""
    buffer = model.replay_buffer
    assert buffer is not None  # made with the model
    rows = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {name: getattr(buffer, name)[:rows] for name in BUFFER_ARRAYS if getattr(buffer, name, None) is not None}
    scalars: dict[str, float] = {"pos": buffer.pos, "full": buffer.full, "num_timesteps": model.num_timesteps}
    if isinstance(buffer, NStepReplayBuffer):
        scalars.update(n_steps=buffer.n_steps, gamma=buffer.gamma)
    return {**arrays, **{name: np.asarray(value) for name, value in scalars.items()}}


def _remove_other_steps(folder: Path, step: int, buffer_step: int | None) -> None:
    """Delete checkpoint weights of steps other than ``step`` and replay buffers of steps other
    than ``buffer_step`` (all of them for None)."""
    run = RunFolder(folder)
    for name, kept in ((run.checkpoint_tensors, step), (run.replay_buffer, buffer_step)):
        for path in folder.glob(name("*").name):
            if kept is None or path != name(kept):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def read_index(folder: Path) -> dict[str, Any]:
    """The checkpoint index of ``folder``, checked; ``UsageError`` if missing or damaged."""
    path = RunFolder(folder).checkpoint
    if not path.is_file() and (folder / LEGACY_CHECKPOINT).is_file():
        raise UsageError(
            f"{folder} holds an SB3 {LEGACY_CHECKPOINT} (earlier spikerl), which only unpickling can read, "
            "so spikerl does not resume it; "
            "start a new run, or load it with stable_baselines3.DQN.load if you trust the folder"
        )
    if not path.is_file():
        raise UsageError(
            f"nothing to resume in {folder} ({path.name} missing: the run stopped before its first checkpoint); "
            "delete it and start again"
        )
    try:
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise ValueError(f"larger than {MAX_INDEX_BYTES} bytes")
        index = json.loads(path.read_text())
        if not isinstance(index, dict) or with_index_digest(index) != index:
            raise ValueError("its content differs from its recorded SHA-256")
        counters, rng, episodes = index["counters"], index["rng"], index["episodes"]
        if index["format"] != FORMAT or not isinstance(index["run_id"], str) or not isinstance(index["replay_buffer"], bool):
            raise ValueError("unknown format")
        if not isinstance(counters["num_timesteps"], int) or counters["num_timesteps"] < 0 or set(counters) != set(COUNTERS):
            raise ValueError("bad counters")
        if not all(_is_finite_number(value) for value in counters.values()):
            raise ValueError("non-numeric counters")
        digests = index["sha256"]
        if (
            not isinstance(digests, dict)
            or not isinstance(digests["weights"], str)
            or (index["replay_buffer"] and not isinstance(digests["replay_buffer"], str))
        ):
            raise ValueError("bad file digests")
        buffer_step = index.get("replay_buffer_step", counters["num_timesteps"] if index["replay_buffer"] else None)
        if index["replay_buffer"] != isinstance(buffer_step, int) or isinstance(buffer_step, bool) or not (
            buffer_step is None or 0 <= buffer_step <= counters["num_timesteps"]
        ):
            raise ValueError("bad replay buffer step")
        rows = index.get("monitor_rows")
        if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 0):
            raise ValueError("bad monitor_rows")
        if not isinstance(episodes["info"], list) or not isinstance(episodes["success"], list) or not isinstance(rng, dict):
            raise ValueError("bad episode statistics")
        if not all(_is_episode_info(info) for info in episodes["info"]):
            raise ValueError("bad episode statistics: each needs finite numbers r, l and t")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:  # RecursionError: nested too deeply
        raise UsageError(f"{path} is damaged ({error}); delete the run folder and start again") from None
    return index


def _is_episode_info(info: Any) -> bool:
    """Whether ``info`` is an episode's statistics as SB3's ``Monitor`` gives them: finite numbers ``r``, ``l``, ``t``."""
    return isinstance(info, dict) and {"r", "l", "t"} <= set(info) and all(map(_is_finite_number, info.values()))


def _is_finite_number(value: Any) -> bool:
    """Whether a JSON value is a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def load_checkpoint(model: DQN, folder: Path) -> dict[str, Any]:
    """Copy the training state saved in ``folder`` into ``model`` (built from the run's preset).

    Returns the index. The replay buffer is the one saved at ``replay_buffer_step(index)``,
    which may precede the checkpoint; without one the model refills its buffer with random
    actions first, as at the start of a run. ``UsageError`` when a file is missing,
    damaged or does not fit the model.
    """
    index = read_index(folder)
    counters = index["counters"]
    step = counters["num_timesteps"]
    _check_digest(RunFolder(folder).checkpoint_tensors(step), index["sha256"]["weights"])
    buffer_step = replay_buffer_step(index)
    if buffer_step is not None:
        _check_digest(RunFolder(folder).replay_buffer(buffer_step), index["sha256"]["replay_buffer"])
    tensors = _load_tensors(RunFolder(folder).checkpoint_tensors(step), ("policy", "optimizer", "torch_rng"))
    _load_policy(model, tensors["policy"], RunFolder(folder).checkpoint_tensors(step))
    configured_learning_starts = model.learning_starts
    try:
        _check_optimizer_state(model.policy.optimizer, tensors["optimizer"])
        model.policy.optimizer.load_state_dict(tensors["optimizer"])
        torch.set_rng_state(tensors["torch_rng"])
        if "cuda_rng" in tensors and model.device.type == "cuda":
            torch.cuda.set_rng_state_all(tensors["cuda_rng"])
        _restore_random_states(model, index["rng"])
        model.ep_info_buffer = deque(index["episodes"]["info"], maxlen=model._stats_window_size)
        model.ep_success_buffer = deque(index["episodes"]["success"], maxlen=model._stats_window_size)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError, OverflowError) as error:
        raise UsageError(
            f"the checkpoint in {folder} is damaged or from another configuration ({error}); "
            "delete the run folder and start again"
        ) from None
    for name, value in counters.items():
        setattr(model, name, value)
    if buffer_step is not None:
        _load_buffer(model, RunFolder(folder).replay_buffer(buffer_step), buffer_step)
    else:
        model.learning_starts = step + configured_learning_starts
    return index


def _check_optimizer_state(optimizer: torch.optim.Optimizer, state: Any) -> None:
    """Raise ``ValueError`` unless ``state`` holds ``optimizer``'s settings (its parameter groups'
    betas, eps, capturable, ...; any finite learning rate, which SB3 schedules) and finite
    per-parameter tensors shaped like its parameters."""
    parameters = [parameter for group in optimizer.param_groups for parameter in group["params"]]
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        raise ValueError("optimizer state is not a state dict")
    groups = state.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        raise ValueError("optimizer parameter groups are not the run's")
    for group, own in zip(groups, optimizer.param_groups):
        if not isinstance(group, dict):
            raise ValueError("optimizer parameter group is not a mapping")
        for key, value in group.items():  # the run's settings (betas, eps, capturable, ...) but the scheduled lr
            if key == "lr" and not _is_finite_number(value):
                raise ValueError(f"optimizer learning rate {quoted(value)} is not a finite number")
            if key not in ("lr", "params") and key in own and value != own[key]:
                raise ValueError(f"optimizer setting {quoted(key)} is {quoted(value)}, the run's {quoted(own[key])}")
    for index, values in state["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(parameters) or not isinstance(values, dict):
            raise ValueError(f"optimizer state names parameter {quoted(index)}")
        for name, value in values.items():
            if not is_dense_tensor(value) or not torch.isfinite(value).all():
                raise ValueError(f"optimizer state {name} of parameter {index} is not a finite tensor")
            if value.dim() > 0 and value.shape != parameters[index].shape:
                raise ValueError(f"optimizer state {name} of parameter {index} has shape {tuple(value.shape)}")


def _restore_random_states(model: DQN, rng: dict[str, Any]) -> None:
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, position, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    model.action_space.np_random.bit_generator.state = rng["action_space"]


def _load_tensors(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A dict saved with ``torch.save``, read with ``weights_only=True``, holding ``required``."""
    if not path.is_file():
        raise UsageError(f"{path} is missing, so the run cannot resume; delete the run folder and start again")
    try:
        with zipfile.ZipFile(path) as archive:  # torch's format is a zip: check every entry's CRC first
            damaged_entry = archive.testzip()
        if damaged_entry is not None:
            raise ValueError(f"bad CRC in {damaged_entry}")
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        OSError,
        EOFError,
        ValueError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        AttributeError,
        TypeError,
    ) as error:
        raise UsageError(f"{path} is damaged ({type(error).__name__}); delete the run folder and start again") from None
    if not isinstance(tensors, dict) or not set(required) <= set(tensors):
        raise UsageError(
            f"{path} is not a spikerl checkpoint (expected {', '.join(required)}); delete the run folder and start again"
        )
    return tensors


def _load_policy(model: DQN, state: Any, path: Path) -> None:
    """Copy the policy tensors ``state`` into ``model`` after checking names, shapes and values."""
    expected = model.policy.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise UsageError(
            f"{path} holds another network than the run's config.yaml describes; delete the run folder and start again"
        )
    for name, tensor in state.items():
        if not is_dense_tensor(tensor) or tensor.shape != expected[name].shape:
            raise UsageError(
                f"{path} holds another network than the run's config.yaml describes ({name}); "
                "delete the run folder and start again"
            )
        if torch.is_floating_point(tensor) and not torch.isfinite(tensor).all():
            raise UsageError(f"{path} holds NaN or infinite weights in {name}; delete the run folder and start again")
    model.policy.load_state_dict(state)


def _load_buffer(model: DQN, path: Path, step: int) -> None:
    """Fill ``model``'s replay buffer from the arrays saved at ``path`` at agent step ``step``,
    checking each fits."""
    buffer = model.replay_buffer
    assert buffer is not None  # made with the model
    if not path.is_file():
        raise UsageError(
            f"{path} is missing, so the run cannot resume with its replay buffer; delete the run folder and start again"
        )
    try:
        with np.load(path, allow_pickle=False) as saved:
            pos, full = int(saved["pos"]), bool(saved["full"])
            rows = buffer.buffer_size if full else pos
            if int(saved["num_timesteps"]) != step or not 0 <= pos < buffer.buffer_size:
                raise ValueError("its step or position does not match the checkpoint")
            if isinstance(buffer, NStepReplayBuffer) and (int(saved["n_steps"]), float(saved["gamma"])) != (
                buffer.n_steps,
                buffer.gamma,
            ):
                raise ValueError("its n-step settings differ from the run's")
            for name in BUFFER_ARRAYS:
                target = getattr(buffer, name, None)
                if target is None:
                    continue
                array = saved[name]
                if array.shape != (rows, *target.shape[1:]) or array.dtype != target.dtype:
                    raise ValueError(
                        f"{name} has shape {array.shape} {array.dtype}, expected {(rows, *target.shape[1:])} {target.dtype}"
                    )
                if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                    raise ValueError(f"{name} holds NaN or infinite values")  # they would make every later step NaN
                target[:rows] = array
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:  # TypeError: pos not a number
        raise UsageError(
            f"{path} is damaged ({error}); delete it to resume with an empty replay buffer, or delete the run folder"
        ) from None
    buffer.pos, buffer.full = pos, full
    last = (pos - 1) % buffer.buffer_size
    if full or pos > 0:  # the resumed run starts a new episode: cut the last one there
        buffer.timeouts[last] = np.logical_or(buffer.timeouts[last], np.logical_not(buffer.dones[last]))


def save_best(model: DQN, folder: Path, run_id: str, mean_reward: float) -> None:
    """Keep ``model``'s policy as this run's best (``best_model.pt``)."""
    with atomic_path(RunFolder(folder).best_model) as temporary:
        torch.save(
            {
                "policy": model.policy.state_dict(),
                "run_id": run_id,
                "mean_reward": float(mean_reward),
                "num_timesteps": model.num_timesteps,
            },
            temporary,
        )


def load_best(model: DQN, folder: Path, run_id: str) -> float | None:
    """Copy this run's best policy into ``model``; returns its mean reward, None without one.

    A ``best_model.pt`` of another run (another ``run_id``) is ignored, never adopted.
    """
    best = _this_runs_best(folder, run_id)
    if best is None:
        return None
    _load_policy(model, best["policy"], RunFolder(folder).best_model)
    return best["mean_reward"]


def best_mean_reward(folder: Path, run_id: str) -> float | None:
    """The mean reward of this run's ``best_model.pt`` (None without one)."""
    best = _this_runs_best(folder, run_id)
    return None if best is None else best["mean_reward"]


def _this_runs_best(folder: Path, run_id: str) -> dict[str, Any] | None:
    """The ``best_model.pt`` in ``folder`` if this run wrote it (None otherwise), its mean reward a float."""
    path = RunFolder(folder).best_model
    if not path.is_file():
        return None
    best = _load_tensors(path, ("policy", "run_id", "mean_reward"))
    if best["run_id"] != run_id:
        return None
    try:
        mean_reward = float(best["mean_reward"])
        if not np.isfinite(mean_reward):
            raise ValueError(mean_reward)
        return {**best, "mean_reward": mean_reward}
    except (TypeError, ValueError, OverflowError):
        raise UsageError(
            f"{path} is damaged (its mean_reward is not a finite number); delete it (the run then keeps its last policy)"
        ) from None

"""Opening agent checkpoints without unpickling anything, with one clear error for every failure.

SB3's ``DQN.load`` unpickles objects stored in the zip (the policy class, the spaces, the
schedules), so opening an untrusted file can run arbitrary code. ``load_agent`` reads only:

- ``data``: JSON; of it, the policy class's *name* (a string) and plain JSON fields
  (``policy_kwargs``, hyperparameters). Every pickled (``:serialized:``) field is ignored.
- ``policy.pth``: tensors, through ``torch.load(..., weights_only=True)``.

Untrusted files are bounded before they are read: each entry's declared size is checked
(``data`` against ``MAX_DATA_BYTES``, ``policy.pth`` against the size of the network that the
agent's settings and the environment describe), T and the layer sizes against fixed limits.

The spaces come from the environment preset, and the policy is rebuilt from spikerl's or
SB3's own classes. Plain ``stable_baselines3.DQN.load`` keeps working for trusted files.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import re
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.dqn.policies import CnnPolicy, DQNPolicy

from spikerl.checkpoints import is_dense_tensor
from spikerl.config import NUMBER_TOO_LONG, available_presets, read_run_config
from spikerl.envs import check_env_id, make_env
from spikerl.errors import UsageError
from spikerl.policy import SpikingCnnPolicy, SpikingMlpPolicy
from spikerl.results import read_results
from spikerl.run_folder import RunFolder
from spikerl.settings import EnvSettings, check_network_size
from spikerl.zoo import env_of_zoo_folder

POLICIES = {
    ("stable_baselines3.dqn.policies", "DQNPolicy"): DQNPolicy,
    ("stable_baselines3.dqn.policies", "CnnPolicy"): CnnPolicy,
    ("spikerl.policy", "SpikingMlpPolicy"): SpikingMlpPolicy,
    ("spikerl.policy", "SpikingCnnPolicy"): SpikingCnnPolicy,
}
#: Plain-JSON DQN hyperparameters carried over from the checkpoint (the rest keep defaults).
HYPERPARAMETERS = (
    "learning_rate",
    "batch_size",
    "learning_starts",
    "tau",
    "gamma",
    "gradient_steps",
    "n_steps",
    "target_update_interval",
    "exploration_initial_eps",
    "exploration_final_eps",
    "exploration_fraction",
    "max_grad_norm",
)
#: Bounds for untrusted agents, far above anything spikerl trains (CartPole 256x256, Pong NatureCNN).
MAX_DATA_BYTES = 16 << 20  # the SB3 "data" JSON (Pong's: 0.25 MB)
WEIGHTS_OVERHEAD_BYTES = 1 << 20  # torch's file format around the tensors
MAX_PARAMETERS = 50_000_000  # weights of the fully connected layers
#: Any entry larger than the biggest network allowed (twice: Q-network and target) is refused at once.
MAX_ENTRY_BYTES = 2 * 4 * MAX_PARAMETERS + MAX_DATA_BYTES
#: All entries together: the policy, the optimizer's moments (the same size again) and the rest.
MAX_ARCHIVE_BYTES = 3 * MAX_ENTRY_BYTES


def _policy_class(data: dict[str, Any], path: Path) -> type:
    """The policy class named in ``data`` (read as text: module and class name), if allowed."""
    stored, key = data.get("policy_class"), None
    if isinstance(stored, dict):
        name = re.match(r"<function (\w+)\.__init__", str(stored.get("__init__", "")))
        key = (str(stored.get("__module__")), name.group(1)) if name else None
    if key not in POLICIES:
        found = ".".join(key) if key else "an unknown policy"
        raise UsageError(
            f"{path} holds {found}, not a DQN agent (agents of other algorithms cannot be converted); "
            "pass a checkpoint written by 'spikerl train', 'spikerl compress' or SB3's DQN"
        )
    return POLICIES[key]


def check_device(device: str) -> str:
    """``device`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` and present here, else a ``UsageError``."""
    match = re.fullmatch(r"cuda(?::(\d+))?", str(device))
    if device in ("auto", "cpu"):
        return device
    if not match:
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {device}, but torch finds no CUDA GPU here; pass --device cpu (or auto)")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise UsageError(
            f"--device {device}, but there are only {torch.cuda.device_count()} CUDA GPUs here; "
            f"pass cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return device


def _damaged(path: Path, error: Exception) -> UsageError:
    return UsageError(f"agent file {path} is damaged ({type(error).__name__}: {error}); pass an intact SB3 DQN .zip")


def _open_archive(path: Path) -> zipfile.ZipFile:
    """``path`` opened as a zip holding ``data`` and ``policy.pth``, or a ``UsageError``."""
    if not path.exists():
        raise UsageError(f"agent file {path} not found; pass the .zip written by 'spikerl train' or 'spikerl compress'")
    if path.is_dir():
        raise UsageError(f"agent path {path} is a directory; pass the .zip file inside it (for example {path}/ann.zip)")
    if not path.is_file():
        raise UsageError(
            f"agent path {path} is not a regular file; pass the .zip written by 'spikerl train' or 'spikerl compress'"
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise UsageError(
            f"agent file {path} is not a zip archive (empty, truncated or another format: {error}); pass an SB3 DQN .zip"
        ) from None
    if not {"data", "policy.pth"} <= set(archive.namelist()):
        archive.close()
        raise UsageError(f"{path} is not a Stable-Baselines3 checkpoint (no data/policy.pth inside); pass an SB3 DQN .zip")
    entries = archive.infolist()
    largest = max(entries, key=lambda info: info.file_size)
    total = sum(info.file_size for info in entries)  # `spikerl package` unpacks them all
    too_large = [
        (declared, limit) for declared, size, limit in (
            (f"its {largest.filename} declares {largest.file_size:,} bytes", largest.file_size, MAX_ENTRY_BYTES),
            (f"its {len(entries)} entries declare {total:,} bytes", total, MAX_ARCHIVE_BYTES),
        ) if size > limit
    ]
    if too_large:
        archive.close()
        declared, limit = too_large[0]
        raise UsageError(
            f"{path}: {declared}, more than any agent spikerl loads ({limit:,}); the file is damaged or not an agent"
        )
    return archive


def _read_entry(archive: zipfile.ZipFile, name: str, limit: int, path: Path, what: str) -> bytes:
    """The bytes of entry ``name``, refused before reading when it declares more than ``limit`` bytes."""
    declared = archive.getinfo(name).file_size
    if declared > limit:
        raise UsageError(
            f"{path}: its {name} declares {declared:,} bytes, more than {what} can need ({limit:,}); "
            "the file is damaged or not an agent for this environment"
        )
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as error:
        raise _damaged(path, error) from None


def _read_data(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    """The ``data`` JSON of an SB3 zip (never its pickled fields)."""
    try:
        data = json.loads(_read_entry(archive, "data", MAX_DATA_BYTES, path, "an SB3 agent's settings"))
    except UsageError:  # the entry's own refusal (too large)
        raise
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise _damaged(path, error) from None
    except ValueError:  # the one other error reading JSON: an integer past the 4300 digits Python reads
        raise UsageError(f"agent file {path} is damaged (its data {NUMBER_TOO_LONG}); pass an intact SB3 DQN .zip") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a Stable-Baselines3 checkpoint (its data is not a JSON object); pass an SB3 DQN .zip")
    return data


def _read_weights(
    archive: zipfile.ZipFile, path: Path, expected: dict[str, torch.Tensor], saved_names: set[str]
) -> dict[str, torch.Tensor]:
    """The ``policy.pth`` tensors, read only if their declared sizes fit the ``expected`` network.

    The names must be all of ``expected``'s, or ``saved_names`` (a spiking policy saves its
    target network only where it differs from the Q-network).
    """
    limit = 2 * sum(tensor.numel() * tensor.element_size() for tensor in expected.values()) + WEIGHTS_OVERHEAD_BYTES
    what = "the network these settings describe"
    raw = _read_entry(archive, "policy.pth", limit, path, what)
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as inner:  # torch's format is a zip too: check what it declares
            declared = sum(info.file_size for info in inner.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise _damaged(path, error) from None
    if declared > limit:
        raise UsageError(
            f"{path}: its policy.pth declares {declared:,} bytes inside, more than {what} can need ({limit:,}); "
            "the file is damaged"
        )
    try:
        weights = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        AttributeError,
        TypeError,
        IndexError,
        KeyError,
        zipfile.BadZipFile,
    ) as error:
        raise _damaged(path, error) from None
    if not isinstance(weights, dict) or set(weights) not in (set(expected), saved_names):
        names = sorted(map(str, weights)) if isinstance(weights, dict) else type(weights).__name__  # keys: any type
        raise UsageError(
            f"{path} holds other layers ({names}) than its settings describe; the file is damaged, pass an intact SB3 DQN .zip"
        )
    return weights


def _checked_policy_kwargs(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """``policy_kwargs`` of ``data``, plain JSON, with T and the layer sizes within bounds."""
    policy_kwargs = data.get("policy_kwargs", {})
    if not isinstance(policy_kwargs, dict) or ":serialized:" in policy_kwargs:
        raise UsageError(
            f"{path} stores policy_kwargs as pickled objects (custom classes), which spikerl does not unpickle; "
            "load it with stable_baselines3.DQN.load if you trust the file"
        )
    try:
        check_network_size(policy_kwargs, "policy_kwargs")
    except UsageError as error:
        raise UsageError(
            f"{path} describes a network outside what spikerl loads ({error}); the file is damaged or not spikerl's"
        ) from None
    return policy_kwargs


def load_agent(path: str | Path, env_id: str, env_config: EnvSettings, device: str = "auto") -> DQN:
    """Rebuild the DQN agent (ANN or spiking) stored at ``path`` for ``env_id``, never unpickling.

    The returned model has a one-transition replay buffer: it is for acting, evaluating and
    converting. Sizes are checked before anything is read: ``data`` against a fixed bound,
    ``policy.pth`` against the network that the agent's settings and ``env_id`` describe.
    Raises ``UsageError`` when the file is missing, damaged, oversized, not a DQN agent,
    made for another environment, or holds non-finite weights.
    """
    path = Path(path)
    check_device(device)
    with _open_archive(path) as archive:
        data = _read_data(archive, path)
        policy_class = _policy_class(data, path)
        policy_kwargs = _checked_policy_kwargs(data, path)
        model = _build(policy_class, policy_kwargs, data, env_id, env_config, device, path)
        expected = torch.nn.Module.state_dict(model.policy)  # every tensor, the target network's included
        weights = _read_weights(archive, path, expected, {*model.policy.state_dict()})
    for name, tensor in weights.items():
        if not is_dense_tensor(tensor):
            what = "a sparse, quantized or meta tensor" if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise UsageError(
                f"{path} holds {what} in place of the dense tensor {name}; the file is damaged, pass an intact SB3 DQN .zip"
            )
        if tensor.shape != expected[name].shape:
            raise UsageError(
                f"the network in {path} does not fit {env_id} ({name} is {tuple(tensor.shape)}, "
                f"{env_id} needs {tuple(expected[name].shape)}: "
                f"observation space {model.observation_space}, action space {model.action_space}); "
                "pass --env with the environment the agent was trained on"
            )
        if torch.is_floating_point(tensor) and not torch.isfinite(tensor).all():
            raise UsageError(f"{path} holds NaN or infinite weights in {name}; retrain or pass another checkpoint")
    model.policy.load_state_dict(weights)
    return model


def _build(
    policy_class: type,
    policy_kwargs: dict[str, Any],
    data: dict[str, Any],
    env_id: str,
    env_config: EnvSettings,
    device: str,
    path: Path,
) -> DQN:
    """A DQN for ``env_id`` with the agent's policy and settings (its weights not yet loaded)."""
    hyperparameters = {
        key: data[key]
        for key in HYPERPARAMETERS
        if isinstance(data.get(key), (int, float)) and not isinstance(data.get(key), bool)
    }
    env = make_env(env_id, env_config, seed=0)
    _check_network_size(policy_class, policy_kwargs, env, path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_steps.*is ignored")
            return DQN(policy_class, env, policy_kwargs=policy_kwargs, buffer_size=1, device=device, **hyperparameters)
    except (TypeError, ValueError, AssertionError, KeyError, AttributeError, RuntimeError) as error:
        if isinstance(error, UsageError):
            raise
        raise UsageError(
            f"{path} holds settings spikerl cannot rebuild a DQN agent from ({type(error).__name__}: {error}); "
            "pass an SB3 DQN .zip"
        ) from None


def _check_network_size(policy_class: type, policy_kwargs: dict[str, Any], env: Any, path: Path) -> None:
    """Refuse settings whose fully connected layers would hold more than ``MAX_PARAMETERS`` weights."""
    if issubclass(policy_class, (CnnPolicy, SpikingCnnPolicy)):  # NatureCNN features
        inputs = policy_kwargs.get("features_extractor_kwargs", {}).get("features_dim", 512)
    else:
        inputs = int(np.prod(env.observation_space.shape))
    widths = [inputs, *policy_kwargs.get("net_arch", [64, 64]), int(getattr(env.action_space, "n", 1))]
    parameters = sum(a * b for a, b in zip(widths, widths[1:]))
    if parameters > MAX_PARAMETERS:
        raise UsageError(
            f"{path} describes a network of {parameters:,} weights, more than spikerl loads ({MAX_PARAMETERS:,}); "
            "the file is damaged or not spikerl's"
        )


def env_of_agent(agent: str, env: str | None) -> str:
    """``--env`` if given, else the env of the folder holding ``agent``: a training run's
    ``config.yaml``, a compression's ``results.json``, a shipped-agent folder's name, or an
    rl-zoo3 run folder (``<env>/config.yml`` beside the agent)."""
    if env:
        check_env_id(env)
        return env
    folder = Path(agent).parent
    run_config = read_run_config(folder)
    if run_config is not None:
        return run_config.env_id
    if RunFolder(folder).results_json.is_file():
        with contextlib.suppress(UsageError):  # damaged: the env is asked for below
            return read_results(folder).env_id
    if folder.name in available_presets():
        return folder.name
    zoo_env = env_of_zoo_folder(folder)
    if zoo_env is not None:
        return zoo_env
    raise UsageError(f"cannot tell which environment {agent} was trained on; pass env", parameter="env")

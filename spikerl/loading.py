"""Opening agent checkpoints without unpickling anything, with one clear error for every failure.

SB3's ``DQN.load`` unpickles objects stored in the zip (the policy class, the spaces, the
schedules), so opening an untrusted file can run arbitrary code. ``load_agent`` reads only:

- ``data``: JSON; of it, the policy class's *name* (a string) and plain JSON fields
  (``policy_kwargs``, hyperparameters). Every pickled (``:serialized:``) field is ignored.
- ``policy.pth``: tensors, through ``torch.load(..., weights_only=True)``.

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
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import DQN
from stable_baselines3.dqn.policies import CnnPolicy, DQNPolicy

from spikerl.config import available_presets, read_run_config
from spikerl.envs import make_env
from spikerl.errors import UsageError
from spikerl.policy import SpikingCnnPolicy, SpikingMlpPolicy
from spikerl.run_folder import RunFolder
from spikerl.settings import EnvSettings
from spikerl.zoo import env_of_zoo_folder

POLICIES = {
    ("stable_baselines3.dqn.policies", "DQNPolicy"): DQNPolicy,
    ("stable_baselines3.dqn.policies", "CnnPolicy"): CnnPolicy,
    ("spikerl.policy", "SpikingMlpPolicy"): SpikingMlpPolicy,
    ("spikerl.policy", "SpikingCnnPolicy"): SpikingCnnPolicy,
}
#: Plain-JSON DQN hyperparameters carried over from the checkpoint (the rest keep defaults).
HYPERPARAMETERS = (
    "learning_rate", "batch_size", "learning_starts", "tau", "gamma", "gradient_steps", "n_steps",
    "target_update_interval", "exploration_initial_eps", "exploration_final_eps", "exploration_fraction", "max_grad_norm",
)


def _policy_class(data: dict[str, Any], path: Path) -> type:
    """The policy class named in ``data`` (read as text: module and class name), if allowed."""
    stored = data.get("policy_class")
    name = re.match(r"<function (\w+)\.__init__", str(stored.get("__init__", ""))) if isinstance(stored, dict) else None
    key = (str(stored.get("__module__")), name.group(1)) if name else None
    if key not in POLICIES:
        found = ".".join(key) if key else "an unknown policy"
        raise UsageError(
            f"{path} holds {found}, not a DQN agent (agents of other algorithms cannot be converted); "
            "pass a checkpoint written by 'spikerl train', 'spikerl compress' or SB3's DQN"
        )
    return POLICIES[key]


def _read_archive(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The ``data`` JSON and the ``policy.pth`` tensors of an SB3 zip, or a ``UsageError``."""
    if not path.exists():
        raise UsageError(f"agent file {path} not found; pass the .zip written by 'spikerl train' or 'spikerl compress'")
    if not path.is_file():
        raise UsageError(f"agent path {path} is a directory; pass the .zip file inside it (for example {path}/ann.zip)")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"agent file {path} is not a zip archive (empty, truncated or another format); pass an SB3 DQN .zip")
    try:
        with zipfile.ZipFile(path) as archive:
            if not {"data", "policy.pth"} <= set(archive.namelist()):
                raise UsageError(f"{path} is not a Stable-Baselines3 checkpoint (no data/policy.pth inside); pass an SB3 DQN .zip")
            data = json.loads(archive.read("data"))
            weights = torch.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise UsageError(f"agent file {path} is damaged ({type(error).__name__}: {error}); pass an intact SB3 DQN .zip") from None
    if not isinstance(data, dict) or not isinstance(weights, dict):
        raise UsageError(f"{path} is not a Stable-Baselines3 checkpoint (unexpected data/policy.pth contents); pass an SB3 DQN .zip")
    return data, weights


def load_agent(path: str | Path, env_id: str, env_config: EnvSettings, device: str = "auto") -> DQN:
    """Rebuild the DQN agent (ANN or spiking) stored at ``path`` for ``env_id``, never unpickling.

    The returned model has a one-transition replay buffer: it is for acting, evaluating and
    converting. Raises ``UsageError`` when the file is missing, damaged, not a DQN agent,
    made for another environment, or holds non-finite weights.
    """
    path = Path(path)
    data, weights = _read_archive(path)
    policy_class = _policy_class(data, path)
    policy_kwargs = data.get("policy_kwargs", {})
    if not isinstance(policy_kwargs, dict) or ":serialized:" in policy_kwargs:
        raise UsageError(
            f"{path} stores policy_kwargs as pickled objects (custom classes), which spikerl does not unpickle; "
            "load it with stable_baselines3.DQN.load if you trust the file"
        )
    for name, tensor in weights.items():
        if torch.is_floating_point(tensor) and not torch.isfinite(tensor).all():
            raise UsageError(f"{path} holds NaN or infinite weights in {name}; retrain or pass another checkpoint")
    hyperparameters = {key: data[key] for key in HYPERPARAMETERS if isinstance(data.get(key), (int, float))}
    env = make_env(env_id, env_config, seed=0)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_steps.*is ignored")
            model = DQN(policy_class, env, policy_kwargs=policy_kwargs, buffer_size=1, device=device, **hyperparameters)
        model.policy.load_state_dict(weights)
    except (TypeError, ValueError) as error:
        raise UsageError(f"{path} holds settings spikerl cannot rebuild a DQN agent from ({error}); pass an SB3 DQN .zip") from None
    except RuntimeError:
        raise UsageError(
            f"the network in {path} does not fit {env_id} (observation space {env.observation_space}, "
            f"action space {env.action_space}); pass --env with the environment the agent was trained on"
        ) from None
    return model


def env_of_agent(agent: str, env: str | None) -> str:
    """``--env`` if given, else the env of the folder holding ``agent``: a training run's
    ``config.yaml``, a compression's ``results.json``, a shipped-agent folder's name, or an
    rl-zoo3 run folder (``<env>/config.yml`` beside the agent)."""
    if env:
        return env
    folder = Path(agent).parent
    run_config = read_run_config(folder)
    if run_config is not None:
        return run_config.env_id
    compress_results = RunFolder(folder).results_json
    if compress_results.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return str(json.loads(compress_results.read_text())["env_id"])
    if folder.name in available_presets():
        return folder.name
    zoo_env = env_of_zoo_folder(folder)
    if zoo_env is not None:
        return zoo_env
    raise UsageError(f"cannot tell which environment {agent} was trained on; pass env", parameter="env")

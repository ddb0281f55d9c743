"""rl-baselines3-zoo interop, both ways.

- **Zoo hyperparameters as a preset**: ``preset_from_zoo`` turns a zoo DQN hyperparameter file
  (``hyperparams/dqn.yml``: one flat block per env id, ``atari`` for every Atari game) into a
  spikerl preset mapping. Zoo's string fields (``policy_kwargs: "dict(net_arch=[256, 256])"``)
  are parsed with ``ast`` for literal values only: nothing is ever evaluated.
- **Run folders zoo plays**: ``write_zoo_layout`` adds to a ``spikerl train`` run folder (the
  ANN) and to a ``spikerl compress`` folder (the last stage's spiking agent, T=1 by default) what
  zoo's ``enjoy`` and ``record_video`` read (``dqn/<env>.zip``, ``dqn/<env>/config.yml``,
  ``dqn/<env>/args.yml``), so ``python -m rl_zoo3.enjoy --algo dqn --env <env> -f <run folder>``
  plays it as it is (a spiking agent's zip names its policy class, which zoo imports from spikerl).
- **A zoo run folder's env**: ``env_of_zoo_folder`` (zoo saves ``<env>.zip`` beside ``<env>/config.yml``).

spikerl's policies are known to SB3 by name (``spikerl.policy`` registers them in
``DQN.policy_aliases``), so a zoo YAML can say ``policy: SpikingMlpPolicy`` when zoo is run
with ``--gym-packages spikerl``.
"""

from __future__ import annotations

import ast
import math
import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from spikerl.checkpoints import atomic_path, write_text
from spikerl.envs import check_env_id
from spikerl.errors import UsageError
from spikerl.schema import quoted
from spikerl.settings import SECTIONS

#: The algorithm folder zoo's ``-f FOLDER --algo dqn`` looks in.
ALGO = "dqn"
ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
#: Preset sections; a YAML file with none of them at its top level is read as zoo hyperparameters.

#: ``train`` settings that zoo blocks do not have, kept from the env's spikerl preset.
SPIKERL_TRAIN_KEYS = ("eval_freq", "eval_episodes", "checkpoint_freq", "save_replay_buffer")
#: Zoo keys that change what spikerl would train and that it cannot honour.
UNSUPPORTED = ("callback", "vec_env_wrapper", "env_wrapper_kwargs", "monitor_kwargs", "frame_stack_kwargs")


def is_zoo_hyperparameters(data: Any) -> bool:
    """Whether ``data`` (a YAML document) is a zoo hyperparameter file rather than a spikerl preset
    (none of the preset's ``SECTIONS`` at its top level)."""
    return (
        isinstance(data, dict)
        and bool(data)
        and not set(data) & set(SECTIONS)
        and all(isinstance(v, dict) for v in data.values())
    )


def preset_from_zoo(data: dict[str, Any], env_id: str, base: dict[str, Any] | None) -> dict[str, Any]:
    """The spikerl preset mapping for ``env_id`` from the zoo hyperparameter file ``data``.

    The zoo block becomes the ``train`` section (``policy``, ``n_timesteps``, the DQN keyword
    arguments in ``dqn``) and sets ``env`` (``env_wrapper: AtariWrapper``, ``frame_stack``,
    ``env_kwargs``); everything else (``compress``, ``evaluate``, evaluation frequency during
    training) comes from ``base``, the env's spikerl preset.
    """
    block = data.get(env_id)
    if block is None and "atari" in data and _is_atari(env_id):
        block = data["atari"]
    if block is None:
        raise UsageError(f"the zoo hyperparameters hold no block for {env_id} (only {', '.join(data)}); pass the --env it has")
    if base is None:
        raise UsageError(
            f"{env_id} has no spikerl preset to take the compress and evaluate settings from; "
            "write a spikerl preset (see envs/CartPole-v1.yaml) with the zoo block as its train section"
        )
    block = dict(block)
    for key in UNSUPPORTED:
        if key in block:
            raise UsageError(f"zoo key {key} is not supported by spikerl; remove it from the {env_id} block")
    if _whole(block.pop("n_envs", 1), "n_envs") != 1:
        raise UsageError(
            f"zoo key n_envs must be 1 for spikerl (it trains DQN on one environment); remove it from the {env_id} block"
        )
    if block.pop("normalize", False):
        raise UsageError(f"zoo key normalize is not supported by spikerl (no VecNormalize); remove it from the {env_id} block")
    if "policy" not in block or "n_timesteps" not in block:
        raise UsageError(f"the zoo block for {env_id} needs policy and n_timesteps")
    env = dict(base.get("env") or {})
    if "env_wrapper" in block:
        env["atari"], env["wrapper_kwargs"] = _atari_wrapper(block.pop("env_wrapper"), env_id)
    if "frame_stack" in block:
        env["frame_stack"] = block.pop("frame_stack")
    if "env_kwargs" in block:
        env["env_kwargs"] = literal(block.pop("env_kwargs"), "env_kwargs")
    train = {key: value for key, value in (base.get("train") or {}).items() if key in SPIKERL_TRAIN_KEYS}
    train["policy"] = block.pop("policy")
    train["n_timesteps"] = _whole(block.pop("n_timesteps"), "n_timesteps")
    if "policy_kwargs" in block:
        block["policy_kwargs"] = literal(block["policy_kwargs"], "policy_kwargs")
    train["dqn"] = block
    return {**base, "env": env, "train": train}


def literal(value: Any, name: str) -> Any:
    """``value``, or for a string holding a Python expression (``"dict(net_arch=[64, 64])"``) the
    literal value it spells: ``dict(...)`` calls, dict/list/tuple displays, numbers, strings,
    booleans and None. Anything else (names, other calls) is a ``UsageError``: never evaluated."""
    if not isinstance(value, str):
        return value
    try:
        tree = ast.parse(value.strip(), mode="eval").body
    except (SyntaxError, RecursionError, MemoryError):  # the last two: nested too deeply to parse
        raise UsageError(
            f"{name}: {quoted(value)} is not a Python expression; write it as a YAML mapping such as {{net_arch: [64, 64]}}"
        ) from None
    return _literal_node(tree, name)


_UNPACKING = "**unpacking is not a literal value; spell the keys out"  # dict(**x) and {**x}


def _literal_node(node: ast.expr, name: str) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(keyword.arg is None for keyword in node.keywords):
            raise UsageError(f"{name}: {_UNPACKING}")
        return {keyword.arg: _literal_node(keyword.value, name) for keyword in node.keywords}
    if isinstance(node, ast.Dict):
        keys = [key for key in node.keys if key is not None]  # a None key: {**x}
        if len(keys) < len(node.keys):
            raise UsageError(f"{name}: {_UNPACKING}")
        pairs = [(_literal_node(key, name), _literal_node(value, name)) for key, value in zip(keys, node.values)]
        if not all(isinstance(key, (str, int, float, bool, type(None))) for key, _ in pairs):
            raise UsageError(f"{name}: dictionary keys must be strings or numbers; spell them so")
        return dict(pairs)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal_node(element, name) for element in node.elts]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise UsageError(
            f"{name}: {ast.unparse(node)} is not a literal value; spikerl reads only numbers, strings, lists and "
            "dict(...) from zoo strings (no names, no calls): write it as YAML or set it in Python"
        ) from None


def _whole(value: Any, name: str) -> int:
    """A whole number given as an int or a float such as ``!!float 5e4``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"zoo key {name} must be a whole number, got {quoted(value)}")
    if (isinstance(value, float) and not math.isfinite(value)) or value != int(value):
        raise UsageError(f"zoo key {name} must be a whole number, got {quoted(value)}")
    return int(value)


def _is_atari(env_id: str) -> bool:
    """Zoo's test for the ``atari`` block: the env runs on the Arcade Learning Environment."""
    check_env_id(env_id)
    return "AtariEnv" in str(gym.spec(env_id).entry_point)


def _atari_wrapper(wrapper: Any, env_id: str) -> tuple[bool, dict[str, Any]]:
    """``(atari, wrapper_kwargs)`` from zoo's ``env_wrapper`` (a name, ``{name: kwargs}`` or a
    list of one of them); only SB3's ``AtariWrapper`` is supported."""
    wrappers = wrapper if isinstance(wrapper, list) else [wrapper]
    if len(wrappers) == 1:
        only = wrappers[0]
        if only == ATARI_WRAPPER:
            return True, {}
        if isinstance(only, dict) and list(only) == [ATARI_WRAPPER] and isinstance(only[ATARI_WRAPPER] or {}, dict):
            return True, dict(only[ATARI_WRAPPER] or {})
    raise UsageError(
        f"zoo env_wrapper {quoted(wrapper)} is not supported by spikerl (only {ATARI_WRAPPER}); "
        f"remove it from the {env_id} block"
    )


def zoo_env_name(env_id: str) -> str:
    """``env_id`` as rl-zoo3 names it in paths (its ``EnvironmentName``): ``ALE/Pong-v5`` is
    ``ALE-Pong-v5``, and a ``module:`` prefix is dropped."""
    name = env_id.replace("/", "-")
    return name.split(":")[1] if name.count(":") == 1 else name


def zoo_model(run: str | Path, env_id: str) -> Path:
    """Where zoo's ``enjoy -f RUN --algo dqn`` looks for the model of ``env_id``."""
    return Path(run) / ALGO / f"{zoo_env_name(env_id)}.zip"


def write_zoo_layout(
    run: str | Path, env_id: str, seed: int, settings: Any, agent: str | Path,
    policy: str | None = None, policy_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Add zoo's files to the run folder ``run`` for the agent at ``agent``; returns the model copy.

    ``dqn/<env>.zip`` (a copy of ``agent``), ``dqn/<env>/config.yml`` (the env wrappers and the
    hyperparameters, as zoo saves them) and ``dqn/<env>/args.yml`` (``env_kwargs``, read by
    ``enjoy`` and ``record_video``); all plain YAML, no pickled objects. ``policy`` and
    ``policy_kwargs`` replace the training settings' in ``config.yml`` (a compressed agent: its
    spiking policy's name, such as ``SpikingMlpPolicy``, and its ``policy_kwargs`` with T).
    """
    model = zoo_model(run, env_id)
    params = model.parent / zoo_env_name(env_id)
    config: dict[str, Any] = {"policy": settings.train.policy, "n_timesteps": settings.train.n_timesteps, **settings.train.dqn}
    if policy is not None:
        config["policy"] = policy
    if policy_kwargs is not None:
        config["policy_kwargs"] = policy_kwargs
    if settings.env.atari:
        config["env_wrapper"] = (
            [{ATARI_WRAPPER: dict(settings.env.wrapper_kwargs)}] if settings.env.wrapper_kwargs else ATARI_WRAPPER
        )
        if settings.env.frame_stack > 1:
            config["frame_stack"] = settings.env.frame_stack
    config["normalize"] = False
    args = {
        "algo": ALGO,
        "env": env_id,
        "seed": seed,
        "n_timesteps": settings.train.n_timesteps,
        "env_kwargs": dict(settings.env.env_kwargs) or None,
    }
    for folder in (model.parent, params):  # a link there would take the files into whatever folder it names
        if folder.is_symlink():
            raise UsageError(f"{folder} is a symbolic link where spikerl keeps rl-zoo3's folder; delete the link")
    params.mkdir(parents=True, exist_ok=True)
    write_text(params / "config.yml", yaml.safe_dump(config, sort_keys=False))
    write_text(params / "args.yml", yaml.safe_dump(args, sort_keys=False))
    with atomic_path(model) as temporary:
        shutil.copyfile(agent, temporary)
    return model


def env_of_zoo_folder(folder: str | Path) -> str | None:
    """The env id of a zoo run folder (the one subfolder holding ``config.yml``), else None: the
    registered id that rl-zoo3 names so (``ALE/Pong-v5`` for ``ALE-Pong-v5``), else the name."""
    folder = Path(folder)
    params = [path.parent.name for path in folder.glob("*/config.yml")] if folder.is_dir() else []
    if len(params) != 1:
        return None
    return params[0] if params[0] in gym.registry else next(
        (env_id for env_id in gym.registry if zoo_env_name(env_id) == params[0]), params[0]
    )

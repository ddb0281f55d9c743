"""Environment construction: Gymnasium ids, SB3's Atari wrappers, seeding."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ale_py
import gymnasium as gym
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.utils import check_for_correct_spaces
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecTransposeImage

from spikerl.errors import UsageError
from spikerl.settings import EVAL_SEED_BASE, STICKY_ACTIONS, EnvSettings

gym.register_envs(ale_py)


def check_training_seed(seed: int) -> None:
    """Refuse a training seed that would overlap the evaluation seeds."""
    if not 0 <= seed < EVAL_SEED_BASE:
        raise UsageError(
            f"seed must be in [0, {EVAL_SEED_BASE}) (evaluation seeds start at {EVAL_SEED_BASE}), got {seed}", parameter="seed"
        )


def check_env_id(env_id: str) -> None:
    """Refuse an id that Gymnasium does not know, with a hint to the likely fix."""
    if env_id not in gym.registry:
        raise UsageError(f"unknown env id '{env_id}'; use a Gymnasium id such as CartPole-v1 or PongNoFrameskip-v4")


def is_atari(env_id: str) -> bool:
    """Whether ``env_id`` (a registered id) is an Atari game of the Arcade Learning Environment."""
    return str(gym.spec(env_id).entry_point).startswith("ale_py")


def check_agent_fits(model: BaseAlgorithm, env: VecEnv, env_id: str) -> None:
    """Refuse an agent whose observation or action space differs from ``env``'s."""
    try:
        check_for_correct_spaces(env, model.observation_space, model.action_space)
    except ValueError as error:
        problem = f"the agent does not fit {env_id} ({error})"
        raise UsageError(f"{problem}; pass as env_id the environment the agent was trained on", parameter="env_id") from None


def with_sticky_actions(
    env_config: EnvSettings, probability: float | None, env_id: str, setting: str = "sticky_actions"
) -> EnvSettings:
    """``env_config`` with ALE's sticky actions: at every emulator frame the previous action is
    repeated with ``probability`` (``repeat_action_probability``, passed to ``gymnasium.make``);
    ``env_config`` itself where ``probability`` is None (the env's own). ``setting``: where the
    probability came from (``compress.sticky_actions``, ...), named in a refusal."""
    if probability is None:
        return env_config
    if not env_config.atari:
        problem = f"sticky actions are an Atari (ALE) setting and {env_id} is not an Atari env"
        raise UsageError(f"{problem}; drop {setting}", parameter=setting)
    if not 0 <= probability < 1:
        problem = f"the sticky-action probability must be in [0, 1), got {probability}"
        raise UsageError(f"{problem}; ALE recommends {STICKY_ACTIONS}", parameter=setting)
    env_kwargs = {**env_config.env_kwargs, "repeat_action_probability": float(probability)}
    return dataclasses.replace(env_config, env_kwargs=env_kwargs)


def make_env(env_id: str, env_config: EnvSettings, seed: int, n_envs: int = 1, monitor_dir: str | None = None) -> VecEnv:
    """Build a Monitor-wrapped vectorized env as the preset's ``env`` section describes.

    Atari (``atari: true``): SB3's ``AtariWrapper`` (noop reset, max-and-skip 4, episodic
    life, fire reset, 84x84 grayscale, clipped reward) with ``Monitor`` underneath, so
    ``info["episode"]`` reports the full game's unclipped score; then ``frame_stack`` frames
    stacked and moved channels-first, as SB3 feeds its CNN policies: observations are
    ``[n_envs, frame_stack, 84, 84]`` uint8.
    ``monitor_dir`` keeps the Monitor CSV files there (appended to when they exist, so a
    resumed run keeps its earlier episodes).
    """
    check_env_id(env_id)
    if env_config.atari and not is_atari(env_id):
        raise UsageError(
            f"env.atari is true but {env_id} is not an Atari (ALE) game; set env.atari: false, or use an ALE id "
            "such as PongNoFrameskip-v4", parameter="env.atari",
        )
    # SB3's Monitor writes its CSV header only when it overrides the file: append only to an existing one
    resumed = monitor_dir is not None and (Path(monitor_dir) / "0.monitor.csv").is_file()
    monitor_kwargs = {"override_existing": not resumed}
    env_kwargs = env_config.env_kwargs  # keyword arguments of gymnasium.make, e.g. max_episode_steps
    try:
        if not env_config.atari:
            return make_vec_env(env_id, n_envs=n_envs, seed=seed, monitor_dir=monitor_dir,
                                monitor_kwargs=monitor_kwargs, env_kwargs=env_kwargs)
        venv = make_atari_env(
            env_id,
            n_envs=n_envs,
            seed=seed,
            monitor_dir=monitor_dir,
            monitor_kwargs=monitor_kwargs,
            env_kwargs=env_kwargs,
            wrapper_kwargs=env_config.wrapper_kwargs,
        )
    except UsageError:
        raise
    except (TypeError, ValueError, gym.error.Error) as error:  # a keyword the env or the wrapper does not take
        given = {"env.env_kwargs": dict(env_kwargs), "env.wrapper_kwargs": dict(env_config.wrapper_kwargs)}
        settings = ", ".join(f"{name} {value}" for name, value in given.items() if value)
        problem = f"cannot make {env_id} with {settings or 'its settings'} ({error})"
        raise UsageError(f"{problem}; fix or drop the setting") from None
    frame_stack = env_config.frame_stack
    return VecTransposeImage(VecFrameStack(venv, frame_stack) if frame_stack > 1 else venv)

"""Evaluation rollouts on fixed seeds: rewards, episode lengths and spike rates per layer."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from stable_baselines3 import DQN
from stable_baselines3.common.evaluation import evaluate_policy

from spikerl.envs import EVAL_SEED_BASE, check_agent_fits, make_env
from spikerl.errors import UsageError
from spikerl.progress import progress_bar
from spikerl.settings import EVAL_SEED_HINT, EnvSettings
from spikerl.snn import SpikingQNetwork


@dataclass
class Evaluation:
    """Per-episode results of one evaluation, and spike rates per neuron layer (SNN only)."""

    rewards: list[float]
    lengths: list[int]
    spike_rates: dict[str, float] = field(default_factory=dict)
    episode_digests: list[str] = field(default_factory=list)
    """Per episode, a digest of the observations the agent acted on, in order (``_EpisodeWatch``)."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.rewards))

    @property
    def std(self) -> float:
        return float(np.std(self.rewards))

    @property
    def distinct_episodes(self) -> int | None:
        return count_distinct_episodes(self.rewards, self.lengths, self.episode_digests)

    def as_dict(self) -> dict[str, Any]:
        return {"mean_reward": self.mean, "std_reward": self.std, **asdict(self)}


def count_distinct_episodes(rewards: list[float], lengths: list[int], digests: list[str]) -> int | None:
    """Episodes that differ in their observations, reward or length (None without a digest of
    each episode's observations): a deterministic env (Pong without sticky actions) and a
    greedy agent replay the same game from starts that its reset no-ops do not tell apart, so
    10 seeds may give fewer games. Equal rewards and lengths alone do not make a replay
    (CartPole's 500-step episodes), and nor do equal actions where actions differ that the
    game does not tell apart (Pong's NOOP and FIRE)."""
    if len(digests) != len(rewards):
        return None
    return len(set(zip(digests, rewards, lengths)))


def evaluate_agent(
    model: DQN,
    env_id: str,
    env_config: EnvSettings,
    episodes: int,
    seed: int = EVAL_SEED_BASE,
    n_envs: int = 10,
    progress: str | None = None,
) -> Evaluation:
    """Run ``episodes`` greedy episodes on ``n_envs`` environments seeded ``seed, seed+1, ...``.

    The same arguments give the same episodes, so agents evaluated with them are compared on
    the same games. Rewards and lengths come from the ``Monitor`` under the wrappers (full,
    unclipped games on Atari; lengths are then in raw frames). ``progress``: the label of a
    progress bar of the episodes played (None: no bar).
    """
    if episodes < 1:
        raise UsageError(f"episodes must be at least 1, got {episodes}", parameter="episodes")
    if seed < EVAL_SEED_BASE:
        raise UsageError(f"seed must be at least {EVAL_SEED_BASE}, got {seed}; {EVAL_SEED_HINT}", parameter="seed")
    env = make_env(env_id, env_config, seed=seed, n_envs=min(episodes, n_envs))
    check_agent_fits(model, env, env_id)
    q_net = model.policy.q_net
    recording: contextlib.AbstractContextManager[dict[str, float]] = (
        q_net.recording_spikes() if isinstance(q_net, SpikingQNetwork) else contextlib.nullcontext({})
    )
    try:
        with recording as spike_rates, progress_bar(episodes, progress or "", "episode", progress is not None) as bar:
            watch = _EpisodeWatch(bar, env.num_envs)
            rewards, lengths = evaluate_policy(
                model, env, n_eval_episodes=episodes, return_episode_rewards=True, callback=watch
            )
            bar.update(episodes - bar.n)
    finally:
        env.close()
    assert isinstance(rewards, list) and isinstance(lengths, list)  # per episode (return_episode_rewards)
    return Evaluation([float(r) for r in rewards], [int(n) for n in lengths], spike_rates, watch.digests)


class _EpisodeWatch:
    """An ``evaluate_policy`` callback (called at every step of every environment it still
    counts episodes of, before that step's episode is recorded): moves ``bar`` to the episodes
    finished and keeps, per finished episode in ``evaluate_policy``'s order, a digest of the
    observations the agent acted on in it."""

    def __init__(self, bar: Any, n_envs: int):
        self.bar = bar
        self.running = [hashlib.blake2b(digest_size=8) for _ in range(n_envs)]
        self.digests: list[str] = []

    def __call__(self, local_variables: dict[str, Any], global_variables: dict[str, Any]) -> None:
        finished = len(local_variables["episode_rewards"])
        if finished > self.bar.n:
            self.bar.update(finished - self.bar.n)
        index = local_variables["i"]
        self.running[index].update(np.ascontiguousarray(local_variables["observations"][index]).tobytes())
        # evaluate_policy records an episode where its env is done and, under a Monitor, the
        # game is over ("episode" in info; an Atari life lost is done without it)
        if local_variables["done"] and (not local_variables["is_monitor_wrapped"] or "episode" in local_variables["info"]):
            self.digests.append(self.running[index].hexdigest())
            self.running[index] = hashlib.blake2b(digest_size=8)

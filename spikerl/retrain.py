"""Retraining objectives for one IIR stage: ``distill`` (default) and ``td`` (the paper's).

``td``      SB3's own DQN training loop on the spiking model (TD loss, replay buffer,
            target network). ``steps`` counts agent steps.
``distill`` fits the spiking student to the ANN teacher on a pool of states gathered from
            teacher rollouts and, at every stage, from rollouts of the student itself (so it
            learns to act well on the states it reaches). The loss is scale-free:
            ``CE(softmax(Q_s / tau), argmax_a Q_t) + advantage_weight * MSE(A_s, A_t) / sigma^2``:
            cross-entropy towards the teacher's greedy action, plus (optionally) a fit of the
            action advantages ``A = Q - mean_a Q``; ``sigma`` is the teacher advantages' std
            over the pool and ``tau = temperature * sigma``. ``steps`` counts gradient steps.

            Measured on CartPole-v1 (T=1 reward over 30 episodes, seed 2's ANN): the
            cross-entropy alone 500.0; with advantage MSE and a softened KL added 472.6;
            advantage MSE + softened KL without it 189-225 (and 152 over 100 episodes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.vec_env import VecEnv
from tqdm.auto import tqdm

from spikerl.convert import collect_observations

OBJECTIVES = ("distill", "td")


class Retrainer(Protocol):
    def retrain(self, steps: int) -> None:
        """Retrain the student at its current T for ``steps`` steps."""


class TDRetrainer:
    """The paper's objective: DQN's TD loss through SB3's ``learn`` loop, stage by stage.

    :param teacher: the ANN agent, whose rollouts can fill the replay buffer first
    :param student: the spiking agent (trained in place); its DQN settings (learning rate,
        target network interval, exploration, ...) come from the preset's ``td`` section
    :param teacher_transitions: transitions of teacher rollouts put in the replay buffer
        before the first stage
    :param teacher_epsilon: exploration rate of those rollouts
    :param fresh_optimizer: start every stage with fresh Adam moments (as the authors do)
    :param eval_env: environment (seeded apart from the evaluation seeds) on which the student is
        evaluated every ``eval_freq`` agent steps; each stage ends with the weights that scored
        best there (as ``spikerl train`` keeps the ANN's best checkpoint); None: the last weights
    :param eval_episodes: greedy episodes of those evaluations
    :param seed: seed of the teacher rollouts' exploration
    """

    def __init__(
        self,
        teacher: DQN,
        student: DQN,
        teacher_transitions: int = 0,
        teacher_epsilon: float = 0.1,
        fresh_optimizer: bool = False,
        eval_env: VecEnv | None = None,
        eval_freq: int = 1000,
        eval_episodes: int = 5,
        seed: int = 0,
        progress: bool = True,
    ):
        self.teacher, self.student, self.progress = teacher, student, progress
        self.fresh_optimizer = fresh_optimizer
        self.eval_env, self.eval_freq, self.eval_episodes = eval_env, eval_freq, eval_episodes
        if teacher_transitions:
            self._add_teacher_transitions(teacher_transitions, teacher_epsilon, np.random.default_rng(seed))

    def _add_teacher_transitions(self, n_transitions: int, epsilon: float, rng: np.random.Generator) -> None:
        """Roll out the teacher epsilon-greedily in the student's env, storing into its replay buffer."""
        student, env = self.student, self.student.get_env()
        student._last_obs = env.reset()
        for _ in range(-(-n_transitions // env.num_envs)):
            actions, _ = self.teacher.predict(student._last_obs, deterministic=True)
            explore = rng.random(env.num_envs) < epsilon
            actions = np.where(explore, rng.integers(env.action_space.n, size=env.num_envs), actions)
            new_obs, rewards, dones, infos = env.step(actions)
            student._store_transition(student.replay_buffer, actions, new_obs, rewards, dones, infos)

    def retrain(self, steps: int) -> None:
        if self.fresh_optimizer:
            self.student.policy.optimizer.state.clear()
        q_net = self.student.q_net
        self.student.q_net_target.load_state_dict(q_net.state_dict())
        best = _BestWeights()
        evaluation = None
        if self.eval_env is not None:
            evaluation = EvalCallback(self.eval_env, callback_on_new_best=best, n_eval_episodes=self.eval_episodes, eval_freq=self.eval_freq, verbose=0)
        self.student.learn(steps, callback=evaluation, reset_num_timesteps=False, progress_bar=self.progress)
        if best.state is not None:
            q_net.load_state_dict(best.state)
            self.student.q_net_target.load_state_dict(best.state)


class _BestWeights(BaseCallback):
    """Called by ``EvalCallback`` on a new best mean reward: keeps a copy of the Q-network's weights."""

    def __init__(self):
        super().__init__()
        self.state: dict[str, torch.Tensor] | None = None

    def _on_step(self) -> bool:
        self.state = {name: value.clone() for name, value in self.model.q_net.state_dict().items()}
        return True


#: Seeds of ``td``'s in-stage evaluation environment: the training seed plus this (below the evaluation seeds).
TD_EVAL_SEED_OFFSET = 100_000

#: Keys of the preset's ``td`` section that configure ``TDRetrainer``; the others are ``DQN`` arguments.
TD_RETRAINER_OPTIONS = ("teacher_transitions", "teacher_epsilon", "fresh_optimizer", "keep_best", "eval_freq", "eval_episodes")


def td_dqn_kwargs(td_settings: dict[str, Any]) -> dict[str, Any]:
    """The ``DQN`` keyword arguments of the preset's ``td`` section (without ``TDRetrainer``'s)."""
    return {key: value for key, value in td_settings.items() if key not in TD_RETRAINER_OPTIONS}


class DistillationRetrainer:
    """Teaches the student the teacher's greedy actions (and optionally advantages) on visited states.

    :param teacher: the ANN agent
    :param student: the spiking agent (trained in place)
    :param env: environment for teacher and student rollouts
    :param teacher_states: observations from teacher rollouts (epsilon 0.05) in the initial pool
    :param student_states: observations added from student rollouts before each stage
    :param epsilon: exploration rate of those rollouts
    :param cosine: anneal the learning rate to 0 over each stage (restarting at every stage)
    """

    def __init__(
        self,
        teacher: DQN,
        student: DQN,
        env: VecEnv,
        teacher_states: int = 5000,
        student_states: int = 5000,
        epsilon: float = 0.2,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        temperature: float = 0.1,
        advantage_weight: float = 0.0,
        max_pool: int = 100_000,
        cosine: bool = True,
        seed: int = 0,
        progress: bool = True,
    ):
        self.teacher, self.student, self.env = teacher, student, env
        self.student_states, self.epsilon = student_states, epsilon
        self.batch_size, self.temperature, self.advantage_weight = batch_size, temperature, advantage_weight
        self.max_pool, self.progress = max_pool, progress
        self.learning_rate, self.cosine = learning_rate, cosine
        self.rng = np.random.default_rng(seed)
        self.optimizer = torch.optim.Adam(student.q_net.parameters(), lr=learning_rate)
        initial_states = collect_observations(teacher, env, teacher_states, epsilon=0.05, rng=self.rng)
        self.states = np.empty((0, *initial_states.shape[1:]), dtype=initial_states.dtype)
        self.teacher_q = torch.empty(0, int(teacher.action_space.n))
        self._add_states(initial_states)

    @torch.no_grad()
    def _add_states(self, states: np.ndarray) -> None:
        """Append ``states [N, ...]`` and the teacher's Q-values ``[N, n_actions]`` to the pool."""
        q_values = torch.cat([self.teacher.q_net(self._tensor(chunk)).cpu() for chunk in np.array_split(states, max(1, len(states) // 1024))])
        self.states = np.concatenate([self.states, states])[-self.max_pool :]
        self.teacher_q = torch.cat([self.teacher_q, q_values])[-self.max_pool :]
        advantages = self.teacher_q - self.teacher_q.mean(dim=1, keepdim=True)
        self.sigma = float(advantages.std()) or 1.0

    def _tensor(self, states: np.ndarray) -> torch.Tensor:
        return self.student.policy.obs_to_tensor(states)[0]

    def loss(self, student_q: torch.Tensor, teacher_q: torch.Tensor) -> torch.Tensor:
        """The distillation loss for Q-values ``[B, n_actions]`` of student and teacher."""
        loss = F.cross_entropy(student_q / (self.temperature * self.sigma), teacher_q.argmax(dim=1))
        if self.advantage_weight:
            student_advantage = student_q - student_q.mean(dim=1, keepdim=True)
            teacher_advantage = teacher_q - teacher_q.mean(dim=1, keepdim=True)
            loss = loss + self.advantage_weight * F.mse_loss(student_advantage, teacher_advantage) / self.sigma**2
        return loss

    def retrain(self, steps: int) -> None:
        if self.student_states:
            self._add_states(collect_observations(self.student, self.env, self.student_states, self.epsilon, self.rng))
        q_net = self.student.q_net
        q_net.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(steps, 1)) if self.cosine else None
        for _ in tqdm(range(steps), desc=f"distill T={q_net.timesteps}", disable=not self.progress, unit="step"):
            batch = self.rng.integers(len(self.states), size=self.batch_size)
            loss = self.loss(q_net(self._tensor(self.states[batch])), self.teacher_q[batch].to(q_net.device))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            q_net.constrain_neurons()
            if schedule is not None:
                schedule.step()
        q_net.eval()
        self.student.q_net_target.load_state_dict(q_net.state_dict())


def make_retrainer(
    objective: str, teacher: DQN, student: DQN, env: VecEnv, settings: dict[str, Any], seed: int, progress: bool,
    make_eval_env: Callable[[], VecEnv] | None = None,
) -> Retrainer:
    """The retrainer for ``objective``, configured by the preset's ``compress`` section
    (``make_eval_env``: the environment of ``td``'s in-stage evaluations with ``keep_best``)."""
    if objective == "td":
        td = {key: value for key, value in settings.get("td", {}).items() if key in TD_RETRAINER_OPTIONS}
        eval_env = make_eval_env() if td.pop("keep_best", False) and make_eval_env is not None else None
        return TDRetrainer(teacher, student, eval_env=eval_env, seed=seed, progress=progress, **td)
    distill = {"teacher_states": int(settings.get("teacher_states", 5000)), **settings.get("distill", {})}
    return DistillationRetrainer(teacher, student, env, seed=seed, progress=progress, **distill)

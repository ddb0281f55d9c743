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

from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN
from stable_baselines3.common.vec_env import VecEnv
from tqdm.auto import tqdm

from spikerl.convert import collect_observations
from spikerl.policy import constrain_after_each_step
from spikerl.settings import CompressSettings, DistillSettings


class Retrainer(Protocol):
    def retrain(self, steps: int) -> None:
        """Retrain the student at its current T for ``steps`` steps."""


class TDRetrainer:
    """The paper's objective: DQN's TD loss through SB3's ``learn`` loop."""

    def __init__(self, student: DQN, progress: bool = True):
        self.student, self.progress = student, progress

    def retrain(self, steps: int) -> None:
        self.student.learn(steps, reset_num_timesteps=False, progress_bar=self.progress)


class DistillationRetrainer:
    """Teaches the student the teacher's greedy actions (and optionally advantages) on visited states.

    :param teacher: the ANN agent
    :param student: the spiking agent (trained in place)
    :param env: environment for teacher and student rollouts
    :param settings: the objective's settings (pool sizes, exploration, optimizer, loss)
    :param teacher_states: observations from teacher rollouts (epsilon 0.05) in the initial pool
    """

    def __init__(
        self,
        teacher: DQN,
        student: DQN,
        env: VecEnv,
        settings: DistillSettings,
        teacher_states: int,
        seed: int = 0,
        progress: bool = True,
        writer: Any = None,
    ):
        self.teacher, self.student, self.env, self.settings = teacher, student, env, settings
        self.progress, self.writer = progress, writer
        self.steps_done = 0  # over all stages: the x axis of the TensorBoard scalars
        self.rng = np.random.default_rng(seed)
        self.optimizer = torch.optim.Adam(student.q_net.parameters(), lr=settings.learning_rate)
        constrain_after_each_step(self.optimizer, student.q_net)
        initial_states = collect_observations(teacher, env, teacher_states, epsilon=0.05, rng=self.rng)
        self.states = np.empty((0, *initial_states.shape[1:]), dtype=initial_states.dtype)
        self.teacher_q = torch.empty(0, int(teacher.action_space.n))
        self._add_states(initial_states)

    @torch.no_grad()
    def _add_states(self, states: np.ndarray) -> None:
        """Append ``states [N, ...]`` and the teacher's Q-values ``[N, n_actions]`` to the pool."""
        chunks = np.array_split(states, max(1, len(states) // 1024))
        q_values = torch.cat([self.teacher.q_net(self._tensor(chunk)).cpu() for chunk in chunks])
        self.states = np.concatenate([self.states, states])[-self.settings.max_pool :]
        self.teacher_q = torch.cat([self.teacher_q, q_values])[-self.settings.max_pool :]
        advantages = self.teacher_q - self.teacher_q.mean(dim=1, keepdim=True)
        self.sigma = float(advantages.std()) or 1.0

    def _tensor(self, states: np.ndarray) -> torch.Tensor:
        return self.student.policy.obs_to_tensor(states)[0]

    def loss(self, student_q: torch.Tensor, teacher_q: torch.Tensor) -> torch.Tensor:
        """The distillation loss for Q-values ``[B, n_actions]`` of student and teacher."""
        loss = F.cross_entropy(student_q / (self.settings.temperature * self.sigma), teacher_q.argmax(dim=1))
        if self.settings.advantage_weight:
            student_advantage = student_q - student_q.mean(dim=1, keepdim=True)
            teacher_advantage = teacher_q - teacher_q.mean(dim=1, keepdim=True)
            loss = loss + self.settings.advantage_weight * F.mse_loss(student_advantage, teacher_advantage) / self.sigma**2
        return loss

    def retrain(self, steps: int) -> None:
        settings = self.settings
        if settings.student_states:
            self._add_states(collect_observations(self.student, self.env, settings.student_states, settings.epsilon, self.rng))
        q_net = self.student.q_net
        q_net.train()
        for group in self.optimizer.param_groups:
            group["lr"] = settings.learning_rate
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(steps, 1)) if settings.cosine else None
        for _ in tqdm(range(steps), desc=f"distill T={q_net.timesteps}", disable=not self.progress, unit="step"):
            batch = self.rng.integers(len(self.states), size=settings.batch_size)
            loss = self.loss(q_net(self._tensor(self.states[batch])), self.teacher_q[batch].to(q_net.device))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()  # the neuron constraints follow through the step hook
            if self.writer is not None:
                self.writer.add_scalar("distill/loss", loss.item(), self.steps_done)
                self.writer.add_scalar("distill/learning_rate", self.optimizer.param_groups[0]["lr"], self.steps_done)
            self.steps_done += 1
            if schedule is not None:
                schedule.step()
        q_net.eval()
        self.student.q_net_target.load_state_dict(q_net.state_dict())


def make_retrainer(
    teacher: DQN, student: DQN, env: VecEnv, settings: CompressSettings, seed: int, progress: bool, writer: Any = None
) -> Retrainer:
    """The retrainer of ``settings.objective``, configured by the rest of ``settings``; ``writer``
    (a TensorBoard ``SummaryWriter``) receives the distillation loss and learning rate per step."""
    if settings.objective == "td":
        return TDRetrainer(student, progress)
    distill, teacher_states = settings.distill, settings.teacher_states
    return DistillationRetrainer(teacher, student, env, distill, teacher_states, seed=seed, progress=progress, writer=writer)

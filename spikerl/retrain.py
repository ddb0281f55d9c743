"""Retraining objectives for one IIR stage: ``distill`` (default) and ``td`` (the paper's).

``td``      SB3's own DQN training loop on the spiking model (TD loss, replay buffer,
            target network), with a replay buffer filled from the teacher first and the
            best weights of each stage kept (see ``TDRetrainer``). ``steps`` counts agent steps.

            Measured on CartPole-v1, ANN seed 0, schedule 5,4,3,2,1 (T=1 reward, 20 episodes):
            the authors' Pong settings with lr 1e-4 (theirs 1e-5; their CartPole code is not public):
            target synced every step, epsilon 0.01: 10.7 (issue 15) at
            10k steps/stage; a target network synced every 500 steps 201.2; plus 10k teacher
            transitions and fresh Adam per stage 15.2 already at T=4; plus best-of-stage weights
            132.9 at T=3; lr 1e-3 101.5 at T=4. The preset's recipe (rl-baselines3-zoo's DQN
            settings: lr 2.3e-3, 128 gradient steps every 256 agent steps, target every 10;
            teacher-filled replay, fresh Adam, best-of-stage weights), 4000 steps/stage, over 100
            episodes for ANN seeds 0/1/2: 360.8 / 185.3 / 66.3 (stages T=5..3 reach 290-500 on
            20 episodes, then reward falls with T). Directly to T=1 with the same 20000 agent
            steps: 269.7 / 197.9 / 205.4.
            Bootstrapping from the frozen ANN instead (``target: teacher``), the same recipe,
            ANN seed 0, 20 episodes: T=1 201.6 (T=5 197.2); with lr 3e-4 104.7 (T=5 233.2). Worse
            than the student's own target network, so ``student`` stays the default.
            At 10000 agent steps per stage (the preset's td budget; the ablation grid, 100
            episodes, the grid's ANN seeds 0/1/2): 5,4,3,2,1 T=1 500.0 / 500.0 / 486.8, while
            the direct jump to T=1 stays at 128-206 with 10000 or 50000 steps (README, Ablations).
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

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.vec_env import VecEnv

from spikerl.convert import collect_observations
from spikerl.policy import constrain_after_each_step, spiking_q_net
from spikerl.progress import ProgressCallback, progress_bar
from spikerl.settings import CompressSettings, DistillSettings, TDSettings

#: ``td``'s in-stage evaluations play training seed + this (below the evaluation seeds).
TD_EVAL_SEED_OFFSET = 100_000


class Retrainer(Protocol):
    def retrain(self, steps: int) -> None:
        """Retrain the student at its current T for ``steps`` steps."""


class TDRetrainer:
    """The paper's objective: DQN's TD loss through SB3's ``learn`` loop, stage by stage.

    The student's DQN settings (learning rate, target network interval, exploration, ...) are
    ``settings.dqn``. Before the first stage the replay buffer can be filled from teacher
    rollouts; every stage starts with the target network synced to the stage's initial weights,
    optionally with fresh Adam moments (as the authors do), and, with ``settings.keep_best``, ends
    with the weights that scored best on ``eval_env`` (as ``spikerl train`` keeps the ANN's best
    checkpoint) instead of the last ones.

    :param teacher: the ANN agent
    :param student: the spiking agent (trained in place)
    :param settings: the preset's ``compress.td`` section
    :param eval_env: environment of the in-stage evaluations (seeded apart from the evaluation
        seeds); needed by ``settings.keep_best``
    :param seed: seed of the teacher rollouts' exploration
    :param steps_done: agent steps of the stages already done (a resumed run): SB3's
        ``learning_starts`` and the other step-counted settings count on from there
    """

    def __init__(
        self, teacher: DQN, student: DQN, settings: TDSettings, eval_env: VecEnv | None = None,
        seed: int = 0, progress: bool = True, steps_done: int = 0,
    ):
        self.teacher, self.student, self.settings, self.progress = teacher, student, settings, progress
        student.num_timesteps = steps_done
        self.eval_env = eval_env if settings.keep_best else None
        if settings.teacher_transitions:
            self._add_teacher_transitions(settings.teacher_transitions, settings.teacher_epsilon, np.random.default_rng(seed))

    def _add_teacher_transitions(self, n_transitions: int, epsilon: float, rng: np.random.Generator) -> None:
        """Roll out the teacher epsilon-greedily in the student's env, storing into its replay buffer."""
        student, env, replay_buffer = self.student, self.student.get_env(), self.student.replay_buffer
        assert env is not None and replay_buffer is not None  # the student was made with its env
        assert isinstance(env.action_space, spaces.Discrete), env.action_space  # DQN's only action space
        observations = cast(np.ndarray, env.reset())  # spikerl's envs have Box observations
        student._last_obs = observations
        for _ in range(-(-n_transitions // env.num_envs)):
            actions, _ = self.teacher.predict(observations, deterministic=True)
            explore = rng.random(env.num_envs) < epsilon
            actions = np.where(explore, rng.integers(env.action_space.n, size=env.num_envs), actions)
            new_obs, rewards, dones, infos = env.step(actions)
            observations = cast(np.ndarray, new_obs)
            student._store_transition(replay_buffer, actions, observations, rewards, dones, infos)

    def retrain(self, steps: int) -> None:
        if self.settings.fresh_optimizer:
            self.student.policy.optimizer.state.clear()
        q_net, target = self.student.q_net, self.student.q_net_target
        target.load_state_dict(q_net.state_dict())
        best = _BestWeights()
        evaluation = None
        if self.eval_env is not None:
            evaluation = EvalCallback(
                self.eval_env, callback_on_new_best=best, n_eval_episodes=self.settings.eval_episodes,
                eval_freq=self.settings.eval_freq, verbose=0,
            )
        with _bootstrapping_from(self.student, self.teacher if self.settings.target == "teacher" else None):
            callbacks: list[BaseCallback] = [evaluation] if evaluation else []
            if self.progress:
                callbacks.append(ProgressCallback(f"td T={q_net.timesteps}"))
            self.student.learn(steps, callback=callbacks, reset_num_timesteps=False)
        if best.state is not None:
            q_net.load_state_dict(best.state)
            target.load_state_dict(best.state)


@contextmanager
def _bootstrapping_from(student: DQN, teacher: DQN | None) -> Iterator[None]:
    """With a ``teacher``, SB3's DQN loop takes its bootstrap targets from the teacher's Q-network
    (frozen: SB3's periodic target sync, which would copy the student into it, is off) for the
    length of the block; without one, it keeps the student's own target network."""
    if teacher is None:
        yield
        return
    target, interval = student.q_net_target, student.target_update_interval
    student.q_net_target, student.target_update_interval = teacher.q_net, sys.maxsize
    try:
        yield
    finally:
        student.q_net_target, student.target_update_interval = target, interval


class _BestWeights(BaseCallback):
    """Called by ``EvalCallback`` on a new best mean reward: keeps a copy of the Q-network's weights."""

    model: DQN

    def __init__(self):
        super().__init__()
        self.state: dict[str, torch.Tensor] | None = None

    def _on_step(self) -> bool:
        self.state = {name: value.clone() for name, value in self.model.q_net.state_dict().items()}
        return True


class DistillationRetrainer:
    """Teaches the student the teacher's greedy actions (and optionally advantages) on visited states.

    :param teacher: the ANN agent
    :param student: the spiking agent (trained in place)
    :param env: environment for teacher and student rollouts
    :param settings: the objective's settings (pool sizes, exploration, optimizer, loss)
    :param teacher_states: observations from teacher rollouts (epsilon 0.05) in the initial pool
    :param steps_done: gradient steps of the stages already done (a resumed run)
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
        steps_done: int = 0,
    ):
        self.teacher, self.student, self.env, self.settings = teacher, student, env, settings
        self.progress, self.writer = progress, writer
        self.steps_done = steps_done  # over all stages: the x axis of the TensorBoard scalars
        self.rng = np.random.default_rng(seed)
        self.optimizer = torch.optim.Adam(student.q_net.parameters(), lr=settings.learning_rate)
        constrain_after_each_step(self.optimizer, spiking_q_net(student))
        initial_states = collect_observations(teacher, env, teacher_states, epsilon=0.05, rng=self.rng)
        self.states = np.empty((0, *initial_states.shape[1:]), dtype=initial_states.dtype)
        assert isinstance(teacher.action_space, spaces.Discrete), teacher.action_space  # DQN's only action space
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
        return cast(torch.Tensor, self.student.policy.obs_to_tensor(states)[0])  # Box observations

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
        with progress_bar(steps, f"distill T={q_net.timesteps}", "step", self.progress) as bar:
            for _ in range(steps):
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
                bar.update()
        q_net.eval()
        self.student.q_net_target.load_state_dict(q_net.state_dict())


def make_retrainer(
    teacher: DQN, student: DQN, env: VecEnv, settings: CompressSettings, seed: int, progress: bool, writer: Any = None,
    make_eval_env: Callable[[], VecEnv] | None = None, stages_done: int = 0,
) -> Retrainer:
    """The retrainer of ``settings.objective``, configured by the rest of ``settings``; ``writer``
    (a TensorBoard ``SummaryWriter``) receives the distillation loss and learning rate per step;
    ``make_eval_env`` makes the environment of ``td``'s in-stage evaluations (only when they run);
    ``stages_done``: stages a resumed run has finished, whose steps its step counts go on from."""
    steps_done = stages_done * settings.stage_steps
    if settings.objective == "td":
        eval_env = make_eval_env() if settings.td.keep_best and make_eval_env is not None else None
        return TDRetrainer(teacher, student, settings.td, eval_env, seed=seed, progress=progress, steps_done=steps_done)
    distill, teacher_states = settings.distill, settings.teacher_states
    return DistillationRetrainer(
        teacher, student, env, distill, teacher_states, seed=seed, progress=progress, writer=writer, steps_done=steps_done
    )

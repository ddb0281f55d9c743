"""`spikerl train`: an ordinary (ANN) DQN agent with SB3, resumable, keeping its best model.

A run folder holds:

``config.yaml``          the preset as run (with command-line overrides)
``checkpoint.zip``       periodic, resumable checkpoint (model + optimizer + counters)
``replay_buffer_N.pkl``  written when the run stops (finished or interrupted) at step N,
                         for resuming from the checkpoint of that same step
``best_model.zip``       the model with the best evaluation so far
``ann.zip``              the model to hand to ``spikerl compress``: best model, fresh optimizer
``evaluations.npz``      SB3's evaluation log; ``0.monitor.csv`` the training episodes
``training_curve.png``   evaluation and training-episode rewards against agent steps
"""

from __future__ import annotations

import signal
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback

from spikerl.checkpoints import atomic_path, save_model, writable_folder
from spikerl.config import RunConfig, read_run_config
from spikerl.envs import EVAL_SEED_BASE, check_training_seed, make_env
from spikerl.errors import UsageError
from spikerl.plots import plot_training_curve
from spikerl.run_folder import RunFolder
from spikerl.settings import Settings
from spikerl.tensorboard import check_tensorboard
from spikerl.zoo import write_zoo_layout


class AtomicCheckpointCallback(BaseCallback):
    """Every ``save_freq`` environment steps, replace ``path`` with the current model."""

    def __init__(self, path: Path, save_freq: int):
        super().__init__()
        self.path, self.save_freq = path, save_freq

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            save_model(self.model, self.path)
        return True


class SaveBestCallback(BaseCallback):
    """Called by ``EvalCallback`` on a new best mean reward: saves the model atomically."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def _on_step(self) -> bool:
        save_model(self.model, self.path, keep_optimizer_state=False)
        return True


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run saves a checkpoint and can be resumed."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()


def _restore_evaluations(callback: EvalCallback, path: Path) -> None:
    """Continue the evaluation log and the best-so-far of an earlier run of this folder."""
    if not path.is_file():
        return
    try:
        log = np.load(path)
    except (OSError, ValueError, EOFError):  # SB3 writes it in place: a kill can truncate it
        print(f"warning: {path} is damaged; the evaluation log starts afresh")
        return
    callback.evaluations_timesteps = log["timesteps"].tolist()
    callback.evaluations_results = log["results"].tolist()
    callback.evaluations_length = log["ep_lengths"].tolist()
    if len(log["results"]):
        callback.best_mean_reward = float(np.max(np.mean(log["results"], axis=1)))


def _load_checkpoint(path: Path, **kwargs: Any) -> DQN:
    """``DQN.load`` of this run's own (trusted) checkpoint, without SB3's false n-step warning.

    SB3 warns that ``n_steps`` is ignored whenever a saved model names its replay buffer
    class, but the ``NStepReplayBuffer`` it chose itself is saved with ``n_steps`` and
    ``gamma`` in ``replay_buffer_kwargs``, so the n-step returns carry on.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`n_steps=\d+` is ignored because a custom `replay_buffer_class`")
        return DQN.load(path, **kwargs)


def train(
    env_id: str,
    settings: Settings,
    out_dir: str | Path,
    seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    verbose: int = 1,
    command: str = "",
    tensorboard: str | Path | None = None,
) -> Path:
    """Train (or resume) a DQN agent as ``settings`` describe; returns the path of ``ann.zip``.

    ``command`` (the command line, if any) is added to the run's ``config.yaml``;
    ``tensorboard``: a folder where SB3 logs its training scalars for TensorBoard.
    """
    check_training_seed(seed)
    if tensorboard:
        check_tensorboard()
    out_dir = Path(out_dir)
    folder = RunFolder(out_dir)
    train_cfg = settings.train
    total_timesteps = train_cfg.n_timesteps
    checkpoint = folder.checkpoint
    previous = read_run_config(out_dir)
    if resume and not checkpoint.is_file():
        raise UsageError(f"nothing to resume in {out_dir} ({checkpoint.name} missing); delete it and start again, or choose another --out")
    if not resume and previous is not None:
        if not checkpoint.is_file():
            raise UsageError(f"{out_dir} holds a run that stopped before its first checkpoint (nothing to resume); delete it or choose another --out")
        raise UsageError(f"{out_dir} already holds a run; continue it with --resume {out_dir}, delete it, or choose another --out")
    commands = (previous.commands if previous else []) + ([command] if command else [])
    with writable_folder(out_dir):
        RunConfig(env_id, seed, settings, commands).write(out_dir)

    env = make_env(env_id, settings.env, seed=seed, monitor_dir=str(out_dir))
    eval_env = make_env(env_id, settings.env, seed=EVAL_SEED_BASE)
    dqn_kwargs = dict(train_cfg.dqn)
    if resume:
        model = _load_checkpoint(checkpoint, env=env, device=device)
        buffer_path = folder.replay_buffer(model.num_timesteps)
        if buffer_path.is_file():  # only the buffer saved with this very checkpoint
            model.load_replay_buffer(buffer_path)
        else:  # refill with random actions, as at the start of a run
            model.learning_starts = model.num_timesteps + int(dqn_kwargs.get("learning_starts", 100))
    else:
        model = DQN(train_cfg.policy, env, seed=seed, device=device, verbose=0, **dqn_kwargs)

    if tensorboard:
        model.tensorboard_log = str(tensorboard)
    evaluation = EvalCallback(
        eval_env,
        n_eval_episodes=train_cfg.eval_episodes,
        eval_freq=train_cfg.eval_freq,
        log_path=str(out_dir),
        callback_on_new_best=SaveBestCallback(folder.best_model),
        verbose=verbose,
    )
    if resume:
        _restore_evaluations(evaluation, folder.evaluations)
    callbacks = CallbackList([AtomicCheckpointCallback(checkpoint, train_cfg.checkpoint_freq), evaluation])
    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        model.learn(
            total_timesteps=max(total_timesteps - model.num_timesteps, 0),
            callback=callbacks,
            reset_num_timesteps=not resume,
            progress_bar=progress,
        )
    except KeyboardInterrupt:
        print(f"interrupted at step {model.num_timesteps}; saving a checkpoint to resume with --resume {out_dir}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        save_model(model, checkpoint)
        if train_cfg.save_replay_buffer:
            for stale in out_dir.glob(folder.replay_buffer("*").name):
                stale.unlink()
            with atomic_path(folder.replay_buffer(model.num_timesteps)) as temporary, open(temporary, "wb") as file:
                model.save_replay_buffer(file)
        env.close()
        eval_env.close()

    best = folder.best_model
    source = _load_checkpoint(best, device=device) if best.is_file() else model
    save_model(source, folder.ann, keep_optimizer_state=False)
    write_zoo_layout(out_dir, env_id, seed, settings, folder.ann)  # so rl-zoo3's enjoy plays this folder
    plot_training_curve(out_dir, folder.training_curve, settings.env.frames_per_step)
    return folder.ann

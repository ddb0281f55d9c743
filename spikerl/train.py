"""`spikerl train`: an ordinary (ANN) DQN agent with SB3, resumable, keeping its best model.

A run folder holds:

``config.yaml``          the settings as run (with command-line overrides, ``n_timesteps`` the
                         run's target step count)
``checkpoint.json``,     spikerl's resumable training checkpoint (weights, optimizer, counters,
``checkpoint_N.pt``,     random states; the replay buffer when the run stopped at step N):
``replay_buffer_N.npz``  see ``spikerl.training_checkpoint``; nothing in it is unpickled
``best_model.pt``        the policy with the best evaluation so far (of this run only)
``ann.zip``              the model to hand to ``spikerl compress``: best policy, fresh optimizer,
                         an SB3 zip that plain ``DQN.load`` opens
``evaluations.npz``      SB3's evaluation log; ``0.monitor.csv`` the training episodes
``training_curve.png``   evaluation and training-episode rewards against agent steps

A fresh run refuses a folder holding a run or results unless ``force`` (then the earlier
run's files are removed first); the folder is locked for the life of the run.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import zipfile
from contextlib import ExitStack, closing
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecEnv

from spikerl.checkpoints import (
    TEMPORARY_SUFFIX,
    atomic_path,
    open_own_file,
    save_model,
    signals_held,
    stop_signals_as_interrupt,
    write_text,
)
from spikerl.config import RunConfig, read_run_config
from spikerl.envs import EVAL_SEED_BASE, check_env_id, check_training_seed, make_env, with_sticky_actions
from spikerl.errors import UsageError
from spikerl.loading import check_device, load_agent
from spikerl.locks import folder_lock
from spikerl.plots import plot_training_curve
from spikerl.progress import ProgressCallback
from spikerl.run_folder import RunFolder
from spikerl.settings import EnvSettings, Settings, TrainSettings, sb3_dqn_kwargs
from spikerl.tensorboard import check_tensorboard
from spikerl.training_checkpoint import (
    best_mean_reward,
    load_best,
    load_checkpoint,
    monitor_episode_lines,
    new_run_id,
    read_index,
    replay_buffer_step,
    save_best,
    save_checkpoint,
)
from spikerl.zoo import write_zoo_layout


class BFloat16DQN(DQN):
    """SB3's DQN with each call of ``train`` (its gradient steps: target and Q-network passes,
    loss, backward) under ``torch.autocast`` to bfloat16 on the model's device; the weights,
    the Adam state and the action selection stay float32. It saves the same zip as ``DQN``,
    which plain ``DQN.load`` opens."""

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            super().train(gradient_steps, batch_size)


class CheckpointCallback(BaseCallback):
    """Saves a training checkpoint (no replay buffer) each time it is called: ``EvalCallback``
    calls it after each evaluation, once the evaluation log is written."""

    model: DQN

    def __init__(self, folder: Path, run_id: str):
        super().__init__()
        self.folder, self.run_id = folder, run_id

    def _on_step(self) -> bool:
        save_checkpoint(self.model, self.folder, self.run_id, with_replay_buffer=False)
        return True


class PeriodicCheckpointCallback(CheckpointCallback):
    """Saves a training checkpoint every ``save_freq`` agent steps (counted from the run's start),
    except at evaluation steps (multiples of ``eval_freq``), whose checkpoint follows the evaluation.

    So the evaluation log never runs ahead of the last checkpoint (but for the moment between
    the two writes), and a run killed during an evaluation resumes from before it and
    evaluates that step again.
    """

    def __init__(self, folder: Path, run_id: str, save_freq: int, eval_freq: int):
        super().__init__(folder, run_id)
        self.save_freq, self.eval_freq = save_freq, eval_freq

    def _on_step(self) -> bool:
        step = self.model.num_timesteps
        return super()._on_step() if step % self.save_freq == 0 and step % self.eval_freq != 0 else True


class MissedEvaluationCallback(BaseCallback):
    """At the start of a resumed run: evaluate at its checkpoint's step if that is an evaluation
    step (a multiple of ``eval_freq``) missing from the log, as for a run stopped during that
    evaluation (its checkpoint is taken at that step), so the evaluation is not skipped for good.

    Listed after ``evaluation`` in the run's ``CallbackList``, which has started it by then.
    """

    model: DQN

    def __init__(self, evaluation: EvalCallback):
        super().__init__()
        self.evaluation = evaluation

    def _on_training_start(self) -> None:
        evaluation, step = self.evaluation, self.model.num_timesteps
        if step > 0 and step % evaluation.eval_freq == 0 and step not in evaluation.evaluations_timesteps:
            evaluation.n_calls = step - 1
            evaluation.on_step()  # its call count reaches the step: it evaluates and logs at this step

    def _on_step(self) -> bool:
        return True


class SaveBestCallback(BaseCallback):
    """Called by ``EvalCallback`` on a new best mean reward: keeps the policy as ``best_model.pt``."""

    model: DQN
    parent: EvalCallback  # set by the EvalCallback that calls it

    def __init__(self, folder: Path, run_id: str):
        super().__init__()
        self.folder, self.run_id = folder, run_id

    def _on_step(self) -> bool:
        save_best(self.model, self.folder, self.run_id, self.parent.best_mean_reward)
        return True


class WriteEvaluationsCallback(BaseCallback):
    """Called by ``EvalCallback`` after each evaluation: writes ``evaluations.npz`` atomically.

    (``EvalCallback`` writes its log in place, where a kill can truncate it; it is pointed at
    a temporary file instead, removed here.)
    """

    parent: EvalCallback  # set by the EvalCallback that calls it

    def __init__(self, folder: RunFolder):
        super().__init__()
        self.folder = folder

    def _on_step(self) -> bool:
        log = self.parent
        with atomic_path(self.folder.evaluations) as temporary, open(temporary, "wb") as file:
            np.savez(
                file, timesteps=log.evaluations_timesteps, results=log.evaluations_results, ep_lengths=log.evaluations_length
            )
        Path(f"{log.log_path}.npz").unlink(missing_ok=True)  # train() always sets log_path
        return True


class PrintEvaluationCallback(BaseCallback):
    """Called by ``EvalCallback`` after each evaluation: prints it as one line (agent steps,
    mean +- std reward, episodes, whether it is a new best), in place of SB3's three lines."""

    parent: EvalCallback  # set by the EvalCallback that calls it (through a CallbackList)

    def _on_training_start(self) -> None:
        self.best = self.parent.best_mean_reward  # a resumed run's best so far

    def _on_step(self) -> bool:
        log = self.parent
        rewards = log.evaluations_results[-1]
        new_best, self.best = log.best_mean_reward > self.best, log.best_mean_reward
        if self.verbose:
            print(
                f"evaluation at step {self.num_timesteps}: {np.mean(rewards):.2f} +- {np.std(rewards):.2f} "
                f"over {len(rewards)} episodes" + (", new best" if new_best else "")
            )
        return True


def _restore_evaluations(callback: EvalCallback, path: Path, checkpoint_step: int) -> None:
    """Continue the evaluation log of an earlier part of this run, up to its checkpoint at
    ``checkpoint_step``: evaluations after it (of a stretch a kill lost, which the resumed run
    plays again) are dropped. ``UsageError`` if the log is damaged."""
    if not path.is_file():
        return
    try:
        with np.load(path, allow_pickle=False) as log:
            timesteps, results, lengths = log["timesteps"], log["results"], log["ep_lengths"]
        if timesteps.ndim != 1 or results.ndim != 2 or lengths.shape != results.shape or len(timesteps) != len(results):
            raise ValueError("arrays of inconsistent shapes")
        if not (np.isfinite(results).all() and np.isfinite(timesteps).all()):
            raise ValueError("non-finite values")
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:  # TypeError: not numbers
        raise UsageError(f"{path} is damaged ({error}); delete it to resume with a fresh evaluation log") from None
    kept = timesteps <= checkpoint_step
    if kept.any() and results.shape[1] != callback.n_eval_episodes:  # SB3 could not append to it
        raise UsageError(
            f"{path} holds evaluations of {results.shape[1]} episodes, but the run evaluates "
            f"{callback.n_eval_episodes} (train.eval_episodes); set that back in its config.yaml, or delete {path.name} "
            "to resume with a fresh evaluation log"
        )
    callback.evaluations_timesteps = timesteps[kept].tolist()
    callback.evaluations_results = results[kept].tolist()
    callback.evaluations_length = lengths[kept].tolist()


def _repair_monitor(path: Path, rows_at_checkpoint: int | None) -> None:
    """Check the training-episode log a resumed run appends to; drop a line cut by a kill and
    the episodes after the first ``rows_at_checkpoint`` (those of a stretch a kill lost, which
    the resumed run plays again; None: the checkpoint did not count them, all are kept).

    ``UsageError`` when the file is not a Monitor CSV (it is only used for the plot: the
    fix is to delete it), or is a link or no regular file (SB3's Monitor would append through it, or block on a FIFO).
    """
    if path.is_symlink() or path.exists():
        os.close(open_own_file(path, os.O_RDONLY))  # refuses a link or what is no regular file
    if not path.is_file():
        return
    try:
        text = path.read_text()
        header, columns, *_ = text.split("\n")
        json.loads(header[1:]) if header.startswith("#") else json.loads(header)
        if columns != "r,l,t":
            raise ValueError("no r,l,t column header")
        rows = monitor_episode_lines(text)
        for row in rows:
            if len([float(value) for value in row.split(",")]) != 3:
                raise ValueError(f"row {row!r}")
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as error:  # RecursionError: a deep JSON header
        raise UsageError(
            f"{path} is damaged ({error}); delete it (it only records the training episodes for the plot) and resume again"
        ) from None
    repaired = "\n".join([header, columns, *rows[:rows_at_checkpoint]]) + "\n"
    if repaired != text:
        write_text(path, repaired)


def _check_fresh_folder(folder: RunFolder, force: bool) -> None:
    """Refuse to start a run over an earlier run or over results, unless ``force``, and over a
    compression run's folder always (its stages would stay beside the new ANN); then clear the
    run's files."""
    compression = sorted(path.name for path in folder.results() if path.name.startswith(("T", "results.")))
    if compression:
        raise UsageError(
            f"{folder.path} holds a compression run ({', '.join(compression[:3])}); train into another --out"
        )
    if not force:
        if folder.config.is_file() and folder.checkpoint.is_file():
            raise UsageError(
                f"{folder.path} already holds a run; continue it with --resume {folder.path}, pass --force to start over, "
                "or choose another --out"
            )
        if folder.config.is_file():
            raise UsageError(
                f"{folder.path} holds a run that stopped before its first checkpoint (nothing to resume); delete it, "
                "pass --force, or choose another --out"
            )
        results = sorted(path.name for path in folder.results())
        if results:
            raise UsageError(
                f"{folder.path} already holds results ({', '.join(results)}); pass --force to replace them, "
                "or choose another --out"
            )
        left = sorted(path.name for path in folder.training_files())
        # a run whose config.yaml is gone, an rl-zoo3 log folder: nothing is deleted unasked; a Monitor
        # log alone is what a run stopped before it wrote config.yaml leaves (this command's own, rerun)
        if left and left != [folder.monitor.name]:
            raise UsageError(
                f"{folder.path} holds files of another training run ({', '.join(left)}); pass --force to delete "
                "them and start over, or choose another --out"
            )
    for path in folder.training_files():
        path.unlink()


def train(
    env_id: str,
    settings: Settings,
    out_dir: str | Path,
    seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    verbose: int = 1,
    command: str = "",
    tensorboard: str | Path | None = None,
    trained_agent: str | Path | None = None,
) -> Path:
    """Train (or resume) a DQN agent as ``settings`` describe; returns the path of ``ann.zip``.

    ``settings.train.n_timesteps`` counts agent steps from the start of the run (a resumed
    run's saved settings hold its own target). ``command`` (the command line, if any) is
    added to the run's ``config.yaml``. ``force`` starts a fresh run over a folder holding
    another run or results. ``tensorboard``: a folder where SB3 logs its training scalars
    for TensorBoard. ``trained_agent``: an ANN (an SB3 DQN zip of the same network, e.g.
    another run's ``ann.zip``) whose weights a fresh run starts from, as rl-zoo3's
    ``--trained-agent``; its replay buffer starts empty and every setting is this run's.
    """
    env_settings = _checked_env_settings(env_id, settings, seed, device, tensorboard)
    if trained_agent is not None and resume:
        raise UsageError("--trained-agent starts a new run; a resumed run continues from its own checkpoint, drop it")
    # checked (and the trained agent read) before the folder is touched: a bad setting or file costs nothing written
    observation_space, action_space = _checked_spaces(env_id, env_settings, settings.train)
    start_weights = None
    if trained_agent is not None:
        start_weights = _trained_weights(
            trained_agent, env_id, env_settings, settings.train, device, observation_space, action_space
        )
    folder = RunFolder(out_dir)
    with folder_lock(folder.path):
        run_id, commands = _prepare_folder(folder, resume, force, command, settings)
        with ExitStack() as open_envs:  # every env the run opens is closed on the way out
            monitored_env = functools.partial(_open_env, open_envs, env_id, env_settings, seed, folder)
            build = functools.partial(
                _build, open_envs, env_id, env_settings, settings.train, seed, device, folder, run_id, verbose
            )
            if resume:  # the run's state is loaded and checked before the monitored env opens the folder's files
                with closing(make_env(env_id, env_settings, seed=seed)) as unmonitored_env:
                    model, evaluation = build(unmonitored_env)
                    _resume_state(model, evaluation, folder, run_id)
                model.set_env(monitored_env())  # the resumed run starts a new episode (seeded as the first one)
            else:
                model, evaluation = build(monitored_env())
                if start_weights is not None:
                    model.policy.load_state_dict(start_weights)
            if tensorboard:
                model.tensorboard_log = str(tensorboard)
            RunConfig(env_id, seed, settings, commands).write(folder.path)
            _learn(model, folder.path, run_id, evaluation, settings.train, resume, progress)
        _hand_on(model, folder, run_id, env_id, seed, settings)
    return folder.ann


def _checked_env_settings(
    env_id: str, settings: Settings, seed: int, device: str, tensorboard: str | Path | None
) -> EnvSettings:
    """The env settings to train under (``train.sticky_actions`` applied), after checking the arguments."""
    check_env_id(env_id)  # before the default --out (runs/<env>_<seed>) is made of it
    check_training_seed(seed)
    check_device(device)
    if tensorboard:
        check_tensorboard(tensorboard)
    return with_sticky_actions(settings.env, settings.train.sticky_actions, env_id, "train.sticky_actions")


def _checked_spaces(env_id: str, env_settings: EnvSettings, train: TrainSettings) -> tuple[spaces.Space, spaces.Discrete]:
    """The observation and action spaces of the run's env, checked to suit DQN and ``train.policy``."""
    with closing(make_env(env_id, env_settings, seed=0)) as env:
        observation_space, action_space = env.observation_space, env.action_space
    if not isinstance(action_space, spaces.Discrete):
        raise UsageError(f"DQN takes discrete actions and {env_id}'s are {action_space}; choose an env with discrete actions")
    if train.policy == "CnnPolicy" and not is_image_space(observation_space):
        raise UsageError(
            f"train.policy CnnPolicy takes image observations and {env_id}'s are {observation_space}; use MlpPolicy",
            parameter="train.policy",
        )
    return observation_space, action_space


def _trained_weights(
    path: str | Path, env_id: str, env_settings: EnvSettings, train: TrainSettings, device: str,
    observation_space: spaces.Space, action_space: spaces.Discrete,
) -> dict[str, torch.Tensor]:
    """The policy weights (Q-network and target) of the ANN at ``path``, checked to fit the
    network that ``train`` builds for these spaces; read without unpickling (``load_agent``)."""
    trained = load_agent(path, env_id, env_settings, device)
    policy_class = DQN.policy_aliases[train.policy]  # a known alias (TrainSettings checks it)
    if type(trained.policy) is not policy_class:
        raise UsageError(
            f"{path} holds a {type(trained.policy).__name__}, not the {policy_class.__name__} this run trains; "
            "pass an ANN, e.g. another run's ann.zip"
        )
    policy = policy_class(observation_space, action_space, lambda _: 0.0, **train.dqn.get("policy_kwargs", {}))
    weights = trained.policy.state_dict()
    ours = {name: tuple(tensor.shape) for name, tensor in policy.state_dict().items()}
    theirs = {name: tuple(tensor.shape) for name, tensor in weights.items()}
    differing = sorted(name for name in ours.keys() | theirs.keys() if ours.get(name) != theirs.get(name))
    if differing:
        name = differing[0]
        raise UsageError(
            f"the network in {path} differs from the one this run trains ({name}: {theirs.get(name)} there, "
            f"{ours.get(name)} here); pass an ANN trained with the same preset, e.g. another run's ann.zip"
        )
    return weights


#: Settings that a run's checkpoint fixes (its network, replay buffer and environment, and the
#: episodes per evaluation: the evaluation log is one array), by dotted path.
FIXED_ON_RESUME = (
    "train.policy", "train.dqn.policy_kwargs", "train.dqn.buffer_size", "train.dqn.n_steps", "train.eval_episodes",
    "train.dqn.optimize_memory_usage", "train.dqn.replay_buffer_class", "train.dqn.replay_buffer_kwargs",
    "env.atari", "env.frame_stack", "env.wrapper_kwargs", "env.env_kwargs",
)


def _check_resumable_settings(previous: Settings, settings: Settings) -> None:
    """Refuse to resume under settings that change what the run's checkpoint fixes (``FIXED_ON_RESUME``)."""
    before, now = previous.to_dict(), settings.to_dict()
    for key in FIXED_ON_RESUME:
        section, *path = key.split(".")
        old, new = before[section], now[section]
        for part in path:
            old, new = old.get(part), new.get(part)
        if old != new:
            raise UsageError(
                f"{key} is {old!r} in the run being resumed, not {new!r}: a resumed run keeps its network, replay "
                "buffer, environment and episodes per evaluation; drop that setting, or start a new run from its "
                "ann.zip with -i"
            )


def _prepare_folder(
    folder: RunFolder, resume: bool, force: bool, command: str, settings: Settings
) -> tuple[str, list[str]]:
    """The run's id and command lines: a resumed run's own (its settings checked against
    ``settings``), or a fresh run's in a cleared folder."""
    if resume:
        run_id, previous = read_index(folder.path)["run_id"], read_run_config(folder.path)
        if previous is not None:
            _check_resumable_settings(previous.settings, settings)
    else:
        _check_fresh_folder(folder, force)
        run_id, previous = new_run_id(), None
    return run_id, (previous.commands if previous else []) + ([command] if command else [])


def _open_env(open_envs: ExitStack, env_id: str, env_settings: EnvSettings, seed: int, folder: RunFolder) -> VecEnv:
    """The training env, its episodes logged in the folder's Monitor CSV; closed with ``open_envs``."""
    return open_envs.enter_context(closing(make_env(env_id, env_settings, seed=seed, monitor_dir=str(folder.path))))


def _build(
    open_envs: ExitStack,
    env_id: str,
    env_settings: EnvSettings,
    train: TrainSettings,
    seed: int,
    device: str,
    folder: RunFolder,
    run_id: str,
    verbose: int,
    env: VecEnv,
) -> tuple[DQN, EvalCallback]:
    """A new DQN on ``env`` and its evaluation callback (on an evaluation env closed with ``open_envs``),
    which keeps a new best policy, then writes the evaluation log, prints it and saves a checkpoint."""
    eval_env = open_envs.enter_context(closing(make_env(env_id, env_settings, seed=EVAL_SEED_BASE)))
    try:
        algorithm = BFloat16DQN if train.bfloat16 else DQN
        model = algorithm(train.policy, env, seed=seed, device=device, verbose=0, **sb3_dqn_kwargs(train.dqn))
    except UsageError:  # spikerl's own refusal while the policy is built
        raise
    except (TypeError, ValueError) as error:  # a keyword SB3's DQN, its policy or optimizer does not take, or a value
        raise UsageError(f"SB3's DQN refuses the settings train.dqn ({error}); fix or drop that setting") from None
    if train.bfloat16 and model.device.type == "cpu" and not _cpu_has_bfloat16():
        print("spikerl train: warning: torch has no fast bfloat16 kernels for this CPU (oneDNN's test), and on such a "
              "CPU (AVX2 only) bfloat16 autocast made a Pong gradient step 12x slower than float32 "
              "(bench/train_step.py); drop train.bfloat16", file=sys.stderr)
    if is_image_space(model.observation_space):
        # NHWC convolutions, the same weights and float32 arithmetic (float sums in another order):
        # 0.77x the time per gradient step on one CPU thread
        # (bench/train_step.py). Module.to documents memory_format; torch's type stubs lack it.
        model.policy.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    evaluation = EvalCallback(
        eval_env,
        n_eval_episodes=train.eval_episodes,
        eval_freq=train.eval_freq,
        log_path=str(folder.path),
        callback_on_new_best=SaveBestCallback(folder.path, run_id),
        callback_after_eval=CallbackList(
            [WriteEvaluationsCallback(folder), PrintEvaluationCallback(verbose), CheckpointCallback(folder.path, run_id)]
        ),
        verbose=0,
    )
    evaluation.log_path = str(folder.path / f".{folder.evaluations.name}{TEMPORARY_SUFFIX}")  # see WriteEvaluationsCallback
    return model, evaluation


def _resume_state(model: DQN, evaluation: EvalCallback, folder: RunFolder, run_id: str) -> None:
    """Load the run's checkpoint into ``model`` and its evaluation log and best reward into ``evaluation``."""
    index = load_checkpoint(model, folder.path)
    buffer_step, step = replay_buffer_step(index), model.num_timesteps
    if buffer_step is None:
        print(f"resuming at step {step} without a replay buffer: it is refilled with random actions first")
    elif buffer_step < step:
        print(f"resuming at step {step} with the replay buffer of step {buffer_step} (the transitions since are lost)")
    _restore_evaluations(evaluation, folder.evaluations, model.num_timesteps)
    best = best_mean_reward(folder.path, run_id)
    evaluation.best_mean_reward = -np.inf if best is None else best  # a best of 0.0 (Pong) stays the best
    evaluation.n_calls = model.num_timesteps  # evaluations stay at multiples of eval_freq
    _repair_monitor(folder.monitor, index.get("monitor_rows"))


def _hand_on(model: DQN, folder: RunFolder, run_id: str, env_id: str, seed: int, settings: Settings) -> None:
    """Write ``ann.zip`` (this run's best policy, no optimizer state; the file is kept as it is where it
    holds that policy already, so its SHA-256 stays the ANN's identity, with the counters and
    settings of the step that wrote it), the rl-zoo3 layout and the training curve.

    ``ann.zip`` appears last: a folder that holds it holds the others (a sweep takes it as the end of training).
    """
    load_best(model, folder.path, run_id)
    with atomic_path(folder.ann) as ann:
        save_model(model, ann, keep_optimizer_state=False)
        if _same_policy(folder.ann, ann):  # a run resumed after it finished: its ANN keeps its bytes and SHA-256
            shutil.copyfile(folder.ann, ann)  # (SB3's zip records the time it was written)
        write_zoo_layout(folder.path, env_id, seed, settings, ann)  # so rl-zoo3's enjoy plays this folder
        plot_training_curve(folder.path, folder.training_curve, settings.env.frames_per_step)


def _same_policy(saved: Path, new: Path) -> bool:
    """Whether the SB3 zips ``saved`` (which may be missing or damaged) and ``new`` hold the same policy weights."""
    try:
        with zipfile.ZipFile(saved) as before, zipfile.ZipFile(new) as now:
            return before.read("policy.pth") == now.read("policy.pth")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False


def _cpu_has_bfloat16() -> bool:
    """Whether oneDNN, torch's CPU kernel library, has bfloat16 kernels for this CPU (its own test,
    a private torch op: true on AVX-512 CPUs, false on AVX2-only ones)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: not known, so not warned about
        return True


def _learn(
    model: DQN, out_dir: Path, run_id: str, evaluation: EvalCallback, train: TrainSettings, resume: bool, progress: bool
) -> None:
    """Train ``model`` up to ``train.n_timesteps``; on any stop (Ctrl-C, SIGTERM, SIGHUP) save a checkpoint to resume from."""
    checkpoints = PeriodicCheckpointCallback(out_dir, run_id, train.checkpoint_freq, train.eval_freq)
    callbacks = CallbackList(
        [checkpoints, evaluation, MissedEvaluationCallback(evaluation), *([ProgressCallback("train")] if progress else [])]
    )
    # A second stop signal (a closing terminal sends more than one) while the checkpoint is being
    # written waits for it (signals_held) and then stops the command as the first did.
    with stop_signals_as_interrupt():
        try:
            model.learn(
                total_timesteps=max(train.n_timesteps - model.num_timesteps, 0),
                callback=callbacks,
                reset_num_timesteps=not resume,
            )
        except KeyboardInterrupt:
            print(f"interrupted at step {model.num_timesteps}; saving a checkpoint to resume with --resume {out_dir}")
            raise
        finally:
            with signals_held():
                save_checkpoint(model, out_dir, run_id, with_replay_buffer=train.save_replay_buffer)

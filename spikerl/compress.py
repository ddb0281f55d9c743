"""`spikerl compress`: IIR-SNN. Convert an ANN DQN agent, then retrain at each T of the schedule.

For schedule ``(5, 4, 3, 2, 1)``: evaluate the ANN (row ``ANN``), convert at T=5 and evaluate
(row ``converted``), then for each T: initialize from the previous stage (same model, new T),
retrain, save ``T<t>.zip`` and evaluate (row ``retrained``). Every row rewrites
``results.json`` and ``results.md``. A stopped run resumes after its last saved stage. At the
end the last stage is also laid out for rl-zoo3 (``dqn/<env>.zip`` and its config: ``spikerl.zoo``).
"""

from __future__ import annotations

import dataclasses
import filecmp
import functools
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import DQN
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from spikerl.checkpoints import atomic_path, file_sha256, save_model, writable_folder
from spikerl.convert import collect_observations, convert, spiking_model
from spikerl.energy import layer_costs
from spikerl.envs import check_training_seed, make_env, with_sticky_actions
from spikerl.errors import UsageError
from spikerl.evaluate import evaluate_agent
from spikerl.loading import load_agent
from spikerl.locks import holds_folder_lock
from spikerl.policy import SpikingMlpPolicy, set_timesteps
from spikerl.report import write_report
from spikerl.results import CompressionResult, EvaluationProtocol, Stage, read_results, run_settings, write_results
from spikerl.retrain import TD_EVAL_SEED_OFFSET, make_retrainer
from spikerl.run_folder import PLOTS, RunFolder
from spikerl.settings import EVAL_SEED_BASE, CompressSettings, EnvSettings, Settings, sb3_dqn_kwargs
from spikerl.tensorboard import check_tensorboard, log_stage, open_writer
from spikerl.zoo import write_zoo_layout


@holds_folder_lock("out_dir")
def compress(
    agent: str | Path,
    env_id: str,
    settings: Settings,
    out_dir: str | Path,
    seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    commands: list[str] | None = None,
    tensorboard: str | Path | None = None,
) -> CompressionResult:
    """Run the IIR schedule of ``settings.compress`` on the ANN at ``agent``; returns the results.

    ``commands`` (the command lines that made the ANN and run this) go into the results;
    ``tensorboard``: a folder for TensorBoard logs (``spikerl.tensorboard``).
    """
    check_training_seed(seed)
    if settings.compress.objective == "td" and seed + TD_EVAL_SEED_OFFSET >= EVAL_SEED_BASE:
        raise UsageError(
            f"seed {seed} with the td objective: its in-stage evaluations play seed + {TD_EVAL_SEED_OFFSET}, "
            f"which must stay below the evaluation seeds ({EVAL_SEED_BASE}); choose a seed below "
            f"{EVAL_SEED_BASE - TD_EVAL_SEED_OFFSET}",
            parameter="seed",
        )
    if tensorboard:
        check_tensorboard(tensorboard)
    folder = RunFolder(out_dir)
    previous = _previous_result(folder, agent, resume, force)
    ann = _load_ann(agent, env_id, settings, device)
    layers = [asdict(cost) for cost in layer_costs(ann.q_net, ann.observation_space)]
    result = new_result(agent, env_id, settings, seed, layers, commands)
    done = _finished_stages(previous, result, folder) if previous else []
    if previous:
        commands = list(dict.fromkeys(previous.commands + result.commands))
        result = dataclasses.replace(result, rows=previous.rows, commands=commands)
    schedule = settings.compress.schedule
    set_random_seed(seed)
    retrain_env = with_sticky_actions(settings.env, settings.compress.sticky_actions, env_id, "compress.sticky_actions")
    env = make_env(env_id, retrain_env, seed=seed)
    writer = open_writer(Path(tensorboard) / "compress") if tensorboard else None
    record = _StageRecorder(folder, settings.env, writer, settings.compress.stage_steps, progress)
    try:
        started = time.perf_counter()
        # the student first: settings SB3 refuses for it end the run before anything is written
        if done:
            student = _restore(ann, env, env_id, settings, seed, done[-1], folder.stage(done[-1]), device)
        else:
            student = _convert(ann, env, settings.compress, seed)
        conversion_s = time.perf_counter() - started
        _copy_ann(agent, folder)
        if not previous:
            result = record(result, Stage.ANN, None, ann, time.perf_counter())
        if student.q_net.encoder is not None:  # the SNN rows' costs: the encoder, a first layer on spikes
            spiking_layers = [asdict(cost) for cost in layer_costs(student.q_net, student.observation_space)]
            result = dataclasses.replace(result, spiking_layers=spiking_layers)
        if not done and not result.rows_of(Stage.CONVERTED):  # its wall time: the conversion and its evaluation
            result = record(result, Stage.CONVERTED, schedule[0], student, time.perf_counter() - conversion_s)
        eval_seed = seed + TD_EVAL_SEED_OFFSET
        make_eval_env = functools.partial(make_env, env_id, retrain_env, seed=eval_seed)  # td's in-stage evaluations
        retrainer = make_retrainer(ann, student, env, settings.compress, seed, progress, writer, make_eval_env, len(done))
        if tensorboard:
            student.tensorboard_log = str(tensorboard)  # the td objective: SB3 logs its training scalars there
        for timesteps in schedule:
            if timesteps not in done:
                started = time.perf_counter()
                set_timesteps(student, timesteps)
                retrainer.retrain(settings.compress.stage_steps)
                save_model(student, folder.stage(timesteps), keep_optimizer_state=False)
                result = record(result, Stage.RETRAINED, timesteps, student, started)
        if result.evaluation.sticky_actions is not None:
            sticky_rows: tuple[tuple[Stage, int | None, DQN], ...] = (
                (Stage.ANN_STICKY, None, ann), (Stage.RETRAINED_STICKY, schedule[-1], student)
            )
            for stage, stage_timesteps, model in sticky_rows:
                if not result.rows_of(stage):
                    result = record(result, stage, stage_timesteps, model, time.perf_counter())
    finally:
        env.close()
        if writer is not None:
            writer.close()
    result = write_report(folder, result)
    write_zoo_layout(  # so rl-zoo3's enjoy plays the last stage's agent from this folder
        folder.path, env_id, seed, settings, folder.stage(schedule[-1]),
        policy=type(student.policy).__name__, policy_kwargs=dict(student.policy_kwargs),
    )
    write_results(folder, result)  # last: results.json with its plots marks the run complete
    return result


def _previous_result(folder: RunFolder, agent: str | Path, resume: bool, force: bool) -> CompressionResult | None:
    """The results to resume from (``resume``), after refusing to overwrite results or another
    agent's ``ann.zip`` unless ``force``, and a training run's folder (even of this ANN) always,
    since the stages' rl-zoo3 layout would replace the run's own."""
    training = sorted(path.name for path in folder.training_files())
    if training:
        raise UsageError(
            f"{folder.path} holds a training run ({', '.join(training[:3])}); compress into another --out, "
            f"such as {folder.path}_snn"
        )
    if resume:
        if not folder.results_json.is_file():
            raise UsageError(f"nothing to resume in {folder.path} (results.json missing); run without --resume")
        return read_results(folder.path)
    if force:
        return None
    if folder.results_json.is_file():
        raise UsageError(
            f"{folder.path} already holds results; pass --resume to continue, --force to overwrite, or another --out"
        )
    written = [path.name for path in (*folder.stages(), folder.results_md, *map(folder.plot, PLOTS)) if path.is_file()]
    if written:  # what a compression writes after its results.json: not one of spikerl's, or damaged
        raise UsageError(f"{folder.path} holds {', '.join(sorted(written)[:4])} without a results.json; "
                         "choose another --out (--force would replace them)")
    try:
        another_ann = folder.ann.is_file() and Path(agent).is_file() and not filecmp.cmp(folder.ann, agent, shallow=False)
    except OSError:  # unreadable: loading the agent says so
        another_ann = False
    if another_ann:
        raise UsageError(f"{folder.path} holds another agent's {folder.ann.name} (an unfinished compression of it?); "
                         "choose another --out (--force would replace that file)")
    return None


def _load_ann(agent: str | Path, env_id: str, settings: Settings, device: str) -> DQN:
    ann = load_agent(agent, env_id, settings.env, device)
    if isinstance(ann.policy, SpikingMlpPolicy):
        raise UsageError(f"{agent} is already a spiking agent; pass the ANN checkpoint (ann.zip from 'spikerl train')")
    return ann


def new_result(
    agent: str | Path, env_id: str, settings: Settings, seed: int, layers: list[dict[str, Any]],
    commands: list[str] | None,
) -> CompressionResult:
    """The header of the results of compressing ``agent`` with ``settings`` and ``seed`` (no rows
    yet); ``layers``: the ANN's weighted layers (``spikerl.energy.LayerCost`` fields). A finished
    run was this run if its results agree with it (``CompressionResult.differing_setting``)."""
    stage_settings, protocol = settings.compress, settings.evaluate
    episodes = stage_settings.stage_eval_episodes if stage_settings.stage_eval_episodes is not None else protocol.episodes
    for name, sticky in (("evaluate", protocol.sticky_actions), ("compress", stage_settings.sticky_actions)):
        with_sticky_actions(settings.env, sticky, env_id, f"{name}.sticky_actions")  # refused now, not after the stages
    evaluation = EvaluationProtocol(
        episodes=episodes, seed=protocol.seed, n_envs=protocol.n_envs, sticky_actions=protocol.sticky_actions
    )
    return CompressionResult(
        env_id=env_id, agent=str(agent), agent_sha256=file_sha256(agent), objective=stage_settings.objective,
        schedule=stage_settings.schedule, percentile=stage_settings.percentile, encoding=stage_settings.encoding,
        steps_per_stage=stage_settings.stage_steps, seed=seed, evaluation=evaluation,
        sticky_actions=stage_settings.sticky_actions, settings=run_settings(settings), commands=list(commands or []),
        layers=layers,
    )


def _finished_stages(previous: CompressionResult, result: CompressionResult, folder: RunFolder) -> list[int]:
    """The T values already finished in ``previous``, after checking it is the same run as ``result``."""
    differing = previous.differing_setting(result)
    if differing is not None:
        name, before, now = differing
        setting = f"compress.{name}" if name in CompressSettings.__dataclass_fields__ else name
        raise UsageError(
            f"{folder.path} holds a run with {setting}={before!r}, not {now!r}; "
            "resume with the same settings, or pass --force to start over"
        )
    done = previous.finished_stages()
    if done and not folder.stage(done[-1]).is_file():
        raise UsageError(f"{folder.stage(done[-1])} is missing, so the run cannot resume; pass --force to start over")
    return done


def _copy_ann(agent: str | Path, folder: RunFolder) -> None:
    """Keep a copy of the ANN as the folder's ``ann.zip`` (unless it is that file)."""
    with writable_folder(folder.path):
        if Path(agent).resolve() != folder.ann.resolve():
            with atomic_path(folder.ann) as temporary:
                shutil.copyfile(agent, temporary)


def _student_dqn_kwargs(settings: CompressSettings, seed: int) -> dict[str, Any]:
    """DQN settings of the spiking student: the preset's TD ones (distillation needs no replay buffer)."""
    return {**sb3_dqn_kwargs(settings.td.dqn), "seed": seed, **({"buffer_size": 1} if settings.objective == "distill" else {})}


def _convert(ann: DQN, env: VecEnv, settings: CompressSettings, seed: int) -> DQN:
    """The spiking student at the schedule's first T, thresholds from calibration rollouts of ``ann``."""
    calibration = collect_observations(ann, env, settings.calibration_samples, rng=np.random.default_rng(seed))
    dqn_kwargs = _student_dqn_kwargs(settings, seed)
    return convert(
        ann, env, calibration, settings.schedule[0], settings.percentile, settings.neuron_kwargs,
        encoding=settings.encoding, input_margin=settings.input_margin, **dqn_kwargs,
    )


def _restore(
    ann: DQN, env: VecEnv, env_id: str, settings: Settings, seed: int, timesteps: int, stage: Path, device: str
) -> DQN:
    """The spiking student at ``timesteps`` with the weights of the saved ``stage`` (of that T; no
    calibration, no conversion): a run with every stage done plays and writes its last one at its own T."""
    compress = settings.compress
    dqn_kwargs = _student_dqn_kwargs(compress, seed)
    student = spiking_model(ann, env, timesteps, compress.neuron_kwargs, compress.encoding, **dqn_kwargs)
    student.policy.load_state_dict(load_agent(stage, env_id, settings.env, device).policy.state_dict())
    return student


@dataclass
class _StageRecorder:
    """Evaluates a stage on the run's protocol and records it: the one place stages are evaluated."""

    folder: RunFolder
    env_settings: EnvSettings
    writer: Any = None
    """A TensorBoard ``SummaryWriter``: each stage is logged at the retraining steps done so far."""
    steps_per_stage: int = 0
    progress: bool = True
    """Show a progress bar of the evaluation episodes (the result line is printed either way)."""

    def __call__(
        self, result: CompressionResult, stage: Stage, timesteps: int | None, model: DQN, started: float
    ) -> CompressionResult:
        """``result`` with the row of ``model`` (timed from ``started``); rewrites results.json and results.md.

        The ``*_STICKY`` stages are played with the protocol's sticky actions.
        """
        protocol = result.evaluation
        env_settings = self.env_settings
        if stage.is_sticky and protocol.sticky_actions is not None:
            env_settings = with_sticky_actions(env_settings, protocol.sticky_actions, result.env_id, "evaluate.sticky_actions")
        evaluation = evaluate_agent(
            model, result.env_id, env_settings, protocol.episodes, seed=protocol.seed, n_envs=protocol.n_envs,
            progress=f"evaluate {stage.value} T={timesteps or '-'}" if self.progress else None,
        )
        result = result.with_row(stage, timesteps, evaluation, time.perf_counter() - started)
        if self.writer is not None:
            steps_done = len(result.rows_of(Stage.RETRAINED)) * self.steps_per_stage
            log_stage(self.writer, steps_done, timesteps, evaluation, model.q_net)
        write_results(self.folder, result)  # first: a folder with a results.md holds a results.json
        write_report(self.folder, result, plots=False)
        summary = f"{evaluation.mean:.2f} +- {evaluation.std:.2f} over {protocol.episodes} episodes"
        print(f"{stage.value:>10} T={timesteps or '-'}: {summary}")  # also with --no-progress, which hides bars only
        return result

"""`spikerl compress`: IIR-SNN. Convert an ANN DQN agent, then retrain at each T of the schedule.

For schedule ``(5, 4, 3, 2, 1)``: convert at T=5 and evaluate (row ``converted``), then for each
T: initialize from the previous stage (same model, new T), retrain, evaluate, save ``T<t>.zip``,
and rewrite ``results.json`` / ``results.md``. A stopped run resumes after its last saved stage.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.utils import set_random_seed

from spikerl.checkpoints import atomic_path, save_model, write_json, writable_folder
from spikerl.config import RESULTS_JSON
from spikerl.convert import check_percentile, collect_observations, convert
from spikerl.encoding import INPUT_MARGIN, check_encoding
from spikerl.energy import layer_costs
from spikerl.envs import EVAL_SEED_BASE, check_training_seed, make_env, with_sticky_actions
from spikerl.errors import UsageError
from spikerl.evaluate import evaluate_agent
from spikerl.loading import load_agent
from spikerl.policy import SpikingMlpPolicy, set_timesteps
from spikerl.report import write_report
from spikerl.retrain import OBJECTIVES, make_retrainer
from spikerl.snn import check_timesteps


def check_schedule(schedule: list[Any]) -> list[int]:
    """A schedule of positive, strictly decreasing integer T values, or a ``UsageError``."""
    if not schedule:
        raise UsageError("--schedule is empty; give decreasing timesteps such as 5,4,3,2,1")
    for t in schedule:
        try:
            check_timesteps(t)
        except UsageError:
            raise UsageError(f"--schedule values must be positive integers, got {t!r}; for example 5,4,3,2,1") from None
    if any(later >= earlier for earlier, later in zip(schedule, schedule[1:])):
        raise UsageError(f"--schedule must decrease strictly (IIR lowers T stage by stage), got {','.join(map(str, schedule))}")
    return schedule


def _resumable(previous: dict[str, Any], results: dict[str, Any], out_dir: Path) -> list[int]:
    """The T values already finished in ``previous``, after checking it is the same run."""
    for key in ("env_id", "objective", "schedule", "percentile", "steps_per_stage", "seed", "evaluation", "encoding"):
        before = previous.get(key, "direct" if key == "encoding" else None)  # runs before encodings were direct
        if before != results[key]:
            raise UsageError(
                f"{out_dir} holds a run with {key}={before!r}, not {results[key]!r}; "
                "resume with the same settings, or pass --force to start over"
            )
    done = [row["T"] for row in previous["rows"] if row["stage"] == "retrained"]
    if done and not (out_dir / f"T{done[-1]}.zip").is_file():
        raise UsageError(f"{out_dir}/T{done[-1]}.zip is missing, so the run cannot resume; pass --force to start over")
    return done


def compress(
    agent: str | Path,
    env_id: str,
    preset: dict[str, Any],
    out_dir: str | Path,
    seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    commands: list[str] | None = None,
) -> dict[str, Any]:
    """Run the IIR schedule of ``preset['compress']`` on the ANN at ``agent``; returns the results.

    ``commands`` (the command lines that made the ANN and run this) go into the results.
    """
    settings, protocol = preset["compress"], preset["evaluate"]
    schedule = check_schedule(settings["schedule"])
    objective = settings["objective"]
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown --objective '{objective}'; use one of {', '.join(OBJECTIVES)}")
    percentile = check_percentile(settings.get("percentile", 90))
    encoding = check_encoding(settings.get("encoding", "direct"))
    steps = int(settings["steps_per_stage"])
    if steps < 0:
        raise UsageError(f"--steps-per-stage must be >= 0, got {steps}")
    check_training_seed(seed)
    out_dir = Path(out_dir)
    results_path = out_dir / RESULTS_JSON
    if resume and not results_path.is_file():
        raise UsageError(f"nothing to resume in {out_dir} ({RESULTS_JSON} missing); run without --resume")
    if results_path.is_file() and not (resume or force):
        raise UsageError(f"{out_dir} already holds results; pass --resume to continue, --force to overwrite, or another --out")

    ann = load_agent(agent, env_id, preset["env"], device)
    if isinstance(ann.policy, SpikingMlpPolicy):
        raise UsageError(f"{agent} is already a spiking agent; pass the ANN checkpoint (ann.zip from 'spikerl train')")
    set_random_seed(seed)
    env = make_env(env_id, preset["env"], seed=seed)
    with writable_folder(out_dir):
        if Path(agent).resolve() != (out_dir / "ann.zip").resolve():
            with atomic_path(out_dir / "ann.zip") as temporary:
                shutil.copyfile(agent, temporary)

    eval_episodes = int(settings.get("stage_eval_episodes", protocol.get("episodes", 10)))
    eval_args = dict(env_id=env_id, env_config=preset["env"], episodes=eval_episodes, seed=int(protocol.get("seed", EVAL_SEED_BASE)), n_envs=int(protocol.get("n_envs", 10)))
    sticky = protocol.get("sticky_actions")  # also evaluate the ANN and the last stage with ALE's sticky actions
    sticky_args = {**eval_args, "env_config": with_sticky_actions(preset["env"], float(sticky), env_id)} if sticky is not None else None
    results: dict[str, Any] = {
        "env_id": env_id,
        "agent": str(agent),
        "objective": objective,
        "schedule": schedule,
        "percentile": percentile,
        "encoding": encoding,
        "steps_per_stage": steps,
        "seed": seed,
        "evaluation": {key: eval_args[key] for key in ("episodes", "seed", "n_envs")},
        "commands": list(commands or []),
        "layers": [asdict(cost) for cost in layer_costs(ann.q_net, ann.observation_space)],
        "rows": [],
    }

    def record(stage: str, timesteps: int | None, model: Any, started: float, protocol_args: dict[str, Any] = eval_args) -> None:
        evaluation = evaluate_agent(model, **protocol_args)
        row = {"stage": stage, "T": timesteps, "wall_time_s": time.perf_counter() - started, **evaluation.as_dict()}
        results["rows"].append(row)
        write_report(out_dir, results, plots=False)
        write_json(results_path, results)
        if progress:
            print(f"{stage:>10} T={timesteps or '-'}: {evaluation.mean:.2f} +- {evaluation.std:.2f} over {eval_episodes} episodes")

    done: list[int] = []
    if resume:
        previous = json.loads(results_path.read_text())
        done = _resumable(previous, results, out_dir)
        results["rows"] = previous["rows"]
        results["commands"] = list(dict.fromkeys(previous.get("commands", []) + results["commands"]))
    else:
        started = time.perf_counter()
        record("ANN", None, ann, started)

    started = time.perf_counter()
    calibration = collect_observations(ann, env, int(settings.get("calibration_samples", 512)), rng=np.random.default_rng(seed))
    # The student carries the preset's TD settings; distillation needs no replay buffer.
    dqn_kwargs = dict(settings.get("td", {}), seed=seed)
    if objective == "distill":
        dqn_kwargs["buffer_size"] = 1
    student = convert(
        ann, env, calibration, schedule[0], percentile, settings.get("neuron_kwargs"),
        encoding=encoding, input_margin=float(settings.get("input_margin", INPUT_MARGIN)), **dqn_kwargs,
    )
    if encoding != "direct":  # the spiking rows' costs: the encoder and a first layer on spikes
        results["spiking_layers"] = [asdict(cost) for cost in layer_costs(student.q_net, student.observation_space)]
    if done:
        student.set_parameters(str(out_dir / f"T{done[-1]}.zip"), device=device)
    elif not any(row["stage"] == "converted" for row in results["rows"]):
        record("converted", schedule[0], student, started)

    retrainer = make_retrainer(objective, ann, student, env, settings, seed, progress)
    for timesteps in schedule:
        if timesteps in done:
            continue
        started = time.perf_counter()
        set_timesteps(student, timesteps)
        retrainer.retrain(steps)
        save_model(student, out_dir / f"T{timesteps}.zip", keep_optimizer_state=False)
        record("retrained", timesteps, student, started)
    if sticky_args is not None:
        for stage, timesteps, model in ((f"ANN, sticky p={sticky}", None, ann), (f"retrained, sticky p={sticky}", schedule[-1], student)):
            if not any(row["stage"] == stage for row in results["rows"]):
                record(stage, timesteps, model, time.perf_counter(), sticky_args)
    env.close()
    write_report(out_dir, results)
    write_json(results_path, results)
    return results

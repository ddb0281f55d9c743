"""spikerl: train DQN agents, convert them to spiking networks and compress them to one timestep."""

from __future__ import annotations

import argparse
import contextlib
import errno
import re
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spikerl.checkpoints import stop_signals_as_interrupt
from spikerl.errors import UsageError
from spikerl.settings import ENCODINGS, MAX_THREADS, OBJECTIVES, SECTIONS, STICKY_ACTIONS

if TYPE_CHECKING:
    from spikerl.settings import Settings


#: Flags of the settings and parameters they override; errors naming one are shown with its flag.
FLAGS = {
    "env.num_threads": "--num-threads",
    "num_threads": "--num-threads",
    "train.n_timesteps": "-n/--n-timesteps",
    "compress.schedule": "--schedule",
    "compress.objective": "--objective",
    "compress.steps_per_stage": "--steps-per-stage",
    "compress.percentile": "--percentile",
    "compress.encoding": "--encoding",
    "sticky_actions": "--sticky-actions",
    "compress.stage_eval_episodes": "--eval-episodes",
    "evaluate.episodes": "--episodes",
    "evaluate.seed": "--seed",
    "episodes": "--episodes",
    "seed": "--seed",
    "percentile": "--percentile",
    "env": "--env",
    "env_id": "--env",
    "out_dir": "--out",
}


DEFAULT_TRAIN_ENV = "CartPole-v1"


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train an ANN DQN agent with SB3")
    parser.add_argument("--env", help=f"Gymnasium id with a preset in envs/ (default {DEFAULT_TRAIN_ENV})")
    parser.add_argument("--config", help="preset YAML file, spikerl's or rl-zoo3's hyperparameters (default: envs/<env>.yaml)")
    parser.add_argument("--seed", type=int, help="training seed, below 1000000 (default 0)")
    parser.add_argument("-n", "--n-timesteps", type=int, help="agent steps (default: the preset's, or the resumed run's)")
    parser.add_argument("--out", help="run folder (default: runs/<env>_<seed>)")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    parser.add_argument(
        "-i", "--trained-agent", metavar="ZIP",
        help="start from this ANN's weights (e.g. another run's ann.zip; same network) with an empty replay buffer, "
        "as rl-zoo3's --trained-agent",
    )
    parser.add_argument("--force", action="store_true", help="start over in --out even if it holds a run or results")
    _add_common(parser)
    _add_tensorboard(parser, "SB3's training scalars (rollout/, train/, eval/)")
    _add_no_progress(parser, "the evaluation lines and the summary still print")
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    from spikerl.config import read_run_config
    from spikerl.train import train

    overrides = {"train": {"n_timesteps": args.n_timesteps}, **_common_overrides(args)}
    if args.resume:
        saved = read_run_config(args.resume)
        if saved is None:
            raise UsageError(f"nothing to resume in {args.resume} (config.yaml missing); start a run with --out")
        env_id, seed, out = saved.env_id, saved.seed, args.resume
        _check_resume_arguments(args, env_id, seed)
        settings = _overridden(saved.settings, overrides, args.assignments)
    else:
        env_id, seed = args.env or DEFAULT_TRAIN_ENV, args.seed if args.seed is not None else 0
        settings = _settings(env_id, args.config, overrides, args.assignments)
        out = args.out or f"runs/{env_id}_{seed}"
    _set_threads(settings)
    ann = train(
        env_id, settings, out, seed=seed, device=args.device, resume=bool(args.resume), force=args.force,
        progress=args.progress, command=args.command_line, tensorboard=args.tensorboard,
        trained_agent=args.trained_agent,
    )
    print(_train_summary(out, ann, args.tensorboard))


def _check_resume_arguments(args: argparse.Namespace, env_id: str, seed: int) -> None:
    """Refuse what ``train --resume DIR`` would ignore: another env, seed, preset or folder than the run's own."""
    from pathlib import Path

    given = {
        "--env": args.env not in (None, env_id), "--seed": args.seed not in (None, seed), "--config": args.config is not None,
        "--out": args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve(),
    }
    for flag, differs in given.items():
        if differs:
            raise UsageError(f"--resume {args.resume} continues that run with its own env, seed, settings and folder; "
                             f"drop {flag} (-n and --set change its settings)")


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (no usage dump), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", metavar="{auto,cpu,cuda,cuda:N}", help="auto (CUDA when present), cpu, cuda or cuda:N"
    )
    parser.add_argument(
        "--num-threads", type=int,
        help="torch CPU threads (default: the preset's; small networks run far faster on 1, "
        "and several processes on 2 cores must not oversubscribe them)",
    )
    parser.add_argument(
        "--set", dest="assignments", metavar="SECTION.KEY=VALUE", type=_assignment, nargs="+", action="extend",
        help="override preset settings, e.g. --set train.dqn.learning_rate=1e-4 train.sticky_actions=0.25 "
        "(the value is YAML; rl-zoo3's -params KEY:VALUE is --set train.dqn.KEY=VALUE); the other flags win",
    )


def _assignment(text: str) -> tuple[str, Any]:
    """One ``--set`` argument: the dotted setting and its value, read as YAML (``1e-4`` a number)."""
    import yaml

    from spikerl.config import NUMBER_TOO_LONG, YamlTooLarge, parse_yaml

    key, equals, raw = text.partition("=")
    if not equals or "." not in key or key.split(".")[0] not in SECTIONS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SECTION.KEY=VALUE with SECTION one of {', '.join(SECTIONS)} "
            "(e.g. train.dqn.learning_rate=1e-4)"
        )
    try:
        value = parse_yaml(raw)
    except YamlTooLarge as error:
        raise argparse.ArgumentTypeError(f"the value of {key} cannot be read: {error}") from None
    except (yaml.YAMLError, RecursionError):  # RecursionError: nested too deeply
        raise argparse.ArgumentTypeError(f"the value of {key} is not valid YAML: {raw[:80]!r}") from None
    except ValueError:  # an integer past the 4300 digits Python reads
        raise argparse.ArgumentTypeError(f"the value of {key} {NUMBER_TOO_LONG}") from None
    if value is None:
        raise argparse.ArgumentTypeError(f"{key} needs a value ({key}=VALUE); --set cannot unset a setting")
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    return key, value


def _add_tensorboard(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--tensorboard", metavar="DIR", help=f"log {what} to DIR for TensorBoard (needs pip install 'spikerl[tensorboard]')"
    )


def _add_no_progress(parser: argparse.ArgumentParser, what_prints: str) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false", help=f"hide the progress bars ({what_prints})")


def _common_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"env": {"num_threads": args.num_threads}}


def _settings(
    env_id: str, config: str | None, overrides: dict[str, Any], assignments: list[tuple[str, Any]] | None = None
) -> Settings:
    """The preset of ``env_id`` (or the file ``config``) with the command line's settings (``_overridden``)."""
    from spikerl.config import load_preset

    return _overridden(load_preset(env_id, config), overrides, assignments)


def _overridden(settings: Settings, overrides: dict[str, Any], assignments: list[tuple[str, Any]] | None) -> Settings:
    """``settings`` with the ``--set`` ``assignments`` and then the flags' ``overrides`` (nested
    like a preset; a flag left out is None) merged in and checked."""
    from spikerl.config import with_dotted, with_overrides

    try:
        settings = with_dotted(settings, dict(assignments or []))
    except UsageError as error:  # named as --set spelled it (compress.schedule), not by the flag of that setting
        raise UsageError(str(error)) from None
    return with_overrides(settings, overrides)


def _set_threads(settings: Settings) -> None:
    import torch

    if settings.env.num_threads is not None:
        torch.set_num_threads(settings.env.num_threads)


def _add_agent_arguments(parser: argparse.ArgumentParser, agent_help: str) -> None:
    parser.add_argument("--agent", required=True, help=agent_help)
    parser.add_argument("--env", help="Gymnasium id (default: from the agent's folder)")
    parser.add_argument("--config", help="preset YAML file (default: envs/<env>.yaml)")


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers such as 5,4,3,2,1") from None


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (for options that are no preset setting)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in [{low}, {high}]")
        return value

    return parse


def _add_compress(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("compress", help="convert an ANN agent to an SNN and compress it in time (IIR)")
    _add_agent_arguments(parser, "ANN DQN checkpoint (.zip)")
    parser.add_argument("--schedule", type=_int_list, help="decreasing T values (default: the preset's, 5,4,3,2,1)")
    parser.add_argument("--objective", choices=OBJECTIVES, help="retraining objective (default: the preset's)")
    parser.add_argument(
        "--steps-per-stage", type=int,
        help="gradient steps (distill) or agent steps (td) per stage (default: the preset's for the objective)",
    )
    parser.add_argument("--percentile", type=float, help="conversion threshold percentile (default: the preset's)")
    parser.add_argument(
        "--encoding", choices=ENCODINGS, help="input of image observations: analog pixels or spikes (default: the preset's)"
    )
    parser.add_argument("--eval-episodes", type=int, help="evaluation episodes per stage")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of conversion, rollouts and retraining, below 1000000 (default 0)"
    )
    parser.add_argument("--out", help="output folder (default: runs/<env>_snn)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after its last saved stage")
    parser.add_argument("--force", action="store_true", help="overwrite results already in --out")
    _add_common(parser)
    _add_tensorboard(
        parser, "the distillation loss and learning rate per step; per stage the reward, spike rate and threshold per layer"
    )
    _add_no_progress(parser, "the stage results and the summary still print")
    parser.set_defaults(run=_run_compress)


def _run_compress(args: argparse.Namespace) -> None:
    from spikerl.compress import compress
    from spikerl.config import training_commands
    from spikerl.loading import env_of_agent

    env_id = env_of_agent(args.agent, args.env)
    stage_overrides = {
        "schedule": args.schedule, "objective": args.objective, "steps_per_stage": args.steps_per_stage,
        "percentile": args.percentile, "stage_eval_episodes": args.eval_episodes, "encoding": args.encoding,
    }
    settings = _settings(env_id, args.config, {"compress": stage_overrides, **_common_overrides(args)}, args.assignments)
    _set_threads(settings)
    out = args.out or f"runs/{env_id}_snn"
    result = compress(
        args.agent, env_id, settings, out, seed=args.seed, device=args.device,
        resume=args.resume, force=args.force, progress=args.progress,
        commands=training_commands(args.agent) + [args.command_line],
        tensorboard=args.tensorboard,
    )
    print(_compress_summary(out, result, args.tensorboard))


def _train_summary(out: str, ann: Any, tensorboard: str | None) -> str:
    """The closing paragraph of ``train``: the best evaluation and what was written where."""
    import numpy as np

    from spikerl.run_folder import RunFolder
    from spikerl.zoo import ALGO

    folder = RunFolder(out)
    best = ""
    if folder.evaluations.is_file():
        log = np.load(folder.evaluations)
        if len(log["results"]):
            means = log["results"].mean(axis=1)
            best = f"best evaluation {means.max():.2f} at step {int(log['timesteps'][means.argmax()])}; "
    return (
        f"Trained: {best}agent {ann} (hand it to 'spikerl compress --agent {ann}'), training curve {folder.training_curve}, "
        f"resumable checkpoint {folder.checkpoint}, rl-zoo3 layout in {folder.path / ALGO}"
        + (f", TensorBoard logs in {tensorboard}" if tensorboard else "") + "."
    )


def _compress_summary(out: str, result: Any, tensorboard: str | None) -> str:
    """The closing paragraph of ``compress``: the last stage's reward and energy, and the files."""
    from spikerl.results import Stage
    from spikerl.run_folder import RunFolder
    from spikerl.zoo import ALGO

    folder = RunFolder(out)
    ann = result.rows_of(Stage.ANN)[0]
    stages = result.rows_of(Stage.RETRAINED)
    last = stages[-1]
    ratio = last.cost.get("ann_energy_ratio")
    energy = f", {ratio:.1f}x less energy per decision than the ANN" if ratio else ""
    return (
        f"Compressed: at T={last.T} the spiking agent scores {last.mean_reward:.2f} +- {last.std_reward:.2f} "
        f"(ANN {ann.mean_reward:.2f}){energy}. Agents {', '.join(str(folder.stage(row.T)) for row in stages)}; "
        f"results {folder.results_md} and {folder.results_json}; plots in {folder.path}; rl-zoo3 layout of T={last.T} in "
        f"{folder.path / ALGO}"
        + (f"; TensorBoard logs in {tensorboard}" if tensorboard else "") + "."
    )


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="evaluate an agent (ANN or SNN) on fixed seeds")
    _add_agent_arguments(parser, "DQN checkpoint (.zip)")
    parser.add_argument("--episodes", type=int, help="episodes (default: the preset's)")
    parser.add_argument("--seed", type=int, help="first evaluation seed (default: the preset's, 1000000)")
    parser.add_argument(
        "--sticky-actions", type=float, nargs="?", const=STICKY_ACTIONS, metavar="P",
        help=f"Atari only: repeat the previous action with probability P at every frame (ALE's protocol, P {STICKY_ACTIONS})",
    )
    parser.add_argument(
        "--event-driven", action="store_true",
        help="SNN only: compute large spike-fed Linear layers from the spikes alone (sparse; faster for NatureCNN on a CPU)",
    )
    video = parser.add_argument_group("video")
    video.add_argument("--video", metavar="DIR", help="also write videos of greedy games to DIR (<env>_seed<seed>.mp4)")
    video.add_argument(
        "--video-episodes", type=int_in(1, 1000), default=1,
        help="games to film, seeded like the first game of each evaluation environment (default 1)",
    )
    video.add_argument(
        "--video-steps", type=int_in(1, 10**7), help="at most this many agent steps per video (default: whole games)"
    )
    video.add_argument("--video-format", choices=("mp4", "gif"), default="mp4", help="mp4 (default) or gif (short clips)")
    video.add_argument(
        "--spike-maps", action="store_true", help="SNN only: show each layer's spikes at every decision beside the frame"
    )
    _add_common(parser)
    _add_no_progress(parser, "the results still print")
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from spikerl.envs import with_sticky_actions
    from spikerl.evaluate import evaluate_agent
    from spikerl.loading import env_of_agent, load_agent

    env_id = env_of_agent(args.agent, args.env)
    protocol_overrides = {"episodes": args.episodes, "seed": args.seed}
    settings = _settings(env_id, args.config, {"evaluate": protocol_overrides, **_common_overrides(args)}, args.assignments)
    protocol = settings.evaluate
    sticky = args.sticky_actions
    env_config = with_sticky_actions(settings.env, sticky, env_id)
    _set_threads(settings)
    model = load_agent(args.agent, env_id, settings.env, args.device)
    if args.event_driven:
        _use_event_driven(model)
    if args.video:  # a video request that would be refused is refused before the evaluation
        from spikerl.video import video_paths

        video_paths(model, env_id, args.video, args.video_episodes, protocol.seed, args.spike_maps, args.video_steps,
                    args.video_format)
    result = evaluate_agent(
        model, env_id, env_config, protocol.episodes, seed=protocol.seed, n_envs=protocol.n_envs,
        progress="evaluate" if args.progress else None,
    )
    timesteps = getattr(model.policy, "timesteps", None)
    kind = f"SNN, T={timesteps}" if timesteps else "ANN"
    sticky_text = f", sticky actions p={sticky}" if sticky is not None else ""
    print(f"agent {args.agent} ({kind}) on {env_id}{sticky_text}, {protocol.episodes} episodes from seed {protocol.seed}")
    print(f"reward {result.mean:.2f} +- {result.std:.2f} (min {min(result.rewards):.1f}, max {max(result.rewards):.1f})")
    lengths = result.lengths
    print(f"episode length {sum(lengths) / len(lengths):.1f} (min {min(lengths)}, max {max(lengths)})")
    distinct = result.distinct_episodes
    if distinct is not None and distinct < len(lengths):
        print(
            f"distinct episodes {distinct} of {len(lengths)} (the others replay one of them: the same observations, "
            "reward and length; a deterministic env replays a game from equal starts)"
        )
    for name, rate in result.spike_rates.items():
        print(f"spike rate {name}: {rate:.4f}")
    if args.video:
        from spikerl.video import record_videos

        videos = record_videos(
            model, env_id, env_config, args.video, args.video_episodes, seed=protocol.seed,
            spike_maps=args.spike_maps, max_steps=args.video_steps, video_format=args.video_format,
        )
        print(f"wrote {', '.join(map(str, videos))}")


def _use_event_driven(model) -> None:
    """Switch ``model``'s spiking Q-network to event-driven inference and say which layers take it."""
    from spikerl.snn import SpikingQNetwork

    if not isinstance(model.q_net, SpikingQNetwork):
        raise UsageError("--event-driven needs a spiking agent (from 'spikerl compress'); drop it for an ANN")
    model.q_net.use_event_driven()
    names = model.q_net.event_driven_layer_names()
    none = "none (no spike-fed Linear layer is large enough to gain); running dense"
    print(f"event-driven layers: {', '.join(names) if names else none}")


def _add_report(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report", help="rewrite results.md, the PNG plots and the costs in results.json of a compress folder "
        "(from its measured spike rates, with this spikerl's energy model)"
    )
    parser.add_argument("dir", help="folder written by 'spikerl compress' (holds results.json and ann.zip)")
    parser.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> None:
    from spikerl.locks import folder_lock
    from spikerl.report import write_report
    from spikerl.results import write_results
    from spikerl.run_folder import RunFolder

    with folder_lock(args.dir, parameter=None):
        write_results(args.dir, write_report(args.dir))
    print(f"wrote {RunFolder(args.dir).results_md}, its plots and the costs in results.json")


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("export", help="write a T=1 spiking agent as a NIR graph for neuromorphic hardware")
    _add_agent_arguments(parser, "spiking T=1 checkpoint (.zip), e.g. T1.zip from 'spikerl compress'")
    parser.add_argument("--out", required=True, help="NIR file to write (HDF5), e.g. agent.nir")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from spikerl.config import load_preset
    from spikerl.export import export_nir
    from spikerl.loading import env_of_agent, load_agent

    env_id = env_of_agent(args.agent, args.env)
    model = load_agent(args.agent, env_id, load_preset(env_id, args.config).env, "cpu")
    graph = export_nir(model, args.out, force=args.force)
    kinds = ", ".join(type(node).__name__ for node in graph.nodes.values())
    print(f"wrote {args.out}: {len(graph.nodes)} NIR nodes ({kinds})")


def _add_sweep(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("sweep", help="run a grid of train/compress cells on Ray (local or a cluster)")
    parser.add_argument("grid", help="grid file (YAML), e.g. grids/cartpole-ablation.yaml")
    parser.add_argument("--out", help="sweep folder (default: runs/sweep_<grid name>)")
    parser.add_argument("--address", help="Ray cluster: auto, host:port or ray://host:port (default: a local Ray instance)")
    parser.add_argument("--resume", action="store_true", help="continue the sweep in --out; finished cells are not rerun")
    parser.add_argument(
        "--num-threads", type=int_in(1, MAX_THREADS),
        help="torch threads and Ray CPUs of every task, in place of the cells' env.num_threads (may change on --resume)",
    )
    parser.add_argument(
        "--num-cpus", type=int_in(1, 4096),
        help="CPUs of the local Ray instance (default: Ray's count of this machine's usable cores; not with --address)",
    )
    parser.set_defaults(run=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spikerl.sweep import run_sweep

    out = args.out or f"runs/sweep_{Path(args.grid).stem}"
    outcome = run_sweep(args.grid, out, address=args.address, resume=args.resume, command=args.command_line,
                        num_threads=args.num_threads, num_cpus=args.num_cpus)
    done = f"{len(outcome.finished)} cells done ({outcome.skipped} earlier)"
    print(f"{done}, {len(outcome.failed)} failed; see {Path(out) / 'sweep.md'}")
    return 1 if outcome.failed else 0


def _add_package(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "package", help="write an agent as a Hugging Face Hub folder (huggingface_sb3's layout, with a model card)"
    )
    _add_agent_arguments(parser, "DQN checkpoint (.zip), e.g. T1.zip from 'spikerl compress'")
    parser.add_argument("--out", required=True, help="folder to write (new or empty); push it with huggingface-cli upload")
    parser.add_argument("--episodes", type=int, help="evaluation episodes for the model card (default: the preset's)")
    parser.add_argument("--video-steps", type=int, default=1000, help="agent steps of replay.mp4 (default 1000; 0: no video)")
    parser.add_argument("--num-threads", type=int, help="torch CPU threads (default: the preset's)")
    _add_no_progress(parser, "the result line still prints")
    parser.set_defaults(run=_run_package)


def _run_package(args: argparse.Namespace) -> None:
    from spikerl.loading import env_of_agent
    from spikerl.package import package_agent

    env_id = env_of_agent(args.agent, args.env)
    settings = _settings(env_id, args.config, {"evaluate": {"episodes": args.episodes}, **_common_overrides(args)})
    _set_threads(settings)
    out = package_agent(args.agent, env_id, settings, args.out, video_steps=args.video_steps, progress=args.progress)
    print(f"wrote {out} (model card README.md, results.json, config.json); push it: huggingface-cli upload USER/REPO {out}")


def build_parser() -> argparse.ArgumentParser:
    from spikerl import __version__

    parser = _Parser(prog="spikerl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands)
    _add_compress(commands)
    _add_evaluate(commands)
    _add_report(commands)
    _add_export(commands)
    _add_package(commands)
    _add_sweep(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``spikerl`` command line ``argv`` (default: this process's); returns the exit code."""
    as_program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # argparse has printed its one line (or the help)
        return exit.code if isinstance(exit.code, int) else 2
    args.command_line = "spikerl " + shlex.join(argv)  # as a user would type it, for the records of the run
    try:
        with stop_signals_as_interrupt():  # SIGTERM and SIGHUP end every command as Ctrl-C does
            code = args.run(args)
    except UsageError as error:
        print(f"spikerl {args.command}: error: {_with_flag(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP (train, sweep): every file written is complete (atomic writes)
        print(f"spikerl {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # the file is a hidden temporary, already removed: the files before it stay complete (atomic writes)
        where = f" writing in {Path(error.filename).parent}" if error.filename else ""
        problem = "no space left on the device" if error.errno == errno.ENOSPC else "the disk quota is used up"
        print(f"spikerl {args.command}: error: {problem}{where}; free some, then run the command again (train and "
              "compress continue with --resume)", file=sys.stderr)
        return 2
    finally:
        if as_program:  # the work is over: a Ctrl-C while the interpreter shuts down must not end in a traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code or 0


def _with_flag(error: UsageError) -> str:
    """The error's message on one line, its parameter named by the flag that sets it (if one does)."""
    message = " ".join(str(error).split())
    parameter = error.parameter or ""
    for name, flag in FLAGS.items():
        if parameter == name or parameter.startswith(name + "["):
            return re.sub(rf"(?<![\w.-]){re.escape(name)}(?!\w)", flag, message, count=1)
    return message

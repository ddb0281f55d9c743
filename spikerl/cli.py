"""spikerl: train DQN agents, convert them to spiking networks and compress them to one timestep."""

from __future__ import annotations

import argparse
import sys

from spikerl.errors import UsageError


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train an ANN DQN agent with SB3")
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium id with a preset in envs/")
    parser.add_argument("--config", help="preset YAML file (default: envs/<env>.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-n", "--n-timesteps", type=int, help="agent steps (default: the preset's)")
    parser.add_argument("--out", help="run folder (default: runs/<env>_<seed>)")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    _add_common(parser)
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    from spikerl.config import load_preset
    from spikerl.train import train

    if args.resume:
        from spikerl.config import SECTIONS, read_run_config

        saved = read_run_config(args.resume)
        if saved is None:
            raise UsageError(f"nothing to resume in {args.resume} (config.yaml missing); start a run with --out")
        env_id, seed, out = saved["env_id"], saved["seed"], args.resume
        preset = {section: saved[section] for section in SECTIONS}
    else:
        env_id, seed = args.env, args.seed
        preset = load_preset(env_id, args.config)
        out = args.out or f"runs/{env_id}_{seed}"
    _set_threads(args, preset)
    ann = train(
        env_id, preset, out, seed=seed, n_timesteps=args.n_timesteps, device=args.device,
        resume=bool(args.resume), progress=args.progress, command=_command_line(),
    )
    print(f"ANN agent: {ann}")


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (no usage dump), exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument(
        "--num-threads", type=int,
        help="torch CPU threads (default: the preset's; small networks run far faster on 1, "
        "and several processes on 2 cores must not oversubscribe them)",
    )


def _set_threads(args: argparse.Namespace, preset: dict) -> None:
    import torch

    threads = args.num_threads if args.num_threads is not None else preset["env"].get("num_threads")
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--num-threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def _add_agent_arguments(parser: argparse.ArgumentParser, agent_help: str) -> None:
    parser.add_argument("--agent", required=True, help=agent_help)
    parser.add_argument("--env", help="Gymnasium id (default: from the agent's folder)")
    parser.add_argument("--config", help="preset YAML file (default: envs/<env>.yaml)")


def _positive_ints(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers such as 5,4,3,2,1") from None


def _command_line() -> str:
    """This process's command line as a user would type it."""
    import shlex

    return "spikerl " + " ".join(shlex.quote(part) for part in sys.argv[1:])


def _agent_commands(agent: str) -> list[str]:
    """The commands that trained ``agent``, when its run folder recorded them."""
    from pathlib import Path

    from spikerl.config import read_run_config

    run_config = read_run_config(Path(agent).parent)
    return list(run_config["commands"]) if run_config else []


def _add_compress(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("compress", help="convert an ANN agent to an SNN and compress it in time (IIR)")
    _add_agent_arguments(parser, "ANN DQN checkpoint (.zip)")
    parser.add_argument("--schedule", type=_positive_ints, help="decreasing T values (default: the preset's, 5,4,3,2,1)")
    parser.add_argument("--objective", help="retraining objective: distill (default) or td")
    parser.add_argument("--steps-per-stage", type=int, help="gradient steps (distill) or agent steps (td) per stage")
    parser.add_argument("--percentile", type=float, help="conversion threshold percentile (default 90)")
    parser.add_argument(
        "--encoding", help="input of image observations: direct (analog pixels, default), threshold, event or threshold+event (spikes)"
    )
    parser.add_argument("--eval-episodes", type=int, help="evaluation episodes per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output folder (default: runs/<env>_snn)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after its last saved stage")
    parser.add_argument("--force", action="store_true", help="overwrite results already in --out")
    _add_common(parser)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(run=_run_compress)


def _run_compress(args: argparse.Namespace) -> None:
    from spikerl.compress import compress
    from spikerl.config import load_preset
    from spikerl.loading import env_of_agent

    env_id = env_of_agent(args.agent, args.env)
    preset = load_preset(env_id, args.config)
    overrides = {
        "schedule": args.schedule, "objective": args.objective,
        "steps_per_stage": args.steps_per_stage, "percentile": args.percentile, "stage_eval_episodes": args.eval_episodes,
        "encoding": args.encoding,
    }
    preset["compress"].update({key: value for key, value in overrides.items() if value is not None})
    _set_threads(args, preset)
    compress(
        args.agent, env_id, preset, args.out or f"runs/{env_id}_snn", seed=args.seed, device=args.device,
        resume=args.resume, force=args.force, progress=args.progress, commands=_agent_commands(args.agent) + [_command_line()],
    )


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="evaluate an agent (ANN or SNN) on fixed seeds")
    _add_agent_arguments(parser, "DQN checkpoint (.zip)")
    parser.add_argument("--episodes", type=int, help="episodes (default: the preset's)")
    parser.add_argument("--seed", type=int, help="first evaluation seed (default 1000000)")
    parser.add_argument(
        "--sticky-actions", type=float, nargs="?", const=0.25, metavar="P",
        help="Atari only: repeat the previous action with probability P at every frame (ALE's protocol; P defaults to 0.25)",
    )
    parser.add_argument(
        "--event-driven", action="store_true",
        help="SNN only: compute large spike-fed Linear layers from the spikes alone (sparse; faster for NatureCNN on a CPU)",
    )
    _add_common(parser)
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from spikerl.config import load_preset
    from spikerl.envs import EVAL_SEED_BASE, with_sticky_actions
    from spikerl.evaluate import evaluate_agent
    from spikerl.loading import env_of_agent, load_agent

    env_id = env_of_agent(args.agent, args.env)
    preset = load_preset(env_id, args.config)
    protocol = preset["evaluate"]
    _set_threads(args, preset)
    episodes = args.episodes if args.episodes is not None else int(protocol.get("episodes", 10))
    seed = args.seed if args.seed is not None else int(protocol.get("seed", EVAL_SEED_BASE))
    env_config = preset["env"] if args.sticky_actions is None else with_sticky_actions(preset["env"], args.sticky_actions, env_id)
    model = load_agent(args.agent, env_id, preset["env"], args.device)
    if args.event_driven:
        _use_event_driven(model)
    result = evaluate_agent(model, env_id, env_config, episodes, seed=seed, n_envs=int(protocol.get("n_envs", 10)))
    timesteps = getattr(model.policy, "timesteps", None)
    sticky = f", sticky actions p={args.sticky_actions}" if args.sticky_actions is not None else ""
    print(f"agent {args.agent} ({'SNN, T=%d' % timesteps if timesteps else 'ANN'}) on {env_id}{sticky}, {episodes} episodes from seed {seed}")
    print(f"reward {result.mean:.2f} +- {result.std:.2f} (min {min(result.rewards):.1f}, max {max(result.rewards):.1f})")
    print(f"episode length {sum(result.lengths) / len(result.lengths):.1f} (min {min(result.lengths)}, max {max(result.lengths)})")
    for name, rate in result.spike_rates.items():
        print(f"spike rate {name}: {rate:.4f}")


def _use_event_driven(model) -> None:
    """Switch ``model``'s spiking Q-network to event-driven inference and say which layers take it."""
    from spikerl.snn import SpikingQNetwork

    if not isinstance(model.q_net, SpikingQNetwork):
        raise UsageError("--event-driven needs a spiking agent (from 'spikerl compress'); drop it for an ANN")
    model.q_net.use_event_driven()
    names = model.q_net.event_driven_layer_names()
    print(f"event-driven layers: {', '.join(names)}" if names else "event-driven layers: none (no spike-fed Linear layer is large enough to gain); running dense")


def _add_report(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("report", help="rewrite results.md and the PNG plots of a compress folder")
    parser.add_argument("dir", help="folder written by 'spikerl compress' (holds results.json and ann.zip)")
    parser.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> None:
    from pathlib import Path

    from spikerl.config import RESULTS_JSON
    from spikerl.report import write_report

    if not (Path(args.dir) / RESULTS_JSON).is_file():
        raise UsageError(f"{args.dir} holds no results.json; pass the --out folder of 'spikerl compress'")
    write_report(args.dir)
    print(f"wrote {Path(args.dir) / 'results.md'} and its plots")


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("export", help="write a T=1 spiking agent as a NIR graph for neuromorphic hardware")
    _add_agent_arguments(parser, "spiking T=1 checkpoint (.zip), e.g. T1.zip from 'spikerl compress'")
    parser.add_argument("--out", required=True, help="NIR file to write (HDF5), e.g. agent.nir")
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from spikerl.config import load_preset
    from spikerl.export import export_nir
    from spikerl.loading import env_of_agent, load_agent

    env_id = env_of_agent(args.agent, args.env)
    model = load_agent(args.agent, env_id, load_preset(env_id, args.config)["env"], "cpu")
    graph = export_nir(model, args.out)
    print(f"wrote {args.out}: {len(graph.nodes)} NIR nodes ({', '.join(type(node).__name__ for node in graph.nodes.values())})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spikerl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands)
    _add_compress(commands)
    _add_evaluate(commands)
    _add_report(commands)
    _add_export(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except UsageError as error:
        print(f"spikerl {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0

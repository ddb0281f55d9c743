"""How often a spiking student acts as its ANN teacher does, on states of the teacher's own rollouts.

    python scripts/action_agreement.py --teacher ANN.zip --student T1.zip [--states 4000] [--sticky-actions 0.25]

prints one row per protocol (deterministic, and ALE's sticky actions where given): the share
of states where the student's greedy action is the teacher's, and for Atari games also where
it makes the same move with FIRE ignored (``RIGHTFIRE`` as ``RIGHT``, ``FIRE`` as ``NOOP``; in
Pong these pairs move the paddle alike), with the teacher's median Q-value gap between its two
best actions where they agree (make the same move, on Atari) and where they do not. A
lower-noise reading of fidelity than a reward over a few games: README's "What the spikes
buy" quotes it for the Pong SNNs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np
import torch
from stable_baselines3 import DQN

from spikerl.cli import int_in
from spikerl.config import load_preset
from spikerl.convert import collect_observations
from spikerl.envs import make_env, with_sticky_actions
from spikerl.errors import UsageError
from spikerl.loading import env_of_agent, load_agent
from spikerl.settings import EnvSettings


def move_of_action(env_id: str, env_config: EnvSettings) -> np.ndarray | None:
    """``[n_actions]``: each action's move with FIRE ignored (an index per distinct move), or None off Atari."""
    if not env_config.atari:
        return None
    with contextlib.closing(make_env(env_id, env_config, seed=0)) as env:  # the agents' own action set
        moves = [meaning.replace("FIRE", "") or "NOOP" for meaning in env.env_method("get_action_meanings")[0]]
    return np.array([sorted(set(moves)).index(move) for move in moves])


def agreement_row(
    teacher: DQN, student: DQN, env_id: str, env_config: EnvSettings, states: int, moves: np.ndarray | None
) -> str:
    """One table row: agreement of the greedy actions on ``states`` observations of the teacher's rollouts."""
    env = make_env(env_id, env_config, seed=12345)  # below the evaluation seeds (1,000,000 on)
    try:
        observations = collect_observations(teacher, env, states, rng=np.random.default_rng(0))  # [N, ...]
    finally:
        env.close()
    taught, acted = (model.predict(observations, deterministic=True)[0] for model in (teacher, student))
    with torch.no_grad():
        q_values = teacher.q_net(teacher.policy.obs_to_tensor(observations)[0]).cpu()  # [N, n_actions]
    best_two = q_values.topk(2, dim=1).values.numpy()
    gap = best_two[:, 0] - best_two[:, 1]  # [N]
    same = taught == acted if moves is None else moves[taught] == moves[acted]
    medians = [f"{np.median(gap[mask]):.3f}" if mask.any() else "-" for mask in (same, ~same)]
    same_action = f"{np.mean(taught == acted):.1%}"
    same_move = f"{np.mean(same):.1%}" if moves is not None else "-"
    return f"| {states} | {same_action} | {same_move} | {medians[0]} | {medians[1]} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="the ANN (ann.zip)")
    parser.add_argument("--student", required=True, help="its spiking student (T1.zip)")
    parser.add_argument("--env", help="env id, where the agents' folders do not tell")
    parser.add_argument("--states", type=int_in(1, 10**7), default=4000)
    parser.add_argument("--sticky-actions", type=float, metavar="P", help="also a row under ALE's sticky actions")
    parser.add_argument("--num-threads", type=int_in(1, 1024), default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    try:
        env_id = env_of_agent(args.teacher, args.env)
        env_config = load_preset(env_id).env
        teacher, student = (load_agent(path, env_id, env_config, "cpu") for path in (args.teacher, args.student))
        protocols = {"deterministic": env_config}
        if args.sticky_actions is not None:
            protocols[f"sticky actions p={args.sticky_actions}"] = with_sticky_actions(env_config, args.sticky_actions, env_id)
    except UsageError as error:
        print(f"action_agreement: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    moves = move_of_action(env_id, env_config)
    print(f"{args.student} against {args.teacher} on {env_id}, greedy actions on the teacher's rollout states\n")
    print("| protocol | states | same action | same move, FIRE ignored | teacher's Q gap where they agree | where not |")
    print("|---|---|---|---|---|---|")
    for name, config in protocols.items():
        print(f"| {name} " + agreement_row(teacher, student, env_id, config, args.states, moves))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Retraining throughput on CartPole-v1: TD (agent steps/s) and distillation (gradient steps/s).

    python bench/throughput.py [--agent agents/CartPole-v1/ann.zip] [--steps 3000]

TD: SB3's ``learn`` on the spiking policy at T=1 against plain SB3 DQN (``MlpPolicy``) with the
same settings (the preset's ``compress.td.dqn``), in the same process. Distillation: gradient
steps/s at each T of the schedule. Ratios are to the baseline row of each table.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from stable_baselines3 import DQN

from spikerl.config import load_preset
from spikerl.convert import collect_observations, convert
from spikerl.envs import make_env
from spikerl.loading import load_agent
from spikerl.policy import set_timesteps
from spikerl.retrain import DistillationRetrainer


def steps_per_second(run, steps: int) -> float:
    start = time.perf_counter()
    run(steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="agents/CartPole-v1/ann.zip")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = load_preset("CartPole-v1")
    settings = preset.compress
    td = dict(settings.td.dqn, learning_starts=500)
    env = make_env("CartPole-v1", preset.env, seed=0)
    ann = load_agent(args.agent, "CartPole-v1", preset.env, "cpu")
    states = collect_observations(ann, env, 2000)

    baseline = DQN("MlpPolicy", env, policy_kwargs=ann.policy_kwargs, device="cpu", seed=0, **td)
    base = steps_per_second(lambda n: baseline.learn(n), args.steps)
    print(f"TD retraining, {args.steps} agent steps, {args.threads} thread(s)")
    print(f"{'model':<24} {'steps/s':>9} {'x SB3 DQN':>10}")
    print(f"{'SB3 DQN (MlpPolicy)':<24} {base:>9.0f} {1:>10.2f}")
    for timesteps in (1, 5):
        student = convert(ann, env, states, timesteps, **td)
        rate = steps_per_second(student.learn, args.steps)
        print(f"{'spiking T=' + str(timesteps):<24} {rate:>9.0f} {rate / base:>10.2f}")

    student = convert(ann, env, states, 5)
    distill = dataclasses.replace(settings.distill, student_states=0)
    trainer = DistillationRetrainer(ann, student, env, distill, teacher_states=2000, progress=False)
    print(f"\nDistillation, {args.steps} gradient steps at batch {distill.batch_size}")
    print(f"{'T':<24} {'steps/s':>9} {'x T=1':>10}")
    rates = {}
    for timesteps in settings.schedule:
        set_timesteps(student, timesteps)
        rates[timesteps] = steps_per_second(trainer.retrain, args.steps)
    for timesteps, rate in rates.items():
        print(f"{'T=' + str(timesteps):<24} {rate:>9.0f} {rate / rates[1]:>10.2f}")


if __name__ == "__main__":
    main()

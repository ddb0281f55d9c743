"""Cost of one DQN gradient step of a preset's training (Pong by default), and CPU levers on it.

    python bench/train_step.py [--env PongNoFrameskip-v4] [--threads 2] [--repeats 20]

Builds the preset's DQN from its ``train.dqn`` settings on the preset's environment (as
``spikerl train`` does, without sticky actions, which do not change a gradient step), fills
the replay buffer with random transitions and times SB3's own ``DQN.train(gradient_steps=1)``:
a batch sampled, the target network's forward pass, the Q-network's forward and backward
passes and the Adam step. Against that baseline, in the same run and taking turns: fused
Adam, channels-last memory format (which ``spikerl train`` applies to image policies), and
bfloat16 autocast (``train.bfloat16``, ``spikerl.train.BFloat16DQN``; it changes the arithmetic,
so a recipe has to be re-measured with it). The last column is the agent steps per second that the gradient steps alone allow
(``gradient_steps`` of them every ``train_freq`` agent steps).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.logger import configure
from timing import medians_ms

from spikerl.config import load_preset
from spikerl.envs import make_env
from spikerl.train import BFloat16DQN

BUFFER = 2_000  # random transitions to sample batches from (the cost does not depend on the buffer size)
SB3 = "SB3 DQN, as the preset builds it"
SAMPLING = "(of which: sampling the batch)"


def build(env_id: str, optimizer_kwargs: dict | None = None, algorithm: type[DQN] = DQN) -> DQN:
    """The preset's DQN (as ``algorithm``) with ``BUFFER`` random transitions in its replay buffer."""
    settings = load_preset(env_id)
    dqn = dict(settings.train.dqn)
    if optimizer_kwargs:
        dqn["policy_kwargs"] = {**dqn.get("policy_kwargs", {}), "optimizer_kwargs": optimizer_kwargs}
    env = make_env(env_id, settings.env, seed=0)
    model = algorithm(settings.train.policy, env, seed=0, device="cpu", verbose=0, **dqn)
    model.set_logger(configure(None, []))
    rng = np.random.default_rng(0)
    space = env.observation_space
    for _ in range(BUFFER):
        obs = rng.integers(0, 256, (1, *space.shape), dtype=np.uint8)
        action = np.array([env.action_space.sample()])
        model.replay_buffer.add(obs, obs, action, np.zeros(1), np.zeros(1), [{}])
    env.close()
    return model


def gradient_step(model: DQN) -> Callable[[], None]:
    return lambda: model.train(gradient_steps=1, batch_size=model.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    baseline = build(args.env)
    channels_last, channels_last_bf16 = build(args.env), build(args.env, algorithm=BFloat16DQN)
    for model in (channels_last, channels_last_bf16):
        model.policy.to(memory_format=torch.channels_last)
    paths = {
        SB3: gradient_step(baseline),
        SAMPLING: lambda: baseline.replay_buffer.sample(baseline.batch_size),
        "fused Adam": gradient_step(build(args.env, {"fused": True})),
        "channels-last": gradient_step(channels_last),
        "bfloat16 autocast": gradient_step(build(args.env, algorithm=BFloat16DQN)),
        "channels-last + bfloat16 autocast": gradient_step(channels_last_bf16),
    }
    medians = medians_ms(paths, args.repeats, warmup=3)
    base = medians.pop(SB3)
    sampling = medians.pop(SAMPLING)
    agent_steps = baseline.train_freq.frequency / baseline.gradient_steps  # agent steps per gradient step
    print(f"{args.env}: one gradient step at batch {baseline.batch_size}, {args.threads} torch threads, "
          f"median of {args.repeats} (agent steps/s: what the gradient steps alone allow, "
          f"{baseline.gradient_steps} per {baseline.train_freq.frequency} agent steps)")
    print("| path | ms per step | ratio to SB3 | agent steps/s |")
    print("|---|---|---|---|")
    print(f"| {SB3} | {base:.1f} | 1.00x | {agent_steps * 1000 / base:.0f} |")
    print(f"| {SAMPLING} | {sampling:.1f} | - | - |")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.1f} | {ms / base:.2f}x | {agent_steps * 1000 / ms:.0f} |")


if __name__ == "__main__":
    main()

"""Latency per decision on the CPU: ANN against SNN at T=1..5, batch 1 and 32.

    python bench/latency.py [--repeats 200] [--threads 1]

Medians over repeated forward passes in one process, taken in turns (``timing.medians_ms``),
with the ratio to the ANN of the same network and batch, and of T to T=1. Weights are
random: the dense path does the same work whatever the spikes are.

With glibc's default allocator, tensors of 8 MB and more are mapped fresh on every call
(NatureCNN at T=5, batch 32), which adds page faults (about 3-5% there); run with
``MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000`` to time the
arithmetic alone.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.dqn.policies import CnnPolicy, MlpPolicy
from timing import medians_ms

from spikerl.policy import SpikingCnnPolicy, SpikingMlpPolicy

NETWORKS = {
    "CartPole MLP 256x256": (
        MlpPolicy,
        SpikingMlpPolicy,
        gym.spaces.Box(-1, 1, (4,), np.float32),
        2,
        dict(net_arch=[256, 256]),
    ),
    "Pong NatureCNN": (CnnPolicy, SpikingCnnPolicy, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), 6, {}),
}


def forward_at(q_net: torch.nn.Module, timesteps: int | None, obs: torch.Tensor):
    """A zero-argument call of ``q_net`` on ``obs`` at ``timesteps`` (None: an ANN)."""

    def run() -> torch.Tensor:
        if timesteps is not None:
            q_net.timesteps = timesteps
        return q_net(obs)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} forward passes (ms)")
    print(f"{'network':<22} {'batch':>5} {'model':>6} {'ms':>8} {'x ANN':>7} {'x T=1':>7}")
    for name, (ann_class, snn_class, space, actions, kwargs) in NETWORKS.items():
        for batch in (1, 32):
            obs = torch.as_tensor(np.stack([space.sample() for _ in range(batch)]))
            ann = ann_class(space, gym.spaces.Discrete(actions), lambda _: 1e-4, **kwargs).q_net.eval()
            snn = snn_class(space, gym.spaces.Discrete(actions), lambda _: 1e-4, timesteps=1, **kwargs).q_net.eval()
            snn.load_state_dict(ann.state_dict(), strict=False)
            paths = {"ANN": forward_at(ann, None, obs), **{f"T={t}": forward_at(snn, t, obs) for t in range(1, 6)}}
            with torch.no_grad():
                ms = medians_ms(paths, args.repeats)
            for model, value in ms.items():
                ratio_t1 = "" if model == "ANN" else f"{value / ms['T=1']:.2f}"
                print(f"{name:<22} {batch:>5} {model:>6} {value:>8.3f} {value / ms['ANN']:>7.2f} {ratio_t1:>7}")


if __name__ == "__main__":
    main()

"""Event-driven (sparse) against dense inference for a Linear layer fed with binary spikes.

    python bench/sparse.py [--rates 0.05,0.1,0.2,0.3] [--repeats 300] [--threads 1]
                           [--agent AGENT.zip ...]

Layers fed by spikes: CartPole's hidden 256 -> 256, a mid-size 1024 -> 512 and
NatureCNN's 3136 -> 512 (the largest fully connected layer of Pong's network). For each spike
rate and batch size it times, in turns, with medians over ``--repeats``:

``dense``   ``F.linear(spikes, W, b)``: every weight multiplied, whatever the spikes;
``gather``  batch 1 only: ``b + W^T[active].sum(0)``, adding the weight rows of the inputs
            that spiked (an accumulate per spike and output, as event-driven hardware does);
``csr``     spikerl's ``SpikeDrivenLinear``: ``bias + CSR(spikes) @ W^T`` (conversion timed
            too), here at every rate (the package falls back to dense above rate 0.1).

With ``--agent`` (one or more agents, any T) it also times whole decisions on states from
each agent's own games: the dense network against the same network after
``use_event_driven()``, at the spike rates the agent really has.

A ratio below 1 means the event-driven path is faster.
"""

from __future__ import annotations

import argparse
import copy
import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import medians_ms
from torch import nn

from spikerl.config import load_preset
from spikerl.convert import collect_observations
from spikerl.envs import make_env
from spikerl.event_driven import SpikeDrivenLinear
from spikerl.loading import env_of_agent, load_agent

LAYERS = {"CartPole hidden": (256, 256), "mid-size": (1024, 512), "NatureCNN fc": (3136, 512)}


def sparse_paths(spikes: torch.Tensor, linear: nn.Linear) -> dict[str, Callable[[], torch.Tensor]]:
    """The dense and sparse ways to compute ``linear(spikes)``, ``[B, in] -> [B, out]``, checked to agree."""
    weight, bias = linear.weight.detach(), linear.bias.detach()
    event_driven = SpikeDrivenLinear(linear, max_input_density=1.0)  # always the sparse product
    paths = {"dense": lambda: F.linear(spikes, weight, bias), "csr": lambda: event_driven(spikes)}
    if len(spikes) == 1:
        weight_t = weight.t().contiguous()  # [in, out]: one contiguous row per input neuron
        paths["gather"] = lambda: bias + weight_t[spikes[0].nonzero().squeeze(1)].sum(0, keepdim=True)
    dense = paths["dense"]()
    for name, path in paths.items():
        torch.testing.assert_close(path(), dense, rtol=1e-4, atol=1e-4, msg=f"{name} disagrees with dense")
    return paths


def whole_decisions(agent_path: str, states: int, repeats: int) -> None:
    """Time the agent's dense decisions against event-driven ones on its own game states."""
    env_id = env_of_agent(agent_path, None)
    preset = load_preset(env_id)
    model = load_agent(agent_path, env_id, preset.env, "cpu")
    q_net = model.q_net.eval()
    event_driven = copy.deepcopy(q_net)
    event_driven.use_event_driven()
    observations = collect_observations(model, make_env(env_id, preset.env, seed=1_000_000), states)
    print(f"\nwhole decisions of {agent_path} (T={q_net.timesteps}, its own game states), median ms per decision")
    print(f"{'batch':>5} {'dense':>8} {'event':>8} {'ratio':>6}")
    with torch.no_grad():
        for batch in (1, 32):
            obs = torch.as_tensor(observations[:batch])
            torch.testing.assert_close(event_driven(obs), q_net(obs), rtol=1e-4, atol=1e-4)
            ms = medians_ms({"dense": functools.partial(q_net, obs), "event": functools.partial(event_driven, obs)}, repeats)
            print(f"{batch:>5} {ms['dense']:>8.3f} {ms['event']:>8.3f} {ms['event'] / ms['dense']:>6.2f}")
        with q_net.recording_spikes() as rates:
            q_net(torch.as_tensor(observations))
    print("spike rates per layer: " + ", ".join(f"{name} {rate:.3f}" for name, rate in rates.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.05,0.1,0.2,0.3", help="input spike rates to try")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--agent", nargs="*", default=[], help="agents whose whole decisions to time as well")
    parser.add_argument("--states", type=int, default=512, help="states recorded per agent")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} runs (ms); ratio = path / dense")
    columns = f"{'dense':>8} {'gather':>8} {'ratio':>6} {'csr':>8} {'ratio':>6}"
    print(f"{'layer':<16} {'in->out':>10} {'rate':>5} {'batch':>5} {columns}")
    for name, (inputs, outputs) in LAYERS.items():
        layer = nn.Linear(inputs, outputs)
        for rate in (float(r) for r in args.rates.split(",")):
            for batch in (1, 32):
                spikes = (torch.rand(batch, inputs) < rate).float()
                with torch.no_grad():
                    ms = medians_ms(sparse_paths(spikes, layer), args.repeats)
                gather = f"{ms['gather']:>8.4f} {ms['gather'] / ms['dense']:>6.2f}" if "gather" in ms else f"{'-':>8} {'-':>6}"
                print(
                    f"{name:<16} {f'{inputs}->{outputs}':>10} {rate:>5.2f} {batch:>5} {ms['dense']:>8.4f} "
                    f"{gather} {ms['csr']:>8.4f} {ms['csr'] / ms['dense']:>6.2f}"
                )
    for agent in args.agent:
        whole_decisions(agent, args.states, args.repeats)


if __name__ == "__main__":
    main()

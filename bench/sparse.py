"""Event-driven (sparse) against dense inference for a Linear layer fed with binary spikes.

    python bench/sparse.py [--rates 0.05,0.1,0.2,0.3] [--repeats 300] [--threads 1]
                           [--agent agents/PongNoFrameskip-v4/T1.zip]

The layers whose input is spikes in spikerl's two networks: CartPole's hidden 256 -> 256 and
NatureCNN's 3136 -> 512 (the largest fully connected layer of Pong's network). For each spike
rate and batch size it times, in turns, with medians over ``--repeats``:

``dense``   ``F.linear(spikes, W, b)``: every weight multiplied, whatever the spikes;
``gather``  batch 1 only: ``b + W^T[active].sum(0)``, adding the weight rows of the inputs
            that spiked (an accumulate per spike and output, as event-driven hardware does);
``csr``     ``torch.sparse.mm`` on the spikes converted to CSR (conversion timed too).

With ``--agent`` (a T=1 agent) it also times whole decisions on states from the agent's own
games: dense, against the same network with each Linear layer fed by spikes computed the
``csr`` way, at the spike rates the agent really has.

A ratio below 1 means the sparse path is faster. spikerl keeps only the dense path: see the
README's "What the spikes buy" for the measured numbers and the decision.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from spikerl.cli import _env_of_agent
from spikerl.config import load_preset
from spikerl.convert import collect_observations
from spikerl.envs import make_env
from spikerl.loading import load_agent
from spikerl.neurons import IFNeuron
from timing import medians_ms

LAYERS = {"CartPole hidden": (256, 256), "NatureCNN fc": (3136, 512)}


def sparse_paths(spikes: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """The dense and sparse ways to compute ``spikes [B, in] -> [B, out]``, checked to agree."""
    weight_t = weight.t().contiguous()  # [in, out]: one contiguous row per input neuron
    paths = {
        "dense": lambda: F.linear(spikes, weight, bias),
        "csr": lambda: torch.addmm(bias, spikes.to_sparse_csr(), weight_t),
    }
    if len(spikes) == 1:
        paths["gather"] = lambda: bias + weight_t[spikes[0].nonzero().squeeze(1)].sum(0, keepdim=True)
    dense = paths["dense"]()
    for name, path in paths.items():
        torch.testing.assert_close(path(), dense, rtol=1e-4, atol=1e-4, msg=f"{name} disagrees with dense")
    return paths


class CsrInputLinear(nn.Module):
    """A Linear layer computed as ``bias + CSR(spikes) @ W^T``: work only where inputs spiked."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight_t = linear.weight.detach().t().contiguous()  # [in, out]
        self.bias = linear.bias.detach()

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """Binary spikes ``[B, in]`` -> ``[B, out]``."""
        return torch.addmm(self.bias, spikes.to_sparse_csr(), self.weight_t)


def whole_decisions(agent_path: str, states: int, repeats: int) -> None:
    """Time the agent's dense decisions against ones with spike-fed Linear layers in CSR."""
    env_id = _env_of_agent(agent_path, None)
    preset = load_preset(env_id)
    model = load_agent(agent_path, env_id, preset["env"], "cpu")
    q_net = model.q_net.eval()
    if q_net.timesteps != 1:
        raise SystemExit(f"{agent_path} runs T={q_net.timesteps}; pass a T=1 agent")
    observations = collect_observations(model, make_env(env_id, preset["env"], seed=1_000_000), states)
    dense_layers = q_net._layers
    sparse_layers, fed_by_spikes = [], False
    for layer in dense_layers:  # a Linear layer is fed by spikes when a neuron layer comes before it (Flatten between is fine)
        sparse_layers.append(CsrInputLinear(layer) if isinstance(layer, nn.Linear) and fed_by_spikes else layer)
        if not isinstance(layer, nn.Flatten):
            fed_by_spikes = isinstance(layer, IFNeuron)
    sparse_layers = tuple(sparse_layers)
    print(f"\nwhole decisions of {agent_path} (T=1) (its own game states), median ms per decision")
    print(f"{'batch':>5} {'dense':>8} {'csr':>8} {'ratio':>6}")

    def decide_with(layers: tuple[nn.Module, ...], obs: torch.Tensor):
        def run() -> torch.Tensor:
            q_net._layers = layers
            return q_net(obs)

        return run

    with torch.no_grad():
        for batch in (1, 32):
            obs = torch.as_tensor(observations[:batch])
            ms = medians_ms({"dense": decide_with(dense_layers, obs), "csr": decide_with(sparse_layers, obs)}, repeats)
            print(f"{batch:>5} {ms['dense']:>8.3f} {ms['csr']:>8.3f} {ms['csr'] / ms['dense']:>6.2f}")
        q_net._layers = dense_layers
        with q_net.recording_spikes() as rates:
            q_net(torch.as_tensor(observations))
    print("spike rates per layer: " + ", ".join(f"{name} {rate:.3f}" for name, rate in rates.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.05,0.1,0.2,0.3", help="input spike rates to try")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--agent", help="a T=1 agent whose whole decisions to time as well")
    parser.add_argument("--states", type=int, default=512, help="states recorded for --agent")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} runs (ms); ratio = path / dense")
    print(f"{'layer':<16} {'in->out':>10} {'rate':>5} {'batch':>5} {'dense':>8} {'gather':>8} {'ratio':>6} {'csr':>8} {'ratio':>6}")
    for name, (inputs, outputs) in LAYERS.items():
        layer = torch.nn.Linear(inputs, outputs)
        weight, bias = layer.weight.detach(), layer.bias.detach()
        for rate in (float(r) for r in args.rates.split(",")):
            for batch in (1, 32):
                spikes = (torch.rand(batch, inputs) < rate).float()
                with torch.no_grad():
                    ms = medians_ms(sparse_paths(spikes, weight, bias), args.repeats)
                gather = f"{ms['gather']:>8.4f} {ms['gather'] / ms['dense']:>6.2f}" if "gather" in ms else f"{'-':>8} {'-':>6}"
                print(
                    f"{name:<16} {f'{inputs}->{outputs}':>10} {rate:>5.2f} {batch:>5} {ms['dense']:>8.4f} "
                    f"{gather} {ms['csr']:>8.4f} {ms['csr'] / ms['dense']:>6.2f}"
                )
    if args.agent:
        whole_decisions(args.agent, args.states, args.repeats)


if __name__ == "__main__":
    main()

"""Event-driven (sparse) against dense inference for a Linear layer fed with binary spikes.

    python bench/sparse.py [--rates 0.05,0.1,0.2,0.3] [--repeats 300] [--threads 1]

The layers whose input is spikes in spikerl's two networks: CartPole's hidden 256 -> 256 and
NatureCNN's 3136 -> 512 (the largest fully connected layer of Pong's network). For each spike
rate and batch size it times, in turns, with medians over ``--repeats``:

``dense``   ``F.linear(spikes, W, b)``: every weight multiplied, whatever the spikes;
``gather``  batch 1 only: ``b + W^T[active].sum(0)``, adding the weight rows of the inputs
            that spiked (an accumulate per spike and output, as event-driven hardware does);
``csr``     ``torch.sparse.mm`` on the spikes converted to CSR (conversion timed too).

A ratio below 1 means the sparse path is faster. spikerl keeps only the dense path: see the
README's "What the spikes buy" for the measured table and the decision.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

LAYERS = {"CartPole hidden": (256, 256), "NatureCNN fc": (3136, 512)}


def medians_ms(paths: dict[str, Callable[[], torch.Tensor]], repeats: int) -> dict[str, float]:
    """Median ms of each zero-argument callable, timed in turns after 10 warm-up rounds."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for index in range(repeats + 10):
        for name, path in paths.items():
            start = time.perf_counter()
            path()
            if index >= 10:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(samples) * 1000 for name, samples in times.items()}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.05,0.1,0.2,0.3", help="input spike rates to try")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
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


if __name__ == "__main__":
    main()

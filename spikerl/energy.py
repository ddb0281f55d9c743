"""Operation counts and energy per decision, as the SNN literature estimates them: compute alone,
and compute plus memory access.

Per weighted layer (``Linear``/``Conv2d``) of the Q-network, ``macs`` is its number of
multiply-accumulates for one observation. Then, per decision:

Compute (45 nm CMOS, Horowitz 2014: 32-bit float MAC 4.6 pJ, AC 0.9 pJ):

- ANN: every layer costs its MACs.
- SNN at T timesteps: the first layer takes the analog observation (direct encoding) and
  costs its MACs, once (spikerl computes it once per decision); every later layer receives
  binary spikes and costs ``MACs x (input spike rate) x T`` accumulates (ACs).

Memory (counted in bytes: 32-bit weights, biases, potentials and activations, 1-bit spikes;
every byte read or written costs ``memory_pj_per_byte``):

- weights: one read per operation, MAC or AC (a spike reads the weights of its fan-out only);
- biases: one read per output of a layer each time it is computed: once per decision in the
  ANN and in the SNN's first layer, every timestep in the spike-fed layers;
- membrane potentials: at T>1 every neuron and the output accumulator keeps its potential
  between timesteps, read and written once per timestep; at T=1 nothing is kept;
- activations: the ANN reads each layer's input and writes its output (32 bits a value);
  the SNN reads the observation, writes the Q-values (32 bits) and writes and reads every
  spike map once per timestep (1 bit a neuron).

``memory_pj_per_byte`` defaults to 24.96 pJ/byte (3.12 pJ/bit), the figure of STEP's Table 9
that SpikingJelly's ``op_counter.simple_energy`` (``SimpleEnergyCostConfig.fp32``) charges;
for scale, Horowitz 2014 gives 45 nm SRAM reads of 10 / 20 / 100 pJ per 64 bits for 8 KB /
32 KB / 1 MB arrays (1.25-12.5 pJ/byte) and 1.3-2.6 nJ per 64 bits from DRAM. SpikingJelly's
model counts weights, biases and neuron states exactly as here, but not activations (it
treats currents and spikes as on-chip signal flow) and not the output accumulator
(``tests/test_energy.py`` checks both numbers against it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

MAC_PJ = 4.6
AC_PJ = 0.9
MEMORY_PJ_PER_BYTE = 24.96
VALUE_BYTES = 4  # float32 weights, biases, potentials, activations
SPIKE_BYTES = 1 / 8  # one bit per neuron per timestep


@dataclass
class LayerCost:
    """One weighted layer: its name, MACs per observation, the activation layer that feeds it
    (``None`` for the first layer, which sees the observation), its output and input sizes
    and whether it adds a bias. ``inputs`` is None in results written before it was stored;
    ``decision_cost`` then takes the previous layer's outputs, and the fan-in of the first
    layer (its input size if it is a ``Linear``; an undercount for a first ``Conv2d``)."""

    name: str
    macs: int
    input_layer: str | None
    outputs: int
    inputs: int | None = None
    bias: bool = True


def layer_costs(q_net: nn.Module, observation_space: Any) -> list[LayerCost]:
    """MACs of each weighted layer of an SB3 Q-network (ANN or spiking) for one observation.

    Activation layers (``ReLU`` or neuron layers) are matched by module name, so the same
    names index the spike rates of the spiking version.
    """
    costs: list[LayerCost] = []
    hooks = []

    def on_forward(name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        per_output = module.in_features if isinstance(module, nn.Linear) else module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        outputs = output[0].numel()
        costs.append(LayerCost(name, outputs * per_output, None, outputs, inputs[0][0].numel(), module.bias is not None))

    leaves = [(name, m) for name, m in q_net.named_modules() if not list(m.children())]
    order = {name: index for index, (name, _) in enumerate(leaves)}
    for name, module in leaves:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            hooks.append(module.register_forward_hook(lambda m, i, o, name=name: on_forward(name, m, i, o)))
    weighted = [name for name, m in leaves if isinstance(m, (nn.Linear, nn.Conv2d))]
    activations = [name for name, m in leaves if not isinstance(m, (nn.Linear, nn.Conv2d, nn.Flatten))]
    device = next(q_net.parameters()).device
    sample = torch.as_tensor(observation_space.sample()[None], device=device)  # [1, *obs_shape]
    try:
        with torch.no_grad():
            q_net(sample)
    finally:
        for hook in hooks:
            hook.remove()
    for cost, name in zip(costs, weighted):
        before = [a for a in activations if order[a] < order[name]]
        cost.input_layer = before[-1] if before else None
    return costs


def decision_cost(
    costs: list[LayerCost], spike_rates: dict[str, float] | None = None, timesteps: int | None = None,
    mac_pj: float = MAC_PJ, ac_pj: float = AC_PJ, memory_pj_per_byte: float = MEMORY_PJ_PER_BYTE,
) -> dict[str, float]:
    """Operations, memory traffic and energy (pJ) per decision: an ANN when ``timesteps`` is None,
    else an SNN at T = ``timesteps`` with the given spike rate of each neuron layer.

    Compute: ``energy_pj`` (``mac_energy_pj`` + ``ac_energy_pj``). Memory, in bytes:
    ``weight_bytes``, ``bias_bytes``, ``membrane_bytes``, ``activation_bytes`` (their sum
    ``memory_bytes``), costing ``memory_energy_pj``. ``total_energy_pj`` = compute + memory.
    ``membrane_values`` is the number of potentials kept between timesteps.
    """
    costs = _with_input_sizes(costs)
    if timesteps is None:
        macs, acs = sum(c.macs for c in costs), 0.0
        bias_values = sum(c.outputs for c in costs if c.bias)
        membrane = 0
        activation_bytes = sum(c.inputs + c.outputs for c in costs) * VALUE_BYTES
    else:
        first, fed = [c for c in costs if c.input_layer is None], [c for c in costs if c.input_layer is not None]
        macs = sum(c.macs for c in first)
        acs = sum(c.macs * spike_rates[c.input_layer] * timesteps for c in fed)
        bias_values = sum(c.outputs for c in first if c.bias) + timesteps * sum(c.outputs for c in fed if c.bias)
        membrane = sum(c.outputs for c in costs) if timesteps > 1 else 0
        spike_maps = timesteps * sum(c.inputs for c in fed)  # written by one layer, read by the next
        activation_bytes = (sum(c.inputs for c in first) + costs[-1].outputs) * VALUE_BYTES + 2 * spike_maps * SPIKE_BYTES
    memory = {
        "weight_bytes": (macs + acs) * VALUE_BYTES,
        "bias_bytes": bias_values * VALUE_BYTES,
        "membrane_bytes": 2 * timesteps * membrane * VALUE_BYTES if membrane else 0,
        "activation_bytes": activation_bytes,
    }
    memory_bytes = sum(memory.values())
    compute_pj = macs * mac_pj + acs * ac_pj
    return {
        "macs": macs, "acs": acs, "energy_pj": compute_pj,
        "mac_energy_pj": macs * mac_pj, "ac_energy_pj": acs * ac_pj, "membrane_values": membrane,
        **memory, "memory_bytes": memory_bytes, "memory_energy_pj": memory_bytes * memory_pj_per_byte,
        "total_energy_pj": compute_pj + memory_bytes * memory_pj_per_byte,
    }


def _with_input_sizes(costs: list[LayerCost]) -> list[LayerCost]:
    """``costs`` with every ``inputs`` filled in (see ``LayerCost``)."""
    filled = []
    for index, cost in enumerate(costs):
        if cost.inputs is None:
            cost = replace(cost, inputs=costs[index - 1].outputs if index else cost.macs // cost.outputs)
        filled.append(cost)
    return filled


def energy_ratios(costs: list[LayerCost], spike_rates: dict[str, float], timesteps: int | None) -> dict[str, float]:
    """ANN energy / this network's energy per decision: compute only and with memory access."""
    ann, this = decision_cost(costs), decision_cost(costs, spike_rates, timesteps)
    return {
        "ann_energy_ratio": ann["energy_pj"] / this["energy_pj"],
        "ann_total_energy_ratio": ann["total_energy_pj"] / this["total_energy_pj"],
    }

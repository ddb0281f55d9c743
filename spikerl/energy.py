"""Operation counts and energy per decision, as the SNN literature estimates them: compute alone,
and compute plus memory access.

Per weighted layer (``Linear``/``Conv2d``) of the Q-network, ``macs`` is its number of
multiply-accumulates for one observation. Then, per decision:

Compute (45 nm CMOS, Horowitz 2014: 32-bit float MAC 4.6 pJ, AC 0.9 pJ):

- ANN: every layer costs its MACs.
- SNN at T timesteps: the first layer takes the analog observation (direct encoding) and
  costs its MACs, once (spikerl computes it once per decision); every later layer receives
  binary spikes and costs ``MACs x (input spike rate) x T`` accumulates (ACs). With a spiking
  input layer (``spikerl.encoding``) the first layer takes spikes too: the encoder's own
  operations (one comparison per input neuron, plus one subtraction for a change channel)
  count as ACs, and the first layer ``MACs x (input spike rate)`` ACs, both once per decision,
  as under direct encoding: the encoder's spikes are the same at every timestep, so spikerl
  computes the encoder and the current it feeds the first neurons once.

Memory (counted in bytes: 32-bit weights, biases, potentials and activations, 1-bit spikes;
every byte read or written costs ``memory_pj_per_byte``):

- weights: one read per operation of a weighted layer, MAC or AC (a spike reads the weights
  of its fan-out only);
- biases: one read per output of a layer each time it is computed: once per decision in the
  ANN and in the SNN's first layer, every timestep in the layers fed by hidden neurons;
- membrane potentials: at T>1 every neuron and the output accumulator keeps its potential
  between timesteps, read and written once per timestep; at T=1 nothing is kept;
- activations: the ANN reads each layer's input and writes its output (32 bits a value);
  the SNN reads the observation, writes the Q-values (32 bits), writes and reads every
  spike map once each time it is computed (1 bit a neuron: the encoder's once per decision,
  the hidden neurons' every timestep) and, at T>1, keeps the first layer's current, computed
  once, for its neurons: written once and read every timestep (32 bits a value).

``memory_pj_per_byte`` defaults to 24.96 pJ/byte (3.12 pJ/bit), the figure of STEP's Table 9
that SpikingJelly's ``op_counter.simple_energy`` (``SimpleEnergyCostConfig.fp32``) charges;
for scale, Horowitz 2014 gives 45 nm SRAM reads of 10 / 20 / 100 pJ per 64 bits for 8 KB /
32 KB / 1 MB arrays (1.25-12.5 pJ/byte) and 1.3-2.6 nJ per 64 bits from DRAM. SpikingJelly's
model counts weights, biases and neuron states exactly as here, but not activations (it
treats currents and spikes as on-chip signal flow) and not the output accumulator
(``tests/test_energy.py`` checks both numbers against it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from spikerl.encoding import InputEncoder, mixing_matrix
from spikerl.snn import SpikingQNetwork, layer_plan, spiking_input_name

MAC_PJ = 4.6
AC_PJ = 0.9
MEMORY_PJ_PER_BYTE = 24.96
VALUE_BYTES = 4  # float32 weights, biases, potentials, activations
SPIKE_BYTES = 1 / 8  # one bit per neuron per timestep
MAX_FRAMES = 64  # the most stacked frames encoder_channels tries


@dataclass
class LayerCost:
    """One layer's operations: its name, operations per observation (``macs``: MACs of a
    weighted layer; for the spiking input layer, ``kind`` ``"encoder"``, its comparisons and
    channel differences, which the ANN does not do), the spiking layer that feeds it
    (``None`` where it takes analog values), its output and input sizes and whether it adds
    a bias. ``inputs`` is None in results written before it was stored; ``decision_cost`` then
    takes the previous layer's outputs, and the fan-in of the first layer (its input size if
    it is a ``Linear``; an undercount for a first ``Conv2d``)."""

    name: str
    macs: int
    input_layer: str | None
    outputs: int
    kind: str = "weighted"
    inputs: int | None = None
    bias: bool = True


def layer_costs(q_net: nn.Module, observation_space: Any) -> list[LayerCost]:
    """Operations of each weighted layer (and the input encoder) of a Q-network, ANN or
    spiking, for one observation, from its layer plan (``spikerl.snn.layer_plan``).

    A layer's ``input_layer`` is named as in the plan (``spiking_input_name``), so the names
    of an ANN's ReLU layers index the spike rates of its spiking version.
    """
    plan = q_net.plan if isinstance(q_net, SpikingQNetwork) else layer_plan(q_net, observation_space)
    costs = []
    for entry in plan:
        module, outputs, inputs = entry.module, math.prod(entry.output_shape), math.prod(entry.input_shape)
        if isinstance(module, InputEncoder):  # role "encoder"
            operations = encoder_operations(module.encoding, module.mixing.shape[1], outputs)
            costs.append(LayerCost(entry.name, operations, None, outputs, kind="encoder", inputs=inputs, bias=False))
        elif entry.role in ("weighted", "readout"):
            if isinstance(module, nn.Linear):
                per_output = module.in_features
            else:
                assert isinstance(module, nn.Conv2d), module  # the plan's other weighted layers
                per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            source, bias = spiking_input_name(plan, entry), module.bias is not None
            costs.append(LayerCost(entry.name, outputs * per_output, source, outputs, inputs=inputs, bias=bias))
    return costs


def encoder_operations(encoding: str, channels: int, outputs: int) -> int:
    """Operations of a spiking input layer (``spikerl.encoding``) per observation of ``channels``
    frames, for its ``outputs`` neurons: a neuron of a channel that reads one frame compares once,
    one that reads a change subtracts too (the nonzero entries of its row of the mixing matrix)."""
    mixing = mixing_matrix(encoding, channels)
    return outputs // len(mixing) * int(torch.count_nonzero(mixing))


def encoder_channels(encoding: str, inputs: int, outputs: int) -> int | None:
    """The frames a spiking input layer of ``inputs`` values and ``outputs`` neurons reads (its
    input channels; None if no number of frames gives those sizes)."""
    if encoding == "direct":  # no encoder at all (a damaged results file may still list one)
        return None
    fitting = (channels for channels in range(1, MAX_FRAMES + 1)
               if len(mixing_matrix(encoding, channels)) * inputs == channels * outputs)
    return next(fitting, None)


def analog_layer_costs(costs: list[LayerCost]) -> list[LayerCost]:
    """The layers of the ANN a spiking network was converted from, given the spiking network's
    ``costs``: no input encoder, and the layer it fed taking the observation's channels (an
    encoder with change channels feeds the first convolution more channels than the frames)."""
    encoders = {c.name: c for c in costs if c.kind == "encoder"}
    analog = []
    for cost in costs:
        encoder = encoders.get(str(cost.input_layer))
        if encoder is not None:  # macs scale with the input channels: the frames' over the encoder's
            inputs = _input_size(encoder)
            cost = replace(cost, macs=cost.macs * inputs // encoder.outputs, input_layer=None, inputs=inputs)
        if cost.kind != "encoder":
            analog.append(cost)
    return analog


def decision_cost(
    costs: list[LayerCost], spike_rates: dict[str, float] | None = None, timesteps: int | None = None,
    mac_pj: float = MAC_PJ, ac_pj: float = AC_PJ, memory_pj_per_byte: float = MEMORY_PJ_PER_BYTE,
) -> dict[str, float]:
    """Operations, memory traffic and energy (pJ) per decision: an ANN when ``timesteps`` is None,
    else an SNN at T = ``timesteps`` with the given spike rate of each spiking layer.

    Compute: ``energy_pj`` (``mac_energy_pj`` + ``ac_energy_pj``). Memory, in bytes:
    ``weight_bytes``, ``bias_bytes``, ``membrane_bytes``, ``activation_bytes`` (their sum
    ``memory_bytes``), costing ``memory_energy_pj``. ``total_energy_pj`` = compute + memory.
    ``membrane_values`` is the number of potentials kept between timesteps.
    """
    weighted = _with_input_sizes([c for c in costs if c.kind == "weighted"])
    encoders = [c for c in costs if c.kind == "encoder"]
    acs: float
    activation_bytes: float
    weight_reads: float
    if timesteps is None:
        macs, acs, membrane = sum(c.macs for c in weighted), 0.0, 0
        bias_values = sum(c.outputs for c in weighted if c.bias)
        activation_bytes = sum(_input_size(c) + c.outputs for c in weighted) * VALUE_BYTES
        weight_reads = macs
    else:
        if spike_rates is None:
            raise ValueError("the cost of an SNN (timesteps given) needs the spike_rates of its spiking layers")
        analog, fed = [c for c in weighted if c.input_layer is None], [c for c in weighted if c.input_layer is not None]
        encoder_names = {c.name for c in encoders}
        # how often each layer is computed per decision: once where its input is the same at every
        # timestep (the observation, the encoder's spikes), else every timestep
        runs = {c.name: 1 if c.input_layer is None or c.input_layer in encoder_names else timesteps for c in weighted}
        macs = sum(c.macs for c in analog)
        synaptic = sum(c.macs * spike_rates[str(c.input_layer)] * runs[c.name] for c in fed)
        acs = synaptic + sum(c.macs for c in encoders)
        membrane = sum(c.outputs for c in weighted) if timesteps > 1 else 0
        bias_values = sum(c.outputs * runs[c.name] for c in weighted if c.bias)
        observation = sum(_input_size(c) for c in analog + encoders)
        spike_maps = sum(_input_size(c) * runs[c.name] for c in fed)  # each written by one layer, read by the next
        held_currents = sum(c.outputs for c in weighted if runs[c.name] == 1) if timesteps > 1 else 0
        activation_bytes = (
            (observation + weighted[-1].outputs + (1 + timesteps) * held_currents) * VALUE_BYTES
            + 2 * spike_maps * SPIKE_BYTES
        )
        weight_reads = macs + synaptic
    memory = {
        "weight_bytes": weight_reads * VALUE_BYTES,
        "bias_bytes": bias_values * VALUE_BYTES,
        "membrane_bytes": 2 * (timesteps or 0) * membrane * VALUE_BYTES,  # no membrane kept: 0
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


def _with_input_sizes(weighted: list[LayerCost]) -> list[LayerCost]:
    """The weighted layers ``weighted`` with every ``inputs`` filled in (see ``LayerCost``)."""
    filled = []
    for index, cost in enumerate(weighted):
        if cost.inputs is None:
            cost = replace(cost, inputs=weighted[index - 1].outputs if index else cost.macs // cost.outputs)
        filled.append(cost)
    return filled


def _input_size(cost: LayerCost) -> int:
    """``cost.inputs``: set for every encoder, filled in for weighted layers by ``_with_input_sizes``."""
    if cost.inputs is None:
        raise ValueError(f"layer {cost.name} has no input size (results written before it was recorded)")
    return cost.inputs


def energy_ratios(ann_cost: dict[str, float], cost: dict[str, float]) -> dict[str, float]:
    """The ANN's energy over a network's, from their ``decision_cost``: compute only and with memory."""
    return {
        "ann_energy_ratio": ann_cost["energy_pj"] / cost["energy_pj"],
        "ann_total_energy_ratio": ann_cost["total_energy_pj"] / cost["total_energy_pj"],
    }

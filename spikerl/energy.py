"""Operation counts and energy per decision, as the SNN literature estimates them.

Per weighted layer (``Linear``/``Conv2d``) of the Q-network, ``macs`` is its number of
multiply-accumulates for one observation. Then, per decision:

- ANN: every layer costs its MACs.
- SNN at T timesteps: the first layer takes the analog observation (direct encoding) and
  costs its MACs, once (spikerl computes it once per decision); every later layer receives
  binary spikes and costs ``MACs x (input spike rate) x T`` accumulates (ACs). With a spiking
  input layer (``spikerl.encoding``) the first layer takes spikes too, and the encoder's own
  operations (one comparison per input neuron, plus one subtraction for a change channel)
  count as ACs at every timestep.
- Energy: ``MACs x e_mac + ACs x e_ac``, with 45 nm CMOS figures (Horowitz 2014) by default:
  32-bit float MAC 4.6 pJ, AC 0.9 pJ.
- Membrane state: a T>1 SNN keeps every neuron's potential (and the output accumulator)
  between the timesteps of a decision; at T=1 there is nothing to keep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spikerl.snn import SpikingQNetwork, layer_plan, spiking_input_name

MAC_PJ = 4.6
AC_PJ = 0.9


@dataclass
class LayerCost:
    """One layer's operations: its name, operations per observation (``macs``: MACs of a
    weighted layer; for the spiking input layer, ``kind`` ``"encoder"``, its comparisons and
    channel differences, which the ANN does not do), the spiking layer that feeds it
    (``None`` where it takes analog values) and its output size."""

    name: str
    macs: int
    input_layer: str | None
    outputs: int
    kind: str = "weighted"


def layer_costs(q_net: nn.Module, observation_space: Any) -> list[LayerCost]:
    """Operations of each weighted layer (and the input encoder) of a Q-network, ANN or
    spiking, for one observation, from its layer plan (``spikerl.snn.layer_plan``).

    A layer's ``input_layer`` is named as in the plan (``spiking_input_name``), so the names
    of an ANN's ReLU layers index the spike rates of its spiking version.
    """
    plan = q_net.plan if isinstance(q_net, SpikingQNetwork) else layer_plan(q_net, observation_space)
    costs = []
    for entry in plan:
        module, outputs = entry.module, math.prod(entry.output_shape)
        if entry.role == "encoder":
            terms = int(torch.count_nonzero(module.mixing, dim=1).max())  # mixed channels per neuron, compared once
            costs.append(LayerCost(entry.name, outputs * terms, None, outputs, kind="encoder"))
        elif entry.role in ("weighted", "readout"):
            if isinstance(module, nn.Linear):
                per_output = module.in_features
            else:
                per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            costs.append(LayerCost(entry.name, outputs * per_output, spiking_input_name(plan, entry), outputs))
    return costs


def decision_cost(
    costs: list[LayerCost], spike_rates: dict[str, float] | None = None, timesteps: int | None = None,
    mac_pj: float = MAC_PJ, ac_pj: float = AC_PJ,
) -> dict[str, float]:
    """Operations and energy (pJ) per decision: an ANN when ``timesteps`` is None, else an SNN.

    ``mac_energy_pj`` and ``ac_energy_pj`` split ``energy_pj`` by operation kind.
    """
    weighted = [c for c in costs if c.kind == "weighted"]
    if timesteps is None:
        macs, acs, membrane = sum(c.macs for c in weighted), 0.0, 0
    else:
        macs = sum(c.macs for c in weighted if c.input_layer is None)
        acs = sum(c.macs * spike_rates[c.input_layer] * timesteps for c in weighted if c.input_layer is not None)
        acs += sum(c.macs * timesteps for c in costs if c.kind == "encoder")  # its comparisons, every timestep
        membrane = sum(c.outputs for c in weighted) if timesteps > 1 else 0
    return {
        "macs": macs, "acs": acs, "energy_pj": macs * mac_pj + acs * ac_pj,
        "mac_energy_pj": macs * mac_pj, "ac_energy_pj": acs * ac_pj, "membrane_values": membrane,
    }

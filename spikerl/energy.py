"""Operation counts and energy per decision, as the SNN literature estimates them.

Per weighted layer (``Linear``/``Conv2d``) of the Q-network, ``macs`` is its number of
multiply-accumulates for one observation. Then, per decision:

- ANN: every layer costs its MACs.
- SNN at T timesteps: the first layer takes the analog observation (direct encoding) and
  costs its MACs, once (spikerl computes it once per decision); every later layer receives
  binary spikes and costs ``MACs x (input spike rate) x T`` accumulates (ACs).
- Energy: ``MACs x e_mac + ACs x e_ac``, with 45 nm CMOS figures (Horowitz 2014) by default:
  32-bit float MAC 4.6 pJ, AC 0.9 pJ.
- Membrane state: a T>1 SNN keeps every neuron's potential (and the output accumulator)
  between the timesteps of a decision; at T=1 there is nothing to keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

MAC_PJ = 4.6
AC_PJ = 0.9


@dataclass
class LayerCost:
    """One weighted layer: its name, MACs per observation, the activation layer that feeds it
    (``None`` for the first layer, which sees the observation) and its output size."""

    name: str
    macs: int
    input_layer: str | None
    outputs: int


def layer_costs(q_net: nn.Module, observation_space: Any) -> list[LayerCost]:
    """MACs of each weighted layer of an SB3 Q-network (ANN or spiking) for one observation.

    Activation layers (``ReLU`` or neuron layers) are matched by module name, so the same
    names index the spike rates of the spiking version.
    """
    costs: list[LayerCost] = []
    hooks = []

    def on_forward(name: str, module: nn.Module, output: torch.Tensor) -> None:
        per_output = module.in_features if isinstance(module, nn.Linear) else module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        outputs = output[0].numel()
        costs.append(LayerCost(name, outputs * per_output, None, outputs))

    leaves = [(name, m) for name, m in q_net.named_modules() if not list(m.children())]
    order = {name: index for index, (name, _) in enumerate(leaves)}
    for name, module in leaves:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            hooks.append(module.register_forward_hook(lambda m, i, o, name=name: on_forward(name, m, o)))
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
    mac_pj: float = MAC_PJ, ac_pj: float = AC_PJ,
) -> dict[str, float]:
    """Operations and energy (pJ) per decision: an ANN when ``timesteps`` is None, else an SNN.

    ``mac_energy_pj`` and ``ac_energy_pj`` split ``energy_pj`` by operation kind.
    """
    if timesteps is None:
        macs, acs, membrane = sum(c.macs for c in costs), 0.0, 0
    else:
        macs = sum(c.macs for c in costs if c.input_layer is None)
        acs = sum(c.macs * spike_rates[c.input_layer] * timesteps for c in costs if c.input_layer is not None)
        membrane = sum(c.outputs for c in costs) if timesteps > 1 else 0
    return {
        "macs": macs, "acs": acs, "energy_pj": macs * mac_pj + acs * ac_pj,
        "mac_energy_pj": macs * mac_pj, "ac_energy_pj": acs * ac_pj, "membrane_values": membrane,
    }

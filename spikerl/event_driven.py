"""Event-driven inference: Linear layers fed by spikes do work only for the inputs that spiked.

A spike map is mostly zeros (input rates 0.04-0.3 in the shipped agents), yet a dense
``nn.Linear`` multiplies every weight. ``SpikeDrivenLinear`` turns its input ``[N, in]`` into
a CSR sparse matrix and computes ``bias + spikes @ W^T`` with ``torch.addmm`` (sparse x
dense), so the cost grows with the number of spikes, as on event-driven hardware.

It pays only on the CPU, for large layers fed sparse inputs. Measured on one CPU thread
(``bench/sparse.py``, time against the dense product): a 256x256 layer takes 4.3x as long
at batch 1, a 1024x512 one 0.88x (batch 1) and 0.46x (batch 32) at spike rate 0.05 but 1.4x
at rate 0.2, batch 32. So
only layers of at least ``MIN_WEIGHTS`` weights are made event-driven, and each call checks
its input and takes the dense product when more than ``MAX_INPUT_DENSITY`` of it is non-zero.
Convolutions stay dense (PyTorch has no sparse convolution kernel on the CPU). It is an
inference path for 2-D inputs on the CPU: under autograd, on a GPU (not measured there:
no GPU was available) or for other shapes the layer is the plain ``nn.Linear``.
``SpikingQNetwork.use_event_driven`` switches a network to it.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from spikerl.snn import PlannedLayer

#: Layers with fewer weights stay dense: there the CSR conversion costs more than it saves.
MIN_WEIGHTS = 2**19
#: Inputs with a larger share of non-zeros take the dense product, which is then faster.
MAX_INPUT_DENSITY = 0.1


@functools.cache
def _take_csr_beta_warning() -> None:
    """CSR tensors work for what is done here (conversion, sparse x dense product); PyTorch warns
    once per process that their support is in beta. Take that one warning, silently (once, when
    the first event-driven layer is made)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.sparse_csr_tensor(torch.tensor([0, 0]), torch.tensor([], dtype=torch.long), torch.tensor([]), size=(1, 1))


class SpikeDrivenLinear(nn.Module):
    """Stands in for ``linear`` when its input is spikes; shares (does not copy) its parameters.

    :param linear: the layer computed
    :param max_input_density: inputs with a larger share of non-zeros take the dense product

    The transposed weight ``[in, out]`` the sparse product needs is kept, and rebuilt when the
    weight's version counter moves (optimizer steps, ``load_state_dict``, in-place ops) or it
    moves to other memory (``.to``). Writes through ``weight.data`` (SB3's ``polyak_update``
    does that to target networks) bypass the counter: call ``forget_weight`` after them.
    """

    def __init__(self, linear: nn.Linear, max_input_density: float = MAX_INPUT_DENSITY):
        super().__init__()
        _take_csr_beta_warning()
        self.linear = linear
        self.max_input_density = max_input_density
        self._weight_t: torch.Tensor | None = None
        self._weight_key: tuple[int, int, torch.device] | None = None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Spikes (or spike counts / T) ``[N, in]`` -> ``[N, out]``, as ``linear`` computes it."""
        weight = self.linear.weight
        if torch.is_grad_enabled() or inputs.dim() != 2 or weight.device.type != "cpu" or weight.is_inference():
            return self.linear(inputs)
        if torch.count_nonzero(inputs) > self.max_input_density * inputs.numel():
            return self.linear(inputs)
        sparse = inputs.to_sparse_csr()
        if self.linear.bias is None:
            return torch.sparse.mm(sparse, self._transposed_weight())
        return torch.addmm(self.linear.bias, sparse, self._transposed_weight())

    def forget_weight(self) -> None:
        """Drop the kept transposed weight; the next call rebuilds it from ``linear.weight``."""
        self._weight_t = self._weight_key = None

    def _transposed_weight(self) -> torch.Tensor:
        weight = self.linear.weight
        key = (weight._version, weight.data_ptr(), weight.device)
        transposed = self._weight_t
        if transposed is None or key != self._weight_key:
            transposed = weight.detach().t().contiguous()
            self._weight_t, self._weight_key = transposed, key
        return transposed


def event_driven_layers(plan: tuple[PlannedLayer, ...], min_weights: int = MIN_WEIGHTS) -> tuple[nn.Module, ...]:
    """The modules of ``plan`` after its encoder, every large ``nn.Linear`` fed by spikes
    wrapped in ``SpikeDrivenLinear``.

    Which layers take spikes is the plan's ``input_kind`` (the read-out at T > 1 gets the mean
    spike map, as sparse). A layer is large when it holds at least ``min_weights`` weights.
    """
    return tuple(
        SpikeDrivenLinear(entry.module)
        if entry.input_kind == "spikes" and isinstance(entry.module, nn.Linear) and entry.module.weight.numel() >= min_weights
        else entry.module
        for entry in plan
        if entry.role != "encoder"
    )

"""Integrate-and-fire neurons with soft reset, trained through a surrogate gradient.

One neuron layer updates its membrane potential ``u`` once per timestep ``t``::

    u[t] = leak * u[t-1] + x[t]                      (integrate; leak = 1 is integrate-and-fire)
    s[t] = H(u[t] / threshold - 1)                   (fire: 1 where u reaches the threshold)
    u[t] = u[t] - threshold * s[t]                   (soft reset, by subtraction)

``H`` is the Heaviside step; its gradient is replaced by the piecewise-linear surrogate of
Bellec et al. (2018), ``ds/dv = scale * max(0, 1 - |v|)`` with ``v = u / threshold - 1``
and ``scale = 0.3``. As in the authors' code, the reset passes no gradient through the
spike (only through ``threshold``). ``threshold`` and ``leak`` are learnable scalars, one per
layer, and get their gradients from autograd; ``constrain`` keeps ``leak <= 1`` and
``threshold >= MIN_THRESHOLD`` (the inference path relies on a positive threshold).

Tensors are time-first: ``[T, B, ...]``.

Example::

    >>> neuron = IFNeuron(threshold=1.0)
    >>> currents = torch.tensor([[[0.6]], [[0.6]], [[0.6]]])   # [T=3, B=1, 1]
    >>> neuron(currents).flatten().tolist()                      # u: 0.6, 1.2 -> fire, 0.8
    [0.0, 1.0, 0.0]
"""

from __future__ import annotations

import torch
from torch import nn

MIN_THRESHOLD = 1e-4


class PiecewiseLinearSpike(torch.autograd.Function):
    """Heaviside forward; ``scale * max(0, 1 - |v|)`` as its gradient."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.scale = scale
        return (v >= 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (v,) = ctx.saved_tensors
        return grad_output * ctx.scale * torch.clamp(1.0 - v.abs(), min=0.0), None


def if_step(
    u: torch.Tensor, x: torch.Tensor, threshold: torch.Tensor, leak: torch.Tensor, scale: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor]:
    """One timestep of a layer: returns ``(spikes, membrane after reset)``, both shaped like ``x``."""
    u = leak * u + x
    spikes = fire(u, threshold, scale)
    return spikes, u - threshold * spikes.detach()


def fire(u: torch.Tensor, threshold: torch.Tensor, scale: float = 0.3) -> torch.Tensor:
    """Spikes ``H(u / threshold - 1)``, shaped like ``u``, with the surrogate gradient."""
    return PiecewiseLinearSpike.apply(u / threshold - 1.0, scale)


class IFNeuron(nn.Module):
    """A layer of integrate-and-fire (``leak = 1``) or leaky neurons with soft reset.

    :param threshold: initial firing threshold (conversion sets it from data)
    :param leak: initial leak; 1 gives integrate-and-fire
    :param learn_leak: train the leak (a LIF layer); by default it stays fixed (IF)
    :param surrogate_scale: height of the piecewise-linear surrogate gradient
    """

    def __init__(self, threshold: float = 1.0, leak: float = 1.0, learn_leak: bool = False, surrogate_scale: float = 0.3):
        super().__init__()
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))
        self.leak = nn.Parameter(torch.tensor(float(leak)), requires_grad=learn_leak)
        self.surrogate_scale = surrogate_scale
        self.record = False
        self.capture_input = False
        self.reset_counts()

    def reset_counts(self) -> None:
        """Zero the spike counters read by ``spike_rate``; drop any captured input."""
        self.spike_count = 0.0
        self.neuron_steps = 0
        self.captured_input: torch.Tensor | None = None

    def spike_rate(self) -> float:
        """Spikes per neuron per timestep since ``reset_counts`` (while ``record`` was on)."""
        return self.spike_count / max(self.neuron_steps, 1)

    @torch.no_grad()
    def constrain(self) -> None:
        """Keep ``leak <= 1`` and ``threshold >= MIN_THRESHOLD`` (after every optimizer step)."""
        self.leak.clamp_(max=1.0)
        self.threshold.clamp_(min=MIN_THRESHOLD)

    def forward(self, currents: torch.Tensor) -> torch.Tensor:
        """Input currents ``[T, B, ...]`` -> spikes ``[T, B, ...]``; the membrane starts at 0."""
        if torch.is_grad_enabled():
            u = torch.zeros_like(currents[0])
            spikes = []
            for current in currents:
                spike, u = if_step(u, current, self.threshold, self.leak, self.surrogate_scale)
                spikes.append(spike)
            return self._observe(currents, torch.stack(spikes))
        return self._observe(currents, self._infer(currents))

    def fire_once(self, currents: torch.Tensor) -> torch.Tensor:
        """One timestep from rest (T=1): input currents ``[B, ...]`` -> spikes ``[B, ...]``.

        Equals ``forward(currents[None])[0]`` without carrying a time axis: the membrane is
        the input itself and no reset follows. Without autograd it is one comparison per
        neuron, about as cheap as a ReLU.
        """
        if torch.is_grad_enabled():
            spikes = fire(currents, self.threshold, self.surrogate_scale)
        else:  # one kernel: the comparison writes 0.0 / 1.0 straight into a float tensor
            spikes = torch.ge(currents, self.threshold, out=torch.empty_like(currents))
        return self._observe(currents, spikes)

    def fire_constant(self, currents: torch.Tensor, steps: int) -> torch.Tensor:
        """The same input currents ``[B, ...]`` at each of ``steps`` timesteps -> spikes ``[T, B, ...]``.

        Computes ``forward(currents.expand(steps, *currents.shape))``, the case of the first neuron
        layer under direct encoding. Without autograd, with ``leak = 1`` and a positive
        threshold it skips the timestep loop: from rest, an IF neuron under a constant current
        ``x`` has fired ``N[t] = floor(t * clamp(x / threshold, 0, 1))`` times after ``t`` steps
        (at most once a step, every step once ``x >= threshold``), so ``s[t] = N[t] - N[t-1]``:
        three passes over ``[T, B, ...]`` instead of three per timestep. Otherwise (training,
        a leak) it runs the loop.

        The two round differently where ``t * x`` lands exactly on a multiple of the threshold
        (``x = 0.1``, ``threshold = 0.3``: the loop fires at t=3, the closed form at t=4); on
        the shipped agents' own game states (T=2..5, 512 states each) not one of 92M spikes
        differs.
        """
        repeated = currents.expand(steps, *currents.shape)
        if torch.is_grad_enabled() or self.leak.item() != 1.0 or self.threshold.item() <= 0:
            return self(repeated)
        rate = torch.clamp(currents / self.threshold, 0.0, 1.0).nan_to_num_(0.0)  # spikes per step (NaN: none, as in the loop)
        step = torch.arange(steps + 1, dtype=currents.dtype, device=currents.device).view(-1, *[1] * currents.dim())
        counts = torch.floor_(step * rate)  # N[0..T], [T + 1, B, ...]
        return self._observe(repeated, torch.sub(counts[1:], counts[:-1]))

    def _observe(self, currents: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        """Keep the input (``capture_input``) and count the spikes (``record``); returns ``spikes``."""
        if self.capture_input:
            self.captured_input = currents.detach()
        if self.record:
            self.spike_count += float(spikes.detach().sum())
            self.neuron_steps += spikes.numel()
        return spikes

    def _infer(self, currents: torch.Tensor) -> torch.Tensor:
        """``forward``'s dynamics without autograd: ``u >= threshold`` fires (assumes threshold > 0).

        Three passes over the layer per timestep (integrate, fire, reset), the spikes written
        straight into one preallocated ``[T, B, ...]`` float tensor.
        """
        spikes = torch.empty(currents.shape, dtype=currents.dtype, device=currents.device)
        u = currents[0]
        for t in range(len(currents)):
            if t:
                u = torch.addcmul(currents[t], u, self.leak)  # leak * u + x
            torch.ge(u, self.threshold, out=spikes[t])
            if t < len(currents) - 1:
                u = torch.addcmul(u, spikes[t], self.threshold, value=-1.0)  # soft reset
        return spikes

    def extra_repr(self) -> str:
        return f"threshold={self.threshold.item():.4g}, leak={self.leak.item():.4g}, learn_leak={self.leak.requires_grad}"

"""SpikingQNetwork: SB3's Q-network with every ReLU replaced by a layer of spiking neurons.

Its layers are described once, in execution order, by ``plan`` (``layer_plan``: name,
module, role, analog or spike input, shapes), which conversion, energy, event-driven
inference and export read. The weighted layers (``nn.Linear``, ``nn.Conv2d``) are the ANN's
own modules under the ANN's own names, so an ANN ``state_dict`` loads straight into the spiking network (conversion) and
thresholds/leaks are extra entries beside them. Per decision, for observations ``[B, ...]``:

1. everything up to the first neuron layer runs once: under direct encoding its input is
   the same analog observation at every timestep; with a spiking input layer (``encoder``,
   ``spikerl.encoding``) it is the encoder's spike map, the same at every timestep;
2. each neuron layer turns input currents ``[T, B, ...]`` into spikes ``[T, B, ...]`` (the
   first one from its constant input ``[B, ...]``, in closed form where it has no leak and
   autograd is off: ``IFNeuron.fire_constant``);
   weighted and stateless layers between them run once on the folded ``[T * B, ...]``;
3. the output layer is not spiking: its membrane potential, accumulated over the T steps and
   divided by T, is read as the Q-values ``[B, n_actions]``. Being linear, that equals the
   output layer applied to the mean spike map, which is how it is computed.

At T=1 no time axis is carried at all (``IFNeuron.fire_once``): the network costs what the
ANN costs, with each ReLU replaced by one comparison against the threshold.

No membrane state survives a decision (every neuron starts at 0).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.dqn.policies import QNetwork
from torch import nn

from spikerl.encoding import InputEncoder, make_encoder
from spikerl.errors import UsageError
from spikerl.event_driven import SpikeDrivenLinear, event_driven_layers
from spikerl.neurons import IFNeuron

WEIGHTED_LAYERS = (nn.Linear, nn.Conv2d)
STATELESS_LAYERS = (nn.Flatten,)
#: What a planned layer does: spiking input layer, hidden weighted layer, shape-only layer,
#: neuron (or, in an ANN, ReLU) layer, the final weighted layer that gives the Q-values.
ROLES = ("encoder", "weighted", "stateless", "neuron", "readout")


@dataclass(frozen=True)
class PlannedLayer:
    """One leaf layer of a Q-network, as conversion, energy, event-driven inference and export see it.

    :param name: module name in the Q-network (the prefix of its ``state_dict`` entries)
    :param module: the layer itself
    :param role: one of ``ROLES``
    :param input_kind: ``"spikes"`` where the last non-stateless layer before it is a spiking
        layer (neuron or encoder), else ``"analog"`` (the observation, or ReLU activations)
    :param input_shape: per-sample shape of its input, without batch (and time) dimension
    :param output_shape: per-sample shape of its output
    """

    name: str
    module: nn.Module
    role: str
    input_kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


@torch.no_grad()
def layer_plan(net: nn.Module, observation_space: Any) -> tuple[PlannedLayer, ...]:
    """The leaf layers of ``net`` (ANN or spiking) in execution order, described once.

    Execution order is module order, as in SB3's ``QNetwork`` (features extractor, then the
    MLP head). Shapes come from passing one zero observation through the layers, one step.
    Refuses (``UsageError``) layers other than Linear, Conv2d, ReLU, Flatten and neurons, and a
    network whose last layer is not weighted.
    """
    leaves = [(name, m) for name, m in net.named_modules() if not list(m.children())]
    leaves.sort(key=lambda leaf: not isinstance(leaf[1], InputEncoder))  # the encoder sees the observation first
    for _, layer in leaves:
        if not isinstance(layer, WEIGHTED_LAYERS + STATELESS_LAYERS + (IFNeuron, nn.ReLU)):
            raise UsageError(
                f"cannot make a spiking network with a {type(layer).__name__} layer; "
                "use a Q-network built from Linear, Conv2d, ReLU and Flatten (MlpPolicy or CnnPolicy with NatureCNN)"
            )
    if not leaves or not isinstance(leaves[-1][1], WEIGHTED_LAYERS):
        raise UsageError("the Q-network must end in a Linear layer (the Q-value read-out)")
    parameter = next(net.parameters())
    sample = torch.zeros(1, *observation_space.shape, device=parameter.device)
    h = cast(torch.Tensor, preprocess_obs(sample, observation_space, getattr(net, "normalize_images", True)))  # a Box space
    plan, input_kind = [], "analog"
    for index, (name, layer) in enumerate(leaves):
        if isinstance(layer, InputEncoder):
            role = "encoder"
        elif isinstance(layer, (IFNeuron, nn.ReLU)):
            role = "neuron"
        elif isinstance(layer, STATELESS_LAYERS):
            role = "stateless"
        else:
            role = "readout" if index == len(leaves) - 1 else "weighted"
        output = layer.fire_once(h) if role == "neuron" and isinstance(layer, IFNeuron) else layer(h)
        plan.append(PlannedLayer(name, layer, role, input_kind, tuple(h.shape[1:]), tuple(output.shape[1:])))
        if role != "stateless":
            input_kind = "spikes" if isinstance(layer, IFNeuron) else "analog"
        h = output
    return tuple(plan)


def spiking_input_name(plan: tuple[PlannedLayer, ...], entry: PlannedLayer) -> str | None:
    """Name of the spiking layer whose spikes feed ``entry`` (``None`` for an analog input).

    In an ANN's plan the ReLU layer under the same name as the SNN's neuron layer is named,
    so the same names index the spike rates of the spiking version.
    """
    before = [e for e in plan[: plan.index(entry)] if e.role in ("encoder", "neuron")]
    return before[-1].name if before else None


def replace_relus(module: nn.Module, make_neuron: Any) -> None:
    """Swap every ``nn.ReLU`` under ``module`` for ``make_neuron()``, in place."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.ReLU):
            setattr(module, name, make_neuron())
        else:
            replace_relus(child, make_neuron)


class SpikingQNetwork(QNetwork):
    """A ``QNetwork`` (MLP or NatureCNN features) that runs as a spiking network for T steps.

    :param timesteps: T, the number of timesteps per decision
    :param neuron_kwargs: keyword arguments of ``IFNeuron`` (``threshold``, ``leak``,
        ``learn_leak``, ``surrogate_scale``) shared by every neuron layer
    :param encoding: how image observations enter the network (``spikerl.encoding.ENCODINGS``):
        ``direct`` (analog pixels into the first layer) or a spiking input layer, the module
        ``encoder``, in front of the first convolution
    Other parameters are ``QNetwork``'s; ``activation_fn`` must be ``nn.ReLU``.
    """

    def __init__(
        self,
        *args: Any,
        timesteps: int = 5,
        neuron_kwargs: dict[str, Any] | None = None,
        encoding: str = "direct",
        **kwargs: Any,
    ):
        activation_fn = kwargs.get("activation_fn", nn.ReLU)
        if activation_fn is not nn.ReLU:
            raise UsageError(f"a spiking Q-network needs activation_fn=nn.ReLU, got {activation_fn.__name__}")
        super().__init__(*args, **kwargs)
        self.timesteps = check_timesteps(timesteps)
        self.neuron_kwargs = dict(neuron_kwargs or {})
        self.encoding = encoding
        self.encoder = make_encoder(self, encoding)  # None for direct encoding; first in the plan
        replace_relus(self, lambda: IFNeuron(**self.neuron_kwargs))
        self.plan = layer_plan(self, self.observation_space)  # refuses unsupported layers now, not at the first forward pass
        self._layers = tuple(entry.module for entry in self.plan if entry.role != "encoder")
        self._event_driven_layers = event_driven_layers(self.plan)  # stand-ins sharing the same parameters
        self._forward_layers = self._layers  # what forward runs after the encoder: _layers or _event_driven_layers

    def planned(self, *roles: str) -> list[PlannedLayer]:
        """The entries of ``plan`` with one of ``roles``, in execution order."""
        return [entry for entry in self.plan if entry.role in roles]

    @property
    def event_driven(self) -> bool:
        """Whether inference computes spike-fed Linear layers event-driven (``use_event_driven``)."""
        return self._forward_layers is self._event_driven_layers

    def use_event_driven(self, enabled: bool = True) -> None:
        """Compute every Linear layer fed by spikes from the spikes alone (``spikerl.event_driven``).

        Inference on the CPU only, and not saved with the agent: the Q-values are the dense
        ones up to float rounding, training still runs dense. Faster where spike maps are large
        and sparse (NatureCNN's 3136 -> 512 layer); smaller layers stay dense (see the README).
        Calling it again after writing weights through ``.data`` makes it see the new ones.
        """
        for layer in self._event_driven_layers:
            if isinstance(layer, SpikeDrivenLinear):
                layer.forget_weight()
        self._forward_layers = self._event_driven_layers if enabled else self._layers

    def event_driven_layer_names(self) -> list[str]:
        """Module names of the layers ``use_event_driven`` computes from spikes alone."""
        stand_ins = {id(layer.linear) for layer in self._event_driven_layers if isinstance(layer, SpikeDrivenLinear)}
        return [name for name, module in self.named_modules() if id(module) in stand_ins]

    def neurons(self) -> dict[str, IFNeuron]:
        """Neuron layers (the input encoder first, where there is one) by module name, in execution order."""
        return {entry.name: entry.module for entry in self.plan if isinstance(entry.module, IFNeuron)}

    def forward(self, obs: PyTorchObs) -> torch.Tensor:
        """Observations ``[B, ...]`` -> Q-values ``[B, n_actions]`` after T timesteps (Box observations only)."""
        h = cast(torch.Tensor, preprocess_obs(obs, self.observation_space, self.normalize_images))
        if self.encoder is not None:  # spiking input: one spike map [B, ...], the same at every timestep
            h = self.encoder(h)
        batch, steps = h.shape[0], self.timesteps
        *hidden, readout = self._forward_layers
        if steps == 1:  # no time axis to carry: every neuron fires at most once, from rest
            for layer in hidden:
                h = layer.fire_once(h) if isinstance(layer, IFNeuron) else layer(h)
            return readout(h)
        time_major = False
        for layer in hidden:
            if isinstance(layer, IFNeuron):
                if time_major:
                    h = layer(h)
                else:  # direct encoding: the same currents at every timestep
                    h, time_major = layer.fire_constant(h, steps), True
            elif time_major:
                h = layer(h.flatten(0, 1)).unflatten(0, (steps, batch))
            else:
                h = layer(h)
        return readout(h.mean(dim=0) if time_major else h)

    @contextlib.contextmanager
    def recording_spikes(self) -> Iterator[dict[str, float]]:
        """Count spikes inside the block; the yielded dict is filled with rates on exit."""
        rates: dict[str, float] = {}
        neurons = self.neurons()
        for neuron in neurons.values():
            neuron.reset_counts()
            neuron.record = True
        try:
            yield rates
        finally:
            for name, neuron in neurons.items():
                neuron.record = False
                rates[name] = neuron.spike_rate()

    @torch.no_grad()
    def constrain_neurons(self) -> None:
        """Keep every leak <= 1 and every threshold positive (``IFNeuron.constrain``)."""
        for neuron in self.neurons().values():
            neuron.constrain()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            **super()._get_constructor_parameters(),
            "timesteps": self.timesteps,
            "neuron_kwargs": self.neuron_kwargs,
            "encoding": self.encoding,
        }


def check_timesteps(timesteps: Any) -> int:
    """``timesteps`` as a positive int, or a ``UsageError`` saying what is wrong."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise UsageError(f"timesteps must be a positive integer, got {timesteps!r}")
    return timesteps

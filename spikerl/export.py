"""Export a T=1 spiking agent's Q-network to NIR, the Neuromorphic Intermediate Representation.

The graph is a chain, one node per entry of ``SpikingQNetwork.plan`` under the same module
name, between ``input`` and ``output``. Shapes are per sample, without a batch
dimension, as NIR defines them:

============================  ======================================================
spikerl layer                 NIR node
============================  ======================================================
observation ``[*obs_shape]``  ``Input`` (the raw observation: uint8 pixel values
                              for images, not divided by 255)
``nn.Flatten``                ``Flatten`` (``start_dim=0``: NIR counts no batch dim)
``nn.Linear``                 ``Affine`` (``Linear`` when it has no bias)
``nn.Conv2d``                 ``Conv2d`` (a zero ``bias`` when it has none)
``IFNeuron``                  ``IF`` with ``r = 1``, ``v_threshold`` = the float32
                              just below ``threshold`` (``v_reset``: NIR's default 0)
last ``nn.Linear``            ``Affine`` (not spiking): Q-values ``[n_actions]``,
                              then ``Output``
``InputEncoder``              ``Conv2d`` 1x1 ``<name>.mixing`` (channel mix: identity
                              or frame differences, each output channel divided by
                              its threshold in pixel values), then ``IF`` firing at 1
============================  ======================================================

Image normalization: SB3 divides image observations by 255 before the network. The export
folds that into the first weighted layer (its weight times 1/255, its bias unchanged), or,
with a spiking input layer, into the encoder's thresholds (times 255), so the NIR graph
takes the raw pixel values. An encoder's thresholds are folded into its channel mix
(spikerl fires where ``x / 255 >= threshold``, the graph where ``x / (255 threshold) > 1``
less one float32 step; the two can differ only for a pixel value within float rounding
of ``255 threshold``).

Neurons: NIR's IF integrates ``dv/dt = r * I`` and fires where ``v > v_threshold``. With
one step of length 1 per decision (``dt = 1``) and ``v`` starting at 0, ``v = r * I``: one
NIR step is one spikerl decision at T=1. spikerl fires where ``u >= threshold``; for
float32 potentials that is exactly ``u > nextafter(threshold, -inf)``, hence the value of
``v_threshold``. At T=1 no membrane state outlives the decision, so the reset and leak
do not matter; for T > 1 they would, and NIR's IF cannot express spikerl's soft reset
(subtraction of the threshold, where NIR sets ``v = v_reset``): such agents are refused.
"""

from __future__ import annotations

import stat
from pathlib import Path

import nir
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.preprocessing import is_image_space
from torch import nn

from spikerl.checkpoints import atomic_path
from spikerl.encoding import InputEncoder
from spikerl.errors import UsageError
from spikerl.locks import folder_lock
from spikerl.neurons import IFNeuron
from spikerl.snn import PlannedLayer, SpikingQNetwork


def export_nir(model: DQN, path: str | Path, force: bool = False) -> nir.NIRGraph:
    """Write the Q-network of the T=1 spiking DQN ``model`` to ``path`` as NIR; return the graph.

    The graph maps one observation ``[*obs_shape]`` (as the environment gives it) to the
    Q-values ``[n_actions]`` in one timestep; the greedy action is their argmax. The file is
    written atomically (a temporary file renamed over ``path`` once complete), with the
    folder locked; an existing file is replaced only when ``force``.
    Raises ``UsageError`` for an ANN agent, an agent with T > 1, an observation space other
    than a Box, an existing ``path`` without ``force``, or a ``path`` that cannot be written.
    """
    q_net = _checked_q_net(model)
    graph = _graph(q_net)
    _write(graph, Path(path), force)
    return graph


def _write(graph: nir.NIRGraph, path: Path, force: bool) -> None:
    """Write ``graph`` to ``path`` atomically, refusing to replace a file unless ``force``."""
    def unwritable(reason: str) -> UsageError:
        return UsageError(
            f"cannot write the NIR graph to {path} ({reason}); pass a file path in an existing, writable directory"
        )

    def check_replaceable() -> None:
        if path.is_symlink() or path.exists():
            if not (path.is_symlink() or stat.S_ISREG(path.stat().st_mode)):  # a device, a FIFO: never replaced
                raise UsageError(f"{path} exists and is not a regular file; choose another --out")
            if not force:
                raise UsageError(f"{path} already exists; pass --force to replace it, or choose another --out")

    if path.is_dir():
        raise unwritable("Is a directory")
    if not path.parent.is_dir():
        raise unwritable("No such file or directory")
    check_replaceable()  # before the lock: a refused --out leaves no lock file beside it
    with folder_lock(path.parent):
        check_replaceable()
        try:
            with atomic_path(path) as temporary:
                nir.write(str(temporary), graph)
        except OSError as error:
            raise unwritable(error.strerror or str(error)) from None


_EXPORT_A_T1_AGENT = "export a spiking T=1 agent, such as the T1.zip written by 'spikerl compress'"


def _checked_q_net(model: DQN) -> SpikingQNetwork:
    """``model``'s spiking Q-network, or a ``UsageError`` saying why it cannot be exported."""
    q_net = model.policy.q_net
    if not isinstance(q_net, SpikingQNetwork):
        raise UsageError(f"the agent is an ANN (no spiking Q-network); {_EXPORT_A_T1_AGENT}")
    if q_net.timesteps != 1:
        raise UsageError(
            f"the agent runs T={q_net.timesteps} timesteps per decision; only T=1 agents can be exported, because NIR's IF "
            f"neuron resets to v_reset where spikerl's resets by subtracting the threshold; {_EXPORT_A_T1_AGENT}"
        )
    if not isinstance(q_net.observation_space, spaces.Box):
        space = type(q_net.observation_space).__name__
        raise UsageError(f"cannot export an agent with a {space} observation space; only Box observations map to a NIR input")
    return q_net


@torch.no_grad()
def _graph(q_net: SpikingQNetwork) -> nir.NIRGraph:
    """The chain ``input -> layers... -> output`` of ``q_net`` (T=1) as a ``NIRGraph``, from its layer plan."""
    obs_space = q_net.observation_space
    input_scale = 1 / 255 if q_net.normalize_images and is_image_space(obs_space) else 1.0
    # the layer that takes the observation: the encoder, or the first weighted layer (after a Flatten, MlpPolicy's)
    first_analog = next(entry for entry in q_net.plan if entry.role in ("encoder", "weighted", "readout"))
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(obs_space.shape))}
    for entry in q_net.plan:
        scale = input_scale if entry is first_analog else 1.0
        if entry.role == "encoder":
            nodes.update(_encoder_nodes(entry, scale))
        else:
            nodes[entry.name] = _node(entry.module, entry.input_shape, scale)
    nodes["output"] = nir.Output(output_type=np.array(q_net.plan[-1].output_shape))
    names_in_order = list(nodes)
    return nir.NIRGraph(
        nodes=nodes, edges=list(zip(names_in_order, names_in_order[1:])), metadata=_metadata(input_scale, q_net.encoding)
    )


def _metadata(input_scale: float, encoding: str) -> dict[str, str | int | float]:
    """What a simulator needs beyond the nodes: one timestep per decision, raw observations in
    (the image scaling is already multiplied into the first layer's weights, or the spiking
    input layer's thresholds), argmax read-out."""
    from spikerl import __version__

    return {
        "producer": f"spikerl {__version__}",
        "timesteps": 1,
        "input": "raw observations as the environment gives them, one timestep per decision",
        "input_scale_folded_into_first_layer": input_scale,
        "input_encoding": encoding,
        "input_encoding_description": "direct: the first weighted layer takes the observation; otherwise the graph's "
        "encoder nodes turn it into spikes (spikerl.encoding). event, threshold+event: a change channel whose two "
        "frames include one that is all zeros (the padding SB3's VecFrameStack puts before an episode's first "
        "frames) must not fire; the graph does not test for it, so zero those channels' input there",
        "readout": "argmax",
        "readout_description": "the output holds the Q-values; the action is their argmax",
    }


def _encoder_nodes(entry: PlannedLayer, input_scale: float) -> dict[str, nir.NIRNode]:
    """The spiking input layer as a 1x1 ``Conv2d`` (``<name>.mixing``) and an ``IF`` node.

    The convolution mixes the channels (identity for threshold encoding, frame differences for
    event encodings) and divides each output channel by its threshold (in raw pixel units,
    ``threshold / input_scale``), so that every neuron of the ``IF`` node fires at 1: one
    threshold for all neurons, which simulators such as snnTorch require.
    """
    encoder = entry.module
    assert isinstance(encoder, InputEncoder)
    thresholds = _array(encoder.threshold).reshape(-1, 1) / np.float32(input_scale)  # [C_out, 1]
    weight = (_array(encoder.mixing) / thresholds)[:, :, None, None]  # [C_out, C, 1, 1]
    return {
        f"{entry.name}.mixing": nir.Conv2d(
            input_shape=entry.input_shape[1:],
            weight=weight,
            stride=1,
            padding=0,
            dilation=1,
            groups=1,
            bias=np.zeros(len(weight), np.float32),
        ),
        entry.name: _if_node(np.ones(entry.output_shape, np.float32)),
    }


def _if_node(threshold: np.ndarray) -> nir.IF:
    """NIR's ``IF`` firing where spikerl's neurons do (``u >= threshold``), ``threshold`` per neuron."""
    v_threshold = np.nextafter(threshold.astype(np.float32), np.float32(-np.inf))
    return nir.IF(r=np.ones(threshold.shape, np.float32), v_threshold=v_threshold)


def _node(layer: nn.Module, input_shape: tuple[int, ...], weight_scale: float) -> nir.NIRNode:
    """The NIR node of one leaf ``layer`` whose per-sample input is ``input_shape``."""
    if isinstance(layer, nn.Flatten):
        end_dim = layer.end_dim - 1 if layer.end_dim > 0 else layer.end_dim  # NIR dims count without the batch
        return nir.Flatten(input_type=np.array(input_shape), start_dim=layer.start_dim - 1, end_dim=end_dim)
    if isinstance(layer, IFNeuron):
        return _if_node(np.full(input_shape, layer.threshold.item(), np.float32))
    assert isinstance(layer, (nn.Linear, nn.Conv2d)), layer  # the plan's other layers
    weight = _array(layer.weight) * np.float32(weight_scale)
    bias = _array(layer.bias) if layer.bias is not None else None
    if isinstance(layer, nn.Conv2d):
        return nir.Conv2d(
            input_shape=input_shape[1:],
            weight=weight,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=bias if bias is not None else np.zeros(weight.shape[0], np.float32),
        )
    return nir.Affine(weight=weight, bias=bias) if bias is not None else nir.Linear(weight=weight)


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)

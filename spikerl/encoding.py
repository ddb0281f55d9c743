"""Spiking input layers for image observations: the frames enter the network as spikes.

Under ``direct`` encoding (spikerl's default) the first convolution multiplies analog pixel
values: it costs full MACs, and a chip that takes only binary events cannot run it. The other
encodings put an ``InputEncoder`` in front of it, a layer of neurons on the frames
(``[B, C, H, W]``, pixels scaled to [0, 1] as SB3 feeds CNNs, channel k = stacked frame k):

``threshold``        one neuron per pixel: ``s = H(x / theta_c - 1)``, a threshold per channel
``event``            ON/OFF spikes from the change between consecutive stacked frames, as an
                     event camera sees the game: for k = 1..C-1, ``ON_k = H(d_k / theta - 1)``
                     and ``OFF_k = H(-d_k / theta - 1)`` with ``d_k = x_k - x_{k-1}``
                     (2 (C - 1) channels: ON first, then OFF)
``threshold+event``  both, the C threshold channels first

In each case the encoder's input currents are a fixed mix of the frame's channels (a 1x1
convolution: identity, or +1/-1 differences) and every output channel has its own learnable
threshold (trained through the surrogate gradient, like every neuron's). The first
convolution then takes spikes: it is rebuilt with the encoder's channel count when that
differs from the observation's, and conversion initialises it from the ANN's (``fold_first_layer``).
The encoder fires once per decision from rest, so at T > 1 it gives the same spike map at
every timestep.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.dqn.policies import QNetwork
from torch import nn

from spikerl.errors import UsageError
from spikerl.neurons import IFNeuron
from spikerl.settings import ENCODINGS

#: Default ``input_margin``: a pixel (or change) fires where it is this much above the
#: calibration frames' most common value (0.1 of the pixel range, about 25 gray levels).
INPUT_MARGIN = 0.1


def check_encoding(encoding: str) -> str:
    """``encoding`` if it is one of ``ENCODINGS``, else a ``UsageError``."""
    if encoding not in ENCODINGS:
        raise UsageError(f"unknown encoding '{encoding}'; use one of {', '.join(ENCODINGS)}", parameter="encoding")
    return encoding


def mixing_matrix(encoding: str, channels: int) -> torch.Tensor:
    """The encoder's fixed channel mix ``[out_channels, channels]``: identity rows for
    ``threshold``, ``x_k - x_{k-1}`` (ON) then ``x_{k-1} - x_k`` (OFF) rows for ``event``."""
    identity = torch.eye(channels)
    changes = identity[1:] - identity[:-1]  # [C - 1, C]
    parts = {"threshold": [identity], "event": [changes, -changes], "threshold+event": [identity, changes, -changes]}
    return torch.cat(parts[check_encoding(encoding)])


class InputEncoder(IFNeuron):
    """Spiking input layer: frames ``[B, C, H, W]`` in [0, 1] -> spikes ``[B, C_out, H, W]``.

    Input currents are ``u = mixing @ x`` over channels; output channel ``o`` fires where
    ``u_o >= threshold[o]``, once, from rest (``IFNeuron.fire_once``), so spike rates are
    recorded and thresholds constrained as for every neuron layer.

    :param encoding: ``threshold``, ``event`` or ``threshold+event``
    :param channels: C, the observation's channels (stacked frames)
    :param threshold: initial threshold of every output channel (conversion calibrates them)
    """

    mixing: torch.Tensor  # [C_out, C], a buffer

    def __init__(self, encoding: str, channels: int, threshold: float = 0.5, surrogate_scale: float = 0.3):
        super().__init__(threshold=threshold, surrogate_scale=surrogate_scale)
        self.encoding = encoding
        self.register_buffer("mixing", mixing_matrix(encoding, channels), persistent=False)
        self.threshold = nn.Parameter(torch.full((len(self.mixing), 1, 1), float(threshold)))

    @property
    def out_channels(self) -> int:
        return len(self.mixing)

    def currents(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, C, H, W]`` -> the neurons' input currents ``[B, C_out, H, W]``.

        A change read against a frame that is all zeros is no change (current 0): SB3's
        ``VecFrameStack`` puts zero frames before an episode's first ones, and without this
        every pixel brighter than black would fire at an episode's first decisions.
        """
        if self.encoding == "threshold":
            return frames
        currents = F.conv2d(frames, self.mixing[:, :, None, None])
        padding = (frames.amax(dim=(2, 3)) == 0).to(frames.dtype)  # [B, C]: 1 where a frame is all zeros
        change_rows = torch.count_nonzero(self.mixing, dim=1) > 1  # [C_out]
        reads_padding = (padding @ self.mixing.abs().T > 0) & change_rows  # [B, C_out]
        return currents.masked_fill(reads_padding[:, :, None, None], 0.0)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, C, H, W]`` -> spikes ``[B, C_out, H, W]`` (one step from rest)."""
        return self.fire_once(self.currents(frames))

    def extra_repr(self) -> str:
        thresholds = ", ".join(f"{t:.3g}" for t in self.threshold.flatten().tolist())
        return f"encoding={self.encoding}, channels {self.mixing.shape[1]} -> {self.out_channels}, thresholds [{thresholds}]"


def make_encoder(q_net: QNetwork, encoding: str) -> InputEncoder | None:
    """The encoder of ``q_net`` for ``encoding`` (``None`` for ``direct``).

    Where its channel count differs from the observation's, ``q_net``'s first ``nn.Conv2d`` is
    replaced by a fresh one taking that many channels (conversion fills its weights).
    """
    if check_encoding(encoding) == "direct":
        return None
    space = q_net.observation_space
    if not (isinstance(space, spaces.Box) and is_image_space(space, check_channels=False) and q_net.normalize_images):
        raise UsageError(
            f"encoding '{encoding}' needs image observations (uint8 frames, channels first); use encoding direct for {space}",
            parameter="encoding",
        )
    if "event" in encoding and space.shape[0] < 2:  # threshold+event would silently be threshold
        raise UsageError(
            f"encoding '{encoding}' takes the change between stacked frames and these observations hold one frame "
            f"({space.shape}); stack frames (env.frame_stack) or use encoding threshold",
            parameter="encoding",
        )
    encoder = InputEncoder(encoding, space.shape[0])
    name, conv = next((n, m) for n, m in q_net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    if not isinstance(conv, nn.Conv2d):
        raise UsageError(f"encoding '{encoding}' needs a convolutional first layer (CnnPolicy), not {type(conv).__name__}")
    if conv.in_channels != encoder.out_channels:
        parent_name, _, child = name.rpartition(".")
        # torch's stubs type a Conv2d's sizes tuple[int, ...] and its arguments tuple[int, int]
        wider = nn.Conv2d(
            encoder.out_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,  # type: ignore[arg-type]
            bias=conv.bias is not None,
        )
        setattr(q_net.get_submodule(parent_name), child, wider)
    return encoder


@torch.no_grad()
def calibrate_encoder(encoder: InputEncoder, frames: torch.Tensor, margin: float = INPUT_MARGIN) -> torch.Tensor:
    """Set each output channel's threshold to its most common input current plus ``margin``.

    ``frames``: calibration frames ``[N, C, H, W]`` in [0, 1]. The most common value is a
    game's background for a threshold channel (87/255 on Pong) and 0 for a change channel
    (most pixels do not change), so a neuron fires where its pixel is brighter than the
    background, or changed, by ``margin``. Returns the thresholds ``[C_out]``.
    """
    if not 0 < margin < 1:
        raise UsageError(f"input_margin must be in (0, 1), a share of the pixel range; got {margin}", parameter="input_margin")
    currents = encoder.currents(frames).transpose(0, 1).flatten(1)  # [C_out, N * H * W]
    thresholds = currents.mode(dim=1).values + margin
    encoder.threshold.copy_(thresholds.view_as(encoder.threshold))
    return thresholds


@torch.no_grad()
def fold_first_layer(encoder: InputEncoder, conv: nn.Conv2d, analog: nn.Conv2d, frames: torch.Tensor) -> None:
    """Initialise ``conv`` (on spikes) from the ANN's first convolution ``analog`` (on frames).

    Each frame channel is reconstructed from the spikes at the same pixel by least squares
    over the calibration ``frames`` ``[N, C, H, W]``: ``x_c ~ sum_o A[c, o] s_o + b_c``. Then
    ``analog(x) ~ conv(s)`` with ``conv.weight[:, o] = sum_c analog.weight[:, c] A[c, o]`` and
    ``conv.bias = analog.bias + sum_c b_c sum(analog.weight[:, c])`` (exact away from zero
    padding). On Pong, whose frames are a few gray levels on a uniform background, a threshold
    channel reconstructs its frame nearly exactly; changes alone cannot give the static
    picture (walls, a resting paddle) and leave more to the retraining.
    """
    spikes = encoder(frames).transpose(0, 1).flatten(1).double()  # [C_out, P]
    design = torch.cat([spikes, torch.ones_like(spikes[:1])])  # [C_out + 1, P]
    targets = frames.transpose(0, 1).flatten(1).double()  # [C, P]
    gram = design @ design.T
    identity = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    ridge = 1e-6 * gram.diagonal().mean() * identity  # channels that never fire
    coefficients = torch.linalg.solve(gram + ridge, design @ targets.T)  # [C_out + 1, C]
    mix, offset = coefficients[:-1].T.float(), coefficients[-1].float()  # A [C, C_out], b [C]
    conv.weight.copy_(torch.einsum("kchw,co->kohw", analog.weight, mix))
    bias = analog.bias if analog.bias is not None else analog.weight.new_zeros(analog.out_channels)
    if conv.bias is not None:
        conv.bias.copy_(bias + analog.weight.sum(dim=(2, 3)) @ offset)

"""Spiking input layers (threshold and event encodings) on tiny image spaces."""

import re

import gymnasium as gym
import nir
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN
from test_export import snntorch_q_values

from spikerl.convert import convert
from spikerl.encoding import InputEncoder, calibrate_encoder, fold_first_layer, mixing_matrix
from spikerl.energy import analog_layer_costs, decision_cost, layer_costs
from spikerl.errors import UsageError
from spikerl.export import export_nir
from spikerl.policy import SpikingCnnPolicy, SpikingMlpPolicy

BACKGROUND, OBJECT = 87, 236  # Pong's gray levels


class BlockFrames(gym.Env):
    """Pong-like uint8 frames ``[3, 36, 36]``: a uniform background with a few bright blocks
    that move between the stacked frames."""

    observation_space = gym.spaces.Box(0, 255, (3, 36, 36), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def frames(self, n: int) -> np.ndarray:
        frames = np.full((n, 3, 36, 36), BACKGROUND, np.uint8)
        for sample in frames:
            for _ in range(3):
                row, col = self.rng.integers(0, 30, 2)
                for k, frame in enumerate(sample):
                    frame[row : row + 4, col + 2 * k : col + 2 * k + 3] = OBJECT
        return frames

    def reset(self, *, seed=None, options=None):
        return self.frames(1)[0], {}

    def step(self, action):
        return self.frames(1)[0], 0.0, False, False, {}


def tiny_dqn(policy, **policy_kwargs):
    kwargs = dict(features_extractor_kwargs=dict(features_dim=32), **policy_kwargs)
    return DQN(policy, BlockFrames(), buffer_size=1, device="cpu", seed=0, policy_kwargs=kwargs)


def test_mixing_matrices():
    assert torch.equal(mixing_matrix("threshold", 3), torch.eye(3))
    on = [[-1, 1, 0], [0, -1, 1]]  # x_k - x_{k-1}
    assert mixing_matrix("event", 3).tolist() == on + [[-v for v in row] for row in on]
    assert mixing_matrix("threshold+event", 3).shape == (3 + 4, 3)
    with pytest.raises(UsageError, match="unknown encoding 'spikes'; use one of direct, threshold, event"):
        mixing_matrix("spikes", 3)


def test_threshold_encoder_fires_per_channel_and_learns_its_thresholds():
    encoder = InputEncoder("threshold", 2)
    with torch.no_grad():
        encoder.threshold.copy_(torch.tensor([0.5, 0.2]).view(2, 1, 1))
    frames = torch.tensor([[[[0.4, 0.6]], [[0.1, 0.3]]]], requires_grad=True)  # [1, 2, 1, 2]
    spikes = encoder(frames)
    assert spikes.tolist() == [[[[0.0, 1.0]], [[0.0, 1.0]]]]
    spikes.sum().backward()
    assert encoder.threshold.grad.abs().min() > 0  # surrogate gradient reaches every channel's threshold


def test_event_encoder_gives_on_and_off_spikes_of_frame_changes():
    encoder = InputEncoder("event", 2, threshold=0.1)
    frames = torch.tensor([[[[0.3, 0.3, 0.9]], [[0.9, 0.3, 0.3]]]])  # pixel 0 brightens, pixel 2 darkens
    assert encoder(frames).tolist() == [[[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]]]  # ON channel, OFF channel


def test_no_change_events_against_the_zero_frames_before_an_episode_starts():
    """SB3's VecFrameStack fills the stack with zero frames at a reset: [0, 0, x0] is no change."""
    encoder = InputEncoder("threshold+event", 3, threshold=0.1)
    frame, moved = torch.full((1, 4), 0.34), torch.full((1, 4), 0.34)  # Pong's background gray
    moved[0, 1] = 0.9
    start = torch.stack([torch.zeros(1, 4), torch.zeros(1, 4), frame])[None]  # [1, 3, 1, 4]: an episode's first stack
    playing = torch.stack([frame, frame, moved])[None]
    spikes = encoder(torch.cat([start, playing]))  # channels: 3 frames, 2 ON changes, 2 OFF changes
    assert spikes[0, 2].sum() == 4 and spikes[0, 3:].sum() == 0  # the frame fires, its zero padding no change
    assert spikes[1, 4].tolist() == [[0.0, 1.0, 0.0, 0.0]] and spikes[1, 3:].sum() == 1  # one pixel brightened


@pytest.mark.parametrize("encoding, channels", [("threshold", 3), ("event", 4), ("threshold+event", 7)])
def test_the_encoder_is_the_first_entry_of_the_plan(encoding, channels):
    q_net = tiny_dqn(SpikingCnnPolicy, timesteps=2, encoding=encoding).q_net
    encoder, first_conv = q_net.plan[0], q_net.plan[1]
    assert (encoder.name, encoder.role, encoder.input_kind) == ("encoder", "encoder", "analog")
    assert encoder.output_shape == (channels, 36, 36)
    assert first_conv.role == "weighted" and first_conv.input_kind == "spikes" and first_conv.module.in_channels == channels
    assert q_net(torch.randint(0, 255, (5, 3, 36, 36), dtype=torch.uint8)).shape == (5, 3)
    with q_net.recording_spikes() as rates:
        q_net(torch.randint(0, 255, (5, 3, 36, 36), dtype=torch.uint8))
    assert list(rates) == list(q_net.neurons()) == [entry.name for entry in q_net.planned("encoder", "neuron")]
    assert list(rates)[0] == "encoder"  # spike rates, spike maps and results list the input layer first


def test_direct_encoding_adds_no_module_and_non_images_are_refused():
    q_net = tiny_dqn(SpikingCnnPolicy, timesteps=1).q_net
    assert q_net.encoder is None and not any(k.startswith("encoder") for k in q_net.state_dict())
    with pytest.raises(UsageError, match="encoding 'threshold' needs image observations"):
        DQN(SpikingMlpPolicy, "CartPole-v1", buffer_size=1, device="cpu", policy_kwargs=dict(encoding="threshold"))


def test_change_encodings_of_single_frames_are_refused():
    class SingleFrames(BlockFrames):
        observation_space = gym.spaces.Box(0, 255, (1, 36, 36), np.uint8)

    for encoding in ("event", "threshold+event"):
        kwargs = dict(features_extractor_kwargs=dict(features_dim=32), encoding=encoding)
        with pytest.raises(UsageError, match=re.escape(f"encoding '{encoding}' takes the change between stacked")):
            DQN(SpikingCnnPolicy, SingleFrames(), buffer_size=1, device="cpu", policy_kwargs=kwargs)


def test_calibration_and_fold_reproduce_the_analog_first_layer():
    env = BlockFrames()
    frames = torch.as_tensor(env.frames(64)).float() / 255
    encoder = InputEncoder("threshold", 3)
    thresholds = calibrate_encoder(encoder, frames, margin=0.1)
    assert torch.allclose(thresholds, torch.full((3,), BACKGROUND / 255 + 0.1))
    analog, folded = torch.nn.Conv2d(3, 8, 4, stride=2), torch.nn.Conv2d(3, 8, 4, stride=2)
    fold_first_layer(encoder, folded, analog, frames)
    with torch.no_grad():  # two gray levels: the spikes give the frames back exactly
        assert torch.allclose(folded(encoder(frames)), analog(frames), atol=1e-4)


@pytest.mark.parametrize("encoding", ["threshold", "event", "threshold+event"])
def test_converted_agent_saves_costs_and_exports_with_its_encoder(encoding, tmp_path):
    env = BlockFrames()
    small = dict(features_extractor_kwargs=dict(features_dim=32))
    ann = DQN("CnnPolicy", env, buffer_size=1, device="cpu", seed=0, policy_kwargs=small)
    frames = env.frames(128)
    snn = convert(ann, env, frames[:64], timesteps=1, encoding=encoding, buffer_size=1)
    with torch.no_grad():  # thresholds that differ per channel, as after training
        snn.q_net.encoder.threshold.mul_(torch.linspace(0.9, 1.1, snn.q_net.encoder.out_channels).view(-1, 1, 1))

    snn.save(tmp_path / "agent.zip")  # plain SB3 loading rebuilds the encoder from policy_kwargs
    loaded = DQN.load(tmp_path / "agent.zip", device="cpu")
    assert loaded.policy_kwargs["encoding"] == encoding
    assert torch.equal(loaded.q_net(torch.as_tensor(frames)), snn.q_net(torch.as_tensor(frames)))

    costs = layer_costs(snn.q_net, snn.observation_space)
    assert [(c.name, c.kind, c.input_layer) for c in costs[:2]] == [
        ("encoder", "encoder", None), ("features_extractor.cnn.0", "weighted", "encoder")
    ]
    # the encoder per pixel: one comparison per frame channel, a subtraction and a comparison per change channel
    frame_channels, change_channels = {"threshold": (3, 0), "event": (0, 4), "threshold+event": (3, 4)}[encoding]
    assert costs[0].macs == 36 * 36 * (frame_channels + 2 * change_channels)
    rates = {name: 0.5 for name in snn.q_net.neurons()}
    snn_cost = decision_cost(costs, rates, timesteps=1)
    assert snn_cost["macs"] == 0  # every weighted layer takes spikes
    assert snn_cost["acs"] == pytest.approx(costs[0].macs + sum(c.macs * 0.5 for c in costs[1:]))
    # at T=3 the encoder's spikes and the first layer's current are computed once, the rest every timestep
    assert decision_cost(costs, rates, timesteps=3)["acs"] == pytest.approx(
        costs[0].macs + costs[1].macs * 0.5 + sum(c.macs * 0.5 * 3 for c in costs[2:])
    )
    # the ANN it was converted from: no comparisons, the first convolution on the frames' 3 channels
    ann_cost = decision_cost(layer_costs(ann.q_net, ann.observation_space))
    assert decision_cost(analog_layer_costs(costs)) == ann_cost

    graph = export_nir(snn, tmp_path / "agent.nir")
    assert graph.metadata["input_encoding"] == encoding
    assert [type(node).__name__ for node in graph.nodes.values()][:4] == ["Input", "Conv2d", "IF", "Conv2d"]
    mixing = nir.read(tmp_path / "agent.nir").nodes["encoder.mixing"].weight[:, :, 0, 0]
    thresholds = snn.q_net.encoder.threshold.detach().flatten().numpy() * 255  # raw pixel units
    assert np.allclose(mixing, snn.q_net.encoder.mixing.numpy() / thresholds[:, None])
    spikerl_actions = snn.predict(frames, deterministic=True)[0]
    snntorch_actions = snntorch_q_values(tmp_path / "agent.nir", frames).argmax(dim=1).numpy()
    assert (snntorch_actions == spikerl_actions).mean() >= 0.99

import gymnasium as gym
import numpy as np
import pytest
import torch

from spikerl.config import load_preset
from spikerl.convert import collect_observations, convert, percentile_value, set_thresholds
from spikerl.envs import make_env
from spikerl.errors import UsageError
from spikerl.loading import load_agent
from spikerl.policy import SpikingMlpPolicy
from spikerl.settings import EnvSettings
from spikerl.snn import SpikingQNetwork


def test_percentile_value_matches_numpy():
    values = torch.randn(1000)
    assert abs(percentile_value(values, 90) - np.percentile(values.numpy(), 90)) < 0.01


def test_conversion_keeps_greedy_actions_at_large_T(cartpole_ann):
    """Rate coding converges to the ANN: with many timesteps the SNN acts like the ANN.

    CartPole's action gaps are tiny next to its Q-values (about 100), so the rate-coding error
    (up to 1/T of a threshold per neuron) needs a large T; the agreement grows with T
    (measured on the shipped ANN: 88% at T=64, 95% at 256, 98.6% at 1024).
    """
    ann = load_agent(cartpole_ann, "CartPole-v1", EnvSettings(), "cpu")
    env = make_env("CartPole-v1", load_preset("CartPole-v1").env, seed=7)
    states = collect_observations(ann, env, 512)
    snn = convert(ann, env, states, timesteps=1024, percentile=99.9)
    ann_actions = ann.predict(states, deterministic=True)[0]
    snn_actions = snn.predict(states, deterministic=True)[0]
    assert (ann_actions == snn_actions).mean() >= 0.95


def test_thresholds_are_layerwise_percentiles(cartpole_ann):
    ann = load_agent(cartpole_ann, "CartPole-v1", EnvSettings(), "cpu")
    env = make_env("CartPole-v1", EnvSettings(), seed=7)
    states = collect_observations(ann, env, 256)
    snn = convert(ann, env, states, timesteps=3, percentile=90)
    first = snn.q_net.q_net[1]
    pre_activations = ann.q_net.q_net[0](torch.as_tensor(states))
    assert abs(first.threshold.item() - percentile_value(pre_activations.detach(), 90)) < 1e-3


def mostly_silent_network(positive_units: int) -> SpikingQNetwork:
    """A 4 -> 64 -> 2 spiking network whose hidden currents are +2 on ``positive_units`` units, else -1."""
    q_net = SpikingMlpPolicy(
        gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), lambda _: 1e-4, net_arch=[64], timesteps=2
    ).q_net
    with torch.no_grad():
        hidden = q_net.q_net[0]
        hidden.weight.zero_()
        hidden.bias.fill_(-1.0)
        hidden.bias[:positive_units] = 2.0
    return q_net


def test_mostly_negative_currents_take_the_percentile_of_the_positive_ones():
    q_net = mostly_silent_network(positive_units=5)  # 5 of 64 currents positive: the 90th percentile is -1
    readout = q_net.q_net[2].weight.detach().clone()
    thresholds = set_thresholds(q_net, torch.rand(32, 4), percentile=90)
    assert thresholds == {"q_net.1": 2.0}
    torch.testing.assert_close(q_net.q_net[2].weight.detach(), readout * 2.0)  # a spike stands for the threshold's current


def test_a_layer_that_can_never_fire_is_refused():
    with pytest.raises(UsageError, match="q_net.1 never receives a positive current .* calibrate on more states"):
        set_thresholds(mostly_silent_network(positive_units=0), torch.rand(32, 4), percentile=90)

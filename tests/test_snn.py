import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.dqn.policies import CnnPolicy
from torch import nn

from conftest import REPO
from spikerl.config import load_preset
from spikerl.convert import collect_observations
from spikerl.envs import make_env
from spikerl.errors import UsageError
from spikerl.loading import load_agent
from spikerl.neurons import IFNeuron
from spikerl.policy import SpikingCnnPolicy, SpikingMlpPolicy, set_timesteps
from spikerl.snn import layer_plan

BOX = gym.spaces.Box(-1, 1, (4,), np.float32)
IMAGES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def make_policy(policy_class=SpikingMlpPolicy, observation_space=BOX, **kwargs):
    return policy_class(observation_space, gym.spaces.Discrete(3), lambda _: 1e-3, **kwargs)


def test_mlp_relus_become_neurons_and_names_match_the_ann():
    policy = make_policy(net_arch=[16, 16], timesteps=3)
    ann_keys = {k for k in DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[16, 16])).q_net.state_dict()}
    snn_keys = set(policy.q_net.state_dict())
    assert ann_keys <= snn_keys
    assert snn_keys - ann_keys == {"q_net.1.threshold", "q_net.1.leak", "q_net.3.threshold", "q_net.3.leak"}
    assert not any(isinstance(m, nn.ReLU) for m in policy.q_net.modules())


def test_cnn_policy_output_shape_and_first_layer_runs_once():
    policy = make_policy(SpikingCnnPolicy, IMAGES, timesteps=4)
    first_conv = policy.q_net.features_extractor.cnn[0]
    calls = []
    first_conv.register_forward_hook(lambda module, inputs, output: calls.append(output.shape))
    q = policy.q_net(torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8))
    assert q.shape == (2, 3)
    assert calls == [torch.Size([2, 32, 20, 20])]  # once, on [B, ...], not on [T * B, ...]
    assert len(policy.q_net.neurons()) == 4  # three conv layers and the hidden linear layer


def test_output_is_mean_of_readout_over_time():
    policy = make_policy(net_arch=[8], timesteps=5)
    q_net = policy.q_net
    obs = torch.randn(3, 4)
    hidden, neuron, readout = q_net.q_net
    spikes = neuron(hidden(obs).expand(5, 3, 8))  # [T, B, 8]
    expected = torch.stack([readout(s) for s in spikes]).mean(0)
    assert torch.allclose(q_net(obs), expected, atol=1e-6)


def test_spike_rates_are_recorded_per_layer():
    policy = make_policy(net_arch=[16, 16], timesteps=2)
    with policy.q_net.recording_spikes() as rates:
        policy.q_net(torch.randn(8, 4) * 5)
    assert set(rates) == {"q_net.1", "q_net.3"}
    assert all(0.0 <= r <= 1.0 for r in rates.values()) and rates["q_net.1"] > 0


class TanhExtractor(NatureCNN):
    def __init__(self, observation_space, features_dim=512):
        super().__init__(observation_space, features_dim)
        self.linear = nn.Sequential(nn.Linear(3136, features_dim), nn.Tanh())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(activation_fn=nn.Tanh), "activation_fn=nn.ReLU"),
        (dict(features_extractor_class=TanhExtractor), "Tanh layer"),
        (dict(timesteps=0), "positive integer"),
    ],
)
def test_unsupported_networks_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        make_policy(SpikingCnnPolicy, IMAGES, **kwargs)


def test_set_timesteps_reaches_target_and_saved_kwargs():
    model = DQN(SpikingMlpPolicy, "CartPole-v1", policy_kwargs=dict(timesteps=5))
    set_timesteps(model, 2)
    assert model.q_net.timesteps == model.q_net_target.timesteps == 2
    assert model.policy_kwargs["timesteps"] == 2


def test_sb3_training_moves_thresholds_and_syncs_target():
    model = DQN(
        SpikingMlpPolicy, "CartPole-v1", policy_kwargs=dict(timesteps=2, neuron_kwargs=dict(learn_leak=True)),
        learning_starts=50, train_freq=1, target_update_interval=100, seed=0,
    )
    optimized = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    neurons = model.q_net.neurons().values()
    assert all(id(n.threshold) in optimized and id(n.leak) in optimized for n in neurons)
    before = [n.threshold.item() for n in neurons]
    model.learn(300)
    after = [n.threshold.item() for n in neurons]
    assert before != after
    assert all(n.leak.item() <= 1.0 for n in neurons)
    model.target_update_interval = 1
    model._on_step()  # SB3's own target sync
    target = model.q_net_target.neurons()
    for name, neuron in model.q_net.neurons().items():
        assert target[name].threshold.item() == neuron.threshold.item()
        assert target[name].leak.item() == neuron.leak.item()


def test_leak_is_clamped_after_every_optimizer_step():
    model = DQN(SpikingMlpPolicy, "CartPole-v1", policy_kwargs=dict(neuron_kwargs=dict(learn_leak=True, leak=1.5)))
    model.policy.optimizer.step()
    assert all(n.leak.item() == 1.0 for n in model.q_net.neurons().values())


@pytest.mark.parametrize("env_id, states", [("CartPole-v1", 512), ("PongNoFrameskip-v4", 64)])
def test_shipped_t5_agents_decide_the_same_with_the_first_layer_looped(env_id, states, monkeypatch):
    preset = load_preset(env_id)
    model = load_agent(str(REPO / "agents" / env_id / "T5.zip"), env_id, preset.env, "cpu")
    observations = torch.as_tensor(collect_observations(model, make_env(env_id, preset.env, seed=1_000_000), states))
    with torch.no_grad():
        closed_form = model.q_net(observations)
        monkeypatch.setattr(
            IFNeuron, "fire_constant", lambda neuron, currents, steps: neuron(currents.expand(steps, *currents.shape))
        )
        looped = model.q_net(observations)
    assert torch.equal(closed_form, looped)


def test_the_plan_describes_every_layer_once():
    plan = make_policy(SpikingCnnPolicy, IMAGES, timesteps=2).q_net.plan
    assert [(e.name, e.role, e.input_kind) for e in plan] == [
        ("features_extractor.cnn.0", "weighted", "analog"),
        ("features_extractor.cnn.1", "neuron", "analog"),
        ("features_extractor.cnn.2", "weighted", "spikes"),
        ("features_extractor.cnn.3", "neuron", "analog"),
        ("features_extractor.cnn.4", "weighted", "spikes"),
        ("features_extractor.cnn.5", "neuron", "analog"),
        ("features_extractor.cnn.6", "stateless", "spikes"),
        ("features_extractor.linear.0", "weighted", "spikes"),
        ("features_extractor.linear.1", "neuron", "analog"),
        ("q_net.0", "readout", "spikes"),
    ]
    assert (plan[0].input_shape, plan[0].output_shape) == ((4, 84, 84), (32, 20, 20))
    assert (plan[6].output_shape, plan[-1].output_shape) == ((3136,), (3,))
    ann_plan = layer_plan(make_policy(CnnPolicy, IMAGES).q_net, IMAGES)
    assert [(e.name, e.role, e.output_shape) for e in ann_plan] == [(e.name, e.role, e.output_shape) for e in plan]
    assert isinstance(ann_plan[1].module, nn.ReLU)  # ReLUs in the neurons' place
    assert {e.input_kind for e in ann_plan} == {"analog"}

"""The event-driven inference path: which layers take it, and that it computes what dense does."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from conftest import SHIPPED_CARTPOLE, SHIPPED_PONG, run_cli
from spikerl.config import load_preset
from spikerl.convert import collect_observations
from spikerl.envs import make_env
from spikerl.event_driven import MIN_WEIGHTS, SpikeDrivenLinear, event_driven_layers
from spikerl.loading import load_agent
from spikerl.policy import SpikingCnnPolicy, SpikingMlpPolicy


@pytest.fixture
def sparse_products(monkeypatch) -> list[int]:
    """Counts the CSR conversions, i.e. the calls that took the sparse product."""
    calls = []
    to_sparse_csr = torch.Tensor.to_sparse_csr
    monkeypatch.setattr(torch.Tensor, "to_sparse_csr", lambda self, *a, **k: calls.append(1) or to_sparse_csr(self, *a, **k))
    return calls


def spikes(batch: int, inputs: int, rate: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(batch, inputs, generator=generator) < rate).float()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [1, 7])
def test_sparse_product_equals_the_dense_one(bias, batch, sparse_products):
    linear = nn.Linear(300, 40, bias=bias)
    inputs = spikes(batch, 300, 0.05)
    with torch.no_grad():
        torch.testing.assert_close(SpikeDrivenLinear(linear)(inputs), linear(inputs), rtol=1e-5, atol=1e-5)
    assert sparse_products == [1]


def test_dense_inputs_and_autograd_take_the_dense_product(sparse_products):
    linear = nn.Linear(300, 40)
    layer = SpikeDrivenLinear(linear)
    with torch.no_grad():
        torch.testing.assert_close(layer(spikes(4, 300, 0.5)), linear(spikes(4, 300, 0.5)))
    out = layer(spikes(4, 300, 0.05))
    out.sum().backward()
    assert sparse_products == [] and linear.weight.grad is not None


def test_a_changed_weight_is_used_at_once():
    linear = nn.Linear(300, 40)
    layer = SpikeDrivenLinear(linear)
    inputs = spikes(3, 300, 0.05)
    with torch.no_grad():
        layer(inputs)  # caches the transposed weight
        linear.load_state_dict({"weight": linear.weight * 2, "bias": linear.bias})
        torch.testing.assert_close(layer(inputs), linear(inputs), rtol=1e-5, atol=1e-5)


def test_weights_written_through_data_are_seen_after_use_event_driven():
    policy = SpikingCnnPolicy(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6), lambda _: 1e-4)
    target = policy.q_net_target
    inputs = spikes(2, 3136, 0.05)
    fc = target.features_extractor.linear[0]
    event_driven_fc = next(layer for layer in target._event_driven_layers if isinstance(layer, SpikeDrivenLinear))
    with torch.no_grad():
        target.use_event_driven()
        event_driven_fc(inputs)  # keeps fc's transposed weight
        fc.weight.data.mul_(2)  # as SB3's polyak_update writes target networks: the version counter does not move
        target.use_event_driven()
        torch.testing.assert_close(event_driven_fc(inputs), fc(inputs), rtol=1e-5, atol=1e-5)


def test_other_shapes_and_inference_mode_weights_take_the_dense_product(sparse_products):
    with torch.inference_mode():
        frozen = nn.Linear(300, 40)
    linear = nn.Linear(300, 40)
    inputs = spikes(6, 300, 0.05)
    with torch.no_grad():
        torch.testing.assert_close(SpikeDrivenLinear(linear)(inputs.view(2, 3, 300)), linear(inputs.view(2, 3, 300)))
    with torch.inference_mode():
        torch.testing.assert_close(SpikeDrivenLinear(frozen)(inputs), frozen(inputs))
    assert sparse_products == []


def test_only_large_spike_fed_linear_layers_are_made_event_driven():
    cnn = SpikingCnnPolicy(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6), lambda _: 1e-4).q_net
    assert cnn.event_driven_layer_names() == ["features_extractor.linear.0"]  # 3136 x 512; the 512 x 6 read-out stays dense
    mlp = SpikingMlpPolicy(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2), lambda _: 1e-4).q_net
    assert mlp.event_driven_layer_names() == []  # 64 x 64 is far below MIN_WEIGHTS
    wrapped = [type(layer) for layer in event_driven_layers(mlp.plan, min_weights=0)]
    # the first Linear takes the analog observation; the hidden one and the read-out take spikes
    assert wrapped[1] is nn.Linear and wrapped[3] is SpikeDrivenLinear and wrapped[5] is SpikeDrivenLinear
    assert 3136 * 512 >= MIN_WEIGHTS > 64 * 64


@pytest.mark.parametrize("timesteps", [1, 5])
def test_shipped_pong_agent_decides_the_same_event_driven(timesteps, sparse_products):
    env_id = "PongNoFrameskip-v4"
    preset = load_preset(env_id)
    model = load_agent(str(SHIPPED_PONG / f"T{timesteps}.zip"), env_id, preset.env, "cpu")
    observations = torch.as_tensor(collect_observations(model, make_env(env_id, preset.env, seed=1_000_000), 64))
    q_net = model.q_net
    with torch.no_grad():
        dense = q_net(observations)
        q_net.use_event_driven()
        assert q_net.event_driven
        event_driven = q_net(observations)
        q_net.use_event_driven(False)
    assert sparse_products  # the agent's real spike maps are sparse enough to take the sparse product
    torch.testing.assert_close(event_driven, dense, rtol=1e-5, atol=1e-5)
    assert torch.equal(event_driven.argmax(1), dense.argmax(1))


def test_evaluate_event_driven_says_which_layers():
    done = run_cli("evaluate", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--episodes", "1", "--event-driven")
    assert done.returncode == 0, done.stderr
    assert "event-driven layers: none" in done.stdout and "reward 500.00" in done.stdout
    done = run_cli("evaluate", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--episodes", "1", "--event-driven")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.strip().endswith("needs a spiking agent (from 'spikerl compress'); drop it for an ANN")

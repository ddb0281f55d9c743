"""NIR export, checked by running the written file in an independent simulator (snnTorch).

snnTorch reads the graph through ``snntorch.import_nir.import_from_nir`` (which wires it
with NIRTorch). Two facts about snnTorch 1.0.0's import shape how the graph is run:

- ``nir.IF`` becomes ``snn.Leaky(beta=0.9, init_hidden=False, reset_delay=False)``, which
  returns ``(spikes, membrane)``; NIRTorch only threads state through modules whose forward
  has a ``state`` argument, so it would hand that tuple to the next layer. Switching
  ``init_hidden`` on makes the neuron return the spikes alone and keep its membrane inside.
  Its threshold (``v_threshold * r``), strict firing (``v > v_threshold``) and same-step
  output (no delay) are snnTorch's own; ``beta = 0.9`` is a leak, but the membrane starts at
  0 and is read once, so it never acts.
- NIR shapes have no batch dimension and the imported ``Flatten`` keeps NIR's dims, so the
  graph is run one observation ``[*obs_shape]`` at a time.

One decision of a T=1 agent is one step from a zero membrane: every neuron is reset before
each observation and the graph is run for exactly one step; its output is the Q-values.
"""

import gymnasium as gym
import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch.import_nir import import_from_nir
from stable_baselines3 import DQN

from conftest import SHIPPED_CARTPOLE, SHIPPED_PONG
from spikerl.config import load_preset
from spikerl.convert import collect_observations, set_thresholds
from spikerl.envs import make_env
from spikerl.errors import UsageError
from spikerl.export import export_nir
from spikerl.loading import load_agent
from spikerl.policy import SpikingCnnPolicy, SpikingMlpPolicy
from spikerl.settings import EnvSettings


def snntorch_q_values(path, observations: np.ndarray) -> torch.Tensor:
    """Q-values ``[N, n_actions]`` of the NIR file at ``path``, one snnTorch step per observation."""
    net = import_from_nir(nir.read(path))
    neurons = [module for module in net.modules() if isinstance(module, snn.Leaky)]
    for neuron in neurons:
        neuron.init_hidden = True
    q_values = []
    with torch.no_grad():
        for obs in torch.as_tensor(observations, dtype=torch.float32):
            for neuron in neurons:
                neuron.reset_mem()
            output, _ = net(obs)
            q_values.append(output)
    return torch.stack(q_values)


@pytest.fixture(scope="module")
def cartpole_t1():
    return load_agent(SHIPPED_CARTPOLE / "T1.zip", "CartPole-v1", EnvSettings(), "cpu")


def test_cartpole_t1_export_maps_every_layer(cartpole_t1, tmp_path):
    export_nir(cartpole_t1, tmp_path / "agent.nir")
    graph = nir.read(tmp_path / "agent.nir")
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {
        "input": "Input", "features_extractor.flatten": "Flatten", "q_net.0": "Affine", "q_net.1": "IF",
        "q_net.2": "Affine", "q_net.3": "IF", "q_net.4": "Affine", "output": "Output",
    }
    for name, neuron in cartpole_t1.q_net.neurons().items():
        threshold = np.float32(neuron.threshold.item())
        assert np.all(graph.nodes[name].r == 1)
        assert np.all(graph.nodes[name].v_threshold == np.nextafter(threshold, np.float32(-np.inf)))  # u >= threshold


@pytest.mark.parametrize("folder, states", [(SHIPPED_CARTPOLE, 1000), (SHIPPED_PONG, 300)], ids=["CartPole", "Pong"])
def test_shipped_t1_export_acts_like_spikerl_in_snntorch(folder, states, tmp_path):
    if not (folder / "T1.zip").is_file():
        pytest.fail(f"{folder}/T1.zip is not shipped")
    env_config = load_preset(folder.name).env
    agent = load_agent(folder / "T1.zip", folder.name, env_config, "cpu")
    export_nir(agent, tmp_path / "agent.nir")
    # epsilon-greedy, so that the states stray beyond the agent's own trajectories
    observations = collect_observations(agent, make_env(folder.name, env_config, seed=7), states, epsilon=0.2)
    spikerl_actions = agent.predict(observations, deterministic=True)[0]
    snntorch_actions = snntorch_q_values(tmp_path / "agent.nir", observations).argmax(dim=1).numpy()
    assert (snntorch_actions == spikerl_actions).mean() >= 0.99


class RandomImages(gym.Env):
    """Random uint8 frames ``[2, 36, 36]``, the smallest that NatureCNN takes."""

    observation_space = gym.spaces.Box(0, 255, (2, 36, 36), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def test_cnn_export_folds_the_image_scaling_and_acts_like_spikerl(tmp_path):
    model = DQN(
        SpikingCnnPolicy, RandomImages(), buffer_size=1, device="cpu", seed=0,
        policy_kwargs=dict(timesteps=1, features_extractor_kwargs=dict(features_dim=64)),
    )
    frames = np.random.default_rng(0).integers(0, 256, (200, 2, 36, 36), dtype=np.uint8)
    set_thresholds(model.q_net, torch.as_tensor(frames[:100]), percentile=90.0)  # about 10% of neurons fire
    graph = export_nir(model, tmp_path / "cnn.nir")
    first_conv = model.q_net.features_extractor.cnn[0]
    assert np.allclose(graph.nodes["features_extractor.cnn.0"].weight, first_conv.weight.detach().numpy() / 255)
    spikerl_actions = model.predict(frames, deterministic=True)[0]
    snntorch_actions = snntorch_q_values(tmp_path / "cnn.nir", frames).argmax(dim=1).numpy()
    assert (snntorch_actions == spikerl_actions).mean() >= 0.99


def test_mlp_export_on_images_folds_the_image_scaling_into_its_first_linear_layer(tmp_path):
    model = DQN(SpikingMlpPolicy, RandomImages(), buffer_size=1, device="cpu", seed=0, policy_kwargs=dict(timesteps=1))
    graph = export_nir(model, tmp_path / "mlp.nir")
    first_linear = model.q_net.q_net[0]  # after the features extractor, MlpPolicy's Flatten
    assert isinstance(first_linear, torch.nn.Linear)
    assert np.allclose(graph.nodes["q_net.0"].weight, first_linear.weight.detach().numpy() / 255)


@pytest.mark.parametrize(
    "agent, message",
    [("ann.zip", "is an ANN"), ("T5.zip", "T=5 .*resets to v_reset .* subtracting the threshold")],
)
def test_ann_and_multi_step_agents_are_refused(agent, message, tmp_path):
    model = load_agent(SHIPPED_CARTPOLE / agent, "CartPole-v1", EnvSettings(), "cpu")
    with pytest.raises(UsageError, match=message) as error:
        export_nir(model, tmp_path / "agent.nir")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "agent.nir").exists()


@pytest.mark.parametrize("where", ["missing/agent.nir", "."])
def test_unwritable_path_is_refused(cartpole_t1, where, tmp_path):
    message = r"cannot write the NIR graph .*\((No such file or directory|Is a directory)\)"
    with pytest.raises(UsageError, match=message) as error:
        export_nir(cartpole_t1, tmp_path / where)
    assert "\n" not in str(error.value)


def test_non_box_observations_are_refused(tmp_path):
    model = DQN(SpikingMlpPolicy, "FrozenLake-v1", buffer_size=1, device="cpu", policy_kwargs=dict(timesteps=1))
    with pytest.raises(UsageError, match="Discrete observation space; only Box"):
        export_nir(model, tmp_path / "agent.nir")


def test_export_command_line(tmp_path):
    from conftest import run_cli

    out = tmp_path / "agent.nir"
    result = run_cli("export", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "IF" in result.stdout and isinstance(nir.read(out), nir.NIRGraph)
    refused = run_cli("export", "--agent", str(SHIPPED_CARTPOLE / "T5.zip"), "--out", str(tmp_path / "t5.nir"))
    assert refused.returncode == 2 and "only T=1 agents" in refused.stderr and refused.stderr.count("\n") == 1

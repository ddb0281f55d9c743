"""The NIR export beyond snnTorch: its metadata, and the shipped CartPole T=1 agent imported into
SpikingJelly and Norse (each test runs where that framework is installed)."""

import nir
import numpy as np
import pytest
import torch

from conftest import SHIPPED_CARTPOLE
from spikerl.config import load_preset
from spikerl.convert import collect_observations
from spikerl.envs import make_env
from spikerl.export import export_nir
from spikerl.loading import load_agent


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The shipped CartPole T=1 agent, its NIR file, and 1000 epsilon-greedy states ``[1000, 4]`` with its actions."""
    env_config = load_preset("CartPole-v1").env
    agent = load_agent(SHIPPED_CARTPOLE / "T1.zip", "CartPole-v1", env_config, "cpu")
    path = tmp_path_factory.mktemp("nir") / "agent.nir"
    export_nir(agent, path)
    states = collect_observations(agent, make_env("CartPole-v1", env_config, seed=7), 1000, epsilon=0.2)
    return path, states, agent.predict(states, deterministic=True)[0]


def test_graph_metadata_says_how_to_run_it(exported):
    metadata = nir.read(exported[0]).metadata
    assert int(metadata["timesteps"]) == 1 and metadata["readout"] == "argmax"
    assert float(metadata["input_scale_folded_into_first_layer"]) == 1.0  # CartPole: no image scaling
    assert str(metadata["producer"]).startswith("spikerl ")


def test_spikingjelly_imports_the_export_and_acts_like_spikerl(exported):
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    path, states, actions = exported
    # dt=1.0: spikerl's IF neurons integrate without a time constant (NIR's r = 1 = 1/dt)
    network = import_from_nir(path, dt=1.0)
    with torch.no_grad():
        q_values, _ = network(torch.as_tensor(states), None)  # state=None: from rest, one timestep
    assert (q_values.argmax(dim=1).numpy() == actions).mean() >= 0.99


def test_norse_imports_the_export_and_acts_like_spikerl(exported):
    pytest.importorskip("norse")
    import norse.torch

    path, states, actions = exported
    network = norse.torch.from_nir(nir.read(path))
    norse_actions = []
    with torch.no_grad():
        for state in torch.as_tensor(states):  # Norse's imported graph takes one observation at a time
            q_values, _ = network(state)
            norse_actions.append(int(q_values.argmax()))
    assert (np.array(norse_actions) == actions).mean() >= 0.99

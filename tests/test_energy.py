"""Operation counts and energy on tiny networks whose numbers are worked out by hand."""

import gymnasium as gym
import numpy as np
import pytest
from torch import nn

from spikerl.energy import decision_cost, layer_costs
from spikerl.policy import SpikingMlpPolicy
from spikerl.report import write_report

BOX = gym.spaces.Box(-1, 1, (2,), np.float32)


def tiny_snn():
    # q_net: Linear(2 -> 3), neuron layer "q_net.1", Linear(3 -> 2)
    return SpikingMlpPolicy(BOX, gym.spaces.Discrete(2), lambda _: 1e-3, net_arch=[3], timesteps=2).q_net


def test_layer_macs_of_linear_layers():
    costs = layer_costs(tiny_snn(), BOX)
    assert [(c.name, c.macs, c.input_layer, c.outputs) for c in costs] == [
        ("q_net.0", 2 * 3, None, 3),
        ("q_net.2", 3 * 2, "q_net.1", 2),
    ]


def test_layer_macs_of_a_convolution():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 4))
    costs = layer_costs(net, gym.spaces.Box(0, 1, (1, 5, 5), np.float32))
    # conv: 2 x 3 x 3 outputs, each 1 x 3 x 3 MACs; linear 18 x 4
    assert [(c.macs, c.input_layer) for c in costs] == [(18 * 9, None), (18 * 4, "1")]


def test_ann_and_snn_energy_by_hand():
    costs = layer_costs(tiny_snn(), BOX)
    ann = decision_cost(costs)
    assert ann == {
        "macs": 12, "acs": 0.0, "energy_pj": pytest.approx(12 * 4.6),
        "mac_energy_pj": pytest.approx(12 * 4.6), "ac_energy_pj": 0.0, "membrane_values": 0,
    }
    snn = decision_cost(costs, {"q_net.1": 0.5}, timesteps=2)
    # first layer: 6 MACs (analog input, once); second: 6 MACs x rate 0.5 x T 2 = 6 ACs
    assert snn["macs"] == 6 and snn["acs"] == pytest.approx(6)
    assert snn["energy_pj"] == pytest.approx(6 * 4.6 + 6 * 0.9)
    assert (snn["mac_energy_pj"], snn["ac_energy_pj"]) == (pytest.approx(6 * 4.6), pytest.approx(6 * 0.9))
    assert snn["membrane_values"] == 3 + 2  # hidden neurons and the output accumulator
    assert decision_cost(costs, {"q_net.1": 0.5}, timesteps=1)["membrane_values"] == 0
    assert decision_cost(costs, {"q_net.1": 0.5}, timesteps=2, mac_pj=1.0, ac_pj=0.0)["energy_pj"] == 6


def test_report_rewrites_markdown_and_plots(tmp_path):
    import shutil

    from conftest import SHIPPED_CARTPOLE

    for name in ("results.json", "ann.zip"):
        shutil.copy(SHIPPED_CARTPOLE / name, tmp_path / name)
    results = write_report(tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "energy / decision" in text and "| ANN | - |" in text
    for name in ("reward_vs_T.png", "spike_rates.png", "energy.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert all(row.cost["ann_energy_ratio"] > 0 for row in results.rows)

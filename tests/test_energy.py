"""Operation counts and energy on tiny networks whose numbers are worked out by hand."""

import gymnasium as gym
import numpy as np
import pytest
import torch
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
    assert {key: ann[key] for key in ("macs", "acs", "energy_pj", "mac_energy_pj", "ac_energy_pj", "membrane_values")} == {
        "macs": 12, "acs": 0.0, "energy_pj": pytest.approx(12 * 4.6),
        "mac_energy_pj": pytest.approx(12 * 4.6), "ac_energy_pj": 0.0, "membrane_values": 0,
    }
    # bytes: a weight per MAC, a bias per output, every layer's input read and output written
    memory = (ann["weight_bytes"], ann["bias_bytes"], ann["membrane_bytes"], ann["activation_bytes"])
    assert memory == (12 * 4, 5 * 4, 0, (2 + 3 + 3 + 2) * 4)
    assert ann["total_energy_pj"] == pytest.approx(12 * 4.6 + 108 * 24.96)
    snn = decision_cost(costs, {"q_net.1": 0.5}, timesteps=2)
    # first layer: 6 MACs (analog input, once); second: 6 MACs x rate 0.5 x T 2 = 6 ACs
    assert snn["macs"] == 6 and snn["acs"] == pytest.approx(6)
    assert snn["energy_pj"] == pytest.approx(6 * 4.6 + 6 * 0.9)
    assert (snn["mac_energy_pj"], snn["ac_energy_pj"]) == (pytest.approx(6 * 4.6), pytest.approx(6 * 0.9))
    assert snn["membrane_values"] == 3 + 2  # hidden neurons and the output accumulator
    # weights: 6 MACs + 6 ACs; biases: 3 once + 2 per timestep; 5 potentials read and written
    # per timestep; the observation read, the Q-values written, the first layer's 3 currents
    # written once and read per timestep, 3 spikes written and read per timestep
    assert (snn["weight_bytes"], snn["bias_bytes"], snn["membrane_bytes"]) == (12 * 4, (3 + 2 * 2) * 4, 2 * 2 * 5 * 4)
    assert snn["activation_bytes"] == (2 + 2 + 3 * 3) * 4 + 2 * 2 * 3 / 8
    assert snn["memory_energy_pj"] == pytest.approx((48 + 28 + 80 + 53.5) * 24.96)
    assert decision_cost(costs, {"q_net.1": 0.5}, timesteps=1)["activation_bytes"] == (2 + 2) * 4 + 2 * 3 / 8  # nothing kept
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


def _spiking_net(timesteps: int):
    """A 4 -> 32 -> 16 -> 2 spiking Q-network with random weights and thresholds that make it fire."""
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    q_net = SpikingMlpPolicy(space, gym.spaces.Discrete(2), lambda _: 1e-3, net_arch=[32, 16], timesteps=timesteps).q_net
    for neuron in q_net.neurons().values():
        neuron.threshold.data.fill_(0.2)
    return q_net, space


class SpikingJellyReplica(nn.Module):
    """``q_net`` rebuilt with SpikingJelly's IF neurons (soft reset), multi-step ``[T, B, ...]``:
    the first layer once on the observation, its current into the first neurons at every
    timestep, then spike-fed layers at every timestep and the mean over T read out."""

    def __init__(self, q_net, timesteps: int):
        super().__init__()
        from spikingjelly.activation_based import neuron

        self.timesteps = timesteps
        self.linears = nn.ModuleList(entry.module for entry in q_net.plan if isinstance(entry.module, nn.Linear))
        self.neurons = nn.ModuleList(
            neuron.IFNode(v_threshold=n.threshold.item(), v_reset=None, step_mode="m") for n in q_net.neurons().values()
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.linears[0](obs)
        h = h.expand(self.timesteps, *h.shape).contiguous()
        for neuron, linear in zip(self.neurons, self.linears[1:]):
            h = linear(neuron(h))
        return h.mean(dim=0)


def _ours(q_net, space, obs: torch.Tensor, timesteps: int) -> dict[str, float]:
    with torch.no_grad(), q_net.recording_spikes() as rates:
        q_net(obs)
    return decision_cost(layer_costs(q_net, space), rates, timesteps)


@pytest.mark.parametrize("timesteps", [1, 3])
def test_compute_and_memory_energy_match_spikingjelly(timesteps):
    """Per decision, spikerl's MACs, ACs and weight/bias/membrane bytes equal SpikingJelly's
    ``op_counter`` counts on the same network and observations, and both energies agree within 1%
    once the two things SpikingJelly leaves out are added back: activation traffic, and the
    output accumulator's potentials at T>1 (it charges the neuron updates' own additions as ACs
    too, which the paper's model, and ours, leave out)."""
    pytest.importorskip("spikingjelly.activation_based.op_counter")
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.op_counter import estimate_simple_energy

    q_net, space = _spiking_net(timesteps)
    obs = torch.rand(64, 4) * 2 - 1
    ours = _ours(q_net, space, obs, timesteps)
    # T=1: spikerl's own network (no time axis, no neuron state); T>1: a SpikingJelly replica
    network = q_net if timesteps == 1 else SpikingJellyReplica(q_net, timesteps)
    with torch.no_grad():
        report = estimate_simple_energy(network, obs)
    functional.reset_net(network)
    counts = {key: value / len(obs) for key, value in report.counts.items()}
    assert ours["acs"] > 0 and ours["macs"] == counts["mac"] == 4 * 32
    assert ours["acs"] == pytest.approx(counts["synop"], rel=1e-6)
    assert ours["weight_bytes"] == pytest.approx(counts["weight_read_bytes"], rel=1e-6)
    assert ours["bias_bytes"] == pytest.approx(counts["bias_read_bytes"], rel=1e-6)
    accumulator_bytes = 2 * timesteps * 2 * 4 if timesteps > 1 else 0  # 2 actions, read + written each step
    neuron_bytes = counts["neuron_state_read_bytes"] + counts["neuron_state_write_bytes"]
    assert ours["membrane_bytes"] == pytest.approx(neuron_bytes + accumulator_bytes, rel=1e-6)
    assert (neuron_bytes > 0) == (timesteps > 1)

    neuron_update_ac_pj = (counts["ac"] - counts["synop"]) * 0.9
    assert (neuron_update_ac_pj > 0) == (timesteps > 1)
    assert ours["energy_pj"] == pytest.approx(report.energy_compute_pj / len(obs) - neuron_update_ac_pj, rel=0.01)
    left_out_pj = (ours["activation_bytes"] + accumulator_bytes) * 24.96 - neuron_update_ac_pj
    assert ours["total_energy_pj"] == pytest.approx(report.energy_total_pj / len(obs) + left_out_pj, rel=0.01)


def test_shipped_cartpole_energy_with_memory():
    """The shipped CartPole agents' energy with memory, from their stored spike rates: weights
    dominate, so T=1 saves far less with memory counted than compute alone suggests."""
    from conftest import SHIPPED_CARTPOLE
    from spikerl.energy import energy_ratios
    from spikerl.results import read_results

    results = read_results(SHIPPED_CARTPOLE)
    costs = results.layer_costs()
    ann = decision_cost(costs)
    assert ann["weight_bytes"] == 67072 * 4 and ann["bias_bytes"] == 514 * 4
    t1 = next(row for row in results.with_costs().rows if row.T == 1)
    ratios = energy_ratios(ann, decision_cost(costs, t1.spike_rates, 1))
    assert ratios["ann_energy_ratio"] > 10 > ratios["ann_total_energy_ratio"] > 1
    assert t1.cost["ann_total_energy_ratio"] == pytest.approx(ratios["ann_total_energy_ratio"])


def test_results_count_an_encoders_operations_afresh():
    """A threshold+event encoder was counted at 2 operations per neuron before 2026-12-01 (its frame
    channels take 1): results written then are counted with today's model."""
    import dataclasses

    from conftest import REPO
    from spikerl.results import read_results

    shipped = read_results(REPO / "agents" / "PongNoFrameskip-v4")  # threshold input on 4 frames of 84x84
    encoder = next(layer for layer in shipped.spiking_layers if layer["kind"] == "encoder")
    assert shipped.layer_costs(spiking=True)[0].macs == encoder["macs"] == 4 * 84 * 84  # one comparison per pixel
    old = dict(encoder, outputs=10 * 84 * 84, macs=2 * 10 * 84 * 84)  # threshold+event as counted before
    result = dataclasses.replace(shipped, encoding="threshold+event", spiking_layers=[old, *shipped.spiking_layers[1:]])
    assert result.layer_costs(spiking=True)[0].macs == 84 * 84 * (4 + 2 * 6)  # 4 frame channels, 6 change channels

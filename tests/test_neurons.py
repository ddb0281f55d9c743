import pytest
import torch

from spikerl.neurons import IFNeuron, PiecewiseLinearSpike, if_step


def test_integrate_fire_and_soft_reset():
    neuron = IFNeuron(threshold=1.0)
    currents = torch.tensor([0.6, 0.6, 0.6, 2.5, 0.0]).reshape(5, 1, 1)  # [T, B, 1]
    spikes = neuron(currents).flatten().tolist()
    # u: 0.6 | 1.2 -> spike, 0.2 | 0.8 | 3.3 -> spike, 2.3 (soft reset keeps the excess) | 2.3 -> spike
    assert spikes == [0.0, 1.0, 0.0, 1.0, 1.0]


def test_soft_reset_subtracts_threshold():
    spike, u = if_step(torch.tensor(0.0), torch.tensor(2.5), torch.tensor(1.0), torch.tensor(1.0))
    assert spike.item() == 1.0 and u.item() == pytest.approx(1.5)


def test_leak_scales_membrane():
    spike, u = if_step(torch.tensor(0.8), torch.tensor(0.1), torch.tensor(1.0), torch.tensor(0.5))
    assert spike.item() == 0.0 and u.item() == pytest.approx(0.5)


@pytest.mark.parametrize("v, expected", [(0.0, 0.3), (0.5, 0.15), (-0.5, 0.15), (1.0, 0.0), (-2.0, 0.0)])
def test_surrogate_gradient_is_piecewise_linear(v, expected):
    x = torch.tensor(v, requires_grad=True)
    PiecewiseLinearSpike.apply(x, 0.3).backward()
    assert x.grad.item() == pytest.approx(expected)


def test_gradients_reach_threshold_and_leak():
    neuron = IFNeuron(threshold=1.0, leak=0.9, learn_leak=True)
    currents = torch.full((3, 4, 2), 0.7, requires_grad=True)
    neuron(currents).sum().backward()
    assert neuron.threshold.grad is not None and neuron.threshold.grad.abs().item() > 0
    assert neuron.leak.grad is not None and neuron.leak.grad.abs().item() > 0
    assert currents.grad.abs().sum().item() > 0


def test_integrate_and_fire_by_default_keeps_leak_fixed():
    neuron = IFNeuron()
    assert neuron.leak.item() == 1.0 and not neuron.leak.requires_grad


def test_constrain_clamps_leak_and_keeps_threshold_positive():
    neuron = IFNeuron(threshold=-0.5, leak=1.3, learn_leak=True)
    neuron.constrain()
    assert neuron.leak.item() == 1.0 and neuron.threshold.item() > 0


def test_reset_passes_no_gradient_through_the_spike():
    # u = 1.5 fires; u_after = u - threshold * s: d(u_after)/dx is 1 (not 1 - threshold * ds/du)
    x = torch.tensor(1.5, requires_grad=True)
    _, u = if_step(torch.tensor(0.0), x, torch.tensor(1.0), torch.tensor(1.0))
    u.backward()
    assert x.grad.item() == 1.0


def test_spike_rate_counts_only_while_recording():
    neuron = IFNeuron(threshold=1.0)
    neuron(torch.full((2, 1, 4), 5.0))
    assert neuron.spike_rate() == 0.0
    neuron.record = True
    neuron(torch.tensor([[[2.0, 0.0]], [[2.0, 0.0]]]))
    assert neuron.spike_rate() == pytest.approx(0.5)


@pytest.mark.parametrize("timesteps", [1, 2, 5])
def test_inference_path_matches_training_path(timesteps):
    torch.manual_seed(0)
    neuron = IFNeuron(threshold=0.7, leak=0.9)
    currents = torch.randn(timesteps, 16, 50)
    trained_path = neuron(currents)
    with torch.no_grad():
        inference_path = neuron(currents)
    assert torch.equal(trained_path, inference_path)


@pytest.mark.parametrize("grad", [True, False])
def test_fire_once_is_one_timestep_from_rest(grad):
    torch.manual_seed(0)
    currents = torch.randn(16, 50) * 2
    spikes, gradients = [], []
    for step in (lambda n: n(currents[None])[0], lambda n: n.fire_once(currents)):
        neuron = IFNeuron(threshold=0.7)
        with torch.set_grad_enabled(grad):
            out = step(neuron)
        spikes.append(out)
        if grad:
            (out * torch.arange(50.0)).sum().backward()
            gradients.append(neuron.threshold.grad)
    assert spikes[0].shape == (16, 50) and 0 < spikes[0].mean() < 1
    assert torch.equal(spikes[0], spikes[1])
    if grad:
        assert gradients[0] != 0 and torch.allclose(gradients[0], gradients[1])


@pytest.mark.parametrize("timesteps", [2, 5])
def test_fire_constant_is_the_loop_over_repeated_currents(timesteps, monkeypatch):
    torch.manual_seed(0)
    currents = torch.randn(16, 50) * 1.5
    currents[0, :5] = torch.tensor([0.7, 2.1, 0.0, -1.0, float("nan")])  # at the threshold, far above, zero, below, NaN
    neuron = IFNeuron(threshold=0.7)
    neuron.record = True
    with torch.no_grad():
        looped = neuron(currents.expand(timesteps, 16, 50))
        monkeypatch.setattr(IFNeuron, "_infer", lambda *_: pytest.fail("fire_constant ran the timestep loop"))
        closed_form = neuron.fire_constant(currents, timesteps)
    assert closed_form.shape == (timesteps, 16, 50) and 0 < closed_form.mean() < 1
    assert torch.equal(looped, closed_form)
    assert closed_form[:, 0, :5].tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0]] * timesteps
    assert neuron.spike_rate() == pytest.approx(float(looped.mean()))  # both calls recorded alike


@pytest.mark.parametrize("kwargs", [dict(threshold=0.7, leak=0.8), dict(threshold=0.0)], ids=["leaky", "zero threshold"])
def test_fire_constant_runs_the_loop_where_the_closed_form_does_not_hold(kwargs, monkeypatch):
    currents = torch.randn(8, 20)
    neuron = IFNeuron(**kwargs)
    with torch.no_grad():
        expected = neuron(currents.expand(3, 8, 20))
        loops = []
        infer = IFNeuron._infer
        monkeypatch.setattr(IFNeuron, "_infer", lambda self, c: loops.append(1) or infer(self, c))
        assert torch.equal(neuron.fire_constant(currents, 3), expected) and loops == [1]


def test_fire_constant_keeps_the_surrogate_gradient():
    currents = torch.tensor([[0.5, 1.2]], requires_grad=True)
    spikes = IFNeuron(threshold=1.0).fire_constant(currents, 3)
    spikes.sum().backward()
    assert spikes[:, 0].tolist() == [[0.0, 1.0], [1.0, 1.0], [0.0, 1.0]]  # u: 0.5, 1.0 fires, 0.5 | 1.2, 1.4, 1.6 all fire
    assert currents.grad is not None and (currents.grad != 0).all()

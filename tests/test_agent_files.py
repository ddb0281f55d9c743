"""Spiking agents are saved without the duplicate target network and load back unchanged."""

import io
import zipfile

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.dqn.policies import DQNPolicy

from conftest import SHIPPED_CARTPOLE


def _policy_keys(path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        return set(torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True))


def _recorded_states(model: DQN, steps: int = 300) -> np.ndarray:
    """CartPole observations met by ``model`` playing from seed 123, ``[steps, 4]``."""
    env = gym.make("CartPole-v1")
    observation, _ = env.reset(seed=123)
    states = []
    for _ in range(steps):
        states.append(observation)
        action, _ = model.predict(observation, deterministic=True)
        observation, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            observation, _ = env.reset()
    return np.array(states)


def _with_full_policy(path, out) -> None:
    """Copy of the agent zip at ``path`` whose policy.pth holds q_net_target too (the old format)."""
    model = DQN.load(path, device="cpu")
    buffer = io.BytesIO()
    torch.save(DQNPolicy.state_dict(model.policy), buffer)  # DQNPolicy's own: every tensor
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            archive.writestr(info, buffer.getvalue() if info.filename == "policy.pth" else source.read(info))


def test_shipped_spiking_agent_has_no_target_copy_and_acts_as_the_full_one(tmp_path):
    shipped = SHIPPED_CARTPOLE / "T1.zip"
    keys = _policy_keys(shipped)
    assert keys and not any(key.startswith("q_net_target.") for key in keys)
    _with_full_policy(shipped, tmp_path / "full.zip")
    assert any(key.startswith("q_net_target.") for key in _policy_keys(tmp_path / "full.zip"))

    small, full = DQN.load(shipped, device="cpu"), DQN.load(tmp_path / "full.zip", device="cpu")
    states = torch.as_tensor(_recorded_states(full))
    with torch.no_grad():
        for network in ("q_net", "q_net_target"):
            assert torch.equal(getattr(small, network)(states), getattr(full, network)(states))
    assert np.array_equal(
        small.predict(states.numpy(), deterministic=True)[0], full.predict(states.numpy(), deterministic=True)[0]
    )
    assert (tmp_path / "full.zip").stat().st_size > 1.9 * shipped.stat().st_size


def test_a_target_that_differs_from_the_q_network_is_saved(tmp_path):
    model = DQN.load(SHIPPED_CARTPOLE / "T1.zip", device="cpu")
    with torch.no_grad():
        next(model.q_net_target.parameters()).add_(1.0)  # as after training steps between target syncs
    model.save(tmp_path / "training.zip")
    assert any(key.startswith("q_net_target.") for key in _policy_keys(tmp_path / "training.zip"))
    reloaded = DQN.load(tmp_path / "training.zip", device="cpu")
    for saved, loaded in zip(model.q_net_target.parameters(), reloaded.q_net_target.parameters()):
        assert torch.equal(saved, loaded)
    assert not torch.equal(next(reloaded.q_net.parameters()), next(reloaded.q_net_target.parameters()))

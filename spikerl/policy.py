"""SB3 DQN policies whose Q-network (and target network) is a ``SpikingQNetwork``.

Use them like SB3's own::

    from stable_baselines3 import DQN
    from spikerl.policy import SpikingMlpPolicy
    model = DQN(SpikingMlpPolicy, "CartPole-v1", policy_kwargs=dict(timesteps=1))

T, the neuron settings and the input encoding travel in ``policy_kwargs`` (``timesteps``,
``neuron_kwargs``, ``encoding``), so a
saved agent loads with plain ``stable_baselines3.DQN.load`` wherever spikerl is installed.
Thresholds and leaks are parameters of the Q-network: the optimizer trains them and the
target-network sync copies them. After every optimizer step leaks are clamped to <= 1 and
thresholds kept positive.

While the target network is an exact copy of the Q-network (always, in the agents ``spikerl
compress`` saves), the policy's ``state_dict`` leaves it out, halving the zip; loading one
without ``q_net_target.*`` restores the copy, so plain ``DQN.load`` gives the same agent.
"""

from __future__ import annotations

from typing import Any

import torch
from stable_baselines3 import DQN
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.dqn.policies import DQNPolicy

from spikerl.encoding import check_encoding
from spikerl.snn import SpikingQNetwork, check_timesteps

Q_NET, TARGET = "q_net.", "q_net_target."


def _restore_target_copy(module: torch.nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load-state pre-hook: a state without ``q_net_target.*`` was saved with the target equal to
    ``q_net``, so the target's tensors are ``q_net``'s."""
    if not any(key.startswith(prefix + TARGET) for key in state):
        for key in [key for key in state if key.startswith(prefix + Q_NET)]:
            state[key.replace(prefix + Q_NET, prefix + TARGET, 1)] = state[key]


class SpikingMlpPolicy(DQNPolicy):
    """``DQNPolicy`` with a spiking Q-network.

    :param timesteps: T, timesteps per decision
    :param neuron_kwargs: ``IFNeuron`` settings (``threshold``, ``leak``, ``learn_leak``,
        ``surrogate_scale``)
    :param encoding: input encoding of image observations (``spikerl.encoding.ENCODINGS``)
    Other parameters are ``DQNPolicy``'s.
    """

    q_net: SpikingQNetwork
    q_net_target: SpikingQNetwork

    def __init__(
        self,
        *args: Any,
        timesteps: int = 5,
        neuron_kwargs: dict[str, Any] | None = None,
        encoding: str = "direct",
        **kwargs: Any,
    ):
        self._initial_timesteps = check_timesteps(timesteps)  # read by make_q_net while the base class builds
        self.neuron_kwargs = dict(neuron_kwargs or {})
        self.encoding = check_encoding(encoding)
        super().__init__(*args, **kwargs)
        self.register_load_state_dict_pre_hook(_restore_target_copy)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]  # torch's stubs overload it
        """``DQNPolicy``'s state, without ``q_net_target.*`` when the target equals ``q_net``."""
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        target = {key: key.replace(prefix + TARGET, prefix + Q_NET, 1) for key in state if key.startswith(prefix + TARGET)}
        if all(source in state and torch.equal(state[key], state[source]) for key, source in target.items()):
            for key in target:
                del state[key]
        return state

    @property
    def timesteps(self) -> int:
        """T, timesteps per decision: the Q-network's (``set_timesteps`` changes it)."""
        return self.q_net.timesteps

    def make_q_net(self) -> SpikingQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return SpikingQNetwork(
            **net_args, timesteps=self._initial_timesteps, neuron_kwargs=self.neuron_kwargs, encoding=self.encoding
        ).to(self.device)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        constrain_after_each_step(self.optimizer, self.q_net)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            **super()._get_constructor_parameters(),
            "timesteps": self.timesteps,
            "neuron_kwargs": self.neuron_kwargs,
            "encoding": self.encoding,
        }


class SpikingCnnPolicy(SpikingMlpPolicy):
    """``SpikingMlpPolicy`` with SB3's NatureCNN features, like SB3's ``CnnPolicy``."""

    def __init__(self, *args: Any, features_extractor_class: type = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


# SB3 resolves policy names through DQN.policy_aliases: with these, DQN("SpikingMlpPolicy", env)
# works, and so does an rl-zoo3 YAML saying `policy: SpikingMlpPolicy` (zoo run with --gym-packages spikerl).
DQN.policy_aliases.update({"SpikingMlpPolicy": SpikingMlpPolicy, "SpikingCnnPolicy": SpikingCnnPolicy})


def constrain_after_each_step(optimizer: torch.optim.Optimizer, q_net: SpikingQNetwork) -> None:
    """Keep ``q_net``'s neuron parameters valid after every step of ``optimizer`` (the one place
    the constraints are applied: SB3's optimizer and the distillation's both take this hook)."""
    optimizer.register_step_post_hook(lambda *_: q_net.constrain_neurons())


def spiking_q_net(model: DQN) -> SpikingQNetwork:
    """The Q-network of ``model``, a DQN with a spiking policy (``TypeError`` for an ANN)."""
    if not isinstance(model.q_net, SpikingQNetwork):
        raise TypeError(f"expected a spiking DQN (SpikingMlpPolicy or SpikingCnnPolicy), got {type(model.policy).__name__}")
    return model.q_net


def set_timesteps(model: Any, timesteps: int) -> None:
    """Change T of a spiking DQN ``model``: its Q-network, target network and the ``policy_kwargs``
    it saves (the one place T changes; weights, thresholds and leaks stay)."""
    timesteps = check_timesteps(timesteps)
    model.policy.q_net.timesteps = model.policy.q_net_target.timesteps = timesteps
    model.policy_kwargs["timesteps"] = timesteps

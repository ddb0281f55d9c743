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
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.dqn.policies import DQNPolicy

from spikerl.encoding import check_encoding
from spikerl.snn import SpikingQNetwork, check_timesteps


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
        self, *args: Any, timesteps: int = 5, neuron_kwargs: dict[str, Any] | None = None, encoding: str = "direct", **kwargs: Any
    ):
        self.timesteps = check_timesteps(timesteps)
        self.neuron_kwargs = dict(neuron_kwargs or {})
        self.encoding = check_encoding(encoding)
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> SpikingQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return SpikingQNetwork(**net_args, timesteps=self.timesteps, neuron_kwargs=self.neuron_kwargs, encoding=self.encoding).to(self.device)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        self.optimizer.register_step_post_hook(lambda *_: self.q_net.constrain_neurons())

    def set_timesteps(self, timesteps: int) -> None:
        """Change T of the Q-network and its target (weights, thresholds and leaks stay)."""
        self.timesteps = self.q_net.timesteps = self.q_net_target.timesteps = check_timesteps(timesteps)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            **super()._get_constructor_parameters(), "timesteps": self.timesteps, "neuron_kwargs": self.neuron_kwargs, "encoding": self.encoding,
        }


class SpikingCnnPolicy(SpikingMlpPolicy):
    """``SpikingMlpPolicy`` with SB3's NatureCNN features, like SB3's ``CnnPolicy``."""

    def __init__(self, *args: Any, features_extractor_class: type = NatureCNN, **kwargs: Any):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


def set_timesteps(model: Any, timesteps: int) -> None:
    """Change T of a spiking DQN ``model``, including the ``policy_kwargs`` it saves."""
    model.policy.set_timesteps(timesteps)
    model.policy_kwargs["timesteps"] = model.policy.timesteps

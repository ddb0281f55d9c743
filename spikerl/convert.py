"""ANN -> SNN conversion: the ANN's weights, thresholds from calibration observations.

Thresholds are set layer by layer (PAPER.md, step 2): neuron layer k gets the chosen
percentile of its input currents (pre-activations) on the calibration observations, with
layers 1..k-1 already converted, so each layer sees the spikes it will see in the SNN.

A spike is binary, so a layer firing at rate r stands for the activation ``r * threshold``.
The weights of the next weighted layer are multiplied by the threshold, so that its currents
(and in the end the Q-values) keep the ANN's scale. The paper's networks have no biases and
do without this; SB3's layers have biases, which would otherwise be out of scale.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.dqn.policies import CnnPolicy
from torch import nn

from spikerl.encoding import INPUT_MARGIN, calibrate_encoder, fold_first_layer
from spikerl.errors import UsageError
from spikerl.neurons import IFNeuron
from spikerl.policy import SpikingCnnPolicy, SpikingMlpPolicy
from spikerl.snn import SpikingQNetwork


def collect_observations(
    model: DQN, env: VecEnv, n_states: int, epsilon: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Roll out ``model`` epsilon-greedily on ``env``; return ``n_states`` observations ``[N, ...]``."""
    rng = rng or np.random.default_rng(0)
    assert isinstance(env.action_space, spaces.Discrete), env.action_space  # DQN's only action space
    observations: list[np.ndarray] = []
    obs = cast(np.ndarray, env.reset())  # spikerl's envs have Box observations
    while len(observations) * env.num_envs < n_states:
        observations.append(obs)
        actions, _ = model.predict(obs, deterministic=True)
        explore = rng.random(env.num_envs) < epsilon
        actions = np.where(explore, rng.integers(env.action_space.n, size=env.num_envs), actions)
        obs = cast(np.ndarray, env.step(actions)[0])
    return np.concatenate(observations)[:n_states]


def percentile_value(values: torch.Tensor, percentile: float) -> float:
    """The ``percentile`` (in (0, 100]) of all entries of ``values`` (any size; no 16M limit)."""
    flat = values.flatten()
    k = max(1, math.ceil(percentile / 100 * flat.numel()))
    return float(flat.kthvalue(k).values)


def check_percentile(percentile: float) -> float:
    if not 0 < percentile <= 100:
        raise UsageError(f"percentile must be in (0, 100], got {percentile}", parameter="percentile")
    return float(percentile)


def spiking_model(
    ann: DQN,
    env: VecEnv,
    timesteps: int,
    neuron_kwargs: dict[str, Any] | None = None,
    encoding: str = "direct",
    **dqn_kwargs: Any,
) -> DQN:
    """A spiking DQN with the ANN's network layout, ``timesteps`` T, the input ``encoding`` and fresh weights."""
    policy_class = SpikingCnnPolicy if isinstance(ann.policy, CnnPolicy) else SpikingMlpPolicy
    policy_kwargs = {
        **ann.policy_kwargs, "timesteps": timesteps, "neuron_kwargs": dict(neuron_kwargs or {}), "encoding": encoding
    }
    try:
        return DQN(policy_class, env, policy_kwargs=policy_kwargs, device=ann.device, **dqn_kwargs)
    except UsageError:  # spikerl's own refusal while the policy is built (an encoding that does not fit, ...)
        raise
    except (TypeError, ValueError) as error:  # a keyword or value SB3's DQN, the policy or its optimizer refuses
        raise UsageError(
            f"SB3's DQN refuses the spiking student's settings (compress.td.dqn, compress.neuron_kwargs: {error}); "
            "fix or drop that setting"
        ) from None


@torch.no_grad()
def set_thresholds(q_net: SpikingQNetwork, observations: torch.Tensor, percentile: float) -> dict[str, float]:
    """Set each neuron layer's threshold, first to last, from its input currents
    (``[T, N, ...]``, or ``[N, ...]`` at T=1).

    The threshold is the ``percentile`` of the layer's pre-activations (the paper's rule).
    Where that is not positive (a layer whose currents are mostly negative, as in a trained
    NatureCNN's 512-unit layer on Pong), it is the ``percentile`` of the positive ones.
    """
    thresholds = {}
    plan = q_net.plan
    for entry in q_net.planned("neuron"):
        name, neuron = entry.name, entry.module
        assert isinstance(neuron, IFNeuron), neuron  # the plan's neuron layers in a spiking network
        neuron.capture_input = True
        try:
            q_net(observations)
            currents = neuron.captured_input
            assert currents is not None  # captured by the forward pass
        finally:
            neuron.capture_input = False
            neuron.reset_counts()
        threshold = percentile_value(currents, percentile)
        if threshold <= 0:  # most currents are negative: scale to the ones that can make it fire
            positive = currents[currents > 0]
            if not len(positive):
                raise UsageError(
                    f"layer {name} never receives a positive current on the {len(observations)} calibration states, "
                    "so it can never fire; check the agent, or calibrate on more states"
                )
            threshold = percentile_value(positive, percentile)
            print(
                f"layer {name}: at most {100 - percentile:g}% of its pre-activations are positive; "
                f"threshold set to the {percentile:g}th percentile of the positive ones ({threshold:.4g})"
            )
        neuron.threshold.fill_(threshold)
        next_weighted = next(e.module for e in plan[plan.index(entry) :] if e.role in ("weighted", "readout"))
        assert isinstance(next_weighted, (nn.Linear, nn.Conv2d)), next_weighted
        next_weighted.weight.mul_(threshold)
        thresholds[name] = threshold
    return thresholds


def convert(
    ann: DQN,
    env: VecEnv,
    calibration_observations: np.ndarray,
    timesteps: int,
    percentile: float = 90.0,
    neuron_kwargs: dict[str, Any] | None = None,
    encoding: str = "direct",
    input_margin: float = INPUT_MARGIN,
    **dqn_kwargs: Any,
) -> DQN:
    """Build the spiking DQN of ``ann``: same weights, percentile thresholds, T = ``timesteps``.

    With a spiking input (``encoding`` other than ``direct``) the encoder's thresholds are
    calibrated first (``calibrate_encoder`` with ``input_margin``) and the first convolution,
    which now takes spikes, is initialised from the ANN's (``fold_first_layer``).

    :param calibration_observations: ``[N, ...]`` observations from rollouts of ``ann``
    :param dqn_kwargs: ``DQN`` hyperparameters of the returned model (used by TD retraining)
    """
    check_percentile(percentile)
    snn = spiking_model(ann, env, timesteps, neuron_kwargs, encoding, **dqn_kwargs)
    policy = snn.policy
    assert isinstance(policy, SpikingMlpPolicy), policy
    q_net = policy.q_net
    weights = ann.q_net.state_dict()
    first = q_net.planned("weighted")[0]
    if q_net.encoder is not None:  # the first layer's weights are folded below, from the ANN's
        weights = {key: value for key, value in weights.items() if not key.startswith(f"{first.name}.")}
    missing, unexpected = q_net.load_state_dict(weights, strict=False)
    neurons = [name for name, module in q_net.named_modules() if isinstance(module, IFNeuron)]
    new_names = {f"{name}.{p}" for name in neurons for p in ("threshold", "leak")}
    new_names |= {f"{first.name}.{p}" for p in ("weight", "bias")} if q_net.encoder is not None else set()
    if unexpected or set(missing) - new_names:
        raise UsageError(f"the ANN's layers do not match its spiking version (unexpected {unexpected}, missing {missing})")
    observations = cast(torch.Tensor, policy.obs_to_tensor(calibration_observations)[0])  # Box observations
    if q_net.encoder is not None:
        frames = cast(torch.Tensor, preprocess_obs(observations, q_net.observation_space, q_net.normalize_images))
        first_conv, analog_conv = first.module, ann.q_net.get_submodule(first.name)
        assert isinstance(first_conv, nn.Conv2d) and isinstance(analog_conv, nn.Conv2d)  # make_encoder checked it
        calibrate_encoder(q_net.encoder, frames, input_margin)
        fold_first_layer(q_net.encoder, first_conv, analog_conv, frames)
    set_thresholds(q_net, observations, percentile)
    policy.q_net_target.load_state_dict(q_net.state_dict())
    return snn

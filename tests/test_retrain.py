"""The ``td`` objective's bootstrap target: the student's own target network or the frozen teacher."""

import pytest
import torch

from spikerl.config import load_preset
from spikerl.convert import collect_observations, convert
from spikerl.envs import make_env
from spikerl.loading import load_agent
from spikerl.retrain import TDRetrainer
from spikerl.settings import TDSettings


@pytest.mark.parametrize("target", ["student", "teacher"])
def test_td_bootstraps_from_the_chosen_network_and_leaves_the_teacher_alone(target, cartpole_ann):
    env_settings = load_preset("CartPole-v1").env
    teacher = load_agent(cartpole_ann, "CartPole-v1", env_settings, "cpu")
    env = make_env("CartPole-v1", env_settings, seed=3)
    student = convert(
        teacher, env, collect_observations(teacher, env, 64), timesteps=1,
        learning_starts=0, buffer_size=200, batch_size=8, train_freq=1, gradient_steps=1, target_update_interval=5,
    )
    teacher_weights = {name: value.clone() for name, value in teacher.q_net.state_dict().items()}
    own_target = student.q_net_target
    teacher_calls = []
    teacher.q_net.register_forward_hook(lambda module, inputs, output: teacher_calls.append(len(output)))

    TDRetrainer(teacher, student, TDSettings(target=target)).retrain(40)

    assert (len(teacher_calls) > 0) == (target == "teacher")  # 39 gradient steps of 8 next states each
    assert all(calls == 8 for calls in teacher_calls)
    assert all(torch.equal(value, teacher_weights[name]) for name, value in teacher.q_net.state_dict().items())
    assert student.q_net_target is own_target and student.target_update_interval == 5  # restored after the stage
    if target == "student":  # SB3's sync ran: the target holds a recent copy of the student
        assert not torch.equal(own_target.state_dict()["q_net.0.weight"], teacher_weights["q_net.0.weight"])

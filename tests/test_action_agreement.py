"""scripts/action_agreement.py: a student's fidelity to its teacher on the teacher's rollout states."""

import importlib.util

import pytest
import torch

from conftest import REPO, SHIPPED_CARTPOLE


@pytest.fixture
def action_agreement():
    spec = importlib.util.spec_from_file_location("action_agreement", REPO / "scripts" / "action_agreement.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads = torch.get_num_threads()
    yield script.main
    torch.set_num_threads(threads)


def test_a_teacher_agrees_with_itself_and_its_student_less(action_agreement, capsys):
    assert action_agreement(["--teacher", str(SHIPPED_CARTPOLE / "ann.zip"), "--student", str(SHIPPED_CARTPOLE / "ann.zip"),
                             "--states", "300"]) == 0
    assert "| deterministic | 300 | 100.0% | - |" in capsys.readouterr().out  # CartPole has no FIRE to ignore
    assert action_agreement(["--teacher", str(SHIPPED_CARTPOLE / "ann.zip"), "--student", str(SHIPPED_CARTPOLE / "T1.zip"),
                             "--states", "300"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| deterministic"))
    assert float(row.split("|")[3].strip().rstrip("%")) < 100  # the T=1 SNN differs where the ANN's Q values nearly tie


def test_sticky_actions_off_atari_are_one_error_line(action_agreement, capsys):
    assert action_agreement(["--teacher", str(SHIPPED_CARTPOLE / "ann.zip"), "--student", str(SHIPPED_CARTPOLE / "T1.zip"),
                             "--sticky-actions", "0.25"]) == 2
    error = capsys.readouterr().err
    assert "sticky actions are an Atari (ALE) setting" in error and error.count("\n") == 1


def test_a_student_of_another_env_is_one_error_line(action_agreement, capsys):
    pong_student = REPO / "agents" / "PongNoFrameskip-v4" / "T1.zip"
    assert action_agreement(["--teacher", str(SHIPPED_CARTPOLE / "ann.zip"), "--student", str(pong_student),
                             "--env", "CartPole-v1"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("action_agreement: error: ") and error.count("\n") == 1  # SB3's message spans lines

"""`spikerl evaluate --video`: playable videos of greedy games, spike maps beside the frame."""

import cv2
import pytest

from conftest import SHIPPED_CARTPOLE
from spikerl.cli import main

pytest.importorskip("pygame", reason="CartPole renders with pygame (the video extra)")


def _frames(path) -> tuple[int, int]:
    """Frame count and width of the video at ``path`` as OpenCV reads it back."""
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    finally:
        capture.release()


def test_evaluate_writes_playable_mp4s_with_spike_maps(tmp_path, capsys):
    args = [
        "evaluate",
        "--agent",
        str(SHIPPED_CARTPOLE / "T1.zip"),
        "--episodes",
        "1",
        "--num-threads",
        "1",
        "--video",
        str(tmp_path),
    ]
    assert main([*args, "--video-episodes", "2", "--video-steps", "30", "--spike-maps"]) == 0
    videos = sorted(tmp_path.glob("*.mp4"))
    assert [video.name for video in videos] == ["CartPole-v1_seed1000000.mp4", "CartPole-v1_seed1000001.mp4"]
    assert [_frames(video) for video in videos] == [(30, 800), (30, 800)]  # 600-pixel frame + a column of 2 layer panels
    assert str(videos[0]) in capsys.readouterr().out

    assert main([*args, "--video-steps", "5"]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["mp4", "gif"])
def test_a_link_planted_where_a_video_is_written_is_not_written_through(tmp_path, suffix):
    precious, videos = tmp_path / "precious.txt", tmp_path / "videos"
    precious.write_text("precious")
    videos.mkdir()
    (videos / f".CartPole-v1_seed1000000.partial.{suffix}").symlink_to(precious)  # the partial file's name until 2026-12-01
    args = ["evaluate", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--episodes", "1", "--num-threads", "1"]
    assert main([*args, "--video", str(videos), "--video-format", suffix, "--video-steps", "5"]) == 0
    assert precious.read_text() == "precious"
    video = videos / f"CartPole-v1_seed1000000.{suffix}"
    assert not video.is_symlink() and video.stat().st_mode & 0o777 == 0o644


def test_ann_video_has_no_spike_maps_and_refuses_them(tmp_path, capsys):
    args = [
        "evaluate",
        "--agent",
        str(SHIPPED_CARTPOLE / "ann.zip"),
        "--episodes",
        "1",
        "--num-threads",
        "1",
        "--video-steps",
        "10",
    ]
    assert main([*args, "--video", str(tmp_path / "plain")]) == 0
    assert _frames(tmp_path / "plain" / "CartPole-v1_seed1000000.mp4") == (10, 600)
    assert main([*args, "--video", str(tmp_path / "maps"), "--spike-maps"]) == 2
    assert "--spike-maps needs a spiking agent" in capsys.readouterr().err


def test_videos_film_the_protocol_that_was_evaluated(tmp_path, capsys, monkeypatch):
    """With --sticky-actions the filmed games play with them too (the env settings both receive)."""
    import spikerl.evaluate
    import spikerl.video
    from conftest import SHIPPED_PONG

    env_configs = []

    def evaluate(model, env_id, env_config, *args, **kwargs):
        env_configs.append(env_config)
        return spikerl.evaluate.Evaluation([0.0], [1])

    def film(model, env_id, env_config, *args, **kwargs):
        env_configs.append(env_config)
        return []

    monkeypatch.setattr(spikerl.evaluate, "evaluate_agent", evaluate)
    monkeypatch.setattr(spikerl.video, "record_videos", film)
    agent = str(SHIPPED_PONG / "ann.zip")
    assert main(["evaluate", "--agent", agent, "--sticky-actions", "--video", str(tmp_path), "--no-progress"]) == 0
    evaluated, filmed = env_configs
    assert filmed == evaluated and evaluated.env_kwargs["repeat_action_probability"] == 0.25


def test_spike_maps_of_a_spiking_input_agent_above_one_timestep():
    """The input encoder fires once from rest at any T: its map is [C, H, W] like the other layers'."""
    import numpy as np
    import torch

    from conftest import SHIPPED_PONG
    from spikerl.config import load_preset
    from spikerl.loading import load_agent
    from spikerl.video import _spike_maps, _tile

    model = load_agent(SHIPPED_PONG / "T2.zip", "PongNoFrameskip-v4", load_preset("PongNoFrameskip-v4").env, "cpu")
    q_net = model.q_net
    for neuron in q_net.neurons().values():
        neuron.capture_input = True
    with torch.no_grad():
        q_net(model.policy.obs_to_tensor(np.full((1, 4, 84, 84), 236, dtype=np.uint8))[0])
    maps = dict(_spike_maps(q_net))
    assert maps["encoder"].shape == (4, 84, 84) and maps["encoder"].max() == 1.0  # the bright frame fires everywhere
    assert all(_tile(rates).ndim == 2 for rates in maps.values())


def test_a_video_request_that_would_be_refused_is_refused_before_the_evaluation(tmp_path, capsys, monkeypatch):
    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated before the video request was refused")

    monkeypatch.setattr("spikerl.evaluate.evaluate_agent", no_evaluation)
    blocker = tmp_path / "videos"
    blocker.write_text("a file")
    args = ["evaluate", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--episodes", "1", "--num-threads", "1"]
    refused = (([str(blocker)], "cannot write to video folder"), ([str(tmp_path), "--spike-maps"], "needs a spiking agent"))
    for video, message in refused:
        assert main([*args, "--video", *video]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error

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

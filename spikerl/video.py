"""Videos of an agent playing: greedy episodes as MP4 (or GIF) files, and for a spiking agent,
optionally, the spike maps of its neuron layers at each decision beside the frame.

Video ``k`` plays the game seeded ``seed + k``: the first game that ``evaluate_agent`` plays on its
``k``-th environment with the same ``seed``. Frames come from the environment's ``rgb_array``
rendering (for Atari the full-colour screen), one per agent step.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN

from spikerl.encoding import InputEncoder
from spikerl.envs import EVAL_SEED_BASE, check_agent_fits, make_env
from spikerl.errors import UsageError
from spikerl.settings import EnvSettings
from spikerl.snn import SpikingQNetwork

FORMATS = ("mp4", "gif")
#: Frames are scaled up by whole factors until they are at least this tall (Atari: 210 -> 420).
MIN_HEIGHT = 400


def record_videos(
    model: DQN,
    env_id: str,
    env_config: EnvSettings,
    out_dir: str | Path,
    episodes: int = 1,
    seed: int = EVAL_SEED_BASE,
    spike_maps: bool = False,
    max_steps: int | None = None,
    video_format: str = "mp4",
) -> list[Path]:
    """Play ``episodes`` greedy games (at most ``max_steps`` agent steps each) and write one video
    per game to ``out_dir`` as ``<env_id>_seed<seed+k>.<video_format>``; returns the paths.

    Refuses to overwrite a video already there.
    """
    paths = video_paths(model, env_id, out_dir, episodes, seed, spike_maps, max_steps, video_format)
    mapped = model.q_net if spike_maps and isinstance(model.q_net, SpikingQNetwork) else None  # drawn beside the game
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot write to video folder {out_dir} ({error.strerror or error}); choose a writable --video"
        ) from None
    env_config = dataclasses.replace(env_config, env_kwargs={**env_config.env_kwargs, "render_mode": "rgb_array"})
    frames_per_step = env_config.frames_per_step
    for k, path in enumerate(paths):
        env = make_env(env_id, env_config, seed=seed + k)
        check_agent_fits(model, env, env_id)
        fps = float(env.get_attr("metadata")[0].get("render_fps") or 30) / frames_per_step
        try:
            _write(_play(model, env, mapped, max_steps), path, fps)
        except gym.error.DependencyNotInstalled as error:  # classic control renders with pygame
            raise UsageError(
                f"rendering {env_id} needs a package that is missing ({error}); install it with pip install 'spikerl[video]'"
            ) from None
        finally:
            env.close()
    return paths


def video_paths(
    model: DQN, env_id: str, out_dir: str | Path, episodes: int = 1, seed: int = EVAL_SEED_BASE,
    spike_maps: bool = False, max_steps: int | None = None, video_format: str = "mp4",
) -> list[Path]:
    """The videos ``record_videos`` would write (its arguments), checked: a one-line
    ``UsageError`` for a bad request, a file where the folder goes or a video already there,
    before any game is played (``spikerl evaluate`` asks before its evaluation)."""
    if video_format not in FORMATS:
        raise UsageError(f"unknown video format '{video_format}'; use one of {', '.join(FORMATS)}")
    if episodes < 1:
        raise UsageError(f"--video-episodes must be at least 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise UsageError(f"--video-steps must be at least 1, got {max_steps}")
    if spike_maps and not isinstance(model.q_net, SpikingQNetwork):
        raise UsageError("--spike-maps needs a spiking agent (from 'spikerl compress'); drop it for an ANN")
    paths = [Path(out_dir) / f"{env_id}_seed{seed + k}.{video_format}" for k in range(episodes)]
    for path in paths:
        if path.exists():
            raise UsageError(f"{path} already exists; choose another --video folder or delete it")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():  # made by record_videos, after the games
        raise UsageError(f"cannot write to video folder {out_dir} (a file is there); choose another --video")
    return paths


def _play(model: DQN, env: Any, mapped: SpikingQNetwork | None, max_steps: int | None) -> Iterator[np.ndarray]:
    """RGB frames ``[H, W, 3]`` uint8 of one greedy game on the one-environment ``env``, with the
    spike maps of ``mapped`` (the agent's Q-network) beside the game where given."""
    neurons = mapped.neurons() if mapped is not None else {}
    for neuron in neurons.values():
        neuron.capture_input = True
    try:
        observation, steps = env.reset(), 0
        while max_steps is None or steps < max_steps:
            frame = env.render()
            action, _ = model.predict(observation, deterministic=True)
            yield _compose(frame, _spike_maps(mapped) if mapped is not None else [])
            observation, _, _, infos = env.step(action)
            steps += 1
            if "episode" in infos[0]:  # the Monitor's game is over (Atari: not just a lost life)
                break
    finally:
        for neuron in neurons.values():
            neuron.capture_input = False
            neuron.captured_input = None


@torch.no_grad()
def _spike_maps(q_net: SpikingQNetwork) -> list[tuple[str, np.ndarray]]:
    """Per neuron layer of the decision just taken: its name and the spikes per timestep of each
    neuron, ``[C, H, W]`` (convolutional) or ``[N]``, in [0, 1].

    Recomputed from the input currents the layer captured (``[B, ...]`` at T=1 and for the
    input encoder, which fires once from rest at any T; else ``[T, B, ...]``) with the layer's
    own dynamics.
    """
    maps = []
    for name, neuron in q_net.neurons().items():
        currents = neuron.captured_input
        assert currents is not None  # captured by the decision just taken
        once = q_net.timesteps == 1 or isinstance(neuron, InputEncoder)
        rates = neuron.fire_once(currents)[0] if once else neuron(currents)[:, 0].mean(dim=0)
        maps.append((name, rates.float().cpu().numpy()))
    return maps


def _tile(rates: np.ndarray) -> np.ndarray:
    """A layer's rates as one 2-D image: channels ``[C, H, W]`` side by side in a near-square grid
    with 1-pixel gaps, or ``N`` units as a near-square block (padded with zeros)."""
    if rates.ndim == 1:
        side = math.ceil(math.sqrt(rates.size))
        return np.pad(rates, (0, side * side - rates.size)).reshape(side, side)
    channels, height, width = rates.shape[0], rates.shape[-2], rates.shape[-1]
    columns = math.ceil(math.sqrt(channels))
    rows = math.ceil(channels / columns)
    grid = np.zeros((rows * (height + 1) - 1, columns * (width + 1) - 1), dtype=np.float32)
    for c in range(channels):
        top, left = (c // columns) * (height + 1), (c % columns) * (width + 1)
        grid[top : top + height, left : left + width] = rates[c].reshape(height, width)
    return grid


def _panel(name: str, rates: np.ndarray, size: int) -> np.ndarray:
    """A ``[size, size, 3]`` RGB panel: the layer's tiled rates in the inferno colour map, labelled."""
    grid = _tile(rates)
    scale = (size - 20) / max(grid.shape)
    shape = (max(1, round(grid.shape[1] * scale)), max(1, round(grid.shape[0] * scale)))
    image = cv2.resize((np.clip(grid, 0, 1) * 255).astype(np.uint8), shape, interpolation=cv2.INTER_NEAREST)
    image = cv2.cvtColor(cv2.applyColorMap(image, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    panel = np.zeros((size, size, 3), dtype=np.uint8)
    panel[20 : 20 + image.shape[0], : image.shape[1]] = image
    label = f"{name.removeprefix('features_extractor.')}: {float(rates.mean()):.2f} spikes/neuron/step"
    cv2.putText(panel, label, (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def _compose(frame: np.ndarray, maps: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """The frame scaled to at least ``MIN_HEIGHT`` rows, with the layer panels in columns of two
    beside it; height and width even (video encoders want them so)."""
    scale = max(1, math.ceil(MIN_HEIGHT / frame.shape[0]))
    frame = cv2.resize(frame, (frame.shape[1] * scale, frame.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    parts = [frame]
    size = frame.shape[0] // 2
    for first in range(0, len(maps), 2):
        column = [_panel(name, rates, size) for name, rates in maps[first : first + 2]]
        column += [np.zeros_like(column[0])] * (2 - len(column))
        parts.append(np.pad(np.vstack(column), ((0, frame.shape[0] - 2 * size), (0, 0), (0, 0))))
    image = np.hstack(parts)
    return np.pad(image, ((0, image.shape[0] % 2), (0, image.shape[1] % 2), (0, 0)))


def _write(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    """Write RGB ``frames`` as ``path`` (MP4 or GIF by its suffix), via a hidden partial file
    that replaces ``path`` only once complete."""
    # a fresh name (O_EXCL): a link planted at a fixed name would be written through; the
    # suffix tells the writers the format
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}")
    os.close(handle)
    partial = Path(name)
    try:
        if path.suffix == ".gif":
            _write_gif(frames, partial, fps)
        else:
            _write_mp4(frames, partial, fps)
        os.chmod(partial, 0o644)  # mkstemp's file is private
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    writer = None
    try:
        for frame in frames:
            if writer is None:
                fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]  # missing from OpenCV's stubs
                writer = cv2.VideoWriter(str(path), fourcc, fps, (frame.shape[1], frame.shape[0]))
                if not writer.isOpened():
                    raise UsageError("OpenCV cannot write MP4 files here (no mp4v encoder); use --video-format gif")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()


def _write_gif(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    from PIL import Image  # installed with matplotlib

    images = [Image.fromarray(frame).quantize(colors=64) for frame in frames]
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=True
    )

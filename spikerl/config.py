"""Environment presets: one YAML file per Gymnasium id in the repository's ``envs/`` folder.

A preset has four sections, each a plain mapping:

``env``      how to build the environment (``atari: true`` selects SB3's Atari wrappers,
             ``frame_stack``, ``wrapper_kwargs``)
``train``    ``policy``, ``n_timesteps``, evaluation settings and ``dqn`` (keyword arguments
             of ``stable_baselines3.DQN``, as in rl-baselines3-zoo)
``compress`` conversion percentile, T schedule, objective and per-stage budget
``evaluate`` the evaluation protocol (episodes, first seed)
"""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from spikerl.errors import UsageError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

SECTIONS = ("env", "train", "compress", "evaluate")


def preset_dir() -> Traversable:
    """The presets: package data ``spikerl/presets`` of an installed wheel (the build maps the
    source's top-level ``envs/`` there), else ``envs/`` beside the package in a source checkout."""
    installed = importlib.resources.files("spikerl") / "presets"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "envs"


def available_presets() -> list[str]:
    """Environment ids that have a preset file."""
    return sorted(entry.name.removesuffix(".yaml") for entry in preset_dir().iterdir() if entry.name.endswith(".yaml"))


def load_preset(env_id: str, path: str | Path | None = None) -> dict[str, Any]:
    """Read the preset for ``env_id`` (or the YAML file at ``path``) as a dict of sections."""
    preset_path = Path(path) if path is not None else preset_dir() / f"{env_id}.yaml"
    if not preset_path.is_file():
        raise UsageError(
            f"no preset for env '{env_id}' ({preset_path} not found); "
            f"use one of {', '.join(available_presets())} or pass --config FILE.yaml"
        )
    try:
        preset = yaml.safe_load(preset_path.read_text())
    except yaml.YAMLError as error:
        raise UsageError(f"preset {preset_path} is not valid YAML ({error}); fix the file") from None
    if not isinstance(preset, dict) or set(preset) - set(SECTIONS):
        raise UsageError(f"preset {preset_path} must be a mapping with the sections {', '.join(SECTIONS)}")
    return {section: copy.deepcopy(preset.get(section) or {}) for section in SECTIONS}


RUN_CONFIG = "config.yaml"
#: The file ``spikerl compress`` keeps its per-stage results in (and resumes from).
RESULTS_JSON = "results.json"


def read_run_config(folder: str | Path) -> dict[str, Any] | None:
    """The ``config.yaml`` that ``spikerl train`` wrote in ``folder`` (None if there is none).

    Keys: ``env_id``, ``seed``, ``commands`` (the command lines of the run, first to last) and
    the preset's sections.
    """
    path = Path(folder) / RUN_CONFIG
    if not path.is_file():
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        config = None
    if not isinstance(config, dict) or not {"env_id", "seed"} <= set(config) or set(config) - {"env_id", "seed", "commands", *SECTIONS}:
        raise UsageError(f"{path} is not a run configuration written by 'spikerl train'; pass --env (or --out) explicitly")
    return {"commands": [], **{section: {} for section in SECTIONS}, **config}

"""Grid files of ``spikerl sweep``: the cells to run, each one preset with its own settings.

A grid file is YAML::

    env: CartPole-v1              # the preset envs/<env>.yaml (required)
    config: my_preset.yaml        # optional: a preset file instead (relative to the grid file)
    settings:                     # optional: settings shared by every cell
      compress.stage_eval_episodes: 100
    grid:                         # one block, or a list of blocks (their cells are added up)
      seed: [0, 1, 2]             # each key lists its values; a block is their cartesian product
      compress.schedule: [[1], [5, 1], [5, 4, 3, 2, 1]]
      equal_budget:               # a key that is no setting links settings: each value sets them together
        - {compress.objective: distill, compress.steps_per_stage: 3000}
        - {compress.objective: td, compress.steps_per_stage: 10000}
    cells:                        # optional: explicit cells, each a mapping of settings
      - {seed: 7, compress.schedule: [1]}
    gpus_per_cell: 0.25           # optional: default 0.25 where the cluster has GPUs, else 0

Settings are ``seed`` (the seed of the cell's training and compression, default 0), ``agent``
(an ANN checkpoint to compress, relative to the grid file; the cell then trains nothing) and the
preset's own settings as dotted paths (``compress.schedule``, ``train.n_timesteps``,
``train.dqn.learning_rate``, ``env.num_threads``, ...). A cell without ``agent`` trains an ANN
and compresses it; cells whose ANN settings agree (the ``env`` and ``train`` sections and the
seed) share one training run.

Folder names are read off the settings that vary across the grid, Hydra-style
(``cells/objective=td,schedule=5-3-1,seed=0`` and ``train/seed=0``), so the same grid always
names its cells the same way. Cells with identical settings are run once; two different
cells whose names coincide are an error.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikerl.config import load_preset, read_yaml, with_dotted
from spikerl.envs import check_training_seed
from spikerl.errors import UsageError
from spikerl.schema import quoted
from spikerl.settings import SECTIONS, Settings

#: Most cells one grid block may make (its axes' product), far beyond any study one sweep finishes.
MAX_CELLS = 10_000
TOP_LEVEL_KEYS = ("env", "config", "settings", "grid", "cells", "gpus_per_cell")
CELL_KEYS = ("seed", "agent")
#: Settings that shape the ANN: cells that agree on them share one training run.
TRAIN_SECTIONS = ("env", "train")


@dataclass(frozen=True)
class TrainRun:
    """One ``spikerl train`` run of the sweep, in ``folder`` (relative to the sweep folder)."""

    folder: str
    env_id: str
    settings: Settings
    seed: int


@dataclass(frozen=True)
class Cell:
    """One ``spikerl compress`` run of the sweep (after its ``train`` run, unless ``agent`` is given).

    ``own`` are the cell's own settings from the grid file (dotted keys, without the shared
    ``settings:``); ``settings`` the whole preset with every setting of the cell merged in.
    """

    folder: str
    env_id: str
    settings: Settings
    seed: int
    own: dict[str, Any]
    train: TrainRun | None = None
    agent: str | None = None

    @property
    def group(self) -> str:
        """The cell's name without its seed: cells that differ only in seed share it."""
        name = self.folder.split("/", 1)[1]
        return ",".join(part for part in name.split(",") if not part.startswith("seed=")) or "all cells"


@dataclass
class Plan:
    """A parsed grid file: the cells and the training runs they need, in file order."""

    grid_file: Path
    env_id: str
    cells: list[Cell]
    trains: list[TrainRun] = field(default_factory=list)
    gpus_per_cell: float | None = None

    def with_num_threads(self, num_threads: int) -> Plan:
        """This plan with every task at ``num_threads`` torch threads (and Ray CPUs): ``env.num_threads``
        of every cell and training run, which may differ on resume (``spikerl sweep --num-threads``)."""
        if any("env.num_threads" in cell.own for cell in self.cells):
            raise UsageError(f"{self.grid_file} varies env.num_threads across its cells; drop --num-threads "
                             "or that key of the grid", parameter="num_threads")

        def threaded(settings: Settings) -> Settings:
            return dataclasses.replace(settings, env=dataclasses.replace(settings.env, num_threads=num_threads))

        trains = {id(run): dataclasses.replace(run, settings=threaded(run.settings)) for run in self.trains}
        cells = [
            dataclasses.replace(cell, settings=threaded(cell.settings), train=cell.train and trains[id(cell.train)])
            for cell in self.cells
        ]
        return dataclasses.replace(self, cells=cells, trains=list(trains.values()))

    def as_json(self) -> dict[str, Any]:
        """Everything that determines the sweep's results (stored in ``sweep.json``; a resumed
        sweep must plan the same), and the grid file it was read from (given agents' paths are
        relative to its folder)."""
        return {
            "grid_file": str(Path(self.grid_file).resolve()),
            "env_id": self.env_id,
            "cells": [
                {"folder": c.folder, "seed": c.seed, "agent": c.agent, "train": c.train.folder if c.train else None,
                 "own": c.own, "settings": c.settings.to_dict()}
                for c in self.cells
            ],
        }


def load_grid(path: str | Path) -> Plan:
    """Read and check the grid file at ``path``; every problem is a one-line ``UsageError``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"grid file {path} not found; pass a YAML file such as grids/cartpole-ablation.yaml")
    grid = read_yaml(path, "fix the grid file")
    if not isinstance(grid, dict):
        raise UsageError(f"grid file {path} must be a mapping with the keys {', '.join(TOP_LEVEL_KEYS)}")
    _reject_unknown(path, "top-level key", set(grid) - set(TOP_LEVEL_KEYS), f"use {', '.join(TOP_LEVEL_KEYS)}")
    env_id = grid.get("env")
    if not isinstance(env_id, str):
        raise UsageError(f"{path}: 'env' must name a Gymnasium id with a preset, e.g. env: CartPole-v1")
    config = grid.get("config")
    if config is not None and not isinstance(config, str):
        raise UsageError(f"{path}: 'config' must be the path of a preset file, e.g. config: my_preset.yaml")
    try:
        preset = load_preset(env_id, path.parent / config if config else None)
    except UsageError as error:
        raise UsageError(f"{path}: {error}") from None

    shared = _settings(path, grid.get("settings") or {}, "settings")
    own = [*_blocks(path, grid.get("grid")), *_explicit_cells(path, grid.get("cells"))]
    if not own:
        raise UsageError(f"{path} has no cells: add a 'grid:' block with a list of values per key, or a 'cells:' list")
    plan = Plan(path, env_id, _cells(path, env_id, preset, shared, own), gpus_per_cell=_gpus(path, grid.get("gpus_per_cell")))
    plan.trains = list({id(c.train): c.train for c in plan.cells if c.train}.values())
    return plan


def apply_settings(preset: Settings, settings: dict[str, Any]) -> Settings:
    """``preset`` with each dotted ``section.key...`` setting of ``settings`` merged in and checked
    (``spikerl.config.with_dotted``); ``seed`` and ``agent`` are the cell's, not the preset's."""
    return with_dotted(preset, {key: value for key, value in settings.items() if key not in CELL_KEYS})


def _reject_unknown(path: Path, what: str, keys: set[str], fix: str) -> None:
    if keys:
        raise UsageError(f"{path}: unknown {what} {', '.join(sorted(map(str, keys)))}; {fix}")


def _is_setting(key: Any) -> bool:
    """Whether ``key`` names a setting: ``seed``, ``agent`` or a dotted path into a preset section
    (whether the path exists is checked when the settings are merged)."""
    return key in CELL_KEYS or (isinstance(key, str) and "." in key and key.split(".")[0] in SECTIONS)


def _settings(path: Path, settings: Any, where: str) -> dict[str, Any]:
    """Check that ``settings`` (from ``where`` in the grid file) is a mapping of settings."""
    if not isinstance(settings, dict):
        raise UsageError(f"{path}: '{where}' must be a mapping of settings such as compress.schedule: [5, 1]")
    unknown = {str(key) for key in settings if not _is_setting(key)}
    _reject_unknown(
        path, f"setting in {where}:", unknown,
        f"settings are seed, agent or dotted paths into the preset sections {', '.join(SECTIONS)}, such as compress.schedule",
    )
    return dict(settings)


def _blocks(path: Path, grid: Any) -> list[dict[str, Any]]:
    """The cells of the ``grid:`` blocks: each block's cartesian product, blocks one after another."""
    if grid is None:
        return []
    blocks = grid if isinstance(grid, list) else [grid]
    cells = []
    for index, block in enumerate(blocks):
        where = f"grid block {index + 1}"
        if not isinstance(block, dict) or not block:
            raise UsageError(f"{path}: {where} must be a non-empty mapping of key: [values]")
        axes = []
        for key, values in block.items():
            if not isinstance(values, list) or not values:
                raise UsageError(f"{path}: {where}, key {key}: give a non-empty list of values, e.g. {key}: [0, 1, 2]")
            if _is_setting(key):
                axes.append([{key: value} for value in values])
            elif all(isinstance(value, dict) for value in values):  # a linked axis
                axes.append([_settings(path, value, f"{where}, {key}") for value in values])
            else:
                fix = "use seed, agent, a dotted preset path such as compress.schedule, or a linked key whose values map those"
                _reject_unknown(path, f"key in {where}:", {key}, fix)
        if math.prod(len(axis) for axis in axes) > MAX_CELLS:
            sizes = " x ".join(str(len(axis)) for axis in axes)
            raise UsageError(f"{path}: {where} makes {sizes} cells, more than {MAX_CELLS}; split the study into smaller grids")
        cells += [{k: v for value in combination for k, v in value.items()} for combination in itertools.product(*axes)]
    return cells


def _explicit_cells(path: Path, cells: Any) -> list[dict[str, Any]]:
    if cells is None:
        return []
    if not isinstance(cells, list):
        raise UsageError(f"{path}: 'cells' must be a list of mappings of settings, e.g. - {{seed: 0, compress.schedule: [1]}}")
    return [_settings(path, cell, f"cell {index + 1}") for index, cell in enumerate(cells)]


def _gpus(path: Path, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UsageError(f"{path}: gpus_per_cell must be a number from 0 to 1 (a GPU fraction), got {value!r}")
    return float(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _lookup(preset: dict[str, Any], settings: dict[str, Any], key: str) -> Any:
    """The value of ``key`` in a cell: its own setting, else the preset's (``preset`` as plain data)."""
    if key in settings:
        return settings[key]
    if key in CELL_KEYS:
        return {"seed": 0, "agent": None}[key]
    node: Any = preset
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _format(value: Any) -> str:
    """A setting's value as a folder-name part: [5, 3, 1] -> 5-3-1, 0.001 -> 0.001, paths by folder/stem."""
    if isinstance(value, (list, tuple)):
        return "-".join(_format(item) for item in value)
    if isinstance(value, dict):
        return "+".join(f"{_format(k)}-{_format(v)}" for k, v in value.items())
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return _safe_in_folder_name(str(value))


def _safe_in_folder_name(text: str) -> str:
    """``text`` with every character but letters, digits and ``._+-`` replaced by ``_`` (no ``/``)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def _name(kind: str, keys: list[str], lookup: dict[str, Any]) -> str:
    parts = []
    for key in keys:
        value = lookup[key]
        if key == "agent" and value is not None:
            value = f"{Path(value).parent.name}-{Path(value).stem}"
        # a key inside env_kwargs or policy_kwargs is free text: a '/' in it would lead out of the sweep folder
        parts.append(f"{_safe_in_folder_name(key.split('.', 1)[1] if '.' in key else key)}={_format(value)}")
    return f"{kind}/{','.join(parts)}"


def _cells(path: Path, env_id: str, preset: Settings, shared: dict[str, Any], own: list[dict[str, Any]]) -> list[Cell]:
    """Cells from each cell's own settings (after the shared ones), checked, named and deduplicated."""
    everything = [{**shared, **settings} for settings in own]
    plain = preset.to_dict()
    keys = sorted({key for settings in own for key in settings} | {"seed"})
    varied = [key for key in keys if key == "seed" or len({_canonical(_lookup(plain, s, key)) for s in everything}) > 1]
    train_keys = [key for key in varied if key == "seed" or key.split(".")[0] in TRAIN_SECTIONS]
    trains: dict[str, TrainRun] = {}
    cells: dict[str, Cell] = {}
    for settings, merged_settings in zip(own, everything):
        lookup = {key: _lookup(plain, merged_settings, key) for key in varied}
        folder = _name("cells", varied, lookup)
        seed = _seed(path, lookup["seed"])
        cell_settings = _checked(path, folder, preset, merged_settings)
        agent = _agent(path, merged_settings.get("agent"))
        train = None
        if agent is None:
            train_settings = {key: value for key, value in merged_settings.items() if key.split(".")[0] in TRAIN_SECTIONS}
            train = TrainRun(_name("train", train_keys, lookup), env_id, _checked(path, folder, preset, train_settings), seed)
            train = _unique(path, trains, train.folder, train, lambda run: _canonical([run.settings.to_dict(), run.seed]))
        cell = Cell(folder, env_id, cell_settings, seed, settings, train, agent)
        _unique(path, cells, cell.folder, cell, lambda c: _canonical([c.settings.to_dict(), c.seed, c.agent]))
    return list(cells.values())


def _checked(path: Path, folder: str, preset: Settings, settings: dict[str, Any]) -> Settings:
    try:
        return apply_settings(preset, settings)
    except UsageError as error:  # re-raised without its parameter: the grid file sets it, not a flag
        raise UsageError(f"{path}, cell {folder}: {error}") from None


def _unique(path: Path, known: dict[str, Any], folder: str, item: Any, identity: Any) -> Any:
    """``item``, or the equal one already in ``known``; two different items for one folder are an error."""
    if folder not in known:
        known[folder] = item
    elif identity(known[folder]) != identity(item):
        raise UsageError(
            f"{path}: two different cells would write the same folder {folder} (their values print alike); "
            "make the values distinguishable or split the grid into two files"
        )
    return known[folder]


def _seed(path: Path, seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"{path}: seed must be a non-negative integer, got {quoted(seed)}")
    try:  # refused here, not by each cell's task
        check_training_seed(seed)
    except UsageError as error:
        raise UsageError(f"{path}: {error}") from None
    return seed


def _agent(path: Path, agent: Any) -> str | None:
    if agent is None:
        return None
    location = (path.parent / str(agent)).resolve()
    if not location.is_file():
        raise UsageError(f"{path}: agent {agent} not found at {location} (paths are relative to the grid file)")
    return str(location)

"""Reading presets (``envs/<EnvId>.yaml``) and run configurations into typed ``Settings``.

A preset has four sections, ``env``, ``train``, ``compress`` and ``evaluate``; their keys,
defaults and bounds are the fields of ``spikerl.settings``. Everything is checked when read,
before any work starts: a bad file ends in one ``UsageError`` line naming the file and the key.
Command-line overrides merge in here (``with_overrides``), checked the same way.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from spikerl.errors import UsageError
from spikerl.run_folder import RunFolder
from spikerl.settings import Settings, from_mapping
from spikerl.zoo import is_zoo_hyperparameters, preset_from_zoo

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def preset_files() -> dict[str, Traversable]:
    """The preset file of each environment id that has one (the one place that knows where they
    live): package data ``spikerl/presets`` of an installed wheel (the build maps the source's
    top-level ``envs/`` there), else ``envs/`` beside the package in a source checkout."""
    folder = importlib.resources.files("spikerl") / "presets"
    if not folder.is_dir():
        folder = Path(__file__).resolve().parent.parent / "envs"
    files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".yaml")), key=lambda entry: entry.name)
    return {entry.name.removesuffix(".yaml"): entry for entry in files}


def available_presets() -> list[str]:
    """Environment ids that have a preset file."""
    return list(preset_files())


MAX_YAML_BYTES = 1 << 20
"""Largest settings file read (a preset, grid, run configuration or rl-zoo3 file is a few KB)."""

MAX_ALIAS_VALUES = 100_000
"""Most values a YAML document's aliases may add once expanded (a preset holds about 100 values
in all): a few KB that repeat anchors inside anchors ("billion laughs") expand past any memory,
and every reader after YAML's walks them expanded."""

NUMBER_TOO_LONG = "holds a number too long to read (over 4300 digits, Python's limit)"


class YamlTooLarge(ValueError):
    """A YAML document whose aliases add more than ``MAX_ALIAS_VALUES`` values, or contain themselves."""


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing with ``YamlTooLarge`` a document whose aliases add more
    than ``MAX_ALIAS_VALUES`` values or that contains itself; other errors are PyYAML's."""
    data = yaml.safe_load(text)
    if _expanded_size(data, {}, set()) - _written_size(data, set()) > MAX_ALIAS_VALUES:
        raise YamlTooLarge(f"its aliases expand it by more than {MAX_ALIAS_VALUES:,} values")
    return data


def _written_size(value: Any, seen: set[int]) -> int:
    """The number of values in ``value`` as written: a collection an alias repeats counts once."""
    children = _children(value)
    if children is None or id(value) in seen:
        return 1  # a scalar, or an alias of a collection counted already
    seen.add(id(value))
    return 1 + sum(_written_size(child, seen) for child in children)


def _children(value: Any) -> list[Any] | None:
    """The values inside a YAML collection (a mapping's keys and values, a list's items); None for a scalar."""
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    return value if isinstance(value, list) else None


def _expanded_size(value: Any, sizes: dict[int, int], open_containers: set[int]) -> int:
    """The number of values in ``value`` with every alias expanded, counted in time linear in the
    document (``sizes`` remembers each shared container's count by ``id``)."""
    children = _children(value)
    if children is None:
        return 1
    key = id(value)
    if key in open_containers:
        raise YamlTooLarge("an alias in it refers to a collection that contains the alias")
    if key not in sizes:
        open_containers.add(key)
        sizes[key] = 1 + sum(_expanded_size(child, sizes, open_containers) for child in children)
        open_containers.discard(key)
    return sizes[key]


def read_yaml(path: Path, fix: str) -> Any:
    """The YAML document in ``path`` as plain data, or a ``UsageError`` ending in ``fix``."""
    try:
        too_large = path.stat().st_size > MAX_YAML_BYTES
        if not too_large:
            return parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text; {fix}") from None
    except YamlTooLarge as error:
        raise UsageError(f"{path} cannot be read: {error}; {fix}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"{path} is not valid YAML ({' '.join(str(error).split())}); {fix}") from None
    except ValueError:  # the one other error reading YAML: an integer past the 4300 digits Python reads
        raise UsageError(f"{path} {NUMBER_TOO_LONG}; {fix}") from None
    except RecursionError:
        raise UsageError(f"{path} nests its YAML too deeply to read; {fix}") from None
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror or error}); {fix}") from None
    raise UsageError(f"{path} is larger than a settings file can be ({MAX_YAML_BYTES >> 20} MiB); {fix}")


def _settings(data: Any, source: Path, fix: str) -> Settings:
    """``Settings`` from ``data`` read from ``source``; errors name the file and end in ``fix``."""
    try:
        return from_mapping(data)
    except UsageError as error:
        raise UsageError(f"{source}: {error}; {fix}") from None


def load_preset(env_id: str, path: str | Path | None = None) -> Settings:
    """The checked settings of ``env_id``'s preset (or of the YAML file at ``path``)."""
    if path is None:
        presets = preset_files()
        if env_id not in presets:
            raise UsageError(f"no preset for env '{env_id}'; use one of {', '.join(presets)} or pass --config FILE.yaml")
        preset_path = presets[env_id]
    else:
        preset_path = Path(path)
        if not preset_path.is_file():
            problem = "is not a regular file" if preset_path.exists() else "not found"
            raise UsageError(f"preset file {preset_path} {problem}; pass an existing --config FILE.yaml")
    data = read_yaml(preset_path, "fix the file")
    if path is not None and is_zoo_hyperparameters(data):  # an rl-baselines3-zoo hyperparameter file
        presets = preset_files()
        data = preset_from_zoo(data, env_id, read_yaml(presets[env_id], "fix the file") if env_id in presets else None)
    return _settings(data, preset_path, "fix the file (see spikerl/settings.py)")


def with_overrides(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """``settings`` with ``overrides`` merged in and checked; ``None`` values are left out.

    ``overrides`` is nested like a preset, e.g. ``{"compress": {"schedule": [2, 1]},
    "train": {"dqn": {"buffer_size": 500}}}``; mappings merge key by key. An error names the
    overridden key (``compress.schedule``) as its ``parameter``.
    """
    return from_mapping(_merge(settings.to_dict(), overrides))


def with_dotted(settings: Settings, dotted: Mapping[str, Any]) -> Settings:
    """``settings`` with each dotted setting (``{"compress.schedule": [5, 1]}``) merged in and
    checked, as ``with_overrides`` does."""
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = nested
        for depth, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                inner = ".".join(parents[: depth + 1])
                raise UsageError(f"{key} sets a key inside {inner}, which is also set as a whole; set one of the two")
        if isinstance(node.get(leaf), dict):
            raise UsageError(f"{key} is set as a whole and keys inside it are set too; set one of the two")
        node[leaf] = value
    return with_overrides(settings, nested)


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        elif value is not None:
            merged[key] = value
    return merged


@dataclass
class RunConfig:
    """What ``spikerl train`` keeps in a run folder's ``config.yaml``: the run and its settings."""

    env_id: str
    seed: int
    settings: Settings
    commands: list[str] = field(default_factory=list)
    """The command lines of the run, first to last."""

    def write(self, folder: str | os.PathLike[str]) -> None:
        """Write ``config.yaml`` in ``folder`` atomically (the settings as a preset's sections)."""
        from spikerl.checkpoints import write_text

        data = {"env_id": self.env_id, "seed": self.seed, "commands": self.commands, **self.settings.to_dict()}
        write_text(RunFolder(folder).config, yaml.safe_dump(data, sort_keys=False))


def read_run_config(folder: str | os.PathLike[str]) -> RunConfig | None:
    """The ``config.yaml`` that ``spikerl train`` wrote in ``folder`` (None if there is none)."""
    path = RunFolder(folder).config
    if not path.is_file():
        return None
    fix = "it is not a run configuration written by 'spikerl train'; pass --env (or --out) explicitly"
    data = read_yaml(path, fix)
    if not isinstance(data, dict) or not isinstance(data.get("env_id"), str) or not isinstance(data.get("seed"), int):
        raise UsageError(f"{path}: {fix}")
    commands = data.pop("commands", None) or []
    if not isinstance(commands, list) or not all(isinstance(command, str) for command in commands):
        raise UsageError(f"{path}: commands must be a list of command lines; {fix}")
    env_id, seed = data.pop("env_id"), data.pop("seed")
    return RunConfig(env_id, seed, _settings(data, path, fix), commands)


def training_commands(agent: str | os.PathLike[str]) -> list[str]:
    """The commands that trained the agent at ``agent``, where its run folder recorded them
    (none where the folder's ``config.yaml`` is not spikerl's: they are a record, and ``--env``
    already frees the command from that file)."""
    try:
        run_config = read_run_config(Path(agent).parent)
    except UsageError:
        return []
    return list(run_config.commands) if run_config else []

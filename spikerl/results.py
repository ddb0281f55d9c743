"""The results of a ``spikerl compress`` run (``results.json``): its schema and its one reader/writer.

``CompressionResult`` holds the run's header (agent, settings, evaluation protocol, commands,
layer sizes) and one ``StageRow`` per evaluated stage, in order: the ANN, the converted SNN
at the first T, then each retrained stage. Rows carry their operation counts and energy
(``cost``, from ``spikerl.energy``), computed from the layers and the row's spike rates.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from typing import Any

from spikerl.checkpoints import write_json
from spikerl.config import NUMBER_TOO_LONG
from spikerl.energy import LayerCost, decision_cost, encoder_channels, encoder_operations, energy_ratios
from spikerl.errors import UsageError
from spikerl.evaluate import Evaluation
from spikerl.run_folder import RunFolder
from spikerl.schema import Record, build, setting
from spikerl.settings import MAX_TIMESTEPS, Objective, Settings


class Stage(str, enum.Enum):
    """What a row evaluates."""

    ANN = "ANN"
    """The ANN agent compressed."""
    CONVERTED = "converted"
    """The SNN right after conversion, at the schedule's first T, before any retraining."""
    RETRAINED = "retrained"
    """The SNN after the retraining stage at its T."""
    ANN_STICKY = "ANN, sticky actions"
    """The ANN under ALE's sticky actions (``EvaluationProtocol.sticky_actions``)."""
    RETRAINED_STICKY = "retrained, sticky actions"
    """The last retrained stage under ALE's sticky actions."""

    @property
    def is_ann(self) -> bool:
        return self in (Stage.ANN, Stage.ANN_STICKY)

    @property
    def is_sticky(self) -> bool:
        """Evaluated under sticky actions (``EvaluationProtocol.sticky_actions``), not the default protocol."""
        return self in (Stage.ANN_STICKY, Stage.RETRAINED_STICKY)


class EvaluationProtocol(Record):
    """The episodes every row was evaluated on (``spikerl.evaluate.evaluate_agent``)."""

    episodes: int = setting(low=1)
    seed: int = setting(low=0)
    n_envs: int = setting(low=1)
    sticky_actions: float | None = setting(default=None, low=0, high=0.99)
    """Sticky-action probability of the ``*_STICKY`` rows (None: there are none)."""


class StageRow(Record):
    """One evaluated stage: per-episode rewards and lengths, spike rates per neuron layer, cost."""

    stage: Stage
    T: int | None = setting(low=1, high=MAX_TIMESTEPS)
    """Timesteps per decision (None for the ANN)."""
    wall_time_s: float = setting(low=0)
    """Wall time of the stage: conversion or retraining, and its evaluation."""
    mean_reward: float
    std_reward: float
    rewards: list[float]
    lengths: list[int] = setting(low=0)
    spike_rates: dict[str, float]
    """Spikes per neuron per timestep, by neuron layer (empty for the ANN)."""
    cost: dict[str, Any] = setting(factory=dict)
    """Operations and energy per decision (``spikerl.energy.decision_cost``) and the ANN's energy over it
    (``spikerl.energy.energy_ratios``: compute only and with memory)."""
    episode_digests: list[str] = setting(factory=list)
    """Per episode, a digest of the observations the agent acted on (``Evaluation.episode_digests``;
    empty in results written before they were recorded)."""

    def check(self) -> None:
        if self.stage.is_ann != (self.T is None):
            problem = f"got stage {self.stage.value} with T {self.T}"
            raise UsageError(f"T must be given for an SNN row and only for it, {problem}", parameter="T")
        if not self.rewards or len(self.rewards) != len(self.lengths):
            raise UsageError("rewards must hold one reward per episode, as many as lengths", parameter="rewards")
        if self.episode_digests and len(self.episode_digests) != len(self.rewards):
            raise UsageError("episode_digests must hold one digest per episode, or none", parameter="episode_digests")


class CompressionResult(Record):
    """A whole ``spikerl compress`` run: header and rows (``results.json``)."""

    env_id: str
    agent: str
    """Path of the ANN agent compressed, as given."""
    objective: Objective
    schedule: tuple[int, ...] = setting(low=1, high=MAX_TIMESTEPS)
    percentile: float = setting(above=0, high=100)
    steps_per_stage: int = setting(low=0)
    seed: int = setting(low=0)
    evaluation: EvaluationProtocol
    commands: list[str]
    """The command lines that made the ANN and this run, first to last."""
    layers: list[dict[str, Any]]
    """The Q-network's weighted layers (``spikerl.energy.LayerCost`` fields)."""
    encoding: str = "direct"
    """Input encoding of the SNN (``spikerl.encoding``; results written before it are direct)."""
    spiking_layers: list[dict[str, Any]] = setting(factory=list)
    """The SNN's layers where a spiking input changed them (the encoder, a first layer on
    spikes); empty under direct encoding, where the SNN rows cost ``layers``."""
    rows: list[StageRow] = setting(factory=list)
    plots: list[str] = setting(factory=list)
    """File names of the plots, beside results.json."""
    agent_sha256: str | None = None
    """SHA-256 of the ANN agent file (absent in results written before it was recorded)."""
    sticky_actions: float | None = None
    """ALE's sticky-action probability of the retraining rollouts (``compress.sticky_actions``;
    None: the env's own, as in results written before it was recorded)."""
    settings: dict[str, Any] | None = None
    """The run's ``env`` and ``compress`` settings (``run_settings``; None in results written
    before they were recorded)."""

    #: Header fields that must agree for a run to be resumed.
    SAME_RUN = (
        "env_id", "agent_sha256", "objective", "schedule", "percentile", "encoding", "steps_per_stage", "seed", "evaluation",
        "sticky_actions", "settings",
    )
    #: Header fields whose absence (results of an earlier spikerl) agrees with any value.
    RECORDED_LATER = ("agent_sha256", "settings")

    def check(self) -> None:
        if self.rows and ([row.stage for row in self.rows].count(Stage.ANN) != 1 or self.rows[0].stage is not Stage.ANN):
            raise UsageError("rows must start with the one ANN row", parameter="rows")
        try:
            self.layer_costs()
            self.layer_costs(spiking=True)
        except TypeError as error:
            raise UsageError(f"layers must hold LayerCost fields ({error})", parameter="layers") from None
        try:  # every row's cost can be computed: its spike rates name the layers, the sizes are numbers
            for row in self.rows:
                if not all(math.isfinite(value) for value in self.row_cost(row.T, row.spike_rates).values()):
                    raise ValueError("a cost beyond any float")
        except (TypeError, KeyError, ValueError, ZeroDivisionError, IndexError, OverflowError) as error:
            problem = f"{type(error).__name__}: {error}"
            raise UsageError(f"layers and the rows' spike rates do not fit together ({problem})", parameter="layers") from None

    def layer_costs(self, spiking: bool = False) -> list[LayerCost]:
        """The ANN's layers, or with ``spiking`` the SNN's (``spiking_layers`` where there are any),
        an input encoder's operations counted afresh (``spikerl.energy.encoder_operations``: results
        written before 2026-12-01 counted a threshold+event encoder's 25% high)."""
        costs = [LayerCost(**layer) for layer in (self.spiking_layers if spiking and self.spiking_layers else self.layers)]
        return [self._counted_afresh(cost) if cost.kind == "encoder" else cost for cost in costs]

    def _counted_afresh(self, encoder: LayerCost) -> LayerCost:
        channels = encoder_channels(self.encoding, encoder.inputs or 0, encoder.outputs)
        if channels is None:  # sizes no encoder of this encoding has: the stored count stands
            return encoder
        return dataclasses.replace(encoder, macs=encoder_operations(self.encoding, channels, encoder.outputs))

    def rows_of(self, stage: Stage) -> list[StageRow]:
        return [row for row in self.rows if row.stage is stage]

    def finished_stages(self) -> list[int]:
        """T of every retrained stage recorded, in order."""
        return [row.T for row in self.rows_of(Stage.RETRAINED) if row.T is not None]

    def is_complete(self) -> bool:
        """Whether the run ended: every stage of its schedule retrained, the sticky-action rows
        where the protocol has them, and the plots (which ``compress`` records last)."""
        sticky_done = self.evaluation.sticky_actions is None or bool(self.rows_of(Stage.RETRAINED_STICKY))
        return set(self.finished_stages()) >= set(self.schedule) and sticky_done and bool(self.plots)

    def differing_setting(self, other: CompressionResult) -> tuple[str, Any, Any] | None:
        """The first ``SAME_RUN`` field whose value differs from ``other``'s, as (its name, this
        value, ``other``'s) in plain data; within ``settings``, the first differing setting by
        its dotted name, such as ``compress.distill.learning_rate``. None if they agree."""
        for name in self.SAME_RUN:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine == theirs or (name in self.RECORDED_LATER and None in (mine, theirs)):
                continue
            if name == "settings":
                return _first_difference(mine, theirs, "")
            return name, _plain_data(mine), _plain_data(theirs)
        return None

    def row_cost(self, timesteps: int | None, spike_rates: dict[str, float]) -> dict[str, Any]:
        """Operations and energy per decision of a row, and the ANN's energy over it."""
        cost = decision_cost(self.layer_costs(spiking=timesteps is not None), spike_rates, timesteps)
        return {**cost, **energy_ratios(decision_cost(self.layer_costs()), cost)}

    def with_row(self, stage: Stage, timesteps: int | None, evaluation: Evaluation, wall_time_s: float) -> CompressionResult:
        """This result with one more row: ``evaluation`` of ``stage`` at T = ``timesteps``, and its cost."""
        row = StageRow(
            stage=stage, T=timesteps, wall_time_s=wall_time_s, mean_reward=evaluation.mean, std_reward=evaluation.std,
            rewards=evaluation.rewards, lengths=evaluation.lengths, spike_rates=evaluation.spike_rates,
            episode_digests=evaluation.episode_digests,
            cost=self.row_cost(timesteps, evaluation.spike_rates),
        )
        return dataclasses.replace(self, rows=[*self.rows, row])

    def with_costs(self) -> CompressionResult:
        """This result with every row's cost computed afresh from the layers."""
        rows = [dataclasses.replace(row, cost=self.row_cost(row.T, row.spike_rates)) for row in self.rows]
        return dataclasses.replace(self, rows=rows)


def run_settings(settings: Settings) -> dict[str, Any]:
    """What ``CompressionResult.settings`` records of a run's ``settings``: the ``env`` section but
    ``num_threads`` (it changes no result) and the ``compress`` section, as plain data."""
    env = {key: value for key, value in settings.env.to_dict().items() if key != "num_threads"}
    return {"env": env, "compress": settings.compress.to_dict()}


def _first_difference(mine: Any, theirs: Any, name: str) -> tuple[str, Any, Any]:
    """(dotted name, mine, theirs) of the first place where the plain data ``mine`` and ``theirs`` differ."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key in [*mine, *(key for key in theirs if key not in mine)]:
            if mine.get(key) != theirs.get(key):
                return _first_difference(mine.get(key), theirs.get(key), f"{name}.{key}" if name else key)
    return name, mine, theirs


def _plain_data(value: Any) -> Any:
    return value.to_dict() if isinstance(value, Record) else value


MAX_RESULTS_BYTES = 16 << 20
"""Largest ``results.json`` read: a compression writes about 2 KB per row (a Pong run's file is 16 KB)."""


def read_results(folder: str | os.PathLike[str]) -> CompressionResult:
    """The checked ``results.json`` of the compression run in ``folder``, or a one-line ``UsageError``."""
    path = RunFolder(folder).results_json
    if not path.is_file():
        raise UsageError(f"{folder} holds no results.json; pass the --out folder of 'spikerl compress'")
    fix = "restore it, or rerun 'spikerl compress' with --force"
    try:
        if path.stat().st_size > MAX_RESULTS_BYTES:
            raise UsageError(f"{path} is damaged (larger than {MAX_RESULTS_BYTES >> 20} MiB); {fix}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except UsageError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise UsageError(f"{path} is damaged ({type(error).__name__}: {' '.join(str(error).split())}); {fix}") from None
    except ValueError:  # the one other error reading JSON: an integer past the 4300 digits Python reads
        raise UsageError(f"{path} is damaged (it {NUMBER_TOO_LONG}); {fix}") from None
    try:
        result = build(CompressionResult, data)
    except UsageError as error:
        raise UsageError(f"{path} is damaged ({error}); {fix}") from None
    except RecursionError:  # JSON that parses, nested deeper than any check can walk
        raise UsageError(f"{path} is damaged (nested too deeply); {fix}") from None
    if not result.rows:  # compress writes the file after its first (ANN) row
        raise UsageError(f"{path} is damaged (no rows, not even the ANN's); {fix}")
    return result


def write_results(folder: str | os.PathLike[str], result: CompressionResult) -> None:
    """Write ``result`` as the ``results.json`` of ``folder``, atomically."""
    write_json(RunFolder(folder).results_json, result.to_dict())

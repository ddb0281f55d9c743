"""``spikerl sweep``: the cells of a grid file as Ray tasks, resumable, with one results view.

Each training run and each cell is one Ray task that calls the library functions the CLI calls
(``spikerl.train.train``, ``spikerl.compress.compress``) on its own run folder under the sweep
folder ``DIR``::

    DIR/sweep.json                      the planned cells (a resumed sweep must plan the same, env.num_threads aside)
    DIR/train/seed=0/                   a 'spikerl train' run folder, shared by the cells of its ANN
    DIR/cells/schedule=5-1,seed=0/      a 'spikerl compress' run folder
    DIR/*/*/sweep_task.json             the task's state: running / done / failed (with its error), attempts
    DIR/*/*/sweep.log                   the task's printed output
    DIR/sweep.csv, sweep.md, *.png      the results view (spikerl.sweep_report)

A cell's compression task takes its training task's result (an ``ObjectRef``) as argument, so
Ray starts it when the ANN exists; cells sharing an ANN share that one training task. A task
requests the preset's ``env.num_threads`` CPUs and, where the cluster has GPUs, a GPU
fraction. Finished cells (``results.json`` holds every stage of the schedule) are never
submitted again; an unfinished one continues from its folder exactly as ``train --resume`` /
``compress --resume`` would, whether the sweep was killed or Ray retries a task whose worker
died. A failed cell is reported with its error and the others carry on.

On a cluster, ``DIR`` must be a folder every node sees at the same path (NFS or similar), and
every node needs spikerl installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikerl.checkpoints import open_own_file, signal_handlers, signals_held, stop_signals_as_interrupt, write_json
from spikerl.config import training_commands
from spikerl.errors import UsageError
from spikerl.locks import LOCK_FILE, folder_lock, is_locked
from spikerl.run_folder import RunFolder
from spikerl.schema import quoted
from spikerl.settings import Settings, from_mapping
from spikerl.sweep_grid import Cell, Plan, TrainRun, load_grid
from spikerl.training_checkpoint import read_index

SWEEP_JSON = "sweep.json"
TASK_JSON = "sweep_task.json"
TASK_LOG = "sweep.log"
#: GPU fraction per task where the cluster has GPUs and the grid file does not say.
DEFAULT_GPUS_PER_CELL = 0.25
#: Ray retries a task whose worker process died (not one that raised) this many times.
MAX_RETRIES = 2
#: Seconds to wait for an address given with --address to answer.
CONNECT_TIMEOUT_S = 5.0
#: Seconds a stopped sweep waits for its tasks to write their checkpoints (a Pong training's
#: replay buffer, 5.6 GB, took about 2 min on this project's 2-core machine).
STOP_TIMEOUT_S = 600.0


@dataclass
class Outcome:
    """What a sweep did: the cells finished (now or earlier) and the failed ones with their error."""

    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: int = 0


def run_sweep(
    grid_file: str | Path,
    out_dir: str | Path,
    address: str | None = None,
    resume: bool = False,
    command: str = "",
    num_threads: int | None = None,
    num_cpus: int | None = None,
) -> Outcome:
    """Run the grid file's cells on Ray and write the results view in ``out_dir``.

    ``address``: None starts a local Ray instance on ``num_cpus`` CPUs (default: every core; or
    uses the one this process already initialized); ``auto``, ``host:port`` or ``ray://host:port``
    joins a cluster. ``num_threads``: torch threads and Ray CPUs of every task, in place of the
    cells' ``env.num_threads``. ``command`` (the command line) is recorded in every run's results.
    """
    from spikerl.sweep_report import write_sweep_report

    plan = load_grid(grid_file)
    if num_threads is not None:
        plan = plan.with_num_threads(num_threads)
    out = Path(out_dir).resolve()
    _check_out_dir(out, plan, resume)
    with folder_lock(out):  # one sweep at a time in a folder: a second would take over its cells' records
        started_here = connect(address, num_cpus)
        try:
            import ray

            gpus = _gpus_per_task(plan, [node["Resources"] for node in ray.nodes() if node["Alive"]])
            write_json(out / SWEEP_JSON, plan.as_json())
            outcome = _execute(plan, out, command or f"spikerl sweep {grid_file} --out {out_dir}", gpus)
        finally:
            if started_here:
                import ray

                ray.shutdown()
        write_sweep_report(out, plan, outcome.failed)
    return outcome


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Initialize Ray (a local instance of ``num_cpus`` CPUs, default every core, where
    ``address`` is None); returns whether this call started it (and so must shut it down)."""
    try:
        import ray
    except ImportError:
        raise UsageError(
            "spikerl sweep runs on Ray, which is not installed; pip install 'spikerl[sweep]' (scripts/setup.sh does)"
        ) from None

    if num_cpus is not None and address is not None:
        raise UsageError("--num-cpus sizes the local Ray instance; a cluster's nodes say their own CPUs "
                         "(ray start --num-cpus), so drop it with --address", parameter="num_cpus")
    if address is None:
        if ray.is_initialized():
            return False
        # SIGHUP ignored by the Ray processes started here, which inherit it: a closing terminal
        # hangs up its whole process group, and they would die without their tasks' checkpoints;
        # so they keep running while the driver stops the tasks as on Ctrl-C.
        with signal_handlers({signal.SIGHUP: signal.SIG_IGN} if hasattr(signal, "SIGHUP") else {}):
            ray.init(
                address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                object_store_memory=128 * 2**20, logging_level=logging.WARNING,
            )
        return True
    _check_reachable(address)
    if ray.is_initialized():
        raise UsageError("Ray is already initialized in this process; drop --address or call ray.shutdown() first")
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as error:  # noqa: BLE001 (any failure to join a cluster is the user's set-up to fix)
        raise UsageError(
            f"cannot join the Ray cluster at --address {address} ({type(error).__name__}: {_first_line(error)}); check the "
            "address, and set RAY_AUTH_MODE=token where the cluster authenticates with a token (see README)"
        ) from None
    return True


def _check_reachable(address: str) -> None:
    """Fail fast (``CONNECT_TIMEOUT_S``) when ``host:port`` or ``ray://host:port`` does not answer."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address} is not auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise UsageError(f"no Ray cluster answers at --address {address} ({error.strerror or error}); "
                         "start one with 'ray start --head' or check the address") from None


def _check_out_dir(out: Path, plan: Plan, resume: bool) -> None:
    """A new sweep needs an empty or new folder; a resumed one the folder of the same plan."""
    stored = out / SWEEP_JSON
    if resume:
        if not stored.is_file():
            raise UsageError(f"nothing to resume in {out} ({SWEEP_JSON} missing); run without --resume")
        check_same_plan(out, plan)
    elif out.exists() and (not out.is_dir() or any(path.name != LOCK_FILE for path in out.iterdir())):  # a refused try's lock
        hint = "pass --resume to continue it" if stored.is_file() else "choose a new or empty folder"
        raise UsageError(f"--out {out} is not empty; {hint}, or another --out")


def check_same_plan(out: Path, plan: Plan) -> None:
    """``UsageError`` unless the sweep in ``out`` (its ``sweep.json``) was started with ``plan``'s cells."""
    stored = out / SWEEP_JSON
    try:
        previous = json.loads(stored.read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise UsageError(f"{stored} is unreadable ({error}); start the sweep in another --out") from None
    planned = _comparable(json.loads(json.dumps(plan.as_json())))
    try:
        stored_plan = _comparable(previous)
        difference = None if stored_plan == planned else _first_difference(stored_plan, planned)
    except UsageError as error:  # a setting this spikerl does not know, or a value it refuses
        difference = f"{stored} does not hold a plan this spikerl reads: {error}"
    except (AttributeError, KeyError, TypeError, RecursionError):
        difference = f"{stored} does not hold a plan this spikerl reads"
    if difference is not None:
        raise UsageError(f"{out} holds a sweep of other cells than {plan.grid_file} plans now ({difference}); "
                         "resume with the grid and presets it was started with (or pin the setting under the grid's "
                         "settings:), or choose another --out")


def _comparable(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan as ``sweep.json`` holds it, in the form two plans are compared in."""
    grid_folder = Path(plan["grid_file"]).parent
    return {"env_id": plan["env_id"], "cells": [_read_as_now(cell, grid_folder) for cell in plan["cells"]]}


def _read_as_now(stored_cell: dict[str, Any], grid_folder: Path) -> dict[str, Any]:
    """A cell of ``sweep.json`` as plans are compared: its settings read as this spikerl reads a
    preset (a setting added since the sweep started is at its default, so an upgrade does not
    strand a sweep), without ``env.num_threads`` (the CPUs a task takes may change on resume, as
    ``train --resume`` allows) and, in a cell that compresses a given agent (no training task),
    without the training settings, which it never uses; a given agent by its path relative to
    the grid file's folder (``grid_folder``), so that a sweep kept in git is the same sweep in
    any checkout."""
    settings = from_mapping(stored_cell["settings"]).to_dict()
    del settings["env"]["num_threads"]
    if stored_cell.get("train") is None:
        del settings["train"]
    own = {key: value for key, value in stored_cell["own"].items() if key != "env.num_threads"}
    agent = stored_cell.get("agent")
    if agent is not None:
        agent = os.path.relpath(agent, grid_folder)
    return {**stored_cell, "agent": agent, "own": own, "settings": settings}


def _first_difference(before: Any, now: Any, where: str = "") -> str:
    """Where two plans (plain JSON data) first differ, as ``where: before then, now now``."""
    if isinstance(before, dict) and isinstance(now, dict):
        for key in [*before, *(key for key in now if key not in before)]:
            if key not in before or key not in now or before[key] != now[key]:
                return _first_difference(before.get(key), now.get(key), f"{where}.{key}" if where else key)
    if isinstance(before, list) and isinstance(now, list):
        if len(before) != len(now) and where == "cells":
            return f"{len(before)} cells then, {len(now)} now{_changed_cells(before, now)}"
        for index, (item_before, item_now) in enumerate(zip(before, now)):
            if item_before != item_now:
                label = item_now.get("folder") if isinstance(item_now, dict) else None
                return _first_difference(item_before, item_now, f"cell {label}" if label else f"{where}[{index}]")
    return f"{where or 'the plan'}: {json.dumps(before)} then, {json.dumps(now)} now"


def _changed_cells(before: list[Any], now: list[Any], named: int = 3) -> str:
    """``; new: cells/seed=2`` and the like: the first ``named`` folders planned only now, and only then."""
    def folders(cells: list[Any]) -> list[str]:
        return [str(cell.get("folder")) for cell in cells if isinstance(cell, dict)]

    parts = []
    for label, these, others in (("new", folders(now), folders(before)), ("gone", folders(before), folders(now))):
        changed = [folder for folder in these if folder not in others]
        if changed:
            more = f" and {len(changed) - named} more" if len(changed) > named else ""
            parts.append(f"{label}: {', '.join(changed[:named])}{more}")
    return "".join(f"; {part}" for part in parts)


def _gpus_per_task(plan: Plan, nodes: list[dict[str, float]]) -> float:
    """The GPU fraction each task requests, after checking that the cluster can run the cells at
    all; ``nodes``: the resources of each live node (a task runs on one node)."""
    largest = max(_cpus(cell.settings) for cell in plan.cells)
    fitting = [node for node in nodes if node.get("CPU", 0) >= largest]
    if not fitting:
        raise UsageError(
            f"cells need {largest} CPUs each (env.num_threads) but the largest node of the Ray cluster has "
            f"{max(node.get('CPU', 0) for node in nodes):g}; lower env.num_threads in the grid's settings "
            "(or --num-threads) or add larger nodes"
        )
    has_gpus = any(node.get("GPU") for node in fitting)  # on a node that also has the CPUs
    if plan.gpus_per_cell is None:
        return DEFAULT_GPUS_PER_CELL if has_gpus else 0.0
    if plan.gpus_per_cell and not has_gpus:
        raise UsageError(
            f"{plan.grid_file} asks for gpus_per_cell {plan.gpus_per_cell:g} but the Ray cluster has no GPU; "
            "set it to 0 or leave it out"
        )
    return plan.gpus_per_cell


def _cpus(settings: Settings) -> int:
    """CPUs a task of these settings requests: its torch threads."""
    return settings.env.num_threads or 1


def _execute(plan: Plan, out: Path, command: str, gpus: float) -> Outcome:
    """Run every unfinished cell (and the training runs it needs), each task with ``gpus`` of a GPU; show progress.

    Ctrl-C, SIGTERM or SIGHUP stops the running tasks the way Ctrl-C stops a command (training
    saves a checkpoint) before the sweep ends; ``--resume`` carries on.
    """
    outcome = Outcome()
    with stop_signals_as_interrupt():  # instead of Ray's handler, which exits and takes the tasks down unsaved
        trainings, pending = _submit(plan, out, command, gpus, outcome)
        progress = Progress(len(plan.cells), outcome.skipped)
        progress.show(len(outcome.finished), 0, 0)
        try:
            _wait_for_cells(pending, trainings, outcome, out, progress)
        except KeyboardInterrupt:
            with signals_held():  # a second stop signal acts once the tasks have stopped
                _stop(out, [*pending, *trainings.values()], list(pending.values()), progress.started)
            raise
        finally:
            progress.close()
    for folder, message in outcome.failed.items():
        print(f"failed: {folder}: {message}", file=sys.stderr)
    return outcome


def _wait_for_cells(
    pending: dict[Any, Cell], trainings: dict[str, Any], outcome: Outcome, out: Path, progress: Progress
) -> None:
    """Wait for every task of ``pending`` (emptied as they end), recording each cell in ``outcome``."""
    import ray
    from ray.exceptions import RayError

    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            cell = pending.pop(ref)
            try:
                ray.get(ref)
                outcome.finished.append(cell.folder)
            except RayError as error:  # a failed cell is reported; the others carry on
                outcome.failed[cell.folder] = describe_failure(error, cell, trainings)
        running = _running_tasks(out, pending.values(), progress.started)
        progress.show(len(outcome.finished), _cells_running(running, pending.values()), len(outcome.failed),
                      _how_far(out, running))


def _submit(plan: Plan, out: Path, command: str, gpus: float, outcome: Outcome) -> tuple[dict[str, Any], dict[Any, Cell]]:
    """Submit the tasks of the unfinished cells (recording the finished ones in ``outcome``).

    Returns the training tasks by folder and the cells by the ``ObjectRef`` of their compression task.
    """
    import ray

    device = "cuda" if gpus else "cpu"
    train_remote, compress_remote = ray.remote(train_task), ray.remote(compress_task)

    def options(settings: Settings) -> dict[str, Any]:
        return {"num_cpus": _cpus(settings), "num_gpus": gpus, "max_retries": MAX_RETRIES, "retry_exceptions": False}

    trainings: dict[str, Any] = {}
    pending: dict[Any, Cell] = {}
    for cell in plan.cells:
        if is_finished(out / cell.folder):
            foreign = foreign_result(out, cell)
            if foreign is None:
                outcome.finished.append(cell.folder)
            else:
                outcome.failed[cell.folder] = foreign
            continue
        ann: Any = cell.agent  # a path, or the ObjectRef of the training task (Ray passes its result: the path)
        if cell.train is not None:
            ann_path = RunFolder(out / cell.train.folder).ann
            if ann_path.is_file():
                ann = str(ann_path)
            else:
                if cell.train.folder not in trainings:
                    task = train_remote.options(**options(cell.train.settings))
                    trainings[cell.train.folder] = task.remote(str(out), cell.train, command, device)
                ann = trainings[cell.train.folder]
        pending[compress_remote.options(**options(cell.settings)).remote(str(out), cell, ann, command, device)] = cell
    outcome.skipped = len(outcome.finished)
    return trainings, pending


def _stop(out: Path, refs: list[Any], cells: list[Cell], since: float, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Cancel the tasks of ``refs`` (a running one gets a KeyboardInterrupt: training saves a
    checkpoint) and wait until none of ``cells`` has a task running (its ``sweep_task.json``),
    at most ``timeout_s``; the sweep then shuts its Ray instance down, ending any task left."""
    import ray

    print("\ninterrupted; stopping the running tasks (training writes its checkpoint and replay buffer, "
          "which takes minutes for a large buffer)", file=sys.stderr)
    for ref in refs:
        ray.cancel(ref)
    deadline = time.time() + timeout_s
    while (running := _running_tasks(out, cells, since)) and time.time() < deadline:
        time.sleep(0.5)
    if running:
        print(f"still running after {timeout_s:.0f} s, so ended unsaved: {', '.join(running)}", file=sys.stderr)
    print("continue with --resume: unfinished cells resume from their checkpoints", file=sys.stderr)


def describe_failure(error: BaseException, cell: Cell, trainings: dict[str, Any]) -> str:
    """One line for a failed cell: the exception raised in its task (or in its training task)."""
    import ray
    from ray.exceptions import RayError, RayTaskError, TaskCancelledError

    cause = error.cause if isinstance(error, RayTaskError) and error.cause is not None else error
    if isinstance(cause, TaskCancelledError):  # Ctrl-C or SIGTERM reached the task's worker: it stopped and saved
        message = "interrupted (its worker got Ctrl-C or SIGTERM); continue with --resume"
    else:
        message = f"{type(cause).__name__}: {_first_line(cause)}"
    if cell.train is None or cell.train.folder not in trainings:
        return message
    try:
        ray.get(trainings[cell.train.folder], timeout=0)
    except RayError:
        return f"training {cell.train.folder} failed: {message}"
    return message


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else repr(error))[:300]


def foreign_result(out: Path, cell: Cell) -> str | None:
    """Why the finished compression in ``cell``'s folder is not the cell's own (its results name
    another seed, schedule, ANN, ...: a results.json copied or swapped between cells by hand),
    or None. Its settings are left aside (an upgrade adds settings), and so is the ANN where the
    training's ``ann.zip`` is not kept (``scripts/keep_sweep.py``) or cannot be read: then the
    seed must agree. The sweep, its report and ``scripts/keep_sweep.py`` take no such cell."""
    from spikerl.compress import new_result
    from spikerl.results import read_results

    results = read_results(out / cell.folder)  # complete: is_finished read it
    if cell.agent is not None:
        ann = Path(cell.agent)
    else:
        assert cell.train is not None  # a cell either names its agent or trains it
        ann = RunFolder(out / cell.train.folder).ann
    try:
        planned = dataclasses.replace(new_result(ann, cell.env_id, cell.settings, cell.seed, [], None), settings=None)
        differing = results.differing_setting(planned)
    except OSError:  # no ANN to hash
        differing = None if results.seed == cell.seed else ("seed", results.seed, cell.seed)
    if differing is None:
        return None
    name, found, planned_value = differing
    return (f"holds the results of another run ({name} {quoted(found)} where the cell has {quoted(planned_value)}); "
            f"delete the folder {cell.folder} to run the cell again")


def is_finished(folder: Path) -> bool:
    """Whether ``folder`` holds a complete compression run (``CompressionResult.is_complete``)."""
    from spikerl.results import read_results

    if not RunFolder(folder).results_json.is_file():
        return False
    try:
        return read_results(folder).is_complete()
    except UsageError:  # damaged: not finished (resuming it then says what is wrong)
        return False


def _running_tasks(out: Path, cells: Any, since: float) -> dict[str, Cell]:
    """Unfinished cells whose training or compression task started in this sweep and is running:
    a cell by the folder of that task (a training run shared by cells counts once). A task
    whose process on this host is gone (killed without a word: kill -9, out of memory) is not running."""
    def running(folder: str) -> bool:
        state = _task_state(out / folder)
        pid, here = state.get("pid"), state.get("host") == socket.gethostname()
        gone = here and pid is not None and not _alive(pid)  # _task_state: a pid is a positive int
        return state.get("state") == "running" and state.get("started_at", 0) >= since and not gone

    tasks: dict[str, Cell] = {}
    for cell in cells:
        if running(cell.folder):
            tasks[cell.folder] = cell
        elif cell.train is not None and running(cell.train.folder):
            tasks.setdefault(cell.train.folder, cell)
    return tasks


def _cells_running(running: dict[str, Cell], cells: Any) -> int:
    """How many of ``cells`` have a task in ``running``: their compression or the training they wait on."""
    return sum(1 for cell in cells if cell.folder in running or (cell.train is not None and cell.train.folder in running))


def _how_far(out: Path, running: dict[str, Cell]) -> str:
    """``train/seed=0 150000/400000 steps, cells/seed=1 T=5,4 of 5,4,3,2,1``: the last
    checkpoint of each running training, the finished stages of each running compression."""
    from spikerl.results import read_results

    parts = []
    for folder, cell in running.items():
        with contextlib.suppress(UsageError, OSError):  # none yet, or being replaced: said next time
            if cell.train is not None and folder == cell.train.folder:
                steps = read_index(out / folder)["counters"]["num_timesteps"]
                parts.append(f"{folder} {steps}/{cell.train.settings.train.n_timesteps} steps")
            elif RunFolder(out / folder).results_json.is_file():
                done = ",".join(map(str, read_results(out / folder).finished_stages())) or "none"
                parts.append(f"{folder} T={done} of {','.join(map(str, cell.settings.compress.schedule))}")
    return ", ".join(parts)


#: The fields of ``sweep_task.json`` that the sweep reads back, with their types.
_TASK_FIELDS: dict[str, type | tuple[type, ...]] = {
    "state": str, "attempts": int, "host": str, "pid": int, "started_at": (int, float),
}
#: The ranges of its integer fields (a pid of 0 or -1 would name a process group to wait for).
_TASK_RANGES = {"attempts": range(0, 1 << 31), "pid": range(1, 1 << 31)}


def _task_state(folder: Path) -> dict[str, Any]:
    """The fields ``_TASK_FIELDS`` of the task's ``sweep_task.json`` that hold what they should
    (a file edited or damaged by hand loses the others; none where it is missing or unreadable,
    or is a link or a FIFO, which would hang the read)."""
    try:
        with os.fdopen(open_own_file(folder / TASK_JSON, os.O_RDONLY)) as file:
            state = json.loads(file.read(1 << 20))
    except (OSError, ValueError, RecursionError):  # ValueError: not JSON, or open_own_file's UsageError
        return {}
    if not isinstance(state, dict):
        return {}
    return {
        key: value for key, value in state.items()
        if key in _TASK_FIELDS and isinstance(value, _TASK_FIELDS[key]) and not isinstance(value, bool)
        and (key not in _TASK_RANGES or value in _TASK_RANGES[key])
    }


# --- the tasks (run on Ray workers) -------------------------------------------------------------


def train_task(out: str, run: TrainRun, command: str, device: str) -> str:
    """Train (or resume training) the ANN of ``run``; returns the path of its ``ann.zip``."""
    from spikerl.train import train

    folder = _task_folder(out, run.folder)
    files = RunFolder(folder)
    with _recorded(folder, run.settings):
        if not files.ann.is_file():
            resume = files.checkpoint.is_file()
            # Without a checkpoint (killed before its first one) there is nothing to resume: the run starts over.
            train(run.env_id, run.settings, folder, seed=run.seed, device=device, resume=resume, force=not resume,
                  progress=False, command=command)
    return str(files.ann)


def compress_task(out: str, cell: Cell, ann: str, command: str, device: str) -> None:
    """Compress ``ann`` as ``cell`` says (or resume the compression after its last saved stage)."""
    from spikerl.compress import compress

    folder = _task_folder(out, cell.folder)
    with _recorded(folder, cell.settings):
        if is_finished(folder):
            return
        compress(ann, cell.env_id, cell.settings, folder, seed=cell.seed, device=device,
                 resume=RunFolder(folder).results_json.is_file(), progress=False,
                 commands=training_commands(ann) + [command])


def _task_folder(out: str, relative: str) -> Path:
    """The task's run folder, after checking that this node sees the sweep folder."""
    if not (Path(out) / SWEEP_JSON).is_file():
        raise UsageError(
            f"{out} is not visible on node {socket.gethostname()}; on a cluster --out must be a folder all nodes share"
        )
    folder = Path(out) / relative
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):  # a link would take the task's files elsewhere
        raise UsageError(f"{folder} is a link or a file where the sweep keeps a task's folder; delete it and resume")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def _recorded(folder: Path, settings: Settings) -> Iterator[None]:
    """Run a task body with its output in ``sweep.log`` and its state in ``sweep_task.json``."""
    import ray
    import torch

    torch.set_num_threads(_cpus(settings))
    previous = _task_state(folder)
    _wait_for_killed_task(previous, folder)
    state = {
        "state": "running", "attempts": previous.get("attempts", 0) + 1, "host": socket.gethostname(),
        "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "started_at": time.time(),
    }
    write_json(folder / TASK_JSON, state)
    # ray.cancel stops a running task through Python's SIGINT handler (_thread.interrupt_main),
    # which does nothing where SIGINT was ignored from the start, as in every worker of a sweep
    # that a script started in the background (`nohup spikerl sweep ... &`): reinstated here.
    cancellable = signal_handlers({signal.SIGINT: signal.default_int_handler})
    try:
        # Line-buffered: a killed task's log still shows its last line. SIGTERM to the worker
        # (`kill PID`, a node's process manager) stops the task as Ctrl-C does, where Ray's
        # own handler would raise SystemExit past training's checkpoint.
        log_handle = open_own_file(folder / TASK_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with (os.fdopen(log_handle, "a", buffering=1) as log, contextlib.redirect_stdout(log),
              contextlib.redirect_stderr(log), cancellable, stop_signals_as_interrupt()):
            yield
    except BaseException as error:
        ended = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        write_json(folder / TASK_JSON, {**state, "state": ended, "error": f"{type(error).__name__}: {_first_line(error)}",
                                        "wall_time_s": time.time() - state["started_at"]})
        raise
    write_json(folder / TASK_JSON, {**state, "state": "done", "wall_time_s": time.time() - state["started_at"]})


def _wait_for_killed_task(previous: dict[str, Any], folder: Path, timeout_s: float = 180) -> None:
    """Wait until the process of a task of a killed sweep has exited, when it ran on this host,
    and until no process holds the task folder's lock.

    A Ray worker outlives a killed driver for a moment (it leaves when it notices that its
    node's raylet is gone) and holds its run folder's lock until then: 1.4 s measured on an idle
    machine, over 60 s once at nice 19 beside two trainings (hence the generous timeout). The
    lock is waited for too: a retry of the killed task on another worker (Ray retries a task whose
    worker died) may hold it before it has written its own pid to ``previous``'s file.
    """
    pid = previous.get("pid")
    if previous.get("state") != "running" or previous.get("host") != socket.gethostname() or pid in (None, os.getpid()):
        return
    deadline = time.time() + timeout_s
    while (_alive(pid) or is_locked(folder)) and time.time() < deadline:
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:  # no /proc (not Linux), or it exited just now: ask again
        return True


class Progress:
    """One status line across cells: done / running / failed / waiting, elapsed time and ETA.

    On a terminal the line is rewritten in place; otherwise a line is printed when it changes.
    """

    def __init__(self, total: int, skipped: int, stream: Any = None):
        self.total, self.skipped, self.stream = total, skipped, stream or sys.stderr
        self.started = time.time()
        self.last = ""
        self.shown = ("", "")

    def show(self, done: int, running: int, failed: int, how_far: str = "") -> None:
        """``running``: cells with a task running; ``how_far``: where those tasks are (``_how_far``)."""
        elapsed = time.time() - self.started
        finished_now = done - self.skipped
        left = self.total - done - failed
        eta = _clock(elapsed / finished_now * left) if finished_now and left else "-" if not left else "?"
        earlier = f" ({self.skipped} earlier)" if self.skipped else ""
        counts = f"{running} running, {failed} failed, {left - running} waiting"
        status = f"sweep: {done}/{self.total} cells done{earlier}, {counts}"
        line = f"{status} | {_clock(elapsed)} elapsed, ETA {eta}" + (f" | {how_far}" if how_far else "")
        if self.stream.isatty():  # cut to the terminal's width: a wrapped line is not rewritten in place
            line = line[:shutil.get_terminal_size().columns - 1]
            self.stream.write("\r" + line.ljust(len(self.last)))
            self.stream.flush()
        elif (status, how_far) != self.shown:  # a log gets a line when the cells or a task move on
            print(line, file=self.stream, flush=True)
            self.shown = (status, how_far)
        self.last = line

    def close(self) -> None:
        if self.stream.isatty() and self.last:
            self.stream.write("\n")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

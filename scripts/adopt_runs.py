"""Take finished ``spikerl compress`` runs into a sweep folder as the grid cells they ran.

    python scripts/adopt_runs.py GRID.yaml SWEEP_DIR RUN_DIR [RUN_DIR ...]

A run made by hand with the ANN, seed and settings of a cell of GRID.yaml (a cell that
compresses a given ``agent``) is that cell's result. Each RUN_DIR is copied whole into
SWEEP_DIR at its cell's folder (SWEEP_DIR gets the sweep's ``sweep.json`` if it is new) and
the sweep's views are written, so that ``spikerl sweep GRID.yaml --out SWEEP_DIR --resume``
runs only the other cells and ``scripts/keep_sweep.py`` and ``scripts/readme_sweep.py`` take
the adopted ones as the sweep's own. A run is matched as ``compress --resume`` matches a run,
by what its ``results.json`` recorded: the ANN file's SHA-256, the seed, the evaluation
protocol and every env and compress setting (``env.num_threads`` aside). A run that matches
no cell, is unfinished, or recorded no settings (results of an earlier spikerl) is refused,
and so is a cell folder that already holds another run; nothing is copied unless every
RUN_DIR can be. README's td table on Pong was made so from runs of single commands:

    python scripts/adopt_runs.py grids/pong-td.yaml runs/pong-td runs/pong-td-iir runs/pong-td-direct ...
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

from spikerl.checkpoints import TEMPORARY_SUFFIX, remove_stale_temporaries, signals_held, write_json
from spikerl.compress import new_result
from spikerl.errors import UsageError, run_script
from spikerl.locks import LOCK_FILE, folder_lock
from spikerl.results import CompressionResult, read_results
from spikerl.run_folder import RunFolder
from spikerl.sweep import SWEEP_JSON, check_same_plan, is_finished
from spikerl.sweep_grid import Cell, Plan, load_grid
from spikerl.sweep_report import write_sweep_report


def cell_headers(plan: Plan) -> dict[str, CompressionResult]:
    """Per cell with a given agent (by folder), the results header its compression writes: what
    a run must agree with (``CompressionResult.differing_setting``, which leaves the layers aside).
    Each agent file is hashed here once per cell, not once per run."""
    return {cell.folder: new_result(cell.agent, cell.env_id, cell.settings, cell.seed, layers=[], commands=None)
            for cell in plan.cells if cell.agent is not None}


def cell_of_run(plan: Plan, headers: dict[str, CompressionResult], run: Path) -> Cell:
    """The cell of ``plan`` (its ``cell_headers``) whose compression ``run`` (a finished ``spikerl compress`` folder) is."""
    results = read_results(run)
    if not results.is_complete():
        raise UsageError(f"{run} holds an unfinished run; finish it with its 'spikerl compress ... --resume' first")
    if results.settings is None or results.agent_sha256 is None:
        raise UsageError(f"{run}/results.json does not record its settings and ANN (an earlier spikerl wrote it), "
                         "so it matches no cell for sure; run the cell instead")
    if not headers:
        raise UsageError(f"{plan.grid_file} has no cell with a given agent, the only cells a run can be taken as")
    differences = {folder: results.differing_setting(header) for folder, header in headers.items()}
    folder = next((folder for folder, differing in differences.items() if differing is None), None)
    if folder is not None:
        return next(cell for cell in plan.cells if cell.folder == folder)
    folder, (name, mine, theirs) = max(differences.items(), key=lambda item: _how_late(item[1][0]))
    raise UsageError(f"{run} ran no cell of {plan.grid_file}: the nearest, {folder}, has {name}={theirs!r} "
                     f"where the run has {mine!r}; pass only runs of the grid's cells")


def _how_late(name: str) -> int:
    """Where the first difference ``name`` comes in ``CompressionResult.SAME_RUN`` (a dotted
    setting comes last): the later, the nearer the cell is to the run."""
    same_run = CompressionResult.SAME_RUN
    return same_run.index(name) if name in same_run else len(same_run)


def adopt(grid: Path, sweep: Path, runs: list[Path]) -> tuple[int, int, int]:
    """Copy ``runs`` into ``sweep`` as their cells; returns (runs copied, runs there already, cells left)."""
    plan = load_grid(grid)
    headers = cell_headers(plan)
    for run in runs:
        _check_copyable(run, sweep)
    matched = [(run, cell_of_run(plan, headers, run)) for run in runs]  # every run checked before anything is written
    cells = [cell.folder for _, cell in matched]
    twice = next((folder for folder in cells if cells.count(folder) > 1), None)
    if twice is not None:
        raise UsageError(f"two of the runs ran the cell {twice}; pass one of them")
    with folder_lock(sweep, parameter=None):
        if (sweep / SWEEP_JSON).is_file():
            check_same_plan(sweep, plan)
        elif any(path.name != LOCK_FILE for path in sweep.iterdir()):
            raise UsageError(f"{sweep} holds files but no {SWEEP_JSON}; choose a new or empty folder")
        new = [(run, cell) for run, cell in matched if not _adopted(run, sweep / cell.folder)]
        for parent in {(sweep / cell.folder).parent for _, cell in new}:
            remove_stale_temporaries(parent)  # the half copies of an adoption that was killed
        write_json(sweep / SWEEP_JSON, plan.as_json())
        for run, cell in new:
            _copy_folder(run, sweep / cell.folder)
        rows = write_sweep_report(sweep, plan, {})
    done = {row["cell"] for row in rows if row["status"] == "done"}
    return len(new), len(matched) - len(new), len(plan.cells) - len(done)


def _adopted(run: Path, target: Path) -> bool:
    """Whether ``target`` (a cell folder) holds ``run``'s results already; refuses one that holds another run."""
    if not target.exists():
        return False
    if not is_finished(target):
        raise UsageError(f"{target} holds an unfinished run of its cell; finish it with 'spikerl sweep ... --resume', "
                         "or remove that folder to take this run instead")
    if filecmp.cmp(RunFolder(run).results_json, RunFolder(target).results_json, shallow=False):
        return True
    raise UsageError(f"{target} holds another run of its cell; adopt into another sweep folder, or remove that one")


def _check_copyable(run: Path, sweep: Path) -> None:
    """Refuse a run folder that holds the sweep folder, or a symbolic link (spikerl writes none;
    copying would follow it out of the folder)."""
    if run.is_dir() and sweep.resolve().is_relative_to(run.resolve()):
        raise UsageError(f"{sweep} lies inside the run {run}; take the run into a sweep folder outside it")
    link = next((path for path in run.rglob("*") if path.is_symlink()), None) if run.is_dir() else None
    if link is not None:
        raise UsageError(f"{run} holds a symbolic link, {link} (spikerl writes none); remove it, then adopt the run")


def _copy_folder(run: Path, target: Path) -> None:
    """Copy the folder ``run`` to ``target`` (which does not exist) whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX))
    try:
        shutil.copytree(run, temporary, dirs_exist_ok=True, ignore=shutil.ignore_patterns(LOCK_FILE))
        with signals_held():
            os.rename(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", type=Path, help="the grid file whose cells the runs ran")
    parser.add_argument("sweep", type=Path, help="the sweep folder to take them into (spikerl sweep --out)")
    parser.add_argument("runs", type=Path, nargs="+", help="finished 'spikerl compress' folders (--out)")
    args = parser.parse_args()

    def work() -> str:
        copied, there, left = adopt(args.grid, args.sweep, args.runs)
        rest = (f"'spikerl sweep {args.grid} --out {args.sweep} --resume' runs the {_count(left, 'cell')} left"
                if left else "every cell is done")
        return f"took {_count(copied, 'run')} into {args.sweep} ({there} were there already); {rest}"

    return run_script("adopt_runs", work)


if __name__ == "__main__":
    sys.exit(main())

"""Keep what a sweep has finished in a folder that outlives the machine (one tracked by git).

    python scripts/keep_sweep.py GRID.yaml SWEEP_DIR KEEP_DIR

copies into KEEP_DIR, at the same paths as in SWEEP_DIR (the sweep of GRID.yaml): its plan
``sweep.json``, the results of every finished cell (``results.json``, ``results.md``, the
plots), the record of every finished training (``config.yaml``, ``evaluations.npz``, the
training curve; its ``ann.zip`` too while a cell of it is unfinished, so that the cell
compresses the same ANN wherever it resumes) and the sweep's views (``sweep.md``,
``sweep.csv``, the plots); no spiking agents, checkpoints or replay buffers, a few kB per
finished cell. What KEEP_DIR then serves:

    python scripts/readme_sweep.py GRID.yaml KEEP_DIR NAME        # the README table of what was kept
    cp -r KEEP_DIR runs/X && spikerl sweep GRID.yaml --out runs/X --resume
                                                                  # elsewhere: run only the cells not kept

Run it again as more cells finish. KEEP_DIR must hold the same sweep; a kept file of a
finished cell or training is never replaced by a different one (nothing is copied then).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

from spikerl.checkpoints import atomic_path
from spikerl.errors import UsageError, run_script
from spikerl.run_folder import PLOTS, RunFolder
from spikerl.sweep import SWEEP_JSON, check_same_plan, foreign_result, is_finished
from spikerl.sweep_grid import load_grid

#: The sweep's own views (``spikerl.sweep_report``), rewritten whenever the sweep runs.
VIEWS = ("sweep.md", "sweep.csv", "reward_vs_T.png", "energy_vs_T.png", "final_reward.png")


def kept_files(grid: Path, sweep: Path) -> tuple[list[Path], list[Path]]:
    """The paths inside ``sweep`` to keep: (files that never change once written, the views)."""
    plan = load_grid(grid)
    if not (sweep / SWEEP_JSON).is_file():
        raise UsageError(f"{sweep} holds no sweep; run 'spikerl sweep {grid} --out {sweep}' first")
    check_same_plan(sweep, plan)
    final, waiting = [Path(SWEEP_JSON)], set()  # waiting: trainings with a cell still to finish
    for cell in plan.cells:
        folder = RunFolder(sweep / cell.folder)
        if is_finished(folder.path) and foreign_result(sweep, cell) is None:
            final += [path.relative_to(sweep) for path in (folder.results_json, folder.results_md, *map(folder.plot, PLOTS))]
        elif cell.train is not None:
            waiting.add(cell.train.folder)
    trainings = {cell.train.folder for cell in plan.cells if cell.train is not None}
    for training in sorted(trainings):
        folder = RunFolder(sweep / training)
        if folder.ann.is_file():  # written last: the training is over
            record = [folder.config, folder.evaluations, folder.training_curve]
            final += [path.relative_to(sweep) for path in record + ([folder.ann] if training in waiting else [])]
    return [path for path in final if (sweep / path).is_file()], [Path(view) for view in VIEWS if (sweep / view).is_file()]


def keep(grid: Path, sweep: Path, keep_dir: Path) -> int:
    """Copy ``kept_files`` of ``sweep`` into ``keep_dir``; returns how many files were new there."""
    final, views = kept_files(grid, sweep)
    if (keep_dir / SWEEP_JSON).is_file():
        check_same_plan(keep_dir, load_grid(grid))
    elif keep_dir.exists() and any(keep_dir.iterdir()):
        raise UsageError(f"{keep_dir} holds files but no {SWEEP_JSON}; choose a new or empty folder")
    differing = [str(path) for path in final[1:] if (keep_dir / path).is_file()
                 and not filecmp.cmp(sweep / path, keep_dir / path, shallow=False)]
    if differing:
        raise UsageError(f"{keep_dir / differing[0]} differs from the one in {sweep}, and a finished run's files do "
                         "not change; is it another run's? Keep into another folder")
    new = [path for path in final if not (keep_dir / path).is_file()]
    for path in new + views:
        with atomic_path(keep_dir / path) as temporary:
            shutil.copyfile(sweep / path, temporary)
    return len(new)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", type=Path, help="the sweep's grid file")
    parser.add_argument("sweep", type=Path, help="the sweep folder (spikerl sweep --out)")
    parser.add_argument("keep_dir", type=Path, help="where to keep its results (e.g. a folder under docs/)")
    args = parser.parse_args()

    def work() -> str:
        new = keep(args.grid, args.sweep, args.keep_dir)
        return f"kept {new} new files of {args.sweep} in {args.keep_dir} (and the sweep's views)"

    return run_script("keep_sweep", work)


if __name__ == "__main__":
    sys.exit(main())

"""Ship a finished compression run, with the training run of its ANN, as an agent folder.

    python scripts/ship_agent.py CELL_DIR AGENT_DIR [--force]

CELL_DIR is a complete ``spikerl compress`` folder (a sweep cell: every stage, the
sticky-action rows where its protocol has them, the plots); the ANN it compressed must lie
in a ``spikerl train`` folder, unchanged since (its SHA-256 is checked against the results).
AGENT_DIR (such as ``agents/PongNoFrameskip-v4``) receives what ``agents/`` ships: the
stages ``T*.zip``, ``ann.zip``, ``results.json``, ``results.md`` and the plots from the
compression run; ``training_curve.png`` and, under ``training/``, ``config.yaml``,
``evaluations.npz`` and the Monitor log (where the run has them) from the training run (no
checkpoints, no replay buffers). The folder is replaced as a whole; one that holds files
only with ``--force``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from spikerl.checkpoints import file_sha256, signals_held
from spikerl.errors import UsageError, run_script
from spikerl.results import read_results
from spikerl.run_folder import PLOTS, RunFolder


def shipped_files(cell: RunFolder) -> list[tuple[Path, Path]]:
    """(source, path inside the agent folder) of every file to ship, after checking the runs."""
    result = read_results(cell)
    if not result.is_complete():
        raise UsageError(f"{cell.path} holds an unfinished compression; finish it (spikerl compress --resume) first")
    training = RunFolder(Path(result.agent).parent)
    if not training.config.is_file() or not training.ann.is_file():
        raise UsageError(f"the ANN {result.agent} does not lie in a 'spikerl train' folder (config.yaml, ann.zip)")
    if file_sha256(training.ann) != result.agent_sha256:
        raise UsageError(f"{training.ann} changed since {cell.path} compressed it; ship the run of that ANN")
    files = [(cell.stage(timesteps), Path(cell.stage(timesteps).name)) for timesteps in result.schedule]
    files += [(cell.path / name, Path(name)) for name in (cell.ann.name, cell.results_json.name, cell.results_md.name)]
    files += [(cell.plot(name), Path(cell.plot(name).name)) for name in PLOTS]
    files += [(training.training_curve, Path(training.training_curve.name))]
    logs = [path for path in (training.evaluations, training.monitor) if path.is_file()]  # where the run kept them
    files += [(path, Path("training") / path.name) for path in (training.config, *logs)]
    missing = [str(source) for source, _ in files if not source.is_file()]
    if missing:
        raise UsageError(f"missing: {', '.join(missing)}")
    return files


def ship(files: list[tuple[Path, Path]], agent_dir: Path) -> None:
    """Copy ``files`` into a folder beside ``agent_dir`` that then takes its place: a stop or a
    full disk leaves the earlier agent whole, and none of its files outlives it."""
    agent_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=agent_dir.parent, prefix=f".{agent_dir.name}."))
    try:
        for source, target in files:
            (staging / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / target)
        staging.chmod(0o755)  # mkdtemp's folder is private
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    earlier = staging.with_name(f"{staging.name}.earlier")
    try:
        with signals_held():  # a stop between the two renames would leave no agent folder
            if agent_dir.exists():
                agent_dir.rename(earlier)
            try:
                staging.rename(agent_dir)
            except BaseException:
                if earlier.exists():
                    earlier.rename(agent_dir)
                shutil.rmtree(staging, ignore_errors=True)
                raise
    finally:  # also when a stop held during the renames is raised at the block's end
        if agent_dir.is_dir():
            shutil.rmtree(earlier, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", type=Path, help="the compression run (a finished sweep cell)")
    parser.add_argument("agent_dir", type=Path, help="the agent folder to write, such as agents/PongNoFrameskip-v4")
    parser.add_argument("--force", action="store_true", help="replace the agent folder if it holds files")
    args = parser.parse_args()

    def work() -> str:
        files = shipped_files(RunFolder(args.cell))
        if (args.agent_dir.exists() or args.agent_dir.is_symlink()) and not args.agent_dir.is_dir():
            raise UsageError(f"{args.agent_dir} is a file, not an agent folder; pass a folder path")
        held = sorted(path.name for path in args.agent_dir.iterdir()) if args.agent_dir.is_dir() else []
        if held and not args.force:
            raise UsageError(f"{args.agent_dir} already holds {', '.join(held)}; pass --force to replace the whole folder")
        ship(files, args.agent_dir)
        return f"shipped {len(files)} files from {args.cell} into {args.agent_dir}"

    return run_script("ship_agent", work)


if __name__ == "__main__":
    sys.exit(main())

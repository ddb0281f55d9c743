"""Write a sweep's final-stage table and plot into the README, between its markers.

    python scripts/readme_sweep.py GRID.yaml SWEEP_DIR NAME [--readme README.md]

reads the finished cells of the sweep in SWEEP_DIR (planned by GRID.yaml), draws their
final-stage plot (as the sweep's ``final_reward.png``) to ``docs/NAME.png`` beside the README
and replaces the lines between ``<!-- NAME -->`` and ``<!-- /NAME -->`` in it with the table
(``spikerl.sweep_report.final_stage_table``) and the plot. README's Ablations section is made so:

    python scripts/readme_sweep.py grids/cartpole-ablation.yaml runs/ablation cartpole-ablation
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spikerl.checkpoints import write_text
from spikerl.errors import UsageError, run_script
from spikerl.sweep import SWEEP_JSON, check_same_plan
from spikerl.sweep_grid import load_grid
from spikerl.sweep_report import collect_rows, final_stage_table, plot_final_rewards

REPO = Path(__file__).resolve().parent.parent


def readme_block(grid: Path, sweep: Path, name: str, docs: Path) -> list[str]:
    """The lines that go between the markers; writes the plot ``docs/NAME.png``."""
    plan = load_grid(grid)
    if not (sweep / SWEEP_JSON).is_file():
        raise UsageError(f"{sweep} holds no sweep; run 'spikerl sweep {grid} --out {sweep}' first")
    check_same_plan(sweep, plan)
    rows = collect_rows(sweep, plan)
    if not any(row["status"] == "done" for row in rows):
        raise UsageError(f"{sweep} holds no finished cell of {grid}; run 'spikerl sweep {grid} --out {sweep} --resume'")
    docs.mkdir(exist_ok=True)
    plot_final_rewards(rows, docs / f"{name}.png")
    done = len({row["cell"] for row in rows if row["status"] == "done"})
    return [
        f"<!-- {name} -->",
        f"<!-- written by: python scripts/readme_sweep.py {grid} SWEEP_DIR {name} ({done} of {len(plan.cells)} cells) -->",
        *final_stage_table(rows),
        "",
        f"![final stage of every group](docs/{name}.png)",
        f"<!-- /{name} -->",
    ]


def marked_block(lines: list[str], name: str, file: Path) -> tuple[int, int]:
    """The indices of the lines ``<!-- NAME -->`` and ``<!-- /NAME -->`` in ``lines`` (of ``file``):
    the one pair there must be (two would leave one table stale)."""
    opening, closing = f"<!-- {name} -->", f"<!-- /{name} -->"
    starts = [index for index, line in enumerate(lines) if line == opening]
    ends = [index for index, line in enumerate(lines) if line == closing]
    if len(starts) > 1 or len(ends) > 1:
        raise UsageError(f"{file} has {len(starts)} '{opening}' and {len(ends)} '{closing}' lines; keep one pair")
    if not (starts and ends and starts[0] < ends[0]):
        raise UsageError(f"{file} has no '{opening}' line followed by a '{closing}' line; add them where the table goes")
    return starts[0], ends[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", type=Path, help="the sweep's grid file")
    parser.add_argument("sweep", type=Path, help="the sweep folder (spikerl sweep --out)")
    parser.add_argument("name", help="the README markers' name; the plot becomes docs/NAME.png")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md", help="the file to write into (default: README.md)")
    args = parser.parse_args()
    readme = args.readme

    def work() -> str:
        if readme.exists() and not readme.is_file():  # a FIFO would hang the read
            raise UsageError(f"{readme} is not a regular file; pass the README to write into with --readme")
        try:
            lines = readme.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"{readme} is not UTF-8 text; pass the README to write into with --readme") from None
        start, end = marked_block(lines, args.name, readme)  # checked before anything is written
        block = readme_block(args.grid, args.sweep, args.name, readme.parent / "docs")
        write_text(readme, "\n".join([*lines[:start], *block, *lines[end + 1:]]) + "\n")
        return f"wrote the {args.name} table into {readme} and its plot into {readme.parent / 'docs' / args.name}.png"

    return run_script("readme_sweep", work)


if __name__ == "__main__":
    sys.exit(main())

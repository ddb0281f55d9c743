"""Wall time and peak memory of the whole CartPole-v1 pipeline: train, compress 5..1, evaluations.

    python bench/pipeline.py [--out /tmp/spikerl-pipeline]

Runs the two commands of the quickstart as child processes and reports each one's wall time
and peak resident memory (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, peak RSS in MiB of the children so far)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/spikerl-pipeline")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    spikerl = [sys.executable, "-m", "spikerl"]
    steps = {
        "train": [*spikerl, "train", "--env", "CartPole-v1", "--out", str(out / "run"), "--no-progress"],
        "compress": [
            *spikerl,
            "compress",
            "--agent",
            str(out / "run" / "ann.zip"),
            "--out",
            str(out / "snn"),
            "--no-progress",
        ],
    }
    print(f"{'step':<10} {'wall (s)':>9} {'peak RSS so far (MiB)':>22}")
    total = 0.0
    for name, command in steps.items():
        seconds, peak = run(command)
        total += seconds
        print(f"{name:<10} {seconds:>9.1f} {peak:>22.0f}")
    print(f"{'total':<10} {total:>9.1f}")


if __name__ == "__main__":
    main()

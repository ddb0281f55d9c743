"""Overhead of `spikerl sweep` against running the same CartPole cell alone (wall time).

    nice -n 5 python bench/sweep.py [--rounds 2] [--timesteps 5000] [--steps-per-stage 300] [--out /tmp/spikerl-bench-sweep]

One cell = train a CartPole ANN, then compress it (5,4,3,2,1). "alone" runs it as the two
CLI commands a user would type (`spikerl train`, then `spikerl compress`); "sweep" runs a
one-cell grid with the same settings through `spikerl sweep` (local Ray: start, two tasks,
report, shut down). Both run one process doing the work at a time, with 1 torch thread.
The variants take turns within each round, so background load slows them alike. Also timed:
a bare `ray.init()` + `ray.shutdown()` (Ray's fixed start-up cost). The defaults are a
reduced cell; `--timesteps 50000 --steps-per-stage 3000 --eval-episodes 100` is the preset's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RAY_START = """
import logging, os, ray
ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
         object_store_memory=128 * 2**20, logging_level=logging.WARNING)
ray.shutdown()
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=5000, help="training agent steps")
    parser.add_argument("--steps-per-stage", type=int, default=300, help="distillation steps per stage")
    parser.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per stage")
    parser.add_argument("--out", default="/tmp/spikerl-bench-sweep")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    grid = out / "cell.yaml"
    grid.write_text(
        "env: CartPole-v1\nsettings:\n"
        f"  train.n_timesteps: {args.timesteps}\n  compress.steps_per_stage: {args.steps_per_stage}\n"
        f"  compress.stage_eval_episodes: {args.eval_episodes}\ngrid: {{seed: [0]}}\n"
    )
    spikerl = [sys.executable, "-m", "spikerl"]

    def alone(folder: Path) -> float:
        train = [*spikerl, "train", "--env", "CartPole-v1", "-n", str(args.timesteps), "--out", str(folder / "train")]
        compress = [*spikerl, "compress", "--agent", str(folder / "train" / "ann.zip"), "--out", str(folder / "snn"),
                    "--steps-per-stage", str(args.steps_per_stage), "--eval-episodes", str(args.eval_episodes)]
        return sum(timed([*command, "--num-threads", "1", "--no-progress"]) for command in (train, compress))

    def sweep(folder: Path) -> float:
        return timed([*spikerl, "sweep", str(grid), "--out", str(folder)])

    variants = {"alone": alone, "sweep": sweep, "ray start+stop": lambda folder: timed([sys.executable, "-c", RAY_START])}
    times: dict[str, list[float]] = {name: [] for name in variants}
    print(f"{'round':>5} {'variant':<15} {'wall (s)':>9}")
    for index in range(args.rounds):
        for name, variant in variants.items():
            seconds = variant(out / f"{name.split()[0]}{index}")
            times[name].append(seconds)
            print(f"{index:>5} {name:<15} {seconds:>9.1f}", flush=True)
    median = {name: statistics.median(samples) for name, samples in times.items()}
    ratio = median["sweep"] / median["alone"]
    print(f"\nmedian over {args.rounds} rounds: alone {median['alone']:.1f} s, sweep {median['sweep']:.1f} s, "
          f"ratio sweep/alone {ratio:.3f} ({(ratio - 1) * 100:+.1f}%); "
          f"Ray start+stop alone {median['ray start+stop']:.1f} s")


if __name__ == "__main__":
    main()

"""Fault series: kill -9 and SIGINT at seeded random instants of train, compress, export, report.

Each trial runs one command (tiny CartPole budgets) as a subprocess, signals it after a
random delay (SIGKILL: from the start; SIGINT: from the moment the command holds its folder
lock, since a Ctrl-C during the interpreter's start-up imports is Python's own
KeyboardInterrupt traceback, before spikerl runs), then checks, in this process:

- no traceback on stderr, and exit code 130 after SIGINT (or 0 if it finished first);
- every file left in the output folder loads with its reader (training checkpoint, agents,
  results, NIR graph, plots), and an export target is the old file or the new one;
- the next run works: ``train --resume`` / ``compress --resume`` (or a plain rerun when
  nothing was saved yet), ``export --force``, ``report``; and it removes stale temporaries.

Usage: ``python bench/faults.py [--trials 20] [--seed 0] [--commands train,compress,export,report]``;
prints one table row per command and signal.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's spikerl, as the subprocesses (run in REPO) use
SHIPPED = REPO / "agents" / "CartPole-v1"
TINY_PRESET = """
env: {num_threads: 1}
train:
  policy: MlpPolicy
  n_timesteps: 800
  eval_freq: 400
  eval_episodes: 2
  checkpoint_freq: 250
  dqn: {learning_rate: 1.0e-3, batch_size: 32, buffer_size: 2000, learning_starts: 100, train_freq: 16,
        gradient_steps: 2, target_update_interval: 50, policy_kwargs: {net_arch: [32, 32]}}
compress: {schedule: [2, 1], objective: distill, steps_per_stage: 50, stage_eval_episodes: 2, calibration_samples: 128,
           teacher_states: 500, distill: {student_states: 200}}
evaluate: {episodes: 2}
"""


@dataclass
class Command:
    """How to start one command in ``work`` (a fresh folder), and how to check and rerun after a fault."""

    prepare: Callable[[Path], None]
    argv: Callable[[Path], list[str]]
    check: Callable[[Path], None]  # raises AssertionError when a file left behind does not load
    rerun: Callable[[Path], list[str]]  # the in-process command line that must then succeed (exit 0)
    folder: Callable[[Path], Path]  # the folder the command locks (spikerl.locks) while it works


def _prepare_preset(work: Path) -> None:
    (work / "tiny.yaml").write_text(TINY_PRESET)


def _check_train(work: Path) -> None:
    from stable_baselines3 import DQN

    from spikerl.config import read_run_config
    from spikerl.envs import make_env
    from spikerl.loading import load_agent
    from spikerl.training_checkpoint import load_checkpoint

    run = work / "run"
    if not run.exists():
        return
    config = read_run_config(run)
    if (run / "checkpoint.json").is_file():  # the index and every file it names, loaded into a model built from the settings
        settings = config.settings
        model = DQN(settings.train.policy, make_env("CartPole-v1", settings.env, seed=0), device="cpu", **settings.train.dqn)
        load_checkpoint(model, run)
    if (run / "ann.zip").is_file():
        load_agent(run / "ann.zip", "CartPole-v1", config.settings.env, "cpu")
    _check_images(run)


def _rerun_train(work: Path) -> list[str]:
    run = work / "run"
    if (run / "checkpoint.json").is_file():
        return ["train", "--resume", str(run), "--no-progress"]
    return ["train", "--config", str(work / "tiny.yaml"), "--out", str(run), "--no-progress", "--force"]


def _compress_args(work: Path) -> list[str]:
    return [
        "compress",
        "--agent",
        str(SHIPPED / "ann.zip"),
        "--config",
        str(work / "tiny.yaml"),
        "--out",
        str(work / "snn"),
        "--no-progress",
    ]


def _check_compress(work: Path) -> None:
    from spikerl.config import load_preset
    from spikerl.loading import load_agent
    from spikerl.results import read_results

    snn = work / "snn"
    if (snn / "results.json").is_file():
        read_results(snn)
    for agent in snn.glob("*.zip") if snn.exists() else []:
        load_agent(agent, "CartPole-v1", load_preset("CartPole-v1", work / "tiny.yaml").env, "cpu")
    _check_images(snn)


def _rerun_compress(work: Path) -> list[str]:
    return _compress_args(work) + (["--resume"] if (work / "snn" / "results.json").is_file() else ["--force"])


def _prepare_export(work: Path) -> None:
    from spikerl.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", "--agent", str(SHIPPED / "T1.zip"), "--out", str(work / "agent.nir")]) == 0


def _check_export(work: Path) -> None:
    import nir

    nir.read(work / "agent.nir")  # the old graph or the new one, complete either way


def _prepare_report(work: Path) -> None:
    shutil.copytree(SHIPPED, work / "snn", ignore=shutil.ignore_patterns("td"))


def _check_report(work: Path) -> None:
    from spikerl.results import read_results

    read_results(work / "snn")
    text = (work / "snn" / "results.md").read_text()
    assert text.startswith("# CartPole-v1") and text.rstrip().endswith("```"), "results.md incomplete"
    _check_images(work / "snn")


def _check_images(folder: Path) -> None:
    import matplotlib.image

    for image in folder.glob("*.png") if folder.exists() else []:
        matplotlib.image.imread(image)


COMMANDS = {
    "train": Command(
        _prepare_preset,
        lambda w: ["train", "--config", str(w / "tiny.yaml"), "--out", str(w / "run"), "--no-progress"],
        _check_train,
        _rerun_train,
        lambda w: w / "run",
    ),
    "compress": Command(_prepare_preset, _compress_args, _check_compress, _rerun_compress, lambda w: w / "snn"),
    "export": Command(
        _prepare_export,
        lambda w: ["export", "--agent", str(SHIPPED / "T1.zip"), "--out", str(w / "agent.nir"), "--force"],
        _check_export,
        lambda w: ["export", "--agent", str(SHIPPED / "T1.zip"), "--out", str(w / "agent.nir"), "--force"],
        lambda w: w,
    ),
    "report": Command(
        _prepare_report,
        lambda w: ["report", str(w / "snn")],
        _check_report,
        lambda w: ["report", str(w / "snn")],
        lambda w: w / "snn",
    ),
}


def _wait_for_lock(process: subprocess.Popen, lock: Path, timeout: float) -> None:
    """Wait until ``process`` holds the folder lock ``lock`` (it writes its pid there), or has ended."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if lock.read_text().strip() == str(process.pid):
                return
        time.sleep(0.005)


def run_trial(name: str, stop: signal.Signals, delay: float, work: Path, after_lock: bool = False) -> str:
    """One fault of command ``name`` after ``delay`` seconds; returns its outcome, ``ok ...`` or ``FAIL ...``.

    ``after_lock``: count ``delay`` from the moment the command holds its folder lock, that is
    inside its work, past the interpreter's start-up (where a Ctrl-C is Python's own traceback).
    """
    from spikerl.cli import main
    from spikerl.locks import LOCK_FILE

    command = COMMANDS[name]
    command.prepare(work)
    process = subprocess.Popen(
        [sys.executable, "-m", "spikerl", *command.argv(work)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if after_lock:
        _wait_for_lock(process, command.folder(work) / LOCK_FILE, timeout=120)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=delay)
    finished_first = process.poll() is not None
    if not finished_first:
        process.send_signal(stop)
    _, stderr = process.communicate(timeout=300)
    if "Traceback" in stderr:
        return f"FAIL traceback: {stderr.strip().splitlines()[-1]}"
    # after SIGINT: 130, or 0 when the signal came as the work had ended (then it is ignored)
    expected = {0} if finished_first else ({130, 0} if stop == signal.SIGINT else {-signal.SIGKILL})
    if stop == signal.SIGINT and process.returncode == -signal.SIGINT and not stderr:
        expected.add(-signal.SIGINT)  # before Python installed its handler (interpreter start-up): nothing ran
    odd_exit = "" if process.returncode in expected else f"exit {process.returncode} ({stderr.strip()}); "
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            command.check(work)
    except Exception as error:  # noqa: BLE001 -- any failure to load is the finding
        return f"FAIL {odd_exit}unloadable: {type(error).__name__}: {error}"
    stale_before = len(list(work.rglob("*.spikerl.tmp*")))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as errors:
        code = main(command.rerun(work))
    if code != 0:
        return f"FAIL {odd_exit}rerun exit {code}: {errors.getvalue().strip()}"
    if list(work.rglob("*.spikerl.tmp*")):
        return f"FAIL {odd_exit}stale temporaries kept"
    if odd_exit:
        return f"FAIL {odd_exit}files loadable, next run worked"
    where = "finished first" if finished_first else "stopped"
    return f"ok {where}{', tmp cleaned' if stale_before else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per command and signal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--signals", default="SIGKILL,SIGINT")
    parser.add_argument(
        "--max-delay",
        type=float,
        default=None,
        help="latest signal time in seconds (default: each command's measured duration)",
    )
    args = parser.parse_args()
    import torch

    from spikerl.locks import LOCK_FILE

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    print("| command | signal | trials | stopped | finished first | tmp cleaned | failures | seconds (signal window) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.commands.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            COMMANDS[name].prepare(work)
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "spikerl", *COMMANDS[name].argv(work)],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait_for_lock(process, COMMANDS[name].folder(work) / LOCK_FILE, timeout=120)
            locked = time.perf_counter()
            if process.wait() != 0:
                raise SystemExit(f"spikerl {name} failed before any fault; run it by hand to see why")
            duration = args.max_delay or time.perf_counter() - started
            duration_locked = args.max_delay or time.perf_counter() - locked
        for stop in [getattr(signal, name) for name in args.signals.split(",")]:
            outcomes = Counter()
            failures = []
            for _ in range(args.trials):
                with tempfile.TemporaryDirectory() as scratch:
                    delay = rng.uniform(0.0, duration_locked) if stop == signal.SIGINT else rng.uniform(0.5, duration)
                    outcome = run_trial(name, stop, delay, Path(scratch), after_lock=stop == signal.SIGINT)
                outcomes["stopped" if "stopped" in outcome else "finished" if "finished" in outcome else "failed"] += 1
                outcomes["cleaned"] += "tmp cleaned" in outcome
                if outcome.startswith("FAIL"):
                    failures.append(outcome)
            counts = [args.trials, outcomes["stopped"], outcomes["finished"], outcomes["cleaned"], len(failures)]
            window = f"0.0-{duration_locked:.1f} after the lock" if stop == signal.SIGINT else f"0.5-{duration:.1f}"
            print(f"| {name} | {stop.name} | {' | '.join(map(str, counts))} | {window} |", flush=True)
            for failure in failures:
                print(f"|   | {failure[:200]} |", flush=True)


if __name__ == "__main__":
    main()

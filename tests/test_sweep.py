"""`spikerl sweep`: grid files, cells on local Ray and on a simulated two-node cluster, resume after a kill."""

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from stable_baselines3 import DQN

from conftest import REPO, SHIPPED_CARTPOLE, hang_up_by_default
from spikerl.cli import main
from spikerl.errors import UsageError
from spikerl.locks import is_locked
from spikerl.results import read_results, write_results
from spikerl.stats import summarize
from spikerl.sweep import (
    Progress,
    _cells_running,
    _gpus_per_task,
    _how_far,
    _running_tasks,
    _wait_for_killed_task,
    check_same_plan,
    is_finished,
)
from spikerl.sweep_grid import load_grid
from spikerl.training_checkpoint import save_checkpoint

ray = pytest.importorskip("ray", reason="spikerl[sweep] (Ray) is not installed; scripts/setup.sh installs it")

# Tiny budgets: an untrained ANN (1000 steps, before learning starts), 20 distillation steps per stage.
TINY = """env: CartPole-v1
settings:
  train.n_timesteps: 1000
  compress.steps_per_stage: 20
  compress.stage_eval_episodes: 2
  compress.calibration_samples: 64
  compress.teacher_states: 200
  compress.distill.student_states: 200
"""


def write_grid(folder: Path, body: str, name: str = "grid.yaml") -> Path:
    path = folder / name
    path.write_text(TINY + body, errors="surrogateescape")  # "\udcff" in a body: the raw byte 0xff
    return path


def task_state(folder: Path) -> dict:
    return json.loads((folder / "sweep_task.json").read_text())


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs for the in-process sweeps of this module."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 2**20)
    yield
    ray.shutdown()


# --- grid files --------------------------------------------------------------------------------


def test_grid_names_cells_by_the_settings_that_vary_and_shares_anns(tmp_path):
    grid = write_grid(tmp_path, """grid:
  - seed: [0, 1]
    compress.schedule: [[1], [2, 1]]
  - seed: [0]
    linked:
      - {compress.schedule: [2, 1], compress.steps_per_stage: 20}
      - {compress.schedule: [1], compress.steps_per_stage: 40}
""")
    plan = load_grid(grid)
    folders = [cell.folder for cell in plan.cells]
    # the (2, 1) x 20 steps cell of the second block is the first block's own: run once
    assert folders == [
        "cells/schedule=1,steps_per_stage=20,seed=0", "cells/schedule=2-1,steps_per_stage=20,seed=0",
        "cells/schedule=1,steps_per_stage=20,seed=1", "cells/schedule=2-1,steps_per_stage=20,seed=1",
        "cells/schedule=1,steps_per_stage=40,seed=0",
    ]
    assert [run.folder for run in plan.trains] == ["train/seed=0", "train/seed=1"]
    assert plan.cells[4].settings.compress.steps_per_stage == 40 and plan.cells[4].train is plan.cells[0].train
    assert plan.cells[0].group == plan.cells[2].group == "schedule=1,steps_per_stage=20"


def test_cell_folders_stay_inside_the_sweep_whatever_the_grid_keys(tmp_path):
    grid = write_grid(tmp_path, """grid:
  seed: [0]
  compress.td.dqn.policy_kwargs: [{}, {"/../../../../victim/x": 1}]
  "train.dqn.policy_kwargs.x/../../../../escaped": [1, 2]
""")
    plan = load_grid(grid)
    assert len(plan.cells) == 4 and len(plan.trains) == 2
    for folder in [cell.folder for cell in plan.cells] + [train.folder for train in plan.trains]:
        kind, name = folder.split("/")
        assert kind in ("cells", "train") and name not in (".", "..") and "/" not in name, folder


def test_shipped_grids_plan_the_issue_studies():
    ablation = load_grid(REPO / "grids" / "cartpole-ablation.yaml")
    assert (len(ablation.cells), len(ablation.trains)) == (42, 3)  # 24 at equal stage budget + 18 at equal total
    schedules = {c.settings.compress.schedule for c in ablation.cells}
    assert schedules == {(1,), (5, 1), (5, 3, 1), (5, 4, 3, 2, 1)}
    assert {c.settings.compress.objective for c in ablation.cells} == {"distill", "td"}
    pong = load_grid(REPO / "grids" / "pong-seeds.yaml")
    assert len(pong.cells) == 6 and len(pong.trains) == 3  # per seed: the preset's IIR and the direct jump, one ANN
    budgets = {(c.settings.compress.schedule, c.settings.compress.stage_steps) for c in pong.cells}
    assert budgets == {((5, 4, 3, 2, 1), 1500), ((1,), 7500)}  # the same 7500 distillation steps in total
    assert {c.settings.compress.encoding for c in pong.cells} == {"threshold"}  # the preset's spiking input
    shipped = load_grid(REPO / "grids" / "pong-direct-vs-iir.yaml")  # measured with the analog input; resumable
    assert {c.settings.compress.encoding for c in shipped.cells} == {"direct"}
    td = load_grid(REPO / "grids" / "pong-td.yaml")  # README's Pong td runs: two given ANNs, IIR against direct
    assert len(td.cells) == 16 and not td.trains and {c.settings.compress.objective for c in td.cells} == {"td"}
    pairs: dict[tuple, set] = {}
    for c in td.cells:
        total = len(c.settings.compress.schedule) * c.settings.compress.stage_steps
        pairs.setdefault((c.agent, c.seed, total), set()).add(c.settings.compress.schedule)
    assert all(schedules == {(5, 4, 3, 2, 1), (1,)} for schedules in pairs.values())  # equal total budget
    assert sorted({total for _, _, total in pairs}) == [7500, 15000]


@pytest.mark.parametrize("body, message", [
    ("grid: {seed: [0]}\nsweeps: 3\n", "unknown top-level key sweeps"),
    ("grid: {sed: [0]}\n", "unknown key in grid block 1: sed"),
    ("grid: {compress.shedule: [[1]]}\n", "cell cells/seed=0: unknown key compress.shedule; compress takes"),
    ("grid: {compress.schedule: [[1, 2]]}\n", "compress.schedule must decrease strictly"),
    ("cells: [{seed: 0, schedule: [1]}]\n", "unknown setting in cell 1: schedule"),
    ("grid: {seed: 0}\n", "give a non-empty list of values"),
    ("grid: {seed: [0, 1000000]}\n", "seed must be in [0, 1000000) (evaluation seeds start at 1000000), got 1000000"),
    ("config: 5\ngrid: {seed: [0]}\n", "'config' must be the path of a preset file"),
    (f"grid: {{seed: {list(range(200))}, compress.percentile: {list(range(1, 100))}}}\n",
     "makes 200 x 99 cells, more than 10000"),
    ("grid: []\n", "has no cells"),
    ("", "has no cells"),
    ("grid: {seed: [0]}\nenv: caf\udcff\n", "is not UTF-8 text; fix the grid file"),
    ("grid: " + "[" * 5000 + "]" * 5000 + "\n", "nests its YAML too deeply to read; fix the grid file"),
    ("grid: {seed: &s [0, *s]}\n", "an alias in it refers to a collection that contains the alias; fix the grid file"),
])
def test_bad_grid_files_get_one_line_and_exit_2(tmp_path, capsys, body, message):
    grid = write_grid(tmp_path, body)
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_unknown_env_and_colliding_folders_are_refused(tmp_path, capsys):
    grid = tmp_path / "env.yaml"
    grid.write_text("env: NoSuchEnv-v0\ngrid: {seed: [0]}\n")
    assert main(["sweep", str(grid)]) == 2
    assert "no preset for env 'NoSuchEnv-v0'" in capsys.readouterr().err
    for name in ("a", "b"):  # two different ANNs whose folder/stem print alike
        (tmp_path / name / "agents").mkdir(parents=True)
        (tmp_path / name / "agents" / "ann.zip").write_bytes(name.encode())
    grid = write_grid(tmp_path, "grid: {agent: [a/agents/ann.zip, b/agents/ann.zip]}\n")
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out")]) == 2
    assert "two different cells would write the same folder cells/agent=agents-ann,seed=0" in capsys.readouterr().err


def test_unreachable_address_and_occupied_out_are_refused(tmp_path, capsys):
    grid = write_grid(tmp_path, "grid: {seed: [0]}\n")
    started = time.perf_counter()
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out"), "--address", "127.0.0.1:1"]) == 2
    assert "no Ray cluster answers at --address 127.0.0.1:1" in capsys.readouterr().err
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out"), "--address", "ray://nowhere"]) == 2
    assert "is not auto, host:port or ray://host:port" in capsys.readouterr().err
    assert time.perf_counter() - started < 15
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "notes.txt").write_text("mine")
    assert main(["sweep", str(grid), "--out", str(tmp_path / "occupied")]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["sweep", str(grid), "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["sweep", str(grid), "--out", str(tmp_path / "new"), "--address", "auto", "--num-cpus", "1"]) == 2
    assert "--num-cpus sizes the local Ray instance" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_num_threads_sets_every_task_keeps_shared_trainings_and_resumes(tmp_path):
    plan = load_grid(write_grid(tmp_path, "grid: {seed: [0, 1], compress.schedule: [[1], [2, 1]]}\n"))
    threaded = plan.with_num_threads(3)
    assert {cell.settings.env.num_threads for cell in threaded.cells} == {run.settings.env.num_threads
                                                                          for run in threaded.trains} == {3}
    assert [run.folder for run in threaded.trains] == [run.folder for run in plan.trains]
    assert threaded.cells[0].train is threaded.cells[1].train is threaded.trains[0]  # still one training per seed
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(plan.as_json()))
    check_same_plan(out, threaded)  # the sweep resumes with other threads
    varied = load_grid(write_grid(tmp_path, "grid: {seed: [0], env.num_threads: [1, 2]}\n", "varied.yaml"))
    with pytest.raises(UsageError, match="varies env.num_threads across its cells; drop --num-threads"):
        varied.with_num_threads(1)



def test_num_threads_beyond_the_bound_is_refused_naming_the_flag(tmp_path, capsys):
    from spikerl.settings import MAX_THREADS

    grid = write_grid(tmp_path, "grid: {seed: [0]}\n")
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out"), "--num-threads", str(MAX_THREADS + 1)]) == 2
    assert f"argument --num-threads: {MAX_THREADS + 1} is not in [1, {MAX_THREADS}]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_sweep_started_before_a_setting_was_added_or_with_other_threads_still_resumes(tmp_path):
    grid = write_grid(tmp_path, "grid: {seed: [0, 1]}\n")
    plan = load_grid(grid)
    out = tmp_path / "out"
    out.mkdir()
    stored = plan.as_json()
    for cell in stored["cells"]:
        del cell["settings"]["evaluate"]["sticky_actions"]  # as if evaluate.sticky_actions were added since
        cell["settings"]["env"]["num_threads"] = 7  # the CPUs a task takes may change on resume
    (out / "sweep.json").write_text(json.dumps(stored))
    check_same_plan(out, plan)
    stored["cells"][1]["settings"]["evaluate"]["n_envs"] = 3  # a setting the preset changed since: another plan
    (out / "sweep.json").write_text(json.dumps(stored))
    with pytest.raises(UsageError, match=r"holds a sweep of other cells than .*\(cell cells/seed=1.settings.evaluate.n_envs: "
                                         r"3 then, \d+ now\)"):
        check_same_plan(out, plan)
    stored["cells"][1]["settings"]["evaluate"]["no_such_setting"] = 1  # a setting this spikerl does not know
    (out / "sweep.json").write_text(json.dumps(stored))
    with pytest.raises(UsageError, match="holds a sweep of other cells than .*does not hold a plan this spikerl reads: "
                                         ".*no_such_setting"):
        check_same_plan(out, plan)
    stored["cells"][1]["own"] = None  # damaged
    (out / "sweep.json").write_text(json.dumps(stored))
    with pytest.raises(UsageError, match="does not hold a plan this spikerl reads"):
        check_same_plan(out, plan)


def test_a_grid_with_other_seeds_is_refused_naming_the_cells(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(load_grid(write_grid(tmp_path, "grid: {seed: [0, 1]}\n")).as_json()))
    plan = load_grid(write_grid(tmp_path, "grid: {seed: [1, 2, 3, 4, 5]}\n", "more.yaml"))
    with pytest.raises(UsageError) as refused:
        check_same_plan(out, plan)
    message = str(refused.value)
    assert "(2 cells then, 5 now; new: cells/seed=2, cells/seed=3, cells/seed=4 and 1 more; gone: cells/seed=0)" in message
    assert len(message) < 600  # the folders, not the cells' settings (kB of them)

def test_a_sweep_that_compresses_a_given_agent_ignores_changed_training_settings(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(TINY + f"  agent: {SHIPPED_CARTPOLE / 'ann.zip'}\ngrid: {{seed: [0, 1]}}\n")
    plan = load_grid(grid)
    out = tmp_path / "out"
    out.mkdir()
    stored = plan.as_json()
    assert all(cell["train"] is None for cell in stored["cells"])  # no training task: the agent is given
    for cell in stored["cells"]:
        cell["settings"]["train"]["n_timesteps"] = 5  # the preset's training changed since: irrelevant here
    (out / "sweep.json").write_text(json.dumps(stored))
    check_same_plan(out, plan)
    stored["cells"][0]["settings"]["compress"]["steps_per_stage"] = 7  # what the cells run: another plan
    (out / "sweep.json").write_text(json.dumps(stored))
    with pytest.raises(UsageError, match=r"\(cell cells/seed=0.settings.compress.steps_per_stage: 7 then, 20 now\)"):
        check_same_plan(out, plan)


def test_a_kept_sweep_of_a_given_agent_is_the_same_sweep_in_another_checkout(tmp_path, monkeypatch):
    def grid_in(checkout: str, agent: str = "ann.zip") -> Path:
        """The grid of the checkout (``grids/grid.yaml`` there, the working folder), as a relative path."""
        (tmp_path / checkout / "grids").mkdir(parents=True, exist_ok=True)
        shutil.copy(SHIPPED_CARTPOLE / "ann.zip", tmp_path / checkout / agent)
        write_grid(tmp_path / checkout / "grids", f"  agent: ../{agent}\ngrid: {{seed: [0]}}\n")
        monkeypatch.chdir(tmp_path / checkout)
        return Path("grids/grid.yaml")

    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(load_grid(grid_in("here")).as_json()))
    check_same_plan(out, load_grid(grid_in("there")))  # the agent's path relative to the grid is what counts
    with pytest.raises(UsageError, match=r"cell cells/seed=0.agent: \"../ann.zip\" then, \"../other.zip\" now"):
        check_same_plan(out, load_grid(grid_in("elsewhere", agent="other.zip")))


def test_progress_says_how_far_each_running_task_is(tmp_path):
    cell = load_grid(write_grid(tmp_path, "grid: {seed: [0]}\n")).cells[0]
    out = tmp_path / "out"
    model = DQN("MlpPolicy", "CartPole-v1")
    model.num_timesteps = 300
    save_checkpoint(model, out / cell.train.folder, "run", with_replay_buffer=False)
    (out / cell.folder).mkdir(parents=True)
    (out / cell.folder / "results.json").write_bytes((SHIPPED_CARTPOLE / "results.json").read_bytes())
    assert _how_far(out, {cell.train.folder: cell}) == "train/seed=0 300/1000 steps"  # its last checkpoint
    assert _how_far(out, {cell.folder: cell}) == "cells/seed=0 T=5,4,3,2,1 of 5,4,3,2,1"
    assert _how_far(out, {"train/seed=1": load_grid(write_grid(tmp_path, "grid: {seed: [1]}\n")).cells[0]}) == ""
    two_cells = load_grid(write_grid(tmp_path, "grid: {seed: [0], compress.schedule: [[1], [2, 1]]}\n")).cells
    assert _cells_running({two_cells[0].train.folder: two_cells[0]}, two_cells) == 2  # both wait on that training
    assert _cells_running({two_cells[1].folder: two_cells[1]}, two_cells) == 1

    log = io.StringIO()  # not a terminal: a line whenever the cells or a task move on
    progress = Progress(total=2, skipped=0, stream=log)
    for how_far in ("train/seed=0 300/1000 steps", "train/seed=0 300/1000 steps", "train/seed=0 600/1000 steps"):
        progress.show(0, 2, 0, how_far)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("sweep: 0/2 cells done, 2 running, 0 failed, 0 waiting | ")
    assert lines[1].endswith(" | train/seed=0 600/1000 steps")


def test_a_task_whose_process_died_unannounced_is_not_waited_for(tmp_path):
    cell = load_grid(write_grid(tmp_path, "grid: {seed: [0]}\n")).cells[0]
    out = tmp_path / "out"
    (out / cell.folder).mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid, running in ((os.getpid(), True), (dead.pid, False)):  # a sweep stopped after a kill -9 of that worker
        state = {"state": "running", "host": socket.gethostname(), "pid": pid, "started_at": time.time()}
        (out / cell.folder / "sweep_task.json").write_text(json.dumps(state))
        assert bool(_running_tasks(out, [cell], since=0)) is running


def test_a_resumed_task_waits_for_its_folder_lock_held_past_the_killed_workers_exit(tmp_path):
    # a retry of the killed task (Ray retries a task whose worker died) holds the lock before it
    # has written its own pid: the task state still names the dead worker
    folder = tmp_path / "cell"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from spikerl.locks import folder_lock\n"
         "with folder_lock(sys.argv[1]):\n    print(flush=True); time.sleep(1.5)", str(folder)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        holder.stdout.readline()  # the lock is held
        assert is_locked(folder)
        _wait_for_killed_task({"state": "running", "host": socket.gethostname(), "pid": dead.pid}, folder)
        assert not is_locked(folder)  # waited for the holder (it keeps the lock 1.5 s)
    finally:
        holder.wait()


# --- sweeps on Ray -----------------------------------------------------------------------------


def test_sweep_runs_cells_shares_anns_and_never_reruns_a_finished_cell(local_ray, tmp_path, capsys, run_script):
    grid = write_grid(tmp_path, "grid:\n  seed: [0, 1]\n  compress.schedule: [[1], [2, 1]]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(grid), "--out", str(out)]) == 0
    assert "4 cells done (0 earlier), 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "train").iterdir()) == ["seed=0", "seed=1"]
    for seed in (0, 1):
        assert task_state(out / "train" / f"seed={seed}")["attempts"] == 1  # one training run per ANN
    lines = (out / "sweep.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 3 + 2 * 4  # per cell: ANN, converted and one row per T
    report = (out / "sweep.md").read_text()
    assert "## schedule=2-1" in report and "| T=1 | 2 |" in report
    assert (out / "reward_vs_T.png").is_file() and (out / "energy_vs_T.png").is_file() and (out / "final_reward.png").is_file()
    csv_rows = csv.DictReader(io.StringIO((out / "sweep.csv").read_text()))
    t1 = {row["seed"]: float(row["mean_reward"]) for row in csv_rows
          if row["group"] == "schedule=2-1" and row["stage"] == "retrained" and row["T"] == "1"}
    final = summarize([t1["0"], t1["1"]])
    every_seed = f"| schedule=2-1 | 1 | 0: {t1['0']:.1f}, 1: {t1['1']:.1f} |"
    assert f"{every_seed} {final.mean:.1f} +- {final.std:.1f} [{final.ci_low:.1f}, {final.ci_high:.1f}] |" in report

    readme = tmp_path / "README.md"
    readme.write_text("# title\n<!-- tiny -->\nold table\n<!-- /tiny -->\nafter\n")
    subprocess.run([sys.executable, REPO / "scripts" / "readme_sweep.py", grid, out, "tiny", "--readme", readme], check=True)
    written = readme.read_text()
    assert "old table" not in written and every_seed in written and (tmp_path / "docs" / "tiny.png").is_file()
    assert written.startswith("# title\n<!-- tiny -->") and written.endswith("<!-- /tiny -->\nafter\n")

    results = sorted(out.glob("cells/*/results.json"))
    stamps = [path.stat().st_mtime_ns for path in results]
    assert main(["sweep", str(grid), "--out", str(out), "--resume"]) == 0
    assert "4 cells done (4 earlier)" in capsys.readouterr().out
    assert [path.stat().st_mtime_ns for path in results] == stamps
    assert all(task_state(path.parent)["attempts"] == 1 for path in results)

    # results swapped between two cells by hand are neither cell's: counted failed, not finished (nor reported)
    swapped = [out / "cells" / f"schedule=1,seed={seed}" / "results.json" for seed in (0, 1)]
    contents = [path.read_bytes() for path in swapped]
    for path, content in zip(swapped, reversed(contents)):
        path.write_bytes(content)
    assert main(["sweep", str(grid), "--out", str(out), "--resume"]) != 0
    printed = "".join(capsys.readouterr())
    assert "2 cells done (2 earlier), 2 failed" in printed and "holds the results of another run (agent_sha256" in printed
    assert "delete the folder cells/schedule=1,seed=0 to run the cell again" in printed  # as an unfinished cell is
    reported = {row["cell"] for row in csv.DictReader(io.StringIO((out / "sweep.csv").read_text()))}
    assert reported == {"cells/schedule=2-1,seed=0", "cells/schedule=2-1,seed=1"}  # not the swapped cells' rows
    for path, content in zip(swapped, contents):
        path.write_bytes(content)
    assert main(["sweep", str(grid), "--out", str(out), "--resume"]) == 0  # the views as they were
    assert "4 cells done (4 earlier), 0 failed" in capsys.readouterr().out

    # what scripts/keep_sweep.py keeps (results, no agents)
    kept = tmp_path / "kept"
    code, printed, _ = run_script("keep_sweep", grid, out, kept)
    # sweep.json; per cell results.json, results.md and 3 plots; per training config.yaml and its curve (1000
    # steps hold no evaluation)
    assert code == 0 and "kept 25 new files" in printed
    assert not [path for path in kept.rglob("*") if path.suffix in (".zip", ".pt") or "replay" in path.name]
    assert (kept / "sweep.md").read_text() == report
    again = run_script("keep_sweep", grid, out, kept)
    assert again[:2] == (0, f"kept 0 new files of {out} in {kept} (and the sweep's views)\n")
    changed = next(kept.glob("cells/*/results.md"))
    changed.write_text("edited by hand\n")
    code, _, error = run_script("keep_sweep", grid, out, kept)
    assert code == 2 and f"{changed} differs from the one in {out}" in error and error.count("\n") == 1
    assert changed.read_text() == "edited by hand\n"

    # a cell still to finish keeps its ANN too, and a copy of what was kept resumes elsewhere with that cell alone
    unfinished = out / "cells" / "schedule=2-1,seed=1"
    compressed = json.loads((unfinished / "results.json").read_text())["agent_sha256"]
    (unfinished / "results.json").unlink()
    partial, elsewhere = tmp_path / "partial", tmp_path / "elsewhere"
    assert run_script("keep_sweep", grid, out, partial)[0] == 0
    assert sorted(path.relative_to(partial).as_posix() for path in partial.rglob("*.zip")) == ["train/seed=1/ann.zip"]
    shutil.copytree(partial, elsewhere)
    assert main(["sweep", str(grid), "--out", str(elsewhere), "--resume"]) == 0
    assert "4 cells done (3 earlier)" in capsys.readouterr().out
    assert read_results(elsewhere / unfinished.relative_to(out)).agent_sha256 == compressed
    assert sorted(path.parent.name for path in elsewhere.glob("cells/*/T1.zip")) == [unfinished.name]


def test_a_second_sweep_in_the_same_folder_is_refused(tmp_path, capsys):
    from spikerl.checkpoints import write_json
    from spikerl.locks import folder_lock

    grid, out = write_grid(tmp_path, "grid: {seed: [0]}\n"), tmp_path / "out"
    plan = load_grid(grid)
    with folder_lock(out):  # the first sweep, still running
        write_json(out / "sweep.json", plan.as_json())
        assert main(["sweep", str(grid), "--out", str(out), "--resume"]) == 2
    assert f"in use by another spikerl command (pid {os.getpid()})" in capsys.readouterr().err


def test_a_cell_must_fit_on_one_node_not_on_the_cluster_as_a_whole(tmp_path):
    plan = load_grid(write_grid(tmp_path, "grid: {env.num_threads: [3]}\n"))
    with pytest.raises(UsageError, match="largest node of the Ray cluster has 2"):
        _gpus_per_task(plan, [{"CPU": 2}, {"CPU": 2}])  # 4 CPUs in all, but Ray would never place it
    assert _gpus_per_task(plan, [{"CPU": 2}, {"CPU": 4, "GPU": 1}]) == 0.25
    assert _gpus_per_task(plan, [{"CPU": 4}, {"CPU": 2, "GPU": 1}]) == 0.0  # the GPU is on a node too small


def test_cells_that_the_cluster_cannot_run_are_refused(local_ray, tmp_path, capsys):
    grid = write_grid(tmp_path, "gpus_per_cell: 0.5\ngrid: {seed: [0]}\n", "gpu.yaml")
    assert main(["sweep", str(grid), "--out", str(tmp_path / "gpu")]) == 2
    assert "asks for gpus_per_cell 0.5 but the Ray cluster has no GPU" in capsys.readouterr().err
    grid = write_grid(tmp_path, "grid: {env.num_threads: [3]}\n", "cpu.yaml")
    assert main(["sweep", str(grid), "--out", str(tmp_path / "cpu")]) == 2
    assert "cells need 3 CPUs each (env.num_threads) but the largest node of the Ray cluster has 2" in capsys.readouterr().err
    assert not (tmp_path / "gpu").exists() and not (tmp_path / "cpu").exists()
    (tmp_path / "made").mkdir()  # an empty folder made for the sweep: the refused try leaves it usable
    for _ in range(2):
        assert main(["sweep", str(grid), "--out", str(tmp_path / "made")]) == 2
        assert "cells need 3 CPUs each" in capsys.readouterr().err


def test_a_failed_cell_is_reported_and_the_others_finish(local_ray, tmp_path, capsys):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "ann.zip").write_text("not a checkpoint")
    grid = write_grid(tmp_path, "grid:\n  agent: [null, broken/ann.zip]\n  compress.schedule: [[1]]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(grid), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "failed: cells/agent=broken-ann,seed=0: UsageError: " in captured.err and "not a zip" in captured.err
    assert "1 cells done (0 earlier), 1 failed" in captured.out
    assert "cells/agent=broken-ann,seed=0" in (out / "sweep.md").read_text()
    assert task_state(out / "cells" / "agent=broken-ann,seed=0")["state"] == "failed"
    assert task_state(out / "cells" / "agent=none,seed=0")["state"] == "done"


def test_a_cell_is_finished_only_once_compress_has_written_its_last_file(tmp_path):
    """A sweep stopped after a cell's T=1 row but before its sticky-action games or its plots resumes that cell."""
    complete = read_results(SHIPPED_CARTPOLE)
    partial = {
        "T=1 not yet retrained": replace(complete, rows=[row for row in complete.rows if row.T != 1]),
        "sticky-action games not yet played": replace(complete, evaluation=replace(complete.evaluation, sticky_actions=0.25)),
        "plots not yet drawn": replace(complete, plots=[]),
    }
    write_results(tmp_path, complete)
    assert is_finished(tmp_path)
    for stopped_before, result in partial.items():
        write_results(tmp_path, result)
        assert not is_finished(tmp_path), stopped_before


@pytest.mark.slow
def test_killed_sweep_resumes_unfinished_cells_without_rerunning_finished_ones(local_ray, tmp_path):
    grid = write_grid(tmp_path, """cells:
  - {compress.schedule: [1]}
  - {compress.schedule: [3, 2, 1], compress.steps_per_stage: 200}
""")
    out = tmp_path / "out"
    quick = out / "cells" / "schedule=1,steps_per_stage=20,seed=0"
    slow = out / "cells" / "schedule=3-2-1,steps_per_stage=200,seed=0"
    sweep = subprocess.Popen([sys.executable, "-m", "spikerl", "sweep", str(grid), "--out", str(out)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (_rows(quick) == 3 and 3 <= _rows(slow) < 5):  # slow: at least T=3 saved
            time.sleep(0.05)
        os.killpg(sweep.pid, signal.SIGKILL)  # the driver, its Ray instance and the workers, mid-cell
    finally:
        sweep.wait()
    assert _rows(quick) == 3 and 3 <= _rows(slow) < 5, "the sweep did not reach the middle of the slow cell in time"
    quick_stamp, saved = (quick / "results.json").stat().st_mtime_ns, json.loads((slow / "results.json").read_text())["rows"]
    assert task_state(slow)["state"] == "running"

    assert main(["sweep", str(grid), "--out", str(out), "--resume"]) == 0
    assert (quick / "results.json").stat().st_mtime_ns == quick_stamp and task_state(quick)["attempts"] == 1
    rows = json.loads((slow / "results.json").read_text())["rows"]
    assert rows[:len(saved)] == saved  # the stages saved before the kill are kept, not redone
    assert [r["T"] for r in rows if r["stage"] == "retrained"] == [3, 2, 1]
    assert task_state(slow)["attempts"] == 2 and task_state(out / "train" / "seed=0")["attempts"] == 1


#: Ways to stop a sweep: how the signal is sent, and whether the sweep started with SIGINT ignored.
STOPS = {
    "sigterm": (lambda sweep: os.kill(sweep.pid, signal.SIGTERM), False),  # to the driver only, as `kill PID`
    # the same to a sweep that a script's `nohup spikerl sweep ... &` started: it and its Ray workers ignore SIGINT
    "sigterm-background": (lambda sweep: os.kill(sweep.pid, signal.SIGTERM), True),
    # SIGHUP to the sweep's whole process group (its Ray instance too), as a closing terminal's hang-up
    "closed-terminal": (lambda sweep: os.killpg(sweep.pid, signal.SIGHUP), False),
}


@pytest.mark.slow
@pytest.mark.parametrize("stop", STOPS)
def test_a_stopped_sweep_stops_its_running_tasks_as_ctrl_c_does(tmp_path, stop):
    send, sigint_ignored = STOPS[stop]
    grid = write_grid(tmp_path, "cells:\n  - {compress.schedule: [3, 2, 1], compress.steps_per_stage: 500}\n")
    cell = tmp_path / "out" / "cells" / "seed=0"
    # once the ANN's rows and T=3 are saved
    code, stderr = _signal_sweep(grid, tmp_path / "out", lambda: _rows(cell) >= 3, send, sigint_ignored)
    assert code == 130, stderr
    assert "continue with --resume" in stderr and "Traceback" not in stderr
    assert task_state(cell)["state"] == "interrupted"  # the task was stopped and said so, not ended with its worker


@pytest.mark.slow
def test_sigterm_to_a_task_worker_stops_it_with_a_checkpoint(tmp_path):
    grid = write_grid(tmp_path, "settings: {train.n_timesteps: 1000000}\ncells:\n  - {compress.schedule: [1]}\n")
    train = tmp_path / "out" / "train" / "seed=0"
    # the training task's worker only, as `kill PID` would, once it is in the training loop
    code, stderr = _signal_sweep(grid, tmp_path / "out", lambda: _episodes(train) >= 2,
                                 lambda _: os.kill(task_state(train)["pid"], signal.SIGTERM))
    assert code == 1, stderr
    assert "interrupted (its worker got Ctrl-C or SIGTERM); continue with --resume" in stderr, stderr
    assert task_state(train)["state"] == "interrupted"  # not Ray's SystemExit, which skips training's checkpoint
    assert "saving a checkpoint" in (train / "sweep.log").read_text()
    assert list(train.glob("checkpoint_*.pt"))  # before the first periodic one (10,000 steps)


def _signal_sweep(
    grid: Path, out: Path, ready: Callable[[], bool], send: Callable[[subprocess.Popen], None], sigint_ignored=False
) -> tuple[int, str]:
    """Run ``spikerl sweep GRID --out OUT`` on one CPU in a process group of its own (with
    SIGINT ignored if asked); once ``ready()``, ``send(sweep)`` signals it; return the sweep's
    exit code and stderr."""
    command = ["sweep", str(grid), "--out", str(out), "--num-cpus", "1", "--num-threads", "1"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if sigint_ignored else None
    try:  # the child inherits an ignored SIGINT, and SIGHUP's default even under nohup
        with hang_up_by_default():
            sweep = subprocess.Popen([sys.executable, "-m", "spikerl", *command], cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and sweep.poll() is None and not ready():
            time.sleep(0.05)
        send(sweep)
        _, stderr = sweep.communicate(timeout=180)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    return sweep.returncode, stderr


def _episodes(train: Path) -> int:
    try:
        return len((train / "0.monitor.csv").read_text().splitlines()) - 2  # under a JSON line and the header
    except OSError:
        return 0


def _rows(cell: Path) -> int:
    try:
        return len(json.loads((cell / "results.json").read_text())["rows"])
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
def test_sweep_runs_on_a_two_node_cluster(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        grid = write_grid(tmp_path, "grid: {seed: [0, 1], compress.schedule: [[1]]}\n")
        out = tmp_path / "out"
        command = [sys.executable, "-m", "spikerl", "sweep", str(grid), "--out", str(out), "--address", cluster.address]
        result = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        # two 1-CPU nodes and two training runs at once: one ran on each node
        nodes = {task_state(out / "train" / f"seed={seed}")["node_id"] for seed in (0, 1)}
        assert len(nodes) == 2
        assert len((out / "sweep.csv").read_text().splitlines()) == 1 + 2 * 3
    finally:
        cluster.shutdown()


def test_a_task_file_edited_by_hand_loses_only_its_bad_fields(tmp_path):
    """A FIFO there hung the sweep (driver and worker); a list or a word for a count ended in tracebacks."""
    import os

    from spikerl.sweep import TASK_JSON, _task_state

    task = tmp_path / TASK_JSON
    os.mkfifo(task)
    assert _task_state(tmp_path) == {}  # no writer: reading it would block for good
    task.unlink()
    for content, state in [
        ("[]", {}),
        ('{"attempts": "x", "state": "done"}', {"state": "done"}),
        ('{"pid": 0, "host": "h"}', {"host": "h"}),  # os.kill(0, 0) would find the process group alive
        ('{"pid": 99999999999999999999, "started_at": true}', {}),
        ('{"state": "running", "attempts": 2, "pid": 7, "started_at": 1.5, "error": "kept in the file, not read"}',
         {"state": "running", "attempts": 2, "pid": 7, "started_at": 1.5}),
    ]:
        task.write_text(content)
        assert _task_state(tmp_path) == state, content


def test_a_task_folder_that_is_a_link_or_a_file_is_refused(tmp_path):
    """A cell folder linked elsewhere had its stage agents replaced and sweep.log appended there."""
    from spikerl.sweep import SWEEP_JSON, _task_folder

    (tmp_path / SWEEP_JSON).write_text("{}")
    (tmp_path / "cells").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "cells" / "seed=0").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "cells" / "seed=1").write_text("a file")
    for cell in ("cells/seed=0", "cells/seed=1"):
        with pytest.raises(UsageError, match="is a link or a file where the sweep keeps a task's folder; delete it"):
            _task_folder(str(tmp_path), cell)
    assert _task_folder(str(tmp_path), "cells/seed=2").is_dir() and not any((tmp_path / "elsewhere").iterdir())

"""`spikerl package`: an agent as a folder in the layout ``huggingface_sb3.package_to_hub`` uploads.

The folder (push it with ``huggingface-cli upload USER/REPO DIR`` or ``HfApi().upload_folder``):

``dqn-<env>.zip``   the agent, as given (loads with plain ``DQN.load`` where spikerl is installed)
``dqn-<env>/``      the same zip unpacked (``data``, ``policy.pth``, ...), as huggingface_sb3 ships it
``config.json``     the agent's ``data`` JSON with ``system_info``
``results.json``    ``mean_reward``, ``std_reward``, ``is_deterministic``, ``n_eval_episodes``,
                    ``eval_datetime`` (huggingface_sb3's keys), and under ``spikerl`` the
                    evaluation seeds, T, spike rates and energy per decision
``replay.mp4``      one greedy game (unless ``video_steps`` is 0)
``README.md``       the model card: Hub metadata (``model-index`` with the mean reward), the
                    evaluation, energy, usage
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import stable_baselines3
import yaml

from spikerl.checkpoints import write_json, write_text
from spikerl.energy import AC_PJ, MAC_PJ, analog_layer_costs, decision_cost, layer_costs
from spikerl.errors import UsageError
from spikerl.evaluate import Evaluation, evaluate_agent
from spikerl.loading import load_agent
from spikerl.schema import quoted
from spikerl.settings import Settings
from spikerl.video import record_videos

_FLAT_FILE_NAME = re.compile(r"(?!\.\.?$)[\w.-]{1,100}")
"""A name the folder unpacked from an agent's zip may hold: no folders, not '.' or '..', at most 100 characters."""


def package_agent(
    agent: str | Path, env_id: str, settings: Settings, out_dir: str | Path, video_steps: int = 1000, progress: bool = True
) -> Path:
    """Evaluate ``agent`` with ``settings.evaluate`` (a progress bar of the episodes if ``progress``) and
    write its Hub folder at ``out_dir`` (which must not exist yet, or be empty); returns ``out_dir``."""
    if Path(out_dir).is_symlink():  # the folder is moved into place at the end: a link there cannot take it
        raise UsageError(f"{out_dir} is a symbolic link; choose a folder path for --out")
    out_dir = Path(os.path.abspath(out_dir))  # '.' and '..' by name: their parent and name are where the folder goes
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"{out_dir} already exists and is not an empty folder; choose another --out")
    if video_steps < 0:
        raise UsageError(f"--video-steps must be >= 0 (0: no replay video), got {video_steps}")
    # Built beside out_dir and moved in at the end: a failure leaves no half-written folder.
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    except OSError as error:  # checked before the evaluation (minutes for Pong)
        raise UsageError(f"cannot write beside {out_dir} ({error.strerror or error}); choose a writable --out") from None
    name = f"dqn-{env_id}"
    try:
        model = load_agent(agent, env_id, settings.env, "cpu")
        with zipfile.ZipFile(agent) as archive:  # unpacked below, after the evaluation
            odd = next((entry for entry in archive.namelist() if not _FLAT_FILE_NAME.fullmatch(entry)), None)
        if odd is not None:  # SB3 writes a few flat names: data, policy.pth, ...
            raise UsageError(f"{agent} holds an entry named {quoted(odd)}, which no SB3 checkpoint has; pass an SB3 DQN .zip")
        protocol = settings.evaluate
        evaluation = evaluate_agent(
            model, env_id, settings.env, protocol.episodes, seed=protocol.seed, n_envs=protocol.n_envs,
            progress="evaluate" if progress else None,
        )
        shutil.copyfile(agent, staging / f"{name}.zip")
        with zipfile.ZipFile(agent) as archive:
            archive.extractall(staging / name)
            data = json.loads(archive.read("data"))
        data["system_info"] = stable_baselines3.get_system_info(print_info=False)[0]
        write_json(staging / "config.json", data)
        results = _results(model, evaluation, protocol)
        write_json(staging / "results.json", results)
        if video_steps:
            video = record_videos(model, env_id, settings.env, staging, 1, seed=protocol.seed, max_steps=video_steps)[0]
            video.rename(staging / "replay.mp4")
        write_text(staging / "README.md", model_card(env_id, results, video_steps))
        staging.chmod(0o755)  # mkdtemp's folder is private
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _results(model: Any, evaluation: Evaluation, protocol: Any) -> dict[str, Any]:
    """huggingface_sb3's ``results.json`` keys, and spikerl's measurements under ``spikerl``."""
    timesteps = getattr(model.policy, "timesteps", None)
    layers = layer_costs(model.q_net, model.observation_space)
    cost = decision_cost(layers, evaluation.spike_rates, timesteps)
    ann_energy = decision_cost(analog_layer_costs(layers))["energy_pj"]
    return {
        "mean_reward": evaluation.mean,
        "std_reward": evaluation.std,
        "is_deterministic": True,
        "n_eval_episodes": len(evaluation.rewards),
        "eval_datetime": datetime.datetime.now().isoformat(),
        "spikerl": {
            "timesteps": timesteps,
            "first_seed": protocol.seed,
            "rewards": evaluation.rewards,
            "spike_rates": evaluation.spike_rates,
            "energy_pj_per_decision": cost["energy_pj"],
            "ann_energy_pj_per_decision": ann_energy,
            "ann_energy_ratio": ann_energy / cost["energy_pj"],
        },
    }


def model_card(env_id: str, results: dict[str, Any], video_steps: int) -> str:
    """The README.md of the Hub repository: huggingface_sb3's metadata header and spikerl's card."""
    measured = results["spikerl"]
    timesteps = measured["timesteps"]
    kind = f"spiking DQN (T={timesteps})" if timesteps else "DQN"
    reward = f"{results['mean_reward']:.2f} +/- {results['std_reward']:.2f}"
    tags = [env_id, "deep-reinforcement-learning", "reinforcement-learning", "stable-baselines3"]
    tags += ["spiking-neural-network", "spikerl"] if timesteps else []
    metadata = {
        "library_name": "stable-baselines3",
        "tags": tags,
        "model-index": [
            {
                "name": kind,
                "results": [
                    {
                        "task": {"type": "reinforcement-learning", "name": "reinforcement-learning"},
                        "dataset": {"name": env_id, "type": env_id},
                        "metrics": [{"type": "mean_reward", "value": reward, "name": "mean_reward", "verified": False}],
                    }
                ],
            }
        ],
    }
    rates = ", ".join(f"{layer} {rate:.3f}" for layer, rate in measured["spike_rates"].items()) or "none (an ANN)"
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {kind} agent playing {env_id}",
        "",
        f"A {kind} agent for **{env_id}**, made with spikerl on "
        "[Stable-Baselines3](https://github.com/DLR-RM/stable-baselines3)"
        + (f": its Q-network is a spiking neural network that decides in {timesteps} timestep(s)." if timesteps else "."),
        "",
        "## Evaluation",
        "",
        "| mean reward | episodes | seeds | spike rate per layer | energy per decision | vs. the ANN |",
        "|---|---|---|---|---|---|",
        f"| {reward} | {results['n_eval_episodes']} (greedy) | from {measured['first_seed']:,} | {rates} "
        f"| {measured['energy_pj_per_decision'] / 1000:.1f} nJ | {measured['ann_energy_ratio']:.1f}x less |",
        "",
        f"Energy is spikerl's estimate: {MAC_PJ} pJ per multiply-accumulate, {AC_PJ} pJ per accumulate (45 nm CMOS).",
        "",
    ]
    if video_steps:
        lines += ["## Replay", "", f"`replay.mp4`: the first evaluation game, greedy (at most {video_steps} decisions).", ""]
    lines += [
        "## Usage",
        "",
        "```python",
        "from huggingface_sb3 import load_from_hub",
        "from stable_baselines3 import DQN",
        "",
        f'path = load_from_hub(repo_id="USER/REPO", filename="dqn-{env_id}.zip")',
        "model = DQN.load(path)" + ("  # needs spikerl installed: the policy is spikerl.policy's" if timesteps else ""),
        "```",
        "",
    ]
    return "\n".join(lines)

"""Damaged and hostile inputs, generated from a seeded RNG, for every reader of spikerl.

Each case is run through the command line in-process (``spikerl.cli.main``) and must end
with exit code 2 and one line on stderr, with no exception escaping, without running a
pickle payload (which would create a marker file), and without changing a file that was
there before. Readers: agent zips (``evaluate`` and ``export``), training run folders
(``train --resume``), compression folders (``report``, ``compress --resume``).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import pickle
import random
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHIPPED_CARTPOLE
from spikerl.cli import main
from spikerl.loading import MAX_ENTRY_BYTES
from spikerl.results import CompressionResult

SEED = 20261129
MARKER_NAME = "payload-ran"
LOCK = ".spikerl.lock"


class Payload:
    """Unpickling this creates the file at ``path``: a stand-in for arbitrary code."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (but the lock file) with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK}


def assert_refused(argv: list[str], workspace: Path, capsys) -> str:
    """``spikerl ARGV`` exits 2 with one stderr line, runs no payload and changes no file; returns the line."""
    before = snapshot(workspace)
    capsys.readouterr()
    code = main(argv)
    error = capsys.readouterr().err
    assert code == 2, f"exit {code} for {argv}: {error}"
    assert error.count("\n") == 1 and error.startswith("spikerl ") and "Traceback" not in error, error
    assert not (workspace / MARKER_NAME).exists(), "a pickle payload ran"
    assert snapshot(workspace) == before, f"{argv} changed files"
    return error


# ---------------------------------------------------------------- agent zips


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def entry_range(raw: bytes, name: str) -> tuple[int, int]:
    """Byte range of the stored content of entry ``name`` in the zip bytes ``raw``."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        info = archive.getinfo(name)
    name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    return start, start + info.compress_size


def declare_size(raw: bytes, name: str, size: int) -> bytes:
    """``raw`` with the central-directory entry of ``name`` declaring ``size`` uncompressed bytes."""
    data = bytearray(raw)
    position = 0
    while True:
        position = data.index(b"PK\x01\x02", position)
        name_length = struct.unpack("<H", data[position + 28 : position + 30])[0]
        if data[position + 46 : position + 46 + name_length] == name.encode():
            data[position + 24 : position + 28] = struct.pack("<I", size)
            return bytes(data)
        position += 4


def with_data(members: dict[str, bytes], edit) -> dict[str, bytes]:
    data = json.loads(members["data"])
    edit(data)
    return {**members, "data": json.dumps(data).encode()}


def with_weights(members: dict[str, bytes], edit) -> dict[str, bytes]:
    weights = torch.load(io.BytesIO(members["policy.pth"]), weights_only=True)
    edit(weights)
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    return {**members, "policy.pth": buffer.getvalue()}


def agent_cases(rng: random.Random, marker: Path) -> list[tuple[str, object]]:
    """(name, content) pairs: content is the bytes of a hostile agent zip, or a path."""
    shipped = (SHIPPED_CARTPOLE / "T1.zip").read_bytes()
    members = zip_members(SHIPPED_CARTPOLE / "T1.zip")
    weights = torch.load(io.BytesIO(members["policy.pth"]), weights_only=True)
    payload = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    cases: list[tuple[str, object]] = []

    for _ in range(40):
        cut = rng.randrange(0, len(shipped) - 1)
        cases.append((f"truncated at {cut}", shipped[:cut]))
    for entry in ("data", "policy.pth"):
        start, end = entry_range(shipped, entry)
        for _ in range(20):
            at = rng.randrange(start, end)
            flipped = bytearray(shipped)
            flipped[at] ^= 1 << rng.randrange(8)
            cases.append((f"bit flip in {entry} at {at}", bytes(flipped)))
    for entry in ("data", "policy.pth"):
        for _ in range(6):
            size = rng.choice(
                [2**31 + rng.randrange(2**31), 2**32 - 1, 10**9 + rng.randrange(10**9), (1 << 24) + rng.randrange(1 << 28)]
            )
            cases.append((f"{entry} declares {size} bytes", declare_size(shipped, entry, size)))
    padded = write_zip_bytes({**members, **{f"pad{index}": b"" for index in range(3)}})
    for index in range(3):  # each entry below the bound of one, together above that of an agent (package unpacks all)
        padded = declare_size(padded, f"pad{index}", MAX_ENTRY_BYTES - 1)
    cases.append(("three extra entries declaring an agent's worth each", padded))
    cases += [
        ("no data", write_zip_bytes({k: v for k, v in members.items() if k != "data"})),
        ("no policy.pth", write_zip_bytes({k: v for k, v in members.items() if k != "policy.pth"})),
        ("entries renamed", write_zip_bytes({k.upper(): v for k, v in members.items()})),
        ("entries swapped", write_zip_bytes({**members, "data": members["policy.pth"], "policy.pth": members["data"]})),
        ("empty zip", write_zip_bytes({})),
        ("empty file", b""),
        ("text file", b"not a zip at all\n"),
        ("zip of a zip", write_zip_bytes({"data": shipped, "policy.pth": shipped})),
    ]
    # pickle payloads wherever SB3 would unpickle
    cases += [
        (
            "pickled policy_kwargs",
            write_zip_bytes(with_data(members, lambda d: d.__setitem__("policy_kwargs", {":serialized:": payload}))),
        ),
        (
            "pickled policy class",
            write_zip_bytes(
                with_data(
                    members,
                    lambda d: d.__setitem__(
                        "policy_class", {":serialized:": payload, "__module__": "os", "__init__": "<function system.__init__"}
                    ),
                )
            ),
        ),
        ("pickle as data", write_zip_bytes({**members, "data": pickle.dumps(Payload(marker))})),
        ("pickle as policy.pth", write_zip_bytes({**members, "policy.pth": pickle.dumps(Payload(marker))})),
        (
            "torch.save of a payload",
            write_zip_bytes({**members, "policy.pth": torch_bytes({"q_net.q_net.0.weight": Payload(marker)})}),
        ),
        ("torch.save of a payload dict", write_zip_bytes({**members, "policy.pth": torch_bytes(Payload(marker))})),
    ]
    for field in ("observation_space", "action_space", "lr_schedule", "exploration_schedule"):
        # these are ignored (never unpickled): pair each with damage that is refused, so the case must end in exit 2
        damaged = with_data(members, lambda d, f=field: d.__setitem__(f, {":serialized:": payload}))
        cases.append(
            (
                f"pickled {field} with NaN weights",
                write_zip_bytes(with_weights(damaged, lambda w: w["q_net.q_net.0.weight"].__setitem__((0, 0), float("nan")))),
            )
        )
    # non-finite weights
    names = [name for name, tensor in weights.items() if torch.is_floating_point(tensor) and tensor.numel()]
    for _ in range(12):
        name, value = rng.choice(names), rng.choice([float("nan"), float("inf"), float("-inf")])
        index = rng.randrange(weights[name].numel())
        cases.append(
            (
                f"{value} in {name}",
                write_zip_bytes(with_weights(members, lambda w, n=name, i=index, v=value: w[n].view(-1).__setitem__(i, v))),
            )
        )
    # wrong layers
    cases += [
        ("a layer missing", write_zip_bytes(with_weights(members, lambda w: w.pop(names[0])))),
        ("an extra layer", write_zip_bytes(with_weights(members, lambda w: w.__setitem__("extra.weight", torch.zeros(3))))),
        ("a layer named by a number", write_zip_bytes(with_weights(members, lambda w: w.__setitem__(7, torch.zeros(3))))),
        (
            "a layer of another shape",
            write_zip_bytes(with_weights(members, lambda w: w.__setitem__(names[0], torch.zeros(7, 3)))),
        ),
        ("a string for a layer", write_zip_bytes(with_weights(members, lambda w: w.__setitem__(names[0], "weights")))),
        ("a sparse layer", write_zip_bytes(with_weights(members, lambda w: w.__setitem__(names[0], w[names[0]].to_sparse())))),
        ("weights as a list", write_zip_bytes({**members, "policy.pth": torch_bytes([1, 2, 3])})),
        (
            "weights for 9 actions",
            write_zip_bytes(
                with_weights(
                    members,
                    lambda w: [
                        w.__setitem__(n, torch.zeros(9, *w[n].shape[1:]))
                        for n in list(w)
                        if n.endswith("q_net.4.weight") or n.endswith("q_net.4.bias")
                    ],
                )
            ),
        ),
    ]
    # absurd policy_kwargs and data
    absurd_kwargs = [
        {"timesteps": 10**6},
        {"timesteps": 65},
        {"timesteps": 0},
        {"timesteps": -3},
        {"timesteps": 2.5},
        {"timesteps": "5"},
        {"timesteps": True},
        {"timesteps": 1, "net_arch": [10**6]},
        {"timesteps": 1, "net_arch": [0]},
        {"timesteps": 1, "net_arch": [-5]},
        {"timesteps": 1, "net_arch": "256,256"},
        {"timesteps": 1, "net_arch": [[256]]},
        {"timesteps": 1, "net_arch": [64] * 100},
        {"timesteps": 1, "net_arch": [8192, 8192]},
        {"timesteps": 1, "net_arch": {"pi": [64]}},
        {"timesteps": 1, "features_extractor_kwargs": {"features_dim": 10**9}},
        {"timesteps": 1, "features_extractor_kwargs": 5},
        {"timesteps": 1, "neuron_kwargs": {"threshold": "high"}},
        {"timesteps": 1, "neuron_kwargs": {"no_such_option": 1}},
        {"timesteps": 1, "no_such_option": 1},
        {"timesteps": 1, "neuron_kwargs": 7},
        {"timesteps": 1, "activation_fn": "Tanh"},
    ]
    for kwargs in absurd_kwargs:
        cases.append(
            (
                f"policy_kwargs {kwargs}",
                write_zip_bytes(
                    with_data(members, lambda d, k=kwargs: d.__setitem__("policy_kwargs", dict(d["policy_kwargs"], **k)))
                ),
            )
        )
    cases += [
        ("data is a list", write_zip_bytes({**members, "data": b"[1, 2]"})),
        ("data is a number", write_zip_bytes({**members, "data": b"7"})),
        ("data not UTF-8", write_zip_bytes({**members, "data": b"\xff\xfe{}"})),
        ("data deeply nested", write_zip_bytes({**members, "data": b"[" * 100_000 + b"]" * 100_000})),
        ("data with an integer of 5000 digits", write_zip_bytes({**members, "data": b'{"seed": ' + b"1" * 5000 + b"}"})),
        ("no policy class", write_zip_bytes(with_data(members, lambda d: d.pop("policy_class")))),
        (
            "policy class of PPO",
            write_zip_bytes(
                with_data(
                    members,
                    lambda d: d.__setitem__(
                        "policy_class",
                        {
                            "__module__": "stable_baselines3.common.policies",
                            "__init__": "<function ActorCriticPolicy.__init__ at 0x0>",
                        },
                    ),
                )
            ),
        ),
        (
            "policy_kwargs a string",
            write_zip_bytes(with_data(members, lambda d: d.__setitem__("policy_kwargs", "timesteps=1"))),
        ),
    ]
    return cases


def write_zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def torch_bytes(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def test_hostile_agent_zips_are_refused(tmp_path, capsys):
    rng = random.Random(SEED)
    marker = tmp_path / MARKER_NAME
    cases = agent_cases(rng, marker)
    kept = tmp_path / "kept.nir"
    kept.write_bytes(b"an earlier export")
    cases_run = 0
    for index, (name, content) in enumerate(cases):
        agent = tmp_path / f"agent{index}.zip"
        agent.write_bytes(content)
        # evaluate reads it; export (into a new file, and over an existing one with --force) reads it the same way
        command = rng.choice(
            [
                ["evaluate", "--agent", str(agent), "--env", "CartPole-v1", "--episodes", "1", "--device", "cpu"],
                ["export", "--agent", str(agent), "--env", "CartPole-v1", "--out", str(tmp_path / "new.nir")],
                ["export", "--agent", str(agent), "--env", "CartPole-v1", "--out", str(kept), "--force"],
            ]
        )
        try:
            assert_refused(command, tmp_path, capsys)
        except AssertionError as error:
            raise AssertionError(f"case {index} ({name}): {error}") from None
        agent.unlink()
        cases_run += 1
    for path, why in (
        (tmp_path, "a directory"),
        (Path("/dev/null"), "not a regular file"),
        (tmp_path / "missing.zip", "not found"),
    ):
        assert why in assert_refused(["evaluate", "--agent", str(path), "--env", "CartPole-v1"], tmp_path, capsys)
        cases_run += 1
    assert cases_run >= 150
    print(f"agent zips: {cases_run} cases")


# ---------------------------------------------------------------- training run folders

TINY_PRESET = """
env: {num_threads: 1}
train:
  policy: MlpPolicy
  n_timesteps: 300
  eval_freq: 150
  eval_episodes: 2
  checkpoint_freq: 150
  dqn: {learning_rate: 1.0e-3, batch_size: 32, buffer_size: 1000, learning_starts: 100, train_freq: 16,
        gradient_steps: 2, target_update_interval: 50, policy_kwargs: {net_arch: [16, 16]}}
compress: {schedule: [1], objective: distill, steps_per_stage: 1, stage_eval_episodes: 1}
evaluate: {episodes: 2}
"""


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A finished tiny training run (checkpoint with replay buffer, best model, logs)."""
    root = tmp_path_factory.mktemp("fuzz_run")
    preset = root / "tiny.yaml"
    preset.write_text(TINY_PRESET)
    assert main(["train", "--config", str(preset), "--out", str(root / "run"), "--no-progress", "--num-threads", "1"]) == 0
    return root / "run"


def damage_bytes(rng: random.Random, raw: bytes) -> tuple[str, bytes]:
    """A random truncation, bit flip or garbage of ``raw`` (always different from it)."""
    kind = rng.choice(["truncate", "flip", "garbage", "empty"])
    if kind == "truncate" and len(raw) > 1:
        cut = rng.randrange(1, len(raw))
        return f"truncated at {cut}", raw[:cut]
    if kind == "flip" and raw:
        at = rng.randrange(len(raw))
        flipped = bytearray(raw)
        flipped[at] ^= 1 << rng.randrange(8)
        return f"bit {at} flipped", bytes(flipped)
    if kind == "garbage":
        return "garbage", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    return "empty", b""


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def reindexed(folder: Path, edit) -> bytes:
    """``checkpoint.json`` of ``folder`` after ``edit``, its own digest made to match (its content checks must refuse it)."""
    from spikerl.training_checkpoint import with_index_digest

    index = json.loads((folder / "checkpoint.json").read_text())
    edit(index)
    return json.dumps(with_index_digest(index) if isinstance(index, dict) and index else index).encode()


def zip_content_ranges(raw: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the stored contents of every entry of the zip ``raw`` (covered by CRCs)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        names = archive.namelist()
    return [entry_range(raw, name) for name in names if entry_range(raw, name)[1] > entry_range(raw, name)[0]]


def run_folder_cases(rng: random.Random, run: Path, marker: Path) -> list[tuple[str, dict[str, bytes | None]]]:
    """(name, {file name: new content, or None to delete}) damages of a training run folder."""
    from spikerl.checkpoints import file_sha256

    index = json.loads((run / "checkpoint.json").read_text())
    step = index["counters"]["num_timesteps"]
    weights, buffer = f"checkpoint_{step}.pt", f"replay_buffer_{step}.npz"
    cases: list[tuple[str, dict[str, bytes | None]]] = []
    # files under a recorded SHA-256: any damage is refused
    for name in ("checkpoint.json", weights, buffer):
        raw = (run / name).read_bytes()
        for _ in range(12):
            how, damaged = damage_bytes(rng, raw)
            if damaged != raw:
                cases.append((f"{name} {how}", {name: damaged}))
    # zip files (NumPy's and torch's formats): damage to their entries is caught by CRC
    for name in ("evaluations.npz", "best_model.pt"):
        raw = (run / name).read_bytes()
        ranges = zip_content_ranges(raw)
        for _ in range(10):
            start, end = rng.choice(ranges)
            at = rng.randrange(start, end)
            flipped = bytearray(raw)
            flipped[at] ^= 1 << rng.randrange(8)
            cases.append((f"{name} bit {at} flipped", {name: bytes(flipped)}))
        for _ in range(3):
            how, damaged = damage_bytes(rng, raw)
            if not how.startswith("bit") and damaged != raw:
                cases.append((f"{name} {how}", {name: damaged}))
    for name in ("checkpoint.json", weights, buffer, "config.yaml"):
        cases.append((f"{name} deleted", {name: None}))

    def with_digests(files: dict[str, bytes], edit=lambda index: None) -> dict[str, bytes]:
        """``files`` written with an index whose digests match them: only the content checks remain."""
        digests = {}
        for name, content in files.items():
            scratch = run.parent / "scratch"
            scratch.write_bytes(content)
            digests["weights" if name.endswith(".pt") else "replay_buffer"] = file_sha256(scratch)
        return {**files, "checkpoint.json": reindexed(run, lambda i: (i["sha256"].update(digests), edit(i)))}

    saved = torch.load(run / weights, weights_only=True)
    with np.load(run / buffer) as arrays:
        stored = dict(arrays)
    cases += [
        ("weights a pickle payload", with_digests({weights: pickle.dumps(Payload(marker))})),
        ("weights torch.save of a payload", with_digests({weights: torch_bytes({"policy": Payload(marker)})})),
        (
            "weights NaN",
            with_digests(
                {
                    weights: torch_bytes(
                        {**saved, "policy": {k: torch.full_like(v, float("nan")) for k, v in saved["policy"].items()}}
                    )
                }
            ),
        ),
        (
            "weights of another network",
            with_digests({weights: torch_bytes({**saved, "policy": {k: torch.zeros(3) for k in saved["policy"]}})}),
        ),
        (
            "optimizer of another network",
            with_digests(
                {
                    weights: torch_bytes(
                        {
                            **saved,
                            "optimizer": {
                                "state": {0: {"exp_avg": torch.zeros(2, 2), "step": torch.tensor(1.0)}},
                                "param_groups": saved["optimizer"]["param_groups"],
                            },
                        }
                    )
                }
            ),
        ),
        (
            "optimizer state NaN",
            with_digests(
                {
                    weights: torch_bytes(
                        {
                            **saved,
                            "optimizer": {
                                **saved["optimizer"],
                                "state": {
                                    0: {k: torch.full_like(v, float("nan")) for k, v in saved["optimizer"]["state"][0].items()}
                                },
                            },
                        }
                    )
                }
            ),
        ),
        (
            "optimizer capturable on a CPU",  # accepted, the resumed run failed in Adam's first step
            with_digests({weights: torch_bytes({**saved, "optimizer": {
                **saved["optimizer"], "param_groups": [{**saved["optimizer"]["param_groups"][0], "capturable": True}],
            }})}),
        ),
        (
            "optimizer learning rate a word",
            with_digests({weights: torch_bytes({**saved, "optimizer": {
                **saved["optimizer"], "param_groups": [{**saved["optimizer"]["param_groups"][0], "lr": "fast"}],
            }})}),
        ),
        ("sparse weights", with_digests({weights: torch_bytes(
            {**saved, "policy": {k: v.to_sparse() if v.dim() == 2 else v for k, v in saved["policy"].items()}}
        )})),
        ("torch rng a string", with_digests({weights: torch_bytes({**saved, "torch_rng": "seed"})})),
        ("weights a list", with_digests({weights: torch_bytes([1, 2])})),
        ("buffer rewards NaN",
         with_digests({buffer: npz_bytes(**{**stored, "rewards": np.full_like(stored["rewards"], np.nan)})})),
        (
            "buffer holds pickled objects",
            with_digests({buffer: npz_bytes(**{**stored, "observations": np.array([Payload(marker)], dtype=object)})}),
        ),
        (
            "buffer arrays of another shape",
            with_digests({buffer: npz_bytes(**{**stored, "observations": np.zeros((3, 1, 9), np.float32)})}),
        ),
        (
            "buffer of another dtype",
            with_digests({buffer: npz_bytes(**{**stored, "actions": stored["actions"].astype(np.float64)})}),
        ),
        ("buffer position out of range", with_digests({buffer: npz_bytes(**{**stored, "pos": np.asarray(10**9)})})),
        ("buffer of another step", with_digests({buffer: npz_bytes(**{**stored, "num_timesteps": np.asarray(step + 1)})})),
        ("buffer array missing", with_digests({buffer: npz_bytes(**{k: v for k, v in stored.items() if k != "rewards"})})),
        ("buffer position not a number", with_digests({buffer: npz_bytes(**{**stored, "pos": np.array([1, 2])})})),
    ]
    index_edits = [
        ("format unknown", lambda i: i.__setitem__("format", "sb3")),
        ("run id a number", lambda i: i.__setitem__("run_id", 5)),
        ("step negative", lambda i: i["counters"].__setitem__("num_timesteps", -1)),
        ("step a string", lambda i: i["counters"].__setitem__("num_timesteps", "300")),
        ("step of no file", lambda i: i["counters"].__setitem__("num_timesteps", step + 7)),
        ("counter NaN", lambda i: i["counters"].__setitem__("exploration_rate", float("nan"))),
        ("counter missing", lambda i: i["counters"].pop("_n_updates")),
        ("extra counter", lambda i: i["counters"].__setitem__("policy", 1)),
        ("digest missing", lambda i: i["sha256"].pop("weights")),
        ("digest wrong", lambda i: i["sha256"].__setitem__("weights", "0" * 64)),
        ("replay flag a string", lambda i: i.__setitem__("replay_buffer", "yes")),
        ("replay flag off, its step kept", lambda i: i.__setitem__("replay_buffer", False)),
        ("replay buffer step after the checkpoint", lambda i: i.__setitem__("replay_buffer_step", step + 1)),
        ("replay buffer step a string", lambda i: i.__setitem__("replay_buffer_step", str(step))),
        ("replay buffer step of no file", lambda i: i.__setitem__("replay_buffer_step", step - 1)),
        ("numpy rng damaged", lambda i: i["rng"].__setitem__("numpy", ["MT19937", [1, 2], 0, 0, 0.0])),
        ("numpy rng keys too large", lambda i: i["rng"]["numpy"].__setitem__(1, [2**40] * 624)),
        ("python rng damaged", lambda i: i["rng"].__setitem__("python", [3, "x", None])),
        ("action space rng damaged", lambda i: i["rng"].__setitem__("action_space", {"bit_generator": "PCG64"})),
        ("episodes not a list", lambda i: i["episodes"].__setitem__("info", 5)),
        ("episode statistics a word", lambda i: i["episodes"].__setitem__("info", ["x"])),
        ("episode reward a word", lambda i: i["episodes"].__setitem__("info", [{"r": "abc", "l": 3, "t": 1}])),
        ("episode statistics without length", lambda i: i["episodes"].__setitem__("info", [{"r": 1.0}])),
        ("index empty", lambda i: i.clear()),
    ]
    for name, edit in index_edits:
        cases.append((f"checkpoint.json {name}", {"checkpoint.json": reindexed(run, edit)}))
    cases += [
        ("legacy pickled checkpoint only", {"checkpoint.json": None, "checkpoint.zip": pickle.dumps(Payload(marker))}),
        (
            "evaluations with pickled objects",
            {
                "evaluations.npz": npz_bytes(
                    timesteps=np.array([150]), results=np.array([[Payload(marker)]], dtype=object), ep_lengths=np.array([[1]])
                )
            },
        ),
        (
            "evaluations of inconsistent shapes",
            {
                "evaluations.npz": npz_bytes(
                    timesteps=np.array([150, 300]), results=np.zeros((1, 2)), ep_lengths=np.zeros((1, 2))
                )
            },
        ),
        (
            "evaluations NaN",
            {
                "evaluations.npz": npz_bytes(
                    timesteps=np.array([150]), results=np.array([[np.nan, 1.0]]), ep_lengths=np.ones((1, 2))
                )
            },
        ),
        ("best model a payload", {"best_model.pt": pickle.dumps(Payload(marker))}),
        (
            "best model's mean reward a word",
            {"best_model.pt": torch_bytes({**torch.load(run / "best_model.pt", weights_only=True), "mean_reward": "high"})},
        ),
        (
            "evaluations of words",
            {"evaluations.npz": npz_bytes(timesteps=np.array([150]), results=np.array([["a", "b"]]),
                                          ep_lengths=np.ones((1, 2)))},
        ),
        (
            "evaluations of more episodes than the run evaluates",
            {"evaluations.npz": npz_bytes(timesteps=np.array([150]), results=np.zeros((1, 3)), ep_lengths=np.ones((1, 3)))},
        ),
        (
            "best model's mean reward beyond any float",
            {"best_model.pt": torch_bytes({**torch.load(run / "best_model.pt", weights_only=True), "mean_reward": 10**400})},
        ),
        ("monitor header nested too deep", {"0.monitor.csv": b"#" + b"[" * 100_000 + b"]" * 100_000 + b"\nr,l,t\n"}),
        ("checkpoint.json nested too deep", {"checkpoint.json": b"[" * 100_000 + b"]" * 100_000}),
        ("monitor rows not numbers", {"0.monitor.csv": b'#{"t_start": 0}\nr,l,t\nabc,def,ghi\n1,2,3\n'}),
        ("monitor without header", {"0.monitor.csv": b"1,2,3\n"}),
        ("monitor not UTF-8", {"0.monitor.csv": b'#{"t_start": 0}\nr,l,t\n\xff\xfe\n'}),
        ("config.yaml a list", {"config.yaml": b"- 1\n- 2\n"}),
        ("config.yaml not UTF-8", {"config.yaml": b"env_id: \xff\xfe\n"}),
        (
            "config.yaml python object tag",
            {"config.yaml": b"env_id: !!python/object/apply:os.system ['touch " + str(marker).encode() + b"']\nseed: 0\n"},
        ),
    ]
    return cases


def test_damaged_run_folders_are_refused_on_resume(run_folder, tmp_path, capsys):
    rng = random.Random(SEED + 1)
    marker = tmp_path / MARKER_NAME
    cases = run_folder_cases(rng, run_folder, marker)
    for index, (name, changes) in enumerate(cases):
        folder = tmp_path / f"run{index}"
        shutil.copytree(run_folder, folder)
        for file_name, content in changes.items():
            if content is None:
                (folder / file_name).unlink()
            else:
                (folder / file_name).write_bytes(content)
        try:
            assert_refused(["train", "--resume", str(folder), "--no-progress", "-n", "450"], tmp_path, capsys)
        except AssertionError as error:
            raise AssertionError(f"case {index} ({name}): {error}") from None
        shutil.rmtree(folder)
    assert len(cases) >= 100
    print(f"run folders: {len(cases)} cases")


# ---------------------------------------------------------------- results files and presets


def leaves(value, path=()):
    """Every (path, leaf value) of a JSON-like ``value``: scalars and empty containers."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path, value


def replaced(value, path, new):
    """A deep copy of ``value`` with the leaf at ``path`` replaced by ``new``."""
    copy = json.loads(json.dumps(value))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return copy


def wrong_type(rng: random.Random, value):
    """A value of another JSON type than ``value`` (never one that a checked reader could take for it)."""
    if isinstance(value, str):
        return rng.choice([[value], {"x": 1}, 12345])
    if isinstance(value, bool) or value is None:
        return rng.choice(["yes", [1], {"x": 1}])
    if isinstance(value, (int, float)):
        return rng.choice(["many", [value], {"value": value}, True])
    return rng.choice(["text", 7])


def results_cases(rng: random.Random, results: dict) -> list[tuple[str, bytes]]:
    """(name, bytes) damages of a ``results.json``."""
    raw = json.dumps(results, indent=2).encode()
    cases = []
    for _ in range(15):
        cut = rng.randrange(1, len(raw) - 1)  # the whole text but its last character is still JSON only without that character
        cases.append((f"truncated at {cut}", raw[:cut]))
    # ``cost`` is derived (recomputed from layers and spike rates), ``commands`` free text: not mutated
    paths = [path for path, value in leaves(results) if path and path[0] != "commands" and "cost" not in path]
    for _ in range(40):
        path = rng.choice(paths)
        value = dict(leaves(results))[path]
        new = wrong_type(rng, value)
        cases.append((f"{'.'.join(map(str, path))} = {new!r}", json.dumps(replaced(results, path, new)).encode()))
    required = [field.name for field in dataclasses.fields(CompressionResult)
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    for key in rng.sample(sorted(set(results) & set(required)), 5):  # a key with a default (plots) may be missing
        cases.append((f"{key} missing", json.dumps({k: v for k, v in results.items() if k != key}).encode()))
    cases += [
        ("unknown key", json.dumps({**results, "surprise": 1}).encode()),
        ("a list", b"[]"),
        ("not UTF-8", b'{"env_id": "\xff\xfe"}'),
        ("deeply nested", b"[" * 100_000 + b"]" * 100_000),
        ("empty", b""),
        ("NaN reward", json.dumps(replaced(results, ("rows", 0, "mean_reward"), float("nan"))).encode()),
        ("no rows", json.dumps({**results, "rows": []}).encode()),
        ("T of the ANN row", json.dumps(replaced(results, ("rows", 0, "T"), 3)).encode()),
        ("T 10**9", json.dumps(replaced(results, ("rows", 2, "T"), 10**9)).encode()),
        ("rewards empty", json.dumps(replaced(results, ("rows", 1, "rewards"), [])).encode()),
        # well-typed pieces that do not fit together: each row's cost is recomputed from them
        ("macs a word", json.dumps(replaced(results, ("layers", 0, "macs"), "many")).encode()),
        ("spike rates of no layer", json.dumps(replaced(results, ("rows", 2, "spike_rates"), {})).encode()),
        ("no layers", json.dumps({**results, "layers": []}).encode()),
        ("outputs 0", json.dumps(replaced(results, ("layers", 0, "outputs"), 0)).encode()),
        ("macs beyond any float", json.dumps(replaced(results, ("layers", 0, "macs"), 10**400)).encode()),
        ("macs whose energy is beyond any float", json.dumps(replaced(results, ("layers", 0, "macs"), 1e308)).encode()),
        ("a reward beyond any float", json.dumps(replaced(results, ("rows", 1, "mean_reward"), 10**400)).encode()),
        ("settings nested too deep", json.dumps({**results, "settings": {"env": {"env_kwargs": "DEEP"}}}).replace(
            '"DEEP"', '{"a": ' * 985 + "{}" + "}" * 985).encode()),  # parses, deeper than a check can walk
        ("spiking layers: an encoder alone", json.dumps({**results, "spiking_layers": [
            {"name": "encoder", "macs": 16, "input_layer": None, "outputs": 16, "kind": "encoder", "inputs": 16, "bias": False}
        ]}).encode()),
        ("a seed of 5000 digits", json.dumps({**results, "seed": "DIGITS"}).replace('"DIGITS"', "1" * 5000).encode()),
    ]
    return cases


def test_damaged_results_files_are_refused_by_report_and_compress_resume(tmp_path, capsys):
    rng = random.Random(SEED + 2)
    results = json.loads((SHIPPED_CARTPOLE / "results.json").read_text())
    cases = results_cases(rng, results)
    for index, (name, content) in enumerate(cases):
        folder = tmp_path / f"snn{index}"
        folder.mkdir()
        for file_name in ("ann.zip", "T1.zip", "results.md"):
            shutil.copyfile(SHIPPED_CARTPOLE / file_name, folder / file_name)
        (folder / "results.json").write_bytes(content)
        command = rng.choice(
            [
                ["report", str(folder)],
                [
                    "compress",
                    "--agent",
                    str(folder / "ann.zip"),
                    "--env",
                    "CartPole-v1",
                    "--out",
                    str(folder),
                    "--resume",
                    "--no-progress",
                ],
            ]
        )
        try:
            assert_refused(command, tmp_path, capsys)
        except AssertionError as error:
            raise AssertionError(f"case {index} ({name}): {error}") from None
        shutil.rmtree(folder)
    assert len(cases) >= 60
    print(f"results files: {len(cases)} cases")


def preset_cases(rng: random.Random, preset: dict) -> list[tuple[str, str]]:
    """(name, YAML text) damages of an environment preset."""
    import yaml

    text = yaml.safe_dump(preset)
    cases = []
    paths = [path for path, _ in leaves(preset) if path]
    for _ in range(30):
        path = rng.choice(paths)
        new = wrong_type(rng, dict(leaves(preset))[path])
        cases.append((f"{'.'.join(map(str, path))} = {new!r}", yaml.safe_dump(replaced(preset, path, new))))
    in_mappings = [path for path in paths if not isinstance(path[-1], int)]  # an unknown key goes beside a key
    for _ in range(10):
        path = rng.choice(in_mappings)
        cases.append(
            (
                f"unknown key beside {'.'.join(map(str, path))}",
                yaml.safe_dump(replaced(preset, (*path[:-1], "no_such_setting"), 1)),
            )
        )
    for _ in range(8):
        cut = rng.randrange(1, len(text) - 1)
        truncated = text[:cut]
        try:  # a cut that still parses may be a complete, smaller preset: keep only the broken ones
            parsed = yaml.safe_load(truncated)
        except yaml.YAMLError:
            parsed = None
        if parsed != preset and parsed is not None and not isinstance(parsed, dict):
            cases.append((f"truncated at {cut}", truncated))
        elif parsed is None:
            cases.append((f"truncated at {cut}", truncated))
    cases += [
        ("python tag", "env: !!python/object/apply:os.system ['true']\n"),
        ("gamma NaN", yaml.safe_dump(replaced(preset, ("train", "dqn", "gamma"), float("nan")))),
        ("n_timesteps 10**30", yaml.safe_dump(replaced(preset, ("train", "n_timesteps"), 10**30))),
        ("checkpoint_freq 0", yaml.safe_dump(replaced(preset, ("train", "checkpoint_freq"), 0))),
        ("not UTF-8", b"env: {}\n".decode() + "\udcff"),
        ("a list", "- 1\n- 2\n"),
    ]
    return cases


def test_damaged_presets_are_refused_before_any_work(tmp_path, capsys):
    import yaml

    rng = random.Random(SEED + 3)
    preset = yaml.safe_load((Path(__file__).resolve().parent.parent / "envs" / "CartPole-v1.yaml").read_text())
    # tiny budgets, so that a damage that were accepted would fail fast rather than train for minutes
    preset["train"].update(n_timesteps=200, eval_freq=100, eval_episodes=1)
    preset["compress"].update(
        schedule=[1], steps_per_stage=1, stage_eval_episodes=1, calibration_samples=64, teacher_states=100
    )
    preset["evaluate"]["episodes"] = 1
    cases = preset_cases(rng, preset)
    for index, (name, text) in enumerate(cases):
        path = tmp_path / f"preset{index}.yaml"
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        command = rng.choice(
            [
                ["train", "--config", str(path), "--out", str(tmp_path / "run"), "--no-progress"],
                [
                    "compress",
                    "--agent",
                    str(SHIPPED_CARTPOLE / "ann.zip"),
                    "--config",
                    str(path),
                    "--out",
                    str(tmp_path / "snn"),
                    "--no-progress",
                ],
                ["evaluate", "--agent", str(SHIPPED_CARTPOLE / "T1.zip"), "--config", str(path), "--episodes", "1"],
            ]
        )
        try:
            assert_refused(command, tmp_path, capsys)
        except AssertionError as error:
            raise AssertionError(f"case {index} ({name}): {error}") from None
        path.unlink()
    assert len(cases) >= 45
    print(f"presets: {len(cases)} cases")

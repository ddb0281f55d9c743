"""Console output: --no-progress hides bars only; train and compress end with a summary paragraph."""

from conftest import SHIPPED_CARTPOLE
from spikerl.cli import main


def test_compress_without_progress_still_prints_stages_and_a_summary(tmp_path, capsys):
    out = tmp_path / "snn"
    args = ["compress", "--agent", str(SHIPPED_CARTPOLE / "ann.zip"), "--schedule", "1", "--steps-per-stage", "5"]
    assert main([*args, "--eval-episodes", "1", "--out", str(out), "--num-threads", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["ANN", "converted", "retrained"]
    assert (
        lines[-1].startswith("Compressed: at T=1 the spiking agent scores")
        and "less energy per decision than the ANN" in lines[-1]
    )
    assert str(out / "T1.zip") in lines[-1] and str(out / "results.md") in lines[-1]
    assert "distill" not in captured.err  # no progress bar


def test_train_ends_with_a_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "-n", "300", "--out", str(out), "--num-threads", "1", "--no-progress"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("Trained: ") and f"spikerl compress --agent {out / 'ann.zip'}" in last

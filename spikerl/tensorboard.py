"""TensorBoard logs of ``spikerl train`` and ``spikerl compress`` (``--tensorboard DIR``; the
``tensorboard`` extra).

``train`` hands DIR to SB3, which logs its usual scalars (``rollout/``, ``train/``, ``eval/``).
``compress`` writes one run, ``DIR/compress``, whose x axis is the retraining step (gradient steps
for distill, agent steps for td, counted over all stages; the ANN and the converted network sit
at 0):

``distill/loss``, ``distill/learning_rate``  every distillation step
``stage/T``, ``stage/mean_reward``, ``stage/std_reward``   after each stage's evaluation
``spike_rate/<layer>``, ``threshold/<layer>``              of the spiking network after each stage
"""

from __future__ import annotations

import errno
import importlib.util
import os
from pathlib import Path
from typing import Any

from spikerl.errors import UsageError


def check_tensorboard(log_dir: str | Path) -> None:
    """Refuse ``--tensorboard log_dir`` when the tensorboard package is missing or ``log_dir``
    cannot be written (checked before any work; the folder is created)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError(
            "--tensorboard needs the tensorboard package; pip install 'spikerl[tensorboard]', or drop --tensorboard"
        )
    try:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        if not os.access(log_dir, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as error:
        raise UsageError(
            f"cannot write TensorBoard logs to {log_dir} ({error.strerror or error}); choose a writable --tensorboard"
        ) from None


def open_writer(log_dir: str | Path) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` writing to ``log_dir`` (events appended, never replaced)."""
    check_tensorboard(log_dir)
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))


def log_stage(writer: Any, step: int, timesteps: int | None, evaluation: Any, q_net: Any) -> None:
    """One evaluated stage at retraining step ``step``: T (0 for the ANN), the reward, and for a
    spiking ``q_net`` its spike rates (from ``evaluation``) and thresholds per neuron layer."""
    writer.add_scalar("stage/T", timesteps or 0, step)
    writer.add_scalar("stage/mean_reward", evaluation.mean, step)
    writer.add_scalar("stage/std_reward", evaluation.std, step)
    for name, rate in evaluation.spike_rates.items():
        writer.add_scalar(f"spike_rate/{name}", rate, step)
    neurons = q_net.neurons() if hasattr(q_net, "neurons") else {}
    for name, neuron in neurons.items():
        writer.add_scalar(f"threshold/{name}", neuron.threshold.detach().mean().item(), step)
    writer.flush()

"""Writing files atomically (SB3 checkpoints included), keeping shipped checkpoints small,
stopping on SIGTERM or a closed terminal (SIGHUP) as on Ctrl-C, and the SHA-256 of a file.

Every write goes to a temporary file beside its target (``.<name>.<random>.spikerl.tmp``)
that replaces the target only once complete, with Ctrl-C, SIGTERM and SIGHUP held back until then:
a stopped or killed run leaves either the old file or the new one, never half of one.
Temporary files left by a hard kill are removed by ``remove_stale_temporaries`` (which
the commands call while they hold their folder's lock).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from torch.optim import Optimizer

from spikerl.errors import UsageError

TEMPORARY_SUFFIX = ".spikerl.tmp"
#: Signals that stop a command as Ctrl-C does (``stop_signals_as_interrupt``): ``kill`` or a
#: scheduler (SIGTERM) and a closed terminal (SIGHUP, which Windows lacks).
_SIGHUP = getattr(signal, "SIGHUP", None)
_TERMINATION_SIGNALS = (signal.SIGTERM, *([_SIGHUP] if _SIGHUP is not None else []))
_STOP_SIGNALS = (signal.SIGINT, *_TERMINATION_SIGNALS)


def _handled(numbers: tuple[int, ...]) -> tuple[int, ...]:
    """``numbers`` but the signals this process ignores (SIGHUP under ``nohup``): they stay ignored."""
    return tuple(number for number in numbers if signal.getsignal(number) is not signal.SIG_IGN)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold back SIGINT, SIGTERM and SIGHUP for the block, then act on the first that arrived.

    After the block, a held SIGINT raises ``KeyboardInterrupt``; a held SIGTERM or SIGHUP goes
    to the handler that was installed before (the default one ends the process). A SIGHUP
    detaches the output from the gone terminal at once, so the block can still print. Signals
    ignored before (``nohup``) stay ignored. Outside the main thread (where Python cannot
    install handlers) the block runs unprotected.
    """
    received: list[int] = []

    def hold(number: int, frame: Any) -> None:
        if number == _SIGHUP:
            _detach_from_terminal()
        received.append(number)

    with signal_handlers(dict.fromkeys(_handled(_STOP_SIGNALS), hold)) as previous:
        yield
    if received:
        handler = previous[signal.Signals(received[0])]
        if callable(handler):  # Python's own SIGINT handler raises KeyboardInterrupt
            handler(received[0], None)
        else:  # SIG_DFL or SIG_IGN, now restored: deliver the signal again
            os.kill(os.getpid(), received[0])


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would raise ``KeyboardInterrupt`` (``stop_signals_as_interrupt``)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    if signum == _SIGHUP:
        _detach_from_terminal()
    raise Terminated()


def _detach_from_terminal() -> None:
    """Point stdout and stderr at ``/dev/null`` where they write to a terminal (a character
    device): after a hang-up every write there fails (EIO), and the command could not report
    its checkpoint or end cleanly. Output to files and pipes is left as it is."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for descriptor in (1, 2):
            with contextlib.suppress(OSError):
                if stat.S_ISCHR(os.fstat(descriptor).st_mode):
                    os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)


@contextlib.contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, a scheduler) and SIGHUP (the terminal closed) stop the
    work the way Ctrl-C does: a ``KeyboardInterrupt`` that the command handles (checkpoint, stop
    its tasks). After a SIGHUP the output that went to the terminal goes to ``/dev/null``.
    Signals ignored before (SIGHUP under ``nohup``) stay ignored.

    Outside the main thread (where Python cannot install handlers) the block runs unchanged.
    """
    with signal_handlers(dict.fromkeys(_handled(_TERMINATION_SIGNALS), _raise_terminated)):
        yield


@contextlib.contextmanager
def signal_handlers(handlers: dict[int, Any]) -> Iterator[dict[int, Any]]:
    """Install ``handlers`` (signal number -> handler, ``SIG_IGN``, ...) for the block and yield
    the ones they replaced, which are reinstalled after it. Outside the main thread (where Python
    cannot install handlers) nothing is installed and it yields ``{}``."""
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
    try:
        yield previous
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    Ctrl-C, SIGTERM and SIGHUP wait until the file is in place (``signals_held``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals_held():
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
        os.close(handle)
        try:
            yield Path(temporary)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete the temporary files (and folders being copied) that killed runs left in ``folder``
    (call it holding its lock)."""
    for stale in Path(folder).glob(f".*{TEMPORARY_SUFFIX}*"):  # SB3 adds .npz to the evaluation log's
        with contextlib.suppress(OSError):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()


@contextlib.contextmanager
def writable_folder(folder: str | Path, parameter: str | None = "out_dir") -> Iterator[Path]:
    """Create ``folder``; an ``OSError`` inside the block becomes a one-line ``UsageError``
    naming ``parameter``, the argument that gave the folder (None: a positional one)."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        yield Path(folder)
    except OSError as error:
        reason = "a file is there" if isinstance(error, FileExistsError) and not Path(folder).is_dir() else error.strerror
        problem = f"cannot write to output folder {folder} ({reason or error})"
        fix = f"choose a writable {parameter}" if parameter else "check its permissions, or give another folder"
        raise UsageError(f"{problem}; {fix}", parameter=parameter) from None


def is_dense_tensor(value: Any) -> bool:
    """Whether ``value`` is a dense tensor in ordinary memory: ``torch.load`` also gives sparse,
    quantized and meta tensors, which a file can hold and on which spikerl's checks and the
    network's copies fail with tracebacks."""
    return isinstance(value, torch.Tensor) and value.layout == torch.strided and not (value.is_quantized or value.is_meta)


def open_own_file(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags)`` for a file spikerl keeps beside its results (a lock, a log).

    Refuses, with a one-line ``UsageError``, a symbolic link or anything but a regular file at
    ``path``: writing would otherwise go through it into whatever file the link names.
    """
    try:  # O_NONBLOCK: a FIFO there must not block the open (it does nothing to a regular file)
        handle = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UsageError(f"{path} is a symbolic link where spikerl keeps its own file; delete the link") from None
        if error.errno == errno.ENXIO:  # a FIFO without a reader
            raise UsageError(f"{path} is not a regular file where spikerl keeps its own file; delete it") from None
        raise
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise UsageError(f"{path} is not a regular file where spikerl keeps its own file; delete it")
    os.set_blocking(handle, True)
    return handle


def save_model(model: BaseAlgorithm, path: str | Path, keep_optimizer_state: bool = True) -> None:
    """Save ``model`` as an SB3 zip at ``path`` atomically.

    ``keep_optimizer_state=False`` stores a fresh optimizer in place of the trained one (Adam
    moments halve a NatureCNN zip): the file still loads with plain ``DQN.load``.
    """
    optimizer = model.policy.optimizer
    if not keep_optimizer_state:
        fresh: Callable[..., Optimizer] = type(optimizer)  # Adam and the like take the parameter groups alone
        model.policy.optimizer = fresh([dict(group) for group in optimizer.param_groups])
    try:
        with atomic_path(path) as temporary, open(temporary, "wb") as file:
            model.save(file)
    finally:
        model.policy.optimizer = optimizer


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of the file at ``path`` (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

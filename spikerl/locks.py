"""One spikerl command at a time per output folder.

``folder_lock(folder)`` holds an exclusive ``fcntl.flock`` on ``folder/.spikerl.lock`` for the
life of a command, so a second command writing into the same folder stops at once with one
line naming the process that holds it. The kernel releases the lock when its holder exits,
however it ends (kill -9 included), so a stale lock file never blocks a later run. Once
locked, the temporary files that killed runs left in the folder are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from spikerl.checkpoints import open_own_file, remove_stale_temporaries, writable_folder
from spikerl.errors import UsageError

LOCK_FILE = ".spikerl.lock"
Function = TypeVar("Function", bound=Callable[..., Any])


@contextlib.contextmanager
def folder_lock(folder: str | Path, parameter: str | None = "out_dir") -> Iterator[Path]:
    """Create ``folder`` if needed and hold its lock for the block; ``UsageError`` if another process holds it.

    ``parameter``: the argument that gave the folder, named where it cannot be written (``writable_folder``).

    A folder created here that is still empty afterwards (the command refused its input) is
    removed again.
    """
    folder = Path(folder)
    created = not folder.exists()
    with writable_folder(folder, parameter):
        handle = open_own_file(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UsageError(
                f"{folder} is in use by another spikerl command (pid {holder}); wait for it to finish, "
                "or choose another output"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        remove_stale_temporaries(folder)
        yield folder
    finally:
        os.close(handle)  # releases the lock
        if created and [path.name for path in folder.iterdir()] == [LOCK_FILE]:
            with contextlib.suppress(OSError):
                (folder / LOCK_FILE).unlink()
                folder.rmdir()


def is_locked(folder: str | Path) -> bool:
    """Whether a process holds ``folder``'s lock now (``False`` where the folder has no lock file, or
    where the lock cannot be tried). The test takes the lock for an instant when it is free."""
    try:  # read-write, as folder_lock opens it: NFS's emulation of flock needs that for an exclusive lock
        handle = os.open(Path(folder) / LOCK_FILE, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(handle)  # releases the lock if it was taken here
    return False


def holds_folder_lock(parameter: str) -> Callable[[Function], Function]:
    """Decorator: the function runs holding ``folder_lock`` of its argument named ``parameter``."""

    def decorate(function: Function) -> Function:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with folder_lock(signature.bind(*args, **kwargs).arguments[parameter]):
                return function(*args, **kwargs)

        return locked  # type: ignore[return-value]

    return decorate

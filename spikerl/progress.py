"""Progress bars: the one style of every spikerl command, the one SB3 draws for ``progress_bar=True``.

SB3's training bar is tqdm's rich front end (``tqdm.rich``); distillation steps and evaluation
episodes are shown with the same bar, so a command's output looks the same from stage to stage.
On a terminal (or in a notebook) the bar is redrawn in place. In a log (``nohup spikerl ...
> log``) rich would print the bar once, at its end, so hours of training or a compression
stage would show nothing; there each bar prints its state as a line of its own, at its
start, at most once a minute and at its end. A disabled bar (``--no-progress``) draws nothing; the commands' result lines
are printed apart.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any, TextIO

import rich
from stable_baselines3.common.callbacks import ProgressBarCallback
from tqdm import TqdmExperimentalWarning
from tqdm import tqdm as text_tqdm
from tqdm.rich import tqdm as rich_tqdm

#: Seconds between two lines of a bar in a log.
LOG_INTERVAL = 60.0


class LogLines(text_tqdm):
    """tqdm's text bar, each refresh written on a line of its own (a log cannot redraw a line)."""

    def __init__(self, file: TextIO, **kwargs: Any):
        super().__init__(file=_WholeLines(file), **kwargs)

    @staticmethod
    def status_printer(file: TextIO) -> Callable[[str], None]:
        def print_line(line: str) -> None:
            file.write(line + "\n")
            file.flush()

        return print_line


class _WholeLines:
    """A text stream that passes on only writes with text: the lone carriage returns and
    newlines that tqdm writes to move within its line would leave blank lines in a log."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        if text.strip():
            self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def on_terminal() -> bool:
    """Whether bars go where rich redraws them in place (a terminal, a Jupyter notebook; rich's
    console decides, as for its own bars) rather than into a log (lines)."""
    console = rich.get_console()
    return console.is_terminal or console.is_jupyter


def progress_bar(total: int, description: str, unit: str, enabled: bool = True) -> text_tqdm:
    """A bar of ``total`` ``unit``\\ s labelled ``description``; nothing is drawn unless ``enabled``.

    Use it as a context manager (the bar closes at the end) and ``update(n)`` it.
    """
    if not on_terminal():
        return LogLines(
            sys.stdout, total=total, desc=description, unit=unit, disable=not enabled, mininterval=LOG_INTERVAL,
            maxinterval=LOG_INTERVAL, ascii=True,
        )
    with warnings.catch_warnings():  # tqdm calls its rich front end experimental; SB3 silences the same warning
        warnings.simplefilter("ignore", TqdmExperimentalWarning)
        return rich_tqdm(total=total, desc=description, unit=unit, disable=not enabled)


class ProgressCallback(ProgressBarCallback):
    """SB3's progress-bar callback (``learn(progress_bar=True)``) drawing ``progress_bar``'s
    bar of agent steps, labelled ``description``."""

    def __init__(self, description: str):
        super().__init__()
        self.description = description

    def _on_training_start(self) -> None:
        # as SB3's: the steps of this call of learn (a resumed run's earlier steps are done); none: no bar
        steps = self.locals["total_timesteps"] - self.model.num_timesteps
        self.pbar = progress_bar(steps, self.description, "step", enabled=steps > 0)

    def _on_training_end(self) -> None:
        self.pbar.close()  # draws the last state (SB3's refresh first would print it twice in a log)

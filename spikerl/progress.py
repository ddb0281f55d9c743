"""Progress bars: the one style of every spikerl command, the one SB3 draws for ``progress_bar=True``.

SB3's training bar is tqdm's rich front end (``tqdm.rich``); distillation steps and evaluation
episodes are shown with the same bar, so a command's output looks the same from stage to stage.
On a terminal the bar is redrawn in place; in a log (no terminal) rich prints its last state once.
A disabled bar (``--no-progress``) draws nothing; the commands' result lines are printed apart.
"""

from __future__ import annotations

import warnings

from tqdm import TqdmExperimentalWarning
from tqdm.rich import tqdm


def progress_bar(total: int, description: str, unit: str, enabled: bool = True) -> tqdm:
    """A bar of ``total`` ``unit``\\ s labelled ``description``; nothing is drawn unless ``enabled``.

    Use it as a context manager (the bar closes at the end) and ``update(n)`` it.
    """
    with warnings.catch_warnings():  # tqdm calls its rich front end experimental; SB3 silences the same warning
        warnings.simplefilter("ignore", TqdmExperimentalWarning)
        return tqdm(total=total, desc=description, unit=unit, disable=not enabled)

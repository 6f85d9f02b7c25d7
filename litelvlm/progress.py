"""The progress bar of the long commands (``segment --images``, ``segment-video``, ``bench``): tqdm on stderr, shown
when stderr is a terminal (a log file or a captured stream gets none of its redraws)."""

from __future__ import annotations

import sys

__all__ = ["progress_bar"]


def progress_bar(total: int, desc: str, unit: str, initial: int = 0):
    """A tqdm bar over ``total`` ``unit``s, ``initial`` of them already done (resumed runs)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True)

"""A tqdm progress bar (with ETA) shown by one process only."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

__all__ = ["progress_bar"]

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
                 initial: int = 0, enabled: bool = True, unit: str = "it") -> tqdm:
    """A tqdm bar on stderr; ``initial`` counts items already done (resume); ``enabled=False`` hides it.

    Use it as an iterator over ``iterable`` or call ``.update(n)`` manually; close it (or use ``with``).
    """
    return tqdm(iterable, total=total, desc=desc, initial=initial, disable=not enabled, unit=unit,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

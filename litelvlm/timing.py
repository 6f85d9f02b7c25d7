"""Per-stage timing: wall-clock (waiting for the GPU before reading the clock) and process CPU time.

Stages may nest (the released no-cache decoding loop re-runs the encoders inside ``llm_generate``): each
stage keeps its own seconds, and ``total`` counts only the outermost stages, so nested time is never
counted twice. ``clock="cpu"`` measures the process's CPU seconds (``time.process_time``), which other
processes competing for the cores do not inflate; benchmarks on a shared CPU use it.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import Iterator

import torch

from .run_options import CLOCKS

__all__ = ["StageTimer", "CLOCKS", "use_clock"]

_DEFAULT_CLOCK = ["wall"]


@contextlib.contextmanager
def use_clock(clock: str | None) -> Iterator[None]:
    """Inside the block, ``StageTimer``s created without a clock use ``clock`` (wall or cpu; None: unchanged)."""
    if clock is None:
        yield
        return
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    _DEFAULT_CLOCK.append(clock)
    try:
        yield
    finally:
        _DEFAULT_CLOCK.pop()


class StageTimer:
    """Accumulates seconds per named stage: ``with timer("llm_prefill"): ...``.

    ``seconds`` (per stage) and ``total`` (outermost stages only) are in ``clock``; ``wall_seconds`` always
    holds wall-clock seconds per stage, so both can be reported side by side."""

    def __init__(self, device: str | torch.device = "cpu", clock: str | None = None):
        self.clock = clock or _DEFAULT_CLOCK[-1]
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {self.clock!r}")
        self.sync = torch.device(device).type == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)
        self.wall_seconds: dict[str, float] = defaultdict(float)
        self.total = 0.0
        self.wall_total = 0.0
        self._depth = 0

    def _now(self) -> tuple[float, float]:
        wall = time.perf_counter()
        return (time.process_time() if self.clock == "cpu" else wall), wall

    @contextlib.contextmanager
    def __call__(self, stage: str):
        if self.sync:
            torch.cuda.synchronize()
        start, wall_start = self._now()
        self._depth += 1
        try:
            yield
        finally:
            if self.sync:
                torch.cuda.synchronize()
            end, wall_end = self._now()
            self._depth -= 1
            self.seconds[stage] += end - start
            self.wall_seconds[stage] += wall_end - wall_start
            if self._depth == 0:
                self.total += end - start
                self.wall_total += wall_end - wall_start

    def as_dict(self) -> dict[str, float]:
        """Seconds per stage (in ``clock``) plus ``total``, the outermost stages' sum."""
        return {**self.seconds, "total": self.total}

    def wall_dict(self) -> dict[str, float]:
        """Wall-clock seconds per stage plus ``total``."""
        return {**self.wall_seconds, "total": self.wall_total}

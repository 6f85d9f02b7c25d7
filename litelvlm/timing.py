"""Per-stage wall-clock timing that waits for the GPU before reading the clock."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

import torch

__all__ = ["StageTimer"]


class StageTimer:
    """Accumulates seconds per named stage: ``with timer("llm_prefill"): ...``."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.sync = torch.device(device).type == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        if self.sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                torch.cuda.synchronize()
            self.seconds[stage] += time.perf_counter() - start

    def as_dict(self) -> dict[str, float]:
        return dict(self.seconds)

"""Activation memory of a stage: the CUDA allocator's peak on GPU, a tensor-tracking equivalent on CPU.

On CPU a dispatch mode sees every tensor the stage's operators create, adds its storage's bytes when
it appears and subtracts them when the storage is freed; the peak of that running sum is the
measured equivalent of ``max_memory_allocated`` minus what was live before the stage. Parameters
and inputs existed before the block and are not counted; scratch space a kernel never exposes as a
tensor is not seen.
"""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..timing import StageTimer

__all__ = ["LiveTensorBytes", "activation_peak", "MemoryProbe"]


class LiveTensorBytes(TorchDispatchMode):
    """Tracks bytes of storages created by operators inside the mode; ``peak`` is their maximum sum."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: dict[int, int] = {}

    def _release(self, key: int, nbytes: int) -> None:
        if self._tracked.pop(key, None) is not None:
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {x.untyped_storage().data_ptr() for x in tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._tracked and key not in inputs:  # views and in-place results are not new
                    nbytes = storage.nbytes()
                    self._tracked[key] = nbytes
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._release, key, nbytes)
        return out


_CUDA_BLOCKS: list[dict] = []  # the open CUDA blocks, outermost first: each one's peak before its inner block began


@contextlib.contextmanager
def _cuda_peak(out: dict, cuda):
    """The CUDA allocator's peak over the block, minus what was live at its start, correct when blocks nest.

    Each block resets the allocator's peak when it starts (it has only one), so the peak the enclosing block had
    reached so far is saved first, and an inner block's peak is handed to its enclosing block when it ends."""
    cuda.synchronize()
    base = cuda.memory_allocated()
    if _CUDA_BLOCKS:
        _CUDA_BLOCKS[-1]["peak"] = max(_CUDA_BLOCKS[-1]["peak"], cuda.max_memory_allocated())
    cuda.reset_peak_memory_stats()
    block = {"peak": base}
    _CUDA_BLOCKS.append(block)
    try:
        yield out
    finally:
        cuda.synchronize()
        _CUDA_BLOCKS.pop()
        peak = max(block["peak"], cuda.max_memory_allocated())
        if _CUDA_BLOCKS:
            _CUDA_BLOCKS[-1]["peak"] = max(_CUDA_BLOCKS[-1]["peak"], peak)
        out["bytes"] = peak - base


@contextlib.contextmanager
def activation_peak(device, cuda=torch.cuda):
    """Yields a dict whose ``bytes`` is the block's peak activation memory once the block exits; blocks may nest
    (SAM2's stages inside the mask-decoder stage). ``cuda``: the ``torch.cuda`` memory API (tests pass a fake)."""
    out = {"bytes": 0}
    if torch.device(device).type == "cuda":
        with _cuda_peak(out, cuda):
            yield out
        return
    mode = LiveTensorBytes()
    with mode:
        yield out
    out["bytes"] = mode.peak


class MemoryProbe(StageTimer):
    """A ``StageTimer`` that also records each stage's activation peak in ``activation_bytes``."""

    def __init__(self, device):
        super().__init__(device)
        self.device = torch.device(device)
        self.activation_bytes: dict[str, int] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        with activation_peak(self.device) as peak, super().__call__(stage):
            yield
        self.activation_bytes[stage] = max(self.activation_bytes.get(stage, 0), peak["bytes"])

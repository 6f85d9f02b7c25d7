"""Multi-process evaluation helpers for torchrun / the deepspeed launcher (env:// initialisation).

The launchers export ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (plus ``MASTER_ADDR``/``MASTER_PORT``);
a plain ``python`` run is rank 0 of 1 and never touches ``torch.distributed``. Work is split with ``shard``
(a strided slice of a deterministically ordered list: no item repeated, unlike DistributedSampler's
padding), each rank writes its own records, and ``gather_objects`` brings every rank's results to all
ranks so rank 0 can merge them in a canonical order.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, TypeVar

__all__ = ["DistInfo", "dist_info", "init_distributed", "distributed_session", "shard", "gather_objects",
           "barrier", "shutdown_distributed"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Position of this process in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that merges results and writes summaries."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None


def dist_info() -> DistInfo:
    """Rank, world size and local rank from the launcher's environment variables (0, 1, 0 when absent)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank if world > 1 else 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"inconsistent launcher environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_distributed(backend: str | None = None, timeout_s: float = 3 * 3600) -> DistInfo:
    """Join the process group when launched with WORLD_SIZE > 1; returns this process's ``DistInfo``.

    ``backend`` None picks ``nccl`` when CUDA is available, else ``gloo``. With nccl the CUDA device is set to
    ``LOCAL_RANK``. ``timeout_s`` bounds how long a rank waits for the slowest one at the final gather.
    """
    info = dist_info()
    if not info.distributed:
        return info
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return info
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return info


@contextmanager
def distributed_session(backend: str | None = None, timeout_s: float = 3 * 3600) -> Iterator[DistInfo]:
    """``init_distributed`` for a ``with`` block; leaves the process group on exit if this block joined it."""
    joined_here = dist_info().distributed and not _initialized()
    info = init_distributed(backend, timeout_s)
    try:
        yield info
    finally:
        if joined_here:
            shutdown_distributed()


def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Items ``rank, rank + world_size, ...`` of ``items``: disjoint shards covering every item exactly once."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(items[rank::world_size])


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` when not distributed."""
    if not info.distributed:
        return [obj]
    import torch.distributed as dist

    _require_initialized(dist)
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op when not distributed)."""
    if info.distributed:
        import torch.distributed as dist

        _require_initialized(dist)
        dist.barrier()


def shutdown_distributed() -> None:
    """Leave the process group if one was joined, after a barrier: a rank that tore its group down (rank 0
    also stops the rendezvous store) while another still finished its last collective made gloo abort the
    process ("terminate called without an active exception") on a loaded machine."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def _require_initialized(dist) -> None:
    if not dist.is_initialized():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not initialised: call init_distributed() first")

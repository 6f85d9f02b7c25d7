"""Helpers every harness needs to build and run the model under test: factories, device, dtype, seeds."""

from __future__ import annotations

import hashlib
import importlib
import random
from pathlib import Path
from typing import Any, Callable

from .distributed import dist_info

__all__ = ["import_callable", "resolve_checkpoint", "resolve_device", "resolve_dtype", "seed_everything", "derive_seed"]


def resolve_checkpoint(name: str, what: str, flag: str, patterns_key: str | None = None) -> Path:
    """A local folder (``patterns_key``: its ``litelvlm.hub.PATTERNS`` entry) or file (None), or a Hub id resolved
    through the huggingface_hub cache; a missing one's error says which option sets it (``flag``)."""
    from litelvlm.hub import PATTERNS, resolve_file, resolve_folder

    try:
        if patterns_key is None:
            return resolve_file(name, what)
        return resolve_folder(name, what, patterns=PATTERNS[patterns_key])
    except FileNotFoundError as err:
        raise type(err)(f"{err} (set it with {flag})") from None


def import_callable(spec: str) -> Callable[..., Any]:
    """``'package.module:name'`` -> the named callable (the ``--segmenter-factory`` hook)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--segmenter-factory must look like 'package.module:callable', got {spec!r}")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import segmenter factory {spec!r}: {err}") from None
    if not callable(target):
        raise ValueError(f"segmenter factory {spec!r} is not callable")
    return target


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda:<LOCAL_RANK>`` when CUDA is available, else ``cpu``; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return f"cuda:{dist_info().local_rank}" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name: str):
    """``auto`` -> None (the model's default); otherwise the torch dtype of that name."""
    if name == "auto":
        return None
    import torch

    return getattr(torch, name)


def derive_seed(seed: int, *parts: Any) -> int:
    """A 31-bit seed derived from ``seed`` and ``parts`` (e.g. a video id): the same on every rank."""
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

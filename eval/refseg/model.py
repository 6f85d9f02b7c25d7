"""Building the segmentation model the harness evaluates (the one place that constructs it)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from eval.common.distributed import dist_info

from .config import RefSegConfig

__all__ = ["build_segmenter", "import_callable", "resolve_device", "resolve_dtype"]


def import_callable(spec: str) -> Callable[..., Any]:
    """``'package.module:name'`` -> the named callable."""
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


def _require_dir(path: str, what: str, hint: str) -> None:
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{what} directory not found: {path} ({hint})")


def build_segmenter(config: RefSegConfig) -> Any:
    """The segmenter of this run: ``--segmenter-factory`` if given (called with the config), else GLaMM."""
    if config.segmenter_factory:
        return import_callable(config.segmenter_factory)(config)
    _require_dir(config.checkpoint, "GLaMM checkpoint", "pass the GLaMM-RefSeg folder with --version")
    _require_dir(config.vision_tower, "CLIP vision tower",
                 "pass the local openai/clip-vit-large-patch14-336 folder with --vision-tower or VISION_TOWER")
    from litelvlm.glamm import GLaMMSegmenter

    return GLaMMSegmenter.from_pretrained(config.checkpoint, vision_tower=config.vision_tower,
                                          device=resolve_device(config.device), dtype=resolve_dtype(config.dtype))

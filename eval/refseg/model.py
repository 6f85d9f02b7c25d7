"""Building the segmentation model the harness evaluates (the one place that constructs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.common.model import import_callable, resolve_device, resolve_dtype

from .config import RefSegConfig

__all__ = ["build_segmenter", "import_callable", "resolve_device", "resolve_dtype"]


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

    attn = config.model_attn_implementation
    return GLaMMSegmenter.from_pretrained(config.checkpoint, vision_tower=config.vision_tower,
                                          device=resolve_device(config.device), dtype=resolve_dtype(config.model_dtype),
                                          attn_implementation=attn, clip_attn_implementation=attn)

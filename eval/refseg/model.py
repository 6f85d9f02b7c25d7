"""Building the segmentation model the harness evaluates (the one place that constructs it)."""

from __future__ import annotations

from typing import Any

from eval.common.model import import_callable, resolve_checkpoint, resolve_device, resolve_dtype

from .config import RefSegConfig

__all__ = ["build_segmenter", "import_callable", "resolve_device", "resolve_dtype"]


def build_segmenter(config: RefSegConfig) -> Any:
    """The segmenter of this run: ``--segmenter-factory`` if given (called with the config), else GLaMM."""
    if config.segmenter_factory:
        return import_callable(config.segmenter_factory)(config)
    checkpoint = resolve_checkpoint(config.checkpoint, "GLaMM checkpoint", "--version", "glamm")
    vision_tower = resolve_checkpoint(config.vision_tower, "CLIP vision tower", "--vision-tower or VISION_TOWER", "clip")
    from litelvlm.glamm import GLaMMSegmenter

    attn = config.model_attn_implementation
    return GLaMMSegmenter.from_pretrained(checkpoint, vision_tower=vision_tower,
                                          device=resolve_device(config.device), dtype=resolve_dtype(config.model_dtype),
                                          attn_implementation=attn, clip_attn_implementation=attn)

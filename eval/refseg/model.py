"""Building the segmentation model the harness evaluates (the one place that constructs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.common.model import import_callable, resolve_device, resolve_dtype

from .config import RefSegConfig

__all__ = ["build_segmenter", "import_callable", "resolve_device", "resolve_dtype"]


def _resolve(name: str, what: str, patterns_key: str, flag: str) -> Path:
    """A local folder or a Hub id (through the huggingface_hub cache) as a local folder; errors name ``flag``."""
    from litelvlm.hub import PATTERNS, resolve_folder

    try:
        return resolve_folder(name, what, patterns=PATTERNS[patterns_key])
    except FileNotFoundError as err:
        raise type(err)(f"{err} (set it with {flag})") from None


def build_segmenter(config: RefSegConfig) -> Any:
    """The segmenter of this run: ``--segmenter-factory`` if given (called with the config), else GLaMM."""
    if config.segmenter_factory:
        return import_callable(config.segmenter_factory)(config)
    checkpoint = _resolve(config.checkpoint, "GLaMM checkpoint", "glamm", "--version")
    vision_tower = _resolve(config.vision_tower, "CLIP vision tower", "clip", "--vision-tower or VISION_TOWER")
    from litelvlm.glamm import GLaMMSegmenter

    attn = config.model_attn_implementation
    return GLaMMSegmenter.from_pretrained(checkpoint, vision_tower=vision_tower,
                                          device=resolve_device(config.device), dtype=resolve_dtype(config.model_dtype),
                                          attn_implementation=attn, clip_attn_implementation=attn)

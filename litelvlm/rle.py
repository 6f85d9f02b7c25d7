"""Masks as COCO run-length encodings (pycocotools), the JSON-ready form ``litelvlm segment --format rle`` writes."""

from __future__ import annotations

import numpy as np

__all__ = ["mask_to_rle"]


def mask_to_rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of an (H, W) mask (nonzero = foreground): ``{"size": [h, w], "counts": str}``, the counts
    UTF-8 text (``pycocotools.mask.decode`` takes it back after ``counts.encode()``)."""
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray((mask != 0).astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("utf-8")}

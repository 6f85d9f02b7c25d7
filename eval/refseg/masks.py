"""COCO segmentations <-> binary masks with pycocotools (polygons, uncompressed RLE, compressed RLE)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["segmentation_to_mask", "rle_to_mask", "mask_to_rle"]


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a COCO ``segmentation``: a list of polygons (union of all), or an RLE dict.

    An empty polygon list gives an all-background mask, as in the released GLaMM dataset code.
    """
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        if not all(isinstance(poly, (list, tuple)) and len(poly) >= 6 for poly in segmentation):
            raise ValueError("a polygon segmentation must be a list of [x1, y1, x2, y2, ...] lists with >= 3 points")
        rles = mask_utils.frPyObjects([list(map(float, poly)) for poly in segmentation], height, width)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    if isinstance(segmentation, dict):
        return rle_to_mask(segmentation, height, width)
    raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}: expected a polygon list "
                     f"or an RLE dict")


def rle_to_mask(rle: dict, height: int | None = None, width: int | None = None) -> np.ndarray:
    """(H, W) bool mask of a COCO RLE dict ``{"size": [h, w], "counts": str | bytes | list[int]}``.

    When ``height``/``width`` are given the RLE's size must match them.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE must be a dict with 'size' [h, w] and 'counts'")
    h, w = (int(v) for v in rle["size"])
    if height is not None and (h, w) != (int(height), int(width)):
        raise ValueError(f"RLE size {[h, w]} does not match the image size {[int(height), int(width)]}")
    counts = rle["counts"]
    if isinstance(counts, list):
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    elif isinstance(counts, (str, bytes)):
        compressed = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"RLE counts must be a string, bytes or a list of ints, got {type(counts).__name__}")
    return mask_utils.decode(compressed).astype(bool)


def mask_to_rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of an (H, W) mask (nonzero = foreground) with ``counts`` as a str (JSON ready)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray((mask != 0).astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}

"""COCO segmentations <-> masks with pycocotools (polygons, uncompressed RLE, compressed RLE).

Two ground-truth rules for a polygon segmentation (a list of polygons, the parts of one object):

* ``segmentation_to_mask``: the UNION of the polygons, a bool mask (the ``all`` protocol's ground truth).
* ``segmentation_to_counts``: the SUM of the decoded polygons as uint8, exactly as the released GLaMM/LISA
  dataset code builds it (``mask.decode(mask.frPyObjects(seg, h, w))``, ``np.sum(m, axis=2)``,
  ``.astype(np.uint8)``): a pixel covered by two parts holds 2, by 255 parts 255, and the count wraps modulo
  256. The released scoring only counts pixels equal to 1 as foreground and ignores 255 (see
  ``eval.metrics.iou.released_intersection_union``); it is the ``glamm`` protocol's ground truth.

An RLE segmentation is one mask either way (value 1 / True); an empty polygon list is all background.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from eval.common.files import as_int
from litelvlm.rle import mask_to_rle  # one encoder for the CLI and the harness (re-exported)

__all__ = ["segmentation_to_mask", "segmentation_to_counts", "rle_to_mask", "mask_to_rle"]


def _polygon_rles(segmentation: list, height: int, width: int) -> list:
    """One pycocotools RLE per polygon of a non-empty polygon list (checked)."""
    if not all(isinstance(poly, (list, tuple)) and len(poly) >= 6 for poly in segmentation):
        raise ValueError("a polygon segmentation must be a list of [x1, y1, x2, y2, ...] lists with >= 3 points")
    return mask_utils.frPyObjects([list(map(float, poly)) for poly in segmentation], height, width)


def _unsupported(segmentation: Any) -> ValueError:
    return ValueError(f"unsupported segmentation of type {type(segmentation).__name__}: expected a polygon list "
                      f"or an RLE dict")


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a COCO ``segmentation``: a list of polygons (union of all), or an RLE dict.

    An empty polygon list gives an all-background mask, as in the released GLaMM dataset code.
    """
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        return mask_utils.decode(mask_utils.merge(_polygon_rles(segmentation, height, width))).astype(bool)
    if isinstance(segmentation, dict):
        return rle_to_mask(segmentation, height, width)
    raise _unsupported(segmentation)


def segmentation_to_counts(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 ground truth of a COCO ``segmentation`` as the released GLaMM/LISA code builds it.

    Polygons: the per-pixel SUM of the decoded polygons, cast to uint8 (so 2 where two parts overlap, and
    the count modulo 256 in general: 255 parts give 255, the released ignore label; 256 give 0). An empty
    polygon list gives zeros. An RLE dict: its decoded mask, value 1 on the object.
    """
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=np.uint8)
        layers = mask_utils.decode(_polygon_rles(segmentation, height, width))  # (H, W, parts) uint8
        return np.sum(layers, axis=2, dtype=np.int64).astype(np.uint8)  # wraps modulo 256, like the release
    if isinstance(segmentation, dict):
        return rle_to_mask(segmentation, height, width).astype(np.uint8)
    raise _unsupported(segmentation)


def rle_to_mask(rle: dict, height: int | None = None, width: int | None = None) -> np.ndarray:
    """(H, W) bool mask of a COCO RLE dict ``{"size": [h, w], "counts": str | bytes | list[int]}``.

    When ``height``/``width`` are given the RLE's size must match them.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE must be a dict with 'size' [h, w] and 'counts'")
    h, w = (_count(v, "size") for v in rle["size"])
    if height is not None and (h, w) != (int(height), int(width)):
        raise ValueError(f"RLE size {[h, w]} does not match the image size {[int(height), int(width)]}")
    counts = rle["counts"]
    if isinstance(counts, list):
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": [_count(c, "counts") for c in counts]}, h, w)
    elif isinstance(counts, (str, bytes)):
        compressed = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"RLE counts must be a string, bytes or a list of ints, got {type(counts).__name__}")
    return mask_utils.decode(compressed).astype(bool)


def _count(value: Any, field: str) -> int:
    """A non-negative integer of an RLE (``NaN``, ``1e999``, text and negatives are a ValueError naming ``field``)."""
    number = as_int(value)
    if number is None or number < 0:
        raise ValueError(f"the RLE {field} holds {value!r:.40}, not a non-negative integer")
    return number



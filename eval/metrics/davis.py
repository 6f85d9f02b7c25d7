"""DAVIS region (J) and boundary (F) measures, as the official DAVIS-2017 evaluation computes them.

Semantics (davisvideochallenge/davis2017-evaluation, ``davis2017/metrics.py``):

- Masks are binary by "nonzero = object". Optional ``void`` pixels are removed from both masks first.
- J = |P ∩ G| / |P ∪ G| per frame, and 1 when the union is empty.
- Boundary map of a mask: pixel (y, x) is a boundary pixel when it differs from its right, lower or
  lower-right neighbour; neighbours outside the image do not exist, so the image border itself never
  creates boundary pixels (last row: right neighbour only; last column: lower only; corner: never).
- Tolerance radius: ``bound_th`` itself when ``bound_th >= 1``, else ``ceil(bound_th * sqrt(H² + W²))``.
  Each boundary is dilated (cv2.dilate) with a disk footprint ``x² + y² <= r²`` on the grid
  ``arange(-r, r + 1)`` (skimage's ``disk``; note cv2's MORPH_ELLIPSE is a different shape).
- Precision = matched predicted boundary pixels / predicted boundary pixels (matched = inside the
  dilated GT boundary), recall likewise the other way; F = 2PR / (P + R), 0 when P + R = 0.
  Empty boundaries: both empty -> F = 1; exactly one empty -> F = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "DEFAULT_BOUND_TH",
    "BoundarySet",
    "boundary_map",
    "boundary_radius",
    "disk_footprint",
    "jaccard",
    "jaccard_sequence",
    "f_measure",
    "f_measure_sequence",
    "f_from_boundaries",
    "sequence_boundaries",
    "j_and_f",
]

DEFAULT_BOUND_TH = 0.008


def _as_binary(mask, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array ({'H,W' if ndim == 2 else 'T,H,W'}), got shape {arr.shape}")
    return arr if arr.dtype == bool else arr != 0


def _pair(gt, pred, void, ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    g = _as_binary(gt, "gt", ndim)
    p = _as_binary(pred, "pred", ndim)
    if g.shape != p.shape:
        raise ValueError(f"gt shape {g.shape} and pred shape {p.shape} differ; resize the prediction to the GT size")
    v = None
    if void is not None:
        v = _as_binary(void, "void", ndim)
        if v.shape != g.shape:
            raise ValueError(f"void shape {v.shape} differs from gt shape {g.shape}")
    return g, p, v


def _count_per_frame(x: np.ndarray) -> np.ndarray:
    """Nonzero count of each frame of a (T, H, W) bool array (faster than count_nonzero with an axis)."""
    return np.array([np.count_nonzero(frame) for frame in x], dtype=np.int64)


def jaccard_sequence(gt, pred, void=None) -> np.ndarray:
    """Per-frame J of a (T, H, W) sequence, as float64 array of shape (T,)."""
    g, p, v = _pair(gt, pred, void, 3)
    inter, union = g & p, g | p
    if v is not None:
        inter, union = inter & ~v, union & ~v
    inter, union = _count_per_frame(inter), _count_per_frame(union)
    out = np.ones(len(g), dtype=np.float64)
    nonempty = union > 0
    out[nonempty] = inter[nonempty] / union[nonempty]
    return out


def jaccard(gt, pred, void=None) -> float:
    """J of one (H, W) frame: intersection over union, 1.0 when both masks are empty."""
    g, p, v = _pair(gt, pred, void, 2)
    return float(jaccard_sequence(g[None], p[None], None if v is None else v[None])[0])


def boundary_map(mask) -> np.ndarray:
    """Boundary pixels of a binary mask (..., H, W): a pixel differing from its right, lower or lower-right
    neighbour; neighbours beyond the image border do not count."""
    seg = np.asarray(mask)
    seg = seg if seg.dtype == bool else seg != 0
    if seg.ndim < 2:
        raise ValueError(f"mask must have at least 2 dimensions (..., H, W), got shape {seg.shape}")
    out = np.zeros(seg.shape, dtype=bool)
    np.bitwise_xor(seg[..., :, :-1], seg[..., :, 1:], out=out[..., :, :-1])
    out[..., :-1, :] |= seg[..., :-1, :] ^ seg[..., 1:, :]
    out[..., :-1, :-1] |= seg[..., :-1, :-1] ^ seg[..., 1:, 1:]
    return out


def boundary_radius(height: int, width: int, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """Match tolerance in pixels: ``bound_th`` if >= 1, else ceil(bound_th * image diagonal)."""
    if bound_th < 0:
        raise ValueError(f"bound_th must be >= 0, got {bound_th}")
    if bound_th >= 1:
        return float(bound_th)
    return float(np.ceil(bound_th * np.linalg.norm([height, width])))  # same float ops as the official code


def disk_footprint(radius: float) -> np.ndarray:
    """uint8 disk: cells (x, y) of the grid arange(-radius, radius + 1) with x² + y² <= radius²."""
    axis = np.arange(-radius, radius + 1)
    return ((axis[None, :] ** 2 + axis[:, None] ** 2) <= radius**2).astype(np.uint8)


@dataclass(frozen=True)
class BoundarySet:
    """Boundary maps of a (T, H, W) mask sequence and their disk dilations (both bool, same shape)."""

    boundary: np.ndarray
    dilated: np.ndarray


def _dilate(bmap: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """cv2.dilate of a (H, W) bool map, run only on the boundary's bounding box grown by the footprint size
    (pixels further away cannot be reached, so the result equals dilating the whole frame)."""
    out = np.zeros_like(bmap)
    rows = np.flatnonzero(bmap.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(bmap.any(axis=0))
    reach = max(footprint.shape)
    y0, y1 = max(rows[0] - reach, 0), min(rows[-1] + reach + 1, bmap.shape[0])
    x0, x1 = max(cols[0] - reach, 0), min(cols[-1] + reach + 1, bmap.shape[1])
    out[y0:y1, x0:x1] = cv2.dilate(bmap[y0:y1, x0:x1].astype(np.uint8), footprint) > 0
    return out


def sequence_boundaries(masks, void=None, bound_th: float = DEFAULT_BOUND_TH) -> BoundarySet:
    """Boundaries and dilated boundaries of each frame of ``masks`` (T, H, W), void pixels removed first."""
    seg = _as_binary(masks, "masks", 3)
    if void is not None:
        v = _as_binary(void, "void", 3)
        if v.shape != seg.shape:
            raise ValueError(f"void shape {v.shape} differs from masks shape {seg.shape}")
        seg = seg & ~v
    footprint = disk_footprint(boundary_radius(seg.shape[1], seg.shape[2], bound_th))
    bmap = np.zeros(seg.shape, dtype=bool)
    dilated = np.zeros(seg.shape, dtype=bool)
    for t in range(len(seg)):
        bmap[t] = boundary_map(seg[t])
        dilated[t] = _dilate(bmap[t], footprint)
    return BoundarySet(boundary=bmap, dilated=dilated)


def _f_from_counts(n_pred, n_gt, matched_pred, matched_gt) -> np.ndarray:
    n_pred, n_gt = np.asarray(n_pred, np.float64), np.asarray(n_gt, np.float64)
    both = (n_pred > 0) & (n_gt > 0)
    precision = np.where(both, np.asarray(matched_pred) / np.maximum(n_pred, 1), 0.0)
    recall = np.where(both, np.asarray(matched_gt) / np.maximum(n_gt, 1), 0.0)
    total = precision + recall
    f = np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1.0), 0.0)
    return np.where((n_pred == 0) & (n_gt == 0), 1.0, f)


def f_from_boundaries(pred: BoundarySet, gt: BoundarySet) -> np.ndarray:
    """Per-frame boundary F-measure (T,) from precomputed boundary sets of prediction and GT."""
    if pred.boundary.shape != gt.boundary.shape:
        raise ValueError(f"boundary shapes differ: pred {pred.boundary.shape}, gt {gt.boundary.shape}")
    return _f_from_counts(
        _count_per_frame(pred.boundary),
        _count_per_frame(gt.boundary),
        _count_per_frame(pred.boundary & gt.dilated),
        _count_per_frame(gt.boundary & pred.dilated),
    )


def f_measure_sequence(gt, pred, void=None, bound_th: float = DEFAULT_BOUND_TH) -> np.ndarray:
    """Per-frame boundary F of a (T, H, W) sequence, float64 array of shape (T,)."""
    g, p, v = _pair(gt, pred, void, 3)
    return f_from_boundaries(sequence_boundaries(p, v, bound_th), sequence_boundaries(g, v, bound_th))


def f_measure(gt, pred, void=None, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """Boundary F-measure of one (H, W) frame."""
    g, p, v = _pair(gt, pred, void, 2)
    return float(f_measure_sequence(g[None], p[None], None if v is None else v[None], bound_th)[0])


def j_and_f(gt, pred, void=None, bound_th: float = DEFAULT_BOUND_TH) -> dict[str, float]:
    """Means over the frames of a (T, H, W) sequence: {"J", "F", "J&F"} with J&F = (J + F) / 2."""
    if np.asarray(gt).ndim == 3 and len(gt) == 0:
        raise ValueError("j_and_f needs at least one frame; got an empty (0, H, W) sequence")
    j = float(jaccard_sequence(gt, pred, void).mean())
    f = float(f_measure_sequence(gt, pred, void, bound_th).mean())
    return {"J": j, "F": f, "J&F": (j + f) / 2}

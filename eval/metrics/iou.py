"""cIoU / gIoU of referring segmentation, as computed by the released LISA and GLaMM evaluations.

Per expression the binary prediction P and the ground truth give an intersection I and a union U
(foreground class only), by one of two rules:

* ``intersection_union(pred, gt)``: plain masks, nonzero = foreground; I = |P and G|, U = |P or G|.
* ``released_intersection_union(pred, gt_counts)``: the released ``intersectionAndUnionGPU(output=pred,
  target=gt, K=2, ignore_index=255)`` on the released uint8 ground truth (the per-pixel count of polygon
  parts, see ``eval.refseg.masks.segmentation_to_counts``). Only pixels equal to 1 are target foreground;
  pixels of value 255 are ignored (the prediction is set to 255 there, outside the histogram); other
  values (2, 3, ... where parts overlap) are neither target nor intersection, yet a predicted pixel there
  still counts in the union through the prediction's area. So with V = (G != 255) and T = (G == 1):
  I = |P and T|, U = |P and V| + |T| - I.

Then, exactly as the released code (``accuracy_iou`` loop, ``AverageMeter``):

* ``gIoU_i = I / (U + 1e-5)``, and ``+ 1.0`` when ``U == 0``. As ``U == 0`` forces ``I == 0``, an expression
  whose prediction and ground truth are both empty scores exactly 1.0 (the "no-object target" rule).
* ``gIoU = sum_i gIoU_i / (n + giou_count_eps)`` over the n scored expressions: ``giou_count_eps=0`` is the
  plain mean; the released ``AverageMeter.all_reduce`` divides by ``count + 1e-5`` (``GIOU_COUNT_EPS``).
* ``cIoU = sum_i I / (sum_i U + 1e-10)``; the 1e-10 only matters when every union is empty (cIoU is then 0).

Sums use exact integer arithmetic for I and U and ``math.fsum`` for the gIoU terms, so the result does not
depend on the order in which expressions are accumulated (single process, shards, resumed runs all agree).
The released code instead accumulates float32 tensors, whose rounding is not reproduced here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = [
    "GIOU_EPS",
    "CIOU_EPS",
    "NO_UNION_GIOU",
    "GIOU_COUNT_EPS",
    "IGNORE_LABEL",
    "IoUSummary",
    "intersection_union",
    "released_intersection_union",
    "expression_giou",
    "summarize_iou",
]

GIOU_EPS = 1e-5
CIOU_EPS = 1e-10
NO_UNION_GIOU = 1.0
GIOU_COUNT_EPS = 1e-5  # the released AverageMeter's avg = sum / (count + 1e-5)
IGNORE_LABEL = 255  # the released ignore_index


@dataclass(frozen=True)
class IoUSummary:
    """Aggregated referring-segmentation scores (fractions in [0, 1])."""

    giou: float
    ciou: float
    n_expressions: int
    sum_intersection: int
    sum_union: int


def intersection_union(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """Foreground intersection and union pixel counts of two (H, W) masks (nonzero = foreground)."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"masks must both be (H, W) with the same shape, got prediction {pred.shape} "
                         f"and ground truth {gt.shape}")
    pred_fg = pred != 0
    gt_fg = gt != 0
    intersection = int(np.count_nonzero(pred_fg & gt_fg))
    union = int(np.count_nonzero(pred_fg | gt_fg))
    return intersection, union


def released_intersection_union(pred: np.ndarray, gt_counts: np.ndarray) -> tuple[int, int]:
    """Foreground (I, U) of the released ``intersectionAndUnionGPU(pred, gt_counts, 2, ignore_index=255)``.

    ``pred``: (H, W) prediction, nonzero = foreground (the release's ``(logits > 0).int()``). ``gt_counts``:
    (H, W) integer ground truth as the release builds it (``segmentation_to_counts``). Foreground of the
    target is ``gt == 1`` only; ``gt == 255`` pixels are ignored; a predicted pixel where ``gt`` is 2, 3, ...
    is in the union but not in the intersection. Exact integers (no float32 histogram).
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt_counts)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"masks must both be (H, W) with the same shape, got prediction {pred.shape} "
                         f"and ground truth {gt.shape}")
    if gt.dtype.kind not in "biu":
        raise ValueError(f"the released ground truth must hold integers (polygon counts), got dtype {gt.dtype}")
    output_fg = (pred != 0) & (gt != IGNORE_LABEL)  # histc bin 1 of the output after the ignore assignment
    target_fg = gt == 1  # histc bin 1 of the target: value 1 only
    intersection = int(np.count_nonzero(output_fg & target_fg))
    union = int(np.count_nonzero(output_fg)) + int(np.count_nonzero(target_fg)) - intersection
    return intersection, union


def expression_giou(intersection: int, union: int) -> float:
    """One expression's gIoU term: I / (U + 1e-5), or 1.0 when the union is empty."""
    if intersection < 0 or union < intersection:
        raise ValueError(f"invalid counts: intersection={intersection}, union={union} (need 0 <= I <= U)")
    if union == 0:
        return NO_UNION_GIOU
    return intersection / (union + GIOU_EPS)


def summarize_iou(pairs: Iterable[tuple[int, int]], giou_count_eps: float = 0.0) -> IoUSummary:
    """gIoU and cIoU over (intersection, union) pairs, one pair per expression; order independent.

    gIoU is the sum of the per-expression terms divided by ``n + giou_count_eps``: 0 (default) gives the
    mean, ``GIOU_COUNT_EPS`` the released ``AverageMeter`` average.
    """
    pairs = [(int(i), int(u)) for i, u in pairs]
    if not pairs:
        raise ValueError("no expressions to score: the (intersection, union) list is empty")
    sum_i = sum(i for i, _ in pairs)
    sum_u = sum(u for _, u in pairs)
    if giou_count_eps < 0:
        raise ValueError(f"giou_count_eps must be >= 0, got {giou_count_eps}")
    giou = math.fsum(expression_giou(i, u) for i, u in pairs) / (len(pairs) + giou_count_eps)
    ciou = sum_i / (sum_u + CIOU_EPS)
    return IoUSummary(giou=giou, ciou=ciou, n_expressions=len(pairs), sum_intersection=sum_i, sum_union=sum_u)

"""cIoU / gIoU of referring segmentation, as computed by the released LISA and GLaMM evaluations.

Per expression the binary prediction P and ground truth G give I = |P and G| and U = |P or G| (foreground
class only). Then, exactly as the released code (``intersectionAndUnionGPU`` + ``accuracy_iou`` loop):

* ``gIoU_i = I / (U + 1e-5)``, and ``+ 1.0`` when ``U == 0``. As ``U == 0`` forces ``I == 0``, an expression
  whose prediction and ground truth are both empty scores exactly 1.0 (the "no-object target" rule).
* ``gIoU = mean_i gIoU_i`` over all scored expressions.
* ``cIoU = sum_i I / (sum_i U + 1e-10)``; the 1e-10 only matters when every union is empty (cIoU is then 0).

Sums use exact integer arithmetic for I and U and ``math.fsum`` for the gIoU terms, so the result does not
depend on the order in which expressions are accumulated (single process, shards, resumed runs all agree).
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
    "IoUSummary",
    "intersection_union",
    "expression_giou",
    "summarize_iou",
]

GIOU_EPS = 1e-5
CIOU_EPS = 1e-10
NO_UNION_GIOU = 1.0


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


def expression_giou(intersection: int, union: int) -> float:
    """One expression's gIoU term: I / (U + 1e-5), or 1.0 when the union is empty."""
    if intersection < 0 or union < intersection:
        raise ValueError(f"invalid counts: intersection={intersection}, union={union} (need 0 <= I <= U)")
    if union == 0:
        return NO_UNION_GIOU
    return intersection / (union + GIOU_EPS)


def summarize_iou(pairs: Iterable[tuple[int, int]]) -> IoUSummary:
    """gIoU and cIoU over (intersection, union) pairs, one pair per expression; order independent."""
    pairs = [(int(i), int(u)) for i, u in pairs]
    if not pairs:
        raise ValueError("no expressions to score: the (intersection, union) list is empty")
    sum_i = sum(i for i, _ in pairs)
    sum_u = sum(u for _, u in pairs)
    giou = math.fsum(expression_giou(i, u) for i, u in pairs) / len(pairs)
    ciou = sum_i / (sum_u + CIOU_EPS)
    return IoUSummary(giou=giou, ciou=ciou, n_expressions=len(pairs), sum_intersection=sum_i, sum_union=sum_u)

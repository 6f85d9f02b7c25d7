"""cIoU / gIoU against a restatement of the released LISA/GLaMM accumulation (torch.histc, per-class meters)."""

import random

import numpy as np
import pytest
import torch

from eval.metrics.iou import expression_giou, intersection_union, summarize_iou


def _released_style(preds, gts):
    """The released loop: histc intersection/union over classes {0, 1}, +1 gIoU when the union is empty."""
    inter_sum, union_sum, acc_sum = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), \
        torch.zeros(2, dtype=torch.float64)
    for pred, gt in zip(preds, gts):
        p = torch.from_numpy(pred.astype(np.int64)).double().flatten()
        g = torch.from_numpy(gt.astype(np.int64)).double().flatten()
        inter = p[p == g]
        area_i = torch.histc(inter, bins=2, min=0, max=1)
        area_u = torch.histc(p, bins=2, min=0, max=1) + torch.histc(g, bins=2, min=0, max=1) - area_i
        inter_sum += area_i
        union_sum += area_u
        acc = area_i / (area_u + 1e-5)
        acc[area_u == 0] += 1.0
        acc_sum += acc
    return float(acc_sum[1] / len(preds)), float(inter_sum[1] / (union_sum[1] + 1e-10))


def _random_pairs(rng, n):
    preds, gts = [], []
    for k in range(n):
        h, w = int(rng.integers(3, 30)), int(rng.integers(3, 30))
        kind = k % 5
        pred = rng.random((h, w)) < rng.random()
        gt = rng.random((h, w)) < rng.random()
        if kind == 0:
            pred[:], gt[:] = False, False  # both empty: the no-union rule
        elif kind == 1:
            pred[:] = False
        elif kind == 2:
            gt = pred.copy()
        preds.append(pred)
        gts.append(gt)
    return preds, gts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_released_accumulation(seed):
    preds, gts = _random_pairs(np.random.default_rng(seed), 40)
    summary = summarize_iou(intersection_union(p, g) for p, g in zip(preds, gts))
    giou, ciou = _released_style(preds, gts)
    assert summary.giou == pytest.approx(giou, abs=1e-9)
    assert summary.ciou == pytest.approx(ciou, abs=1e-9)
    assert summary.n_expressions == 40
    assert summary.sum_intersection == sum(int((p & g).sum()) for p, g in zip(preds, gts))
    assert summary.sum_union == sum(int((p | g).sum()) for p, g in zip(preds, gts))


def test_no_union_rule_and_single_terms():
    assert expression_giou(0, 0) == 1.0
    assert expression_giou(0, 7) == 0.0
    assert expression_giou(5, 10) == 5 / (10 + 1e-5)
    empty = np.zeros((4, 5), bool)
    assert intersection_union(empty, empty) == (0, 0)
    gt = empty.copy()
    gt[1:3, 1:4] = True
    pred = np.zeros((4, 5), np.uint8)
    pred[2:4, 2:5] = 255  # any nonzero value is foreground
    assert intersection_union(pred, gt) == (2, 10)
    only_empty = summarize_iou([(0, 0), (0, 0)])
    assert only_empty.giou == 1.0 and only_empty.ciou == 0.0  # the released code's cIoU when every union is empty


def test_summary_is_order_independent_to_the_last_bit():
    rng = np.random.default_rng(5)
    pairs = []
    for _ in range(500):
        u = int(rng.integers(0, 10**6))
        pairs.append((int(rng.integers(0, u + 1)), u))
    reference = summarize_iou(pairs)
    for seed in range(5):
        shuffled = pairs[:]
        random.Random(seed).shuffle(shuffled)
        again = summarize_iou(shuffled)
        assert (again.giou, again.ciou) == (reference.giou, reference.ciou)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same shape"):
        intersection_union(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="same shape"):
        intersection_union(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="I <= U"):
        expression_giou(5, 3)
    with pytest.raises(ValueError, match="empty"):
        summarize_iou([])

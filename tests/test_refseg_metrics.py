"""cIoU / gIoU against a restatement of the released LISA/GLaMM accumulation (torch.histc, per-class meters)."""

import math
import random

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from eval.metrics.iou import (GIOU_COUNT_EPS, expression_giou, intersection_union, released_intersection_union,
                              summarize_iou)
from eval.refseg.masks import segmentation_to_counts, segmentation_to_mask
from eval.refseg.protocols import SCORING
from litelvlm.testing.released_refseg import intersection_and_union_gpu, released_ground_truth


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


# ---- the released ground truth (summed polygons) and intersectionAndUnionGPU ----------------------------------

def _released_iu(pred, gt):
    """The released per-expression call: (pred > 0).int() vs gt .int(), foreground bin 1.

    CPU ``torch.histc`` has no integer kernel (the release runs it on CUDA ints), so the 0/1 and 0..255 values
    go in as float32, which holds them exactly; histc bins [0, 0.5) and [0.5, 1] then count 0 and 1 alone.
    """
    prediction = torch.from_numpy(np.asarray(pred) != 0).int().float()
    target = torch.from_numpy(np.asarray(gt).astype(np.int64)).int().float()
    inter, union, _ = intersection_and_union_gpu(prediction.contiguous().clone(), target.contiguous(), 2,
                                              ignore_index=255)
    return int(inter[1]), int(union[1])


def _square(x0, y0, x1, y1):
    return [float(x0), float(y0), float(x1), float(y0), float(x1), float(y1), float(x0), float(y1)]


H, W = 24, 30
# overlapping parts of one object, as some RefCOCO annotations have them
OVERLAPPING = [
    [_square(2, 2, 14, 12), _square(8, 6, 22, 18)],                       # two parts overlapping: value 2
    [_square(3, 3, 15, 15), _square(6, 6, 18, 18), _square(9, 1, 25, 12)],  # values 1, 2, 3
    [_square(0, 0, 29, 23), _square(10, 10, 12, 12)],                     # a part inside another
    [[1.5, 2.0, 20.3, 4.7, 11.1, 19.9], [5.0, 5.0, 26.0, 8.0, 17.0, 22.0]],  # fractional triangles
]


def _predictions(rng, gt_union):
    return [gt_union, ~gt_union, np.zeros_like(gt_union), rng.random(gt_union.shape) < 0.5,
            gt_union ^ (rng.random(gt_union.shape) < 0.1)]


def test_released_rule_matches_intersection_and_union_gpu_on_overlapping_polygons():
    rng = np.random.default_rng(0)
    released, union_rule = [], []
    for seg in OVERLAPPING:
        counts = segmentation_to_counts(seg, H, W)
        gt_union = segmentation_to_mask(seg, H, W)
        np.testing.assert_array_equal(counts, released_ground_truth(seg, H, W))
        assert counts.dtype == np.uint8 and counts.max() >= 2  # the parts do overlap
        for pred in _predictions(rng, gt_union):
            got = released_intersection_union(pred, counts)
            assert got == _released_iu(pred, released_ground_truth(seg, H, W))
            released.append(got)
            union_rule.append(intersection_union(pred, gt_union))
    # the union of the parts is another ground truth: other pairs, other scores
    assert released != union_rule
    assert summarize_iou(released).ciou != pytest.approx(summarize_iou(union_rule).ciou, abs=1e-3)
    # a perfect union prediction is not perfect under the released rule: overlaps are out of the target
    perfect = released_intersection_union(segmentation_to_mask(OVERLAPPING[0], H, W),
                                          segmentation_to_counts(OVERLAPPING[0], H, W))
    assert perfect[0] < perfect[1]


def test_value_255_is_ignored_and_counts_wrap_at_256():
    triangle = [0.0, 0.0, 12.0, 0.0, 0.0, 12.0]
    other = _square(6, 6, 20, 16)
    pred = np.zeros((H, W), bool)
    pred[:10, :18] = True
    for depth, value in ((255, 255), (256, 0), (257, 1)):
        seg = [list(triangle) for _ in range(depth)] + [other]
        counts = segmentation_to_counts(seg, H, W)
        np.testing.assert_array_equal(counts, released_ground_truth(seg, H, W))
        stack_only = segmentation_to_mask([triangle], H, W) & ~segmentation_to_mask([other], H, W)
        assert set(np.unique(counts[stack_only])) == {value}
        inter, union = released_intersection_union(pred, counts)
        assert (inter, union) == _released_iu(pred, counts)
        on_ones = pred & (counts == 1)
        assert inter == int(on_ones.sum())
        assert union == int((pred & (counts != 255)).sum()) + int((counts == 1).sum()) - inter
    ignored = [list(triangle) for _ in range(255)] + [other]
    counts = segmentation_to_counts(ignored, H, W)
    only_ignored = np.zeros((H, W), bool)
    only_ignored[0, 0] = True  # a prediction inside the 255 region alone: ignored entirely
    assert counts[0, 0] == 255
    assert released_intersection_union(only_ignored, counts) == (0, int((counts == 1).sum()))
    assert released_intersection_union(only_ignored, counts) == _released_iu(only_ignored, counts)
    # the union rule counts that pixel in both the intersection and the union
    gt_union = segmentation_to_mask(ignored, H, W)
    assert intersection_union(only_ignored, gt_union) == (1, int(gt_union.sum()))


def test_empty_segmentation_and_rle_like_the_release():
    empty = segmentation_to_counts([], H, W)
    assert empty.dtype == np.uint8 and not empty.any()
    np.testing.assert_array_equal(empty, released_ground_truth([], H, W))
    none = np.zeros((H, W), bool)
    some = none.copy()
    some[3:7, 4:9] = True
    assert released_intersection_union(none, empty) == _released_iu(none, empty) == (0, 0)
    assert released_intersection_union(some, empty) == _released_iu(some, empty) == (0, 20)
    assert expression_giou(*released_intersection_union(none, empty)) == 1.0  # the no-object target rule
    blob = np.zeros((H, W), np.uint8)
    blob[5:15, 8:20] = 1
    rle = mask_utils.encode(np.asfortranarray(blob))
    rle = {"size": list(rle["size"]), "counts": rle["counts"].decode()}
    counts = segmentation_to_counts(rle, H, W)
    assert counts.dtype == np.uint8
    np.testing.assert_array_equal(counts, blob)
    assert released_intersection_union(some, counts) == _released_iu(some, counts) == intersection_union(some, blob)
    with pytest.raises(ValueError, match="integers"):
        released_intersection_union(some, blob.astype(float))
    with pytest.raises(ValueError, match="same shape"):
        released_intersection_union(some, blob[:-1])


def _released_meter(images):
    """The released loop with AverageMeter(SUM) in float64: per image update(acc / n, n), avg = sum / (count + 1e-5)."""
    inter_sum, union_sum, giou_sum, count = 0.0, 0.0, 0.0, 0
    for pairs in images:
        acc = 0.0
        for i, u in pairs:
            inter_sum, union_sum = inter_sum + i, union_sum + u
            acc += i / (u + 1e-5) + (1.0 if u == 0 else 0.0)
        giou_sum += (acc / len(pairs)) * len(pairs)
        count += len(pairs)
    return giou_sum / (count + 1e-5), inter_sum / (union_sum + 1e-10)


def test_released_giou_divides_by_count_plus_1e5():
    rng = np.random.default_rng(3)
    images = []
    for _ in range(7):
        pairs = []
        for _ in range(int(rng.integers(1, 4))):
            u = int(rng.integers(0, 50))
            pairs.append((int(rng.integers(0, u + 1)), u))
        images.append(pairs)
    pairs = [p for image in images for p in image]
    released = summarize_iou(pairs, giou_count_eps=GIOU_COUNT_EPS)
    mean = summarize_iou(pairs)
    terms = math.fsum(expression_giou(i, u) for i, u in pairs)
    assert released.giou == terms / (len(pairs) + 1e-5)
    assert mean.giou == terms / len(pairs)
    assert released.giou != mean.giou and released.ciou == mean.ciou
    giou, ciou = _released_meter(images)
    assert released.giou == pytest.approx(giou, rel=1e-12) and released.ciou == pytest.approx(ciou, rel=1e-12)
    assert abs(mean.giou - giou) > 1e-7  # the mean is measurably not the released average
    assert SCORING["glamm"].summarize(pairs) == released and SCORING["all"].summarize(pairs) == mean
    assert SCORING["glamm"].ground_truth == "summed polygons (released)"
    assert SCORING["all"].ground_truth == "union of polygons"
    with pytest.raises(ValueError, match="giou_count_eps"):
        summarize_iou(pairs, giou_count_eps=-1.0)

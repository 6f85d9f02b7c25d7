"""DAVIS J / boundary F against a deliberately plain restatement of the official davis2017 algorithm."""

import math

import numpy as np
import pytest

from eval.metrics.davis import (
    boundary_map,
    boundary_radius,
    disk_footprint,
    f_measure,
    f_measure_sequence,
    j_and_f,
    jaccard,
    jaccard_sequence,
)

# ---------------------------------------------------------------- reference (loops, distances)


def ref_boundary(seg):
    """Pixel differs from an existing right / lower / lower-right neighbour."""
    h, w = seg.shape
    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            neighbours = []
            if x + 1 < w:
                neighbours.append(seg[y, x + 1])
            if y + 1 < h:
                neighbours.append(seg[y + 1, x])
            if x + 1 < w and y + 1 < h:
                neighbours.append(seg[y + 1, x + 1])
            out[y, x] = any(bool(n) != bool(seg[y, x]) for n in neighbours)
    return out


def ref_radius(h, w, bound_th):
    return bound_th if bound_th >= 1 else math.ceil(bound_th * math.sqrt(h * h + w * w))


def ref_matched(src, other, radius):
    """How many boundary pixels of ``src`` lie within Euclidean distance ``radius`` of ``other``."""
    a, b = np.argwhere(src), np.argwhere(other)
    if len(a) == 0 or len(b) == 0:
        return 0
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return int((d2.min(axis=1) <= radius * radius).sum())


def ref_f(gt, pred, void=None, bound_th=0.008):
    gt, pred = gt != 0, pred != 0
    if void is not None:
        gt, pred = gt & ~void, pred & ~void
    gb, pb = ref_boundary(gt), ref_boundary(pred)
    radius = ref_radius(gt.shape[0], gt.shape[1], bound_th)
    n_pred, n_gt = int(pb.sum()), int(gb.sum())
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    precision = ref_matched(pb, gb, radius) / n_pred
    recall = ref_matched(gb, pb, radius) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ref_j(gt, pred, void=None):
    inter = union = 0
    for y in range(gt.shape[0]):
        for x in range(gt.shape[1]):
            if void is not None and void[y, x]:
                continue
            g, p = bool(gt[y, x]), bool(pred[y, x])
            inter += g and p
            union += g or p
    return 1.0 if union == 0 else inter / union


# ---------------------------------------------------------------- random masks


def blob_mask(rng, h, w):
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(-2, h + 1), rng.uniform(-2, w + 1)
        ry, rx = rng.uniform(0.5, h / 2 + 1), rng.uniform(0.5, w / 2 + 1)
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return mask


def line_mask(rng, h, w):
    mask = np.zeros((h, w), dtype=bool)
    kind = rng.integers(3)
    if kind == 0:
        mask[rng.integers(h), :] = True
    elif kind == 1:
        mask[:, rng.integers(w)] = True
    else:
        for i in range(min(h, w)):
            mask[i, i] = True
    return mask


def border_mask(rng, h, w):
    mask = np.zeros((h, w), dtype=bool)
    mask[: rng.integers(1, h + 1), rng.integers(w) :] = True  # touches top and right border
    if rng.random() < 0.5:
        mask[-1, :] = True  # whole bottom row
    return mask


def random_mask(rng, h, w):
    kind = rng.integers(7)
    if kind == 0:
        return np.zeros((h, w), dtype=bool)
    if kind == 1:
        return np.ones((h, w), dtype=bool)
    if kind == 2:
        return line_mask(rng, h, w)
    if kind == 3:
        return border_mask(rng, h, w)
    if kind == 4:
        return rng.random((h, w)) < 0.3  # speckle
    return blob_mask(rng, h, w)


SIZES = [(1, 1), (1, 7), (9, 1), (2, 2), (3, 5), (7, 13), (16, 16), (21, 34), (33, 47)]


def test_single_pixel_boundary_by_hand():
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[5, 5] = 7
    assert sorted(map(tuple, np.argwhere(boundary_map(mask)))) == [(4, 4), (4, 5), (5, 4), (5, 5)]
    full = np.ones((6, 8), dtype=bool)
    assert not boundary_map(full).any()  # the image border is never a boundary


def test_footprint_is_skimage_disk_not_cv2_ellipse():
    import cv2

    for r in range(0, 9):
        ys, xs = np.mgrid[-r : r + 1, -r : r + 1]
        np.testing.assert_array_equal(disk_footprint(float(r)), (xs**2 + ys**2 <= r * r).astype(np.uint8))
    ellipse7 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    assert (ellipse7 != disk_footprint(7.0)).any()
    assert boundary_radius(480, 854) == 8.0 and boundary_radius(720, 1280) == 12.0
    assert boundary_radius(10, 10, 3) == 3.0


@pytest.mark.parametrize("bound_th", [0.008, 0.06, 0.15, 2, 3])
def test_random_masks_match_reference(bound_th):
    rng = np.random.default_rng(int(bound_th * 1000))
    for i in range(90):
        h, w = SIZES[i % len(SIZES)]
        gt, pred = random_mask(rng, h, w), random_mask(rng, h, w)
        if i % 5 == 0:
            pred = gt.copy()
            pred[rng.integers(h), rng.integers(w)] ^= True  # near-perfect prediction
        void = rng.random((h, w)) < 0.1 if i % 4 == 0 else None
        np.testing.assert_array_equal(boundary_map(pred), ref_boundary(pred))
        assert f_measure(gt, pred, void, bound_th) == pytest.approx(ref_f(gt, pred, void, bound_th), abs=1e-6)
        assert jaccard(gt, pred, void) == pytest.approx(ref_j(gt, pred, void), abs=1e-6)


def test_larger_frames_radius_two_and_three():
    rng = np.random.default_rng(1)
    for h, w in [(100, 90), (120, 170), (151, 203)]:
        radius = ref_radius(h, w, 0.008)
        assert radius in (2, 3)
        for _ in range(3):
            gt, pred = blob_mask(rng, h, w), blob_mask(rng, h, w)
            assert f_measure(gt, pred) == pytest.approx(ref_f(gt, pred), abs=1e-6)


def test_empty_rules():
    empty, blob = np.zeros((12, 15), bool), np.zeros((12, 15), bool)
    blob[3:7, 4:9] = True
    assert f_measure(empty, empty) == 1.0 and jaccard(empty, empty) == 1.0
    assert f_measure(blob, empty) == 0.0 and f_measure(empty, blob) == 0.0
    assert jaccard(blob, empty) == 0.0
    assert f_measure(blob, blob) == 1.0 and jaccard(blob, blob) == 1.0


def test_sequence_functions_are_per_frame():
    rng = np.random.default_rng(7)
    gt = np.stack([random_mask(rng, 17, 23) for _ in range(6)])
    pred = np.stack([blob_mask(rng, 17, 23) for _ in range(6)]).astype(np.uint8) * 255
    js = [ref_j(g, p) for g, p in zip(gt, pred)]
    fs = [ref_f(g, p) for g, p in zip(gt, pred)]
    np.testing.assert_allclose(jaccard_sequence(gt, pred), js, atol=1e-6)
    np.testing.assert_allclose(f_measure_sequence(gt, pred), fs, atol=1e-6)
    out = j_and_f(gt, pred)
    assert out["J"] == pytest.approx(np.mean(js)) and out["F"] == pytest.approx(np.mean(fs))
    assert out["J&F"] == pytest.approx((np.mean(js) + np.mean(fs)) / 2)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="differ"):
        jaccard(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="2-D"):
        f_measure(np.zeros((2, 4, 5)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="bound_th"):
        boundary_radius(4, 4, -1)

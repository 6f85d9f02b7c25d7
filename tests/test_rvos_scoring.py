"""RVOS scoring against independent restatements of tools/eval_mevis.py and the DAVIS unsupervised protocol."""

import itertools
import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from eval.rvos import (
    MevisDataset,
    MissingPredictionsError,
    RefDavis17Dataset,
    RefYtvosDataset,
    score_expressions,
    score_ref_davis17,
    score_rvos,
)
from eval.rvos.assignment import max_weight_assignment
from eval.rvos.davis_protocol import DavisVideoGT, score_unsupervised_video
from eval.rvos.predictions import write_mask_sequence
from eval.rvos.synthetic import (
    SyntheticRVOSConfig,
    write_synthetic_mevis,
    write_synthetic_predictions,
    write_synthetic_ref_davis17,
    write_synthetic_ref_ytvos,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2

# ---------------------------------------------------------------- reference J / F (loops, distances)


def ref_boundary(seg):
    h, w = seg.shape
    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            nb = [seg[yy, xx] for yy, xx in ((y, x + 1), (y + 1, x), (y + 1, x + 1)) if yy < h and xx < w]
            out[y, x] = any(n != seg[y, x] for n in nb)
    return out


def ref_f(gt, pred, void=None):
    if void is not None:
        gt, pred = gt & ~void, pred & ~void
    gb, pb = ref_boundary(gt), ref_boundary(pred)
    r = math.ceil(0.008 * math.sqrt(gt.shape[0] ** 2 + gt.shape[1] ** 2))
    if not gb.any() and not pb.any():
        return 1.0
    if not gb.any() or not pb.any():
        return 0.0
    a, b = np.argwhere(pb), np.argwhere(gb)
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
    precision = (d2.min(1) <= r * r).mean()
    recall = (d2.min(0) <= r * r).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ref_j(gt, pred, void=None):
    keep = np.ones_like(gt) if void is None else ~void
    union = (gt | pred)[keep].sum()
    return 1.0 if union == 0 else (gt & pred)[keep].sum() / union


def read_pred(path):
    return np.asarray(Image.open(path)) > 0 if path.exists() else None


# ---------------------------------------------------------------- MeViS


def ref_mevis(split_dir, pred_dir):
    """tools/eval_mevis.py restated: union of RLEs per frame, frame means, expression means. A missing video scores
    [0, 0] per expression (as the official script); a missing expression folder or frame (the official script
    crashes) scores 0 too, litelvlm's extension of that rule."""
    meta = json.loads((split_dir / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split_dir / "mask_dict.json").read_text())
    js, fs = [], []
    for vid, entry in meta.items():
        for exp_id, exp in entry["expressions"].items():
            if not (pred_dir / vid).exists():
                js.append(0.0)
                fs.append(0.0)
                continue
            jj, ff = [], []
            for i, frame in enumerate(entry["frames"]):
                width, height = Image.open(split_dir / "JPEGImages" / vid / f"{frame}.jpg").size
                gt = np.zeros((height, width), dtype=np.uint8)
                for a in exp["anno_id"]:
                    if mask_dict[str(a)][i] is not None:
                        gt += mask_utils.decode(mask_dict[str(a)][i])
                gt = gt > 0
                pred = read_pred(pred_dir / vid / exp_id / f"{frame}.png")
                if pred is None:
                    jj, ff = [0.0], [0.0]
                    break
                jj.append(ref_j(gt, pred))
                ff.append(ref_f(gt, pred))
            js.append(np.mean(jj))
            fs.append(np.mean(ff))
    return np.mean(js), np.mean(fs), len(js)


CFG = SyntheticRVOSConfig(num_videos=2, num_frames=4, height=21, width=30, num_objects=2, seed=11)


def noisy_predictions(synth, pred_dir, seed):
    rng = np.random.default_rng(seed)
    for (vid, exp_id) in synth.expressions:
        m = synth.oracle_masks(vid, exp_id)
        m = np.roll(m, rng.integers(-2, 3), axis=2) ^ (rng.random(m.shape) < 0.03)
        if rng.random() < 0.2:
            m[:] = False
        if rng.random() < 0.3:
            m[:, 2:9, 3:15] = True  # overlaps other objects
        write_mask_sequence(pred_dir, vid, exp_id, synth.frames[vid], m)


def test_mevis_matches_restatement_and_perfect_is_one(tmp_path):
    synth = write_synthetic_mevis(tmp_path / "mevis", CFG)
    ds = MevisDataset(tmp_path / "mevis")
    noisy_predictions(synth, tmp_path / "pred", seed=0)
    out = score_expressions(ds, tmp_path / "pred")
    j, f, n = ref_mevis(tmp_path / "mevis/valid_u", tmp_path / "pred")
    assert out["n_expressions"] == n == len(out["expressions"])
    assert out["J"] == pytest.approx(j, abs=1e-6) and out["F"] == pytest.approx(f, abs=1e-6)
    assert out["J&F"] == pytest.approx((j + f) / 2, abs=1e-6) and 0 < out["J&F"] < 1
    write_synthetic_predictions(synth, tmp_path / "perfect")
    perfect = score_rvos(ds, tmp_path / "perfect")
    assert perfect["J"] == perfect["F"] == perfect["J&F"] == 1.0


def test_missing_predictions_error_or_zero(tmp_path):
    synth = write_synthetic_mevis(tmp_path / "mevis", CFG)
    ds = MevisDataset(tmp_path / "mevis")
    noisy_predictions(synth, tmp_path / "pred", seed=1)
    shutil.rmtree(tmp_path / "pred/video01")
    shutil.rmtree(tmp_path / "pred/video00/1")
    (tmp_path / "pred/video00/0/00002.png").unlink()
    with pytest.raises(MissingPredictionsError) as err:
        score_expressions(ds, tmp_path / "pred")
    msg = str(err.value)
    assert "1 missing videos (e.g. video01)" in msg and "1 missing expressions (e.g. video00/1)" in msg
    assert "1 missing frames (e.g. video00/0/00002.png)" in msg and "allow_missing=True" in msg
    assert "J = F = 0" in msg
    out = score_expressions(ds, tmp_path / "pred", allow_missing=True)
    j, f, _ = ref_mevis(tmp_path / "mevis/valid_u", tmp_path / "pred")
    assert out["missing"] == {"videos": 1, "expressions": 1, "frames": 1}
    assert out["J"] == pytest.approx(j, abs=1e-6) and out["F"] == pytest.approx(f, abs=1e-6)
    kinds = {(d["video"], d["exp_id"]): (d["missing"], d["missing_frames"]) for d in out["expressions"]}
    assert kinds == {("video00", "0"): ("frames", 1), ("video00", "1"): ("expression", 4), ("video00", "2"): (None, 0),
                     ("video01", "0"): ("video", 4), ("video01", "1"): ("video", 4), ("video01", "2"): ("video", 4)}
    assert all(d["J"] == d["F"] == 0.0 for d in out["expressions"] if d["missing"])
    with pytest.raises(FileNotFoundError, match="predictions folder not found"):
        score_expressions(ds, tmp_path / "absent", allow_missing=True)


def test_prediction_size_mismatch_is_an_error(tmp_path):
    synth = write_synthetic_mevis(tmp_path / "mevis", CFG)
    write_synthetic_predictions(synth, tmp_path / "pred")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "pred/video00/0/00001.png")
    with pytest.raises(ValueError, match="00001.png: prediction size"):
        score_expressions(MevisDataset(tmp_path / "mevis"), tmp_path / "pred")


def test_ytvos_has_nothing_to_score(tmp_path):
    write_synthetic_ref_ytvos(tmp_path / "yt")
    with pytest.raises(ValueError, match="no ground truth"):
        score_rvos(RefYtvosDataset(tmp_path / "yt"), tmp_path)


# ---------------------------------------------------------------- Ref-DAVIS17


def ref_davis_video(labels, preds):
    """DAVIS unsupervised protocol restated: objects of frame 0, proposals by label, best permutation."""
    void = labels == 255
    clean = np.where(void, 0, labels)
    gts = [clean == k for k in range(1, int(clean[0].max()) + 1)]
    props = [preds == k for k in range(1, int(preds.max()) + 1)]
    props += [np.zeros_like(void)] * max(0, len(gts) - len(props))
    jm = [[np.mean([ref_j(g[t], p[t], void[t]) for t in range(len(g))]) for g in gts] for p in props]
    fm = [[np.mean([ref_f(g[t], p[t], void[t]) for t in range(len(g))]) for g in gts] for p in props]
    best, best_perm = -1.0, None
    for perm in itertools.permutations(range(len(props)), len(gts)):
        total = sum(jm[p][g] + fm[p][g] for g, p in enumerate(perm))
        if total > best + 1e-12:
            best, best_perm = total, perm
    return [jm[p][g] for g, p in enumerate(best_perm)], [fm[p][g] for g, p in enumerate(best_perm)]


def ref_davis(root, pred_dir):
    meta = json.loads((root / "meta_expressions/valid/meta_expressions.json").read_text())["videos"]
    settings = []
    for a in range(4):
        js, fs = [], []
        for vid, entry in meta.items():
            labels = np.stack([np.asarray(Image.open(root / f"valid/Annotations/{vid}/{fr}.png")) for fr in entry["frames"]])
            exp_ids = list(entry["expressions"])[a::4]
            merged = np.zeros(labels.shape, dtype=np.uint8)
            for k, e in enumerate(exp_ids):  # earliest expression wins: paint only unclaimed pixels
                m = np.stack([read_pred(pred_dir / vid / e / f"{fr}.png") for fr in entry["frames"]])
                merged[m & (merged == 0)] = k + 1
            j, f = ref_davis_video(labels, merged)
            js += j
            fs += f
        settings.append((np.mean(js), np.mean(fs)))
    return settings


def test_ref_davis_matches_restatement(tmp_path):
    cfg = SyntheticRVOSConfig(num_videos=2, num_frames=3, height=21, width=30, num_objects=3, seed=5)
    synth = write_synthetic_ref_davis17(tmp_path / "d", cfg)
    ds = RefDavis17Dataset(tmp_path / "d")
    noisy_predictions(synth, tmp_path / "pred", seed=2)
    out = score_ref_davis17(ds, tmp_path / "pred")
    expected = ref_davis(tmp_path / "d", tmp_path / "pred")
    for a, (j, f) in enumerate(expected):
        setting = out["settings"][f"anno_{a}"]
        assert setting["n_objects"] == cfg.num_videos * cfg.num_objects
        assert setting["J"] == pytest.approx(j, abs=1e-6) and setting["F"] == pytest.approx(f, abs=1e-6)
    assert out["J"] == pytest.approx(np.mean([j for j, _ in expected]), abs=1e-6)
    assert out["F"] == pytest.approx(np.mean([f for _, f in expected]), abs=1e-6)
    assert out["n_expressions"] == len(out["expressions"]) == len(ds)


def test_ref_davis_perfect_is_one(tmp_path):
    synth = write_synthetic_ref_davis17(tmp_path / "d", CFG)
    write_synthetic_predictions(synth, tmp_path / "pred")
    out = score_rvos(RefDavis17Dataset(tmp_path / "d"), tmp_path / "pred")
    assert out["J"] == out["F"] == out["J&F"] == 1.0
    assert all(s["J&F"] == 1.0 for s in out["settings"].values())
    assert all(e["J"] == 1.0 and e["object_id"] is not None for e in out["expressions"])


def test_unsupervised_video_more_and_fewer_proposals():
    rng = np.random.default_rng(4)
    labels = np.zeros((3, 18, 22), dtype=np.uint8)
    labels[:, 2:8, 2:9], labels[:, 10:16, 5:12], labels[:, 4:12, 14:20] = 1, 2, 3
    labels[:, 0, :] = 255
    for n_labels in (1, 2, 5):
        preds = np.zeros_like(labels)
        for k in range(1, n_labels + 1):
            y, x = rng.integers(0, 12), rng.integers(0, 15)
            preds[:, y : y + 6, x : x + 7] = k
        got = score_unsupervised_video(DavisVideoGT.from_label_maps(labels), preds)
        j, f = ref_davis_video(labels, preds)
        assert [g["object_id"] for g in got] == [1, 2, 3]
        assert np.mean([g["J"] + g["F"] for g in got]) == pytest.approx(np.mean(np.add(j, f)), abs=1e-6)


def test_assignment_matches_brute_force():
    rng = np.random.default_rng(0)
    for rows, cols in [(1, 1), (2, 3), (3, 2), (4, 4), (5, 3), (3, 6)]:
        for _ in range(10):
            s = rng.random((rows, cols))
            pairs = max_weight_assignment(s)
            assert len(pairs) == min(rows, cols)
            assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
            if rows <= cols:
                best = max(sum(s[r, c] for r, c in enumerate(p)) for p in itertools.permutations(range(cols), rows))
            else:
                best = max(sum(s[r, c] for c, r in enumerate(p)) for p in itertools.permutations(range(rows), cols))
            assert sum(s[r, c] for r, c in pairs) == pytest.approx(best)


def test_gt_objects_come_from_the_first_frame():
    labels = np.zeros((3, 10, 12), dtype=np.uint8)
    labels[:, 1:4, 1:4] = 1
    labels[1:, 6:9, 6:9] = 2  # appears after frame 0: not a GT object (official: max id of frame 0)
    assert len(DavisVideoGT.from_label_maps(labels).objects) == 1
    labels[0, 6:9, 8:11] = 4  # id 4 in frame 0 -> objects 1..4, ids 2 and 3 included
    gt = DavisVideoGT.from_label_maps(labels)
    assert len(gt.objects) == 4 and gt.objects[1][1:].any() and not gt.objects[2].any()

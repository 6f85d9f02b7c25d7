"""The RefCOCO harness end to end on synthetic data: scoring saved predictions, resume, protocols, errors."""

import json
import shutil

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from eval.common.stats import load_stats
from eval.refseg import RefSegConfig, run_refseg
from eval.refseg.cli import main
from eval.refseg.synthetic import SyntheticSegmenter, write_synthetic_refer
from litelvlm.testing.released_refseg import intersection_and_union_gpu, refer_split, released_ground_truth


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_refer(tmp_path_factory.mktemp("refer"), datasets=("refcoco", "refcocog"), seed=3)


# ---- an independent restatement of the benchmark, straight from the files -------------------------------------

def _ground_truth(data, dataset, split):
    """{(ref_id, sent_id): gt mask} for every sentence of the split: the union of the ref's polygons."""
    truth = {}
    for ref, h, w, seg in refer_split(data.dataset_dir, dataset, split):
        if isinstance(seg, list):
            gt = np.zeros((h, w), bool)
            for poly in seg:
                gt |= mask_utils.decode(mask_utils.frPyObjects([poly], h, w))[..., 0].astype(bool)
        elif isinstance(seg["counts"], list):
            gt = mask_utils.decode(mask_utils.frPyObjects(seg, h, w)).astype(bool)
        else:
            gt = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
        for sent in ref["sentences"]:
            truth[(ref["ref_id"], sent["sent_id"])] = gt
    return truth


def _independent_scores(truth, preds):
    ious, inter, union = [], 0, 0
    for key, gt in truth.items():
        pred = preds.get(key, np.zeros_like(gt))
        i, u = int(np.logical_and(pred, gt).sum()), int(np.logical_or(pred, gt).sum())
        inter, union = inter + i, union + u
        ious.append(1.0 if u == 0 else i / (u + 1e-5))
    return float(np.mean(ious)), inter / union


def _write_predictions(path, preds, list_counts_every=0):
    with open(path, "w") as handle:
        for k, ((ref_id, sent_id), mask) in enumerate(preds.items()):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle = {"size": list(rle["size"]), "counts": rle["counts"].decode()}
            if list_counts_every and k % list_counts_every == 0:  # uncompressed RLE is accepted too
                flat = mask.flatten(order="F").astype(int)
                edges = np.flatnonzero(np.diff(flat)) + 1
                counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
                rle = {"size": list(mask.shape), "counts": counts if flat[0] == 0 else [0] + counts}
            handle.write(json.dumps({"ref_id": ref_id, "sent_id": sent_id, "rle": rle}) + "\n")


def _random_predictions(truth, seed):
    rng = np.random.default_rng(seed)
    preds = {}
    for key, gt in truth.items():
        noise = rng.random(gt.shape) < rng.choice([0.0, 0.1, 0.5])
        preds[key] = gt ^ noise if rng.random() < 0.7 else rng.random(gt.shape) < 0.3
    return preds


def _argv(data, results, spec, *extra):
    return ["--dataset_dir", str(data.dataset_dir), "--refer_seg_data", spec, "--results_path", str(results), *extra]


@pytest.mark.parametrize("spec", ["refcoco|val", "refcoco|testB", "refcocog|test"])
def test_saved_predictions_score_like_an_independent_restatement(data, tmp_path, spec):
    truth = _ground_truth(data, *spec.split("|"))
    preds = _random_predictions(truth, seed=len(spec))
    _write_predictions(tmp_path / "pred.jsonl", preds, list_counts_every=3)
    assert main(_argv(data, tmp_path / "res", spec, "--predictions", str(tmp_path / "pred.jsonl"))) == 0
    (entry,) = load_stats(tmp_path / "res")
    giou, ciou = _independent_scores(truth, preds)
    assert entry["giou"] == pytest.approx(giou, abs=1e-6) and entry["ciou"] == pytest.approx(ciou, abs=1e-6)
    assert entry["n_expressions"] == len(truth)
    assert entry["n_images"] == len(data.datasets[spec.split("|")[0]][spec.split("|")[1]])
    for field in ("dataset", "split", "method", "budget", "protocol", "seconds", "timestamp", "checkpoint"):
        assert field in entry
    assert 0.0 <= entry["ciou"] <= 1.0 and 0.0 <= entry["giou"] <= 1.0


def test_perfect_predictions_score_one(data, tmp_path):
    truth = _ground_truth(data, "refcoco", "val")
    _write_predictions(tmp_path / "pred.jsonl", truth)
    assert main(_argv(data, tmp_path, "refcoco|val", "--predictions", str(tmp_path / "pred.jsonl"))) == 0
    (entry,) = load_stats(tmp_path)
    assert entry["ciou"] == pytest.approx(1.0, abs=1e-9) and entry["giou"] == pytest.approx(1.0, abs=1e-4)


def test_missing_predictions_error_or_score_as_empty(data, tmp_path, capsys):
    truth = _ground_truth(data, "refcoco", "val")
    preds = _random_predictions(truth, seed=7)
    dropped = sorted(truth)[:3]
    kept = {k: v for k, v in preds.items() if k not in dropped}
    _write_predictions(tmp_path / "pred.jsonl", kept)
    argv = _argv(data, tmp_path / "a", "refcoco|val", "--predictions", str(tmp_path / "pred.jsonl"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"3 of {len(truth)} expressions have no prediction" in err and "--allow-missing" in err
    assert f"ref_id={dropped[0][0]}, sent_id={dropped[0][1]}" in err
    assert main(argv + ["--allow-missing"]) == 0
    (entry,) = load_stats(tmp_path / "a")
    giou, ciou = _independent_scores(truth, kept)
    assert entry["giou"] == pytest.approx(giou, abs=1e-6) and entry["ciou"] == pytest.approx(ciou, abs=1e-6)


class _Crash(RuntimeError):
    pass


def _crashing_factory(after_calls):
    def factory(config):
        seg = SyntheticSegmenter(config)
        inner = seg.segment

        def segment(*args, **kwargs):
            if seg.calls >= after_calls:
                raise _Crash("simulated crash")
            return inner(*args, **kwargs)

        seg.segment = segment
        return seg
    return factory


def _config(data, results, **kw):
    base = dict(refer_seg_data="refcoco|val", dataset_dir=str(data.dataset_dir), results_path=str(results),
                checkpoint="ckpt", budget=192, save_masks=True)
    return RefSegConfig(**{**base, **kw})


SCORE_FIELDS = ("giou", "ciou", "n_expressions", "n_images", "sum_intersection", "sum_union")


def _scores(entry):
    return {k: entry[k] for k in SCORE_FIELDS}


@pytest.mark.parametrize("protocol", ["all", "glamm"])
def test_resume_after_crash_and_torn_line_reproduces_the_uninterrupted_run(data, tmp_path, protocol):
    full = run_refseg(_config(data, tmp_path / "full", protocol=protocol, refer_seg_data="refcocog|val"),
                      segmenter_factory=SyntheticSegmenter)
    config = _config(data, tmp_path / "crash", protocol=protocol, refer_seg_data="refcocog|val")
    with pytest.raises(_Crash):
        run_refseg(config, segmenter_factory=_crashing_factory(after_calls=1))
    (records,) = (tmp_path / "crash" / "records").glob("*.rank0.jsonl")
    with open(records, "a") as handle:
        handle.write('{"ref_id": 1, "sent_id"')  # torn line of an interrupted write
    with pytest.raises(FileExistsError):
        run_refseg(config, segmenter_factory=SyntheticSegmenter)
    calls = []

    def counting(cfg):
        seg = SyntheticSegmenter(cfg)
        calls.append(seg)
        return seg

    resumed = run_refseg(RefSegConfig(**{**config.__dict__, "resume": True}), segmenter_factory=counting)
    assert _scores(resumed) == _scores(full)
    assert calls[0].calls == full["n_images"] - 1  # finished images are not segmented again
    assert resumed["images_segmented_this_run"] == full["n_images"] - 1


def test_resume_after_limit_and_mid_image_truncation(data, tmp_path):
    full = run_refseg(_config(data, tmp_path / "full", protocol="glamm", seed=4), segmenter_factory=SyntheticSegmenter)
    limited = run_refseg(_config(data, tmp_path / "part", protocol="glamm", seed=4, limit=1),
                         segmenter_factory=SyntheticSegmenter)
    assert limited["n_images"] == 1
    resumed = run_refseg(_config(data, tmp_path / "part", protocol="glamm", seed=4, resume=True),
                         segmenter_factory=SyntheticSegmenter)
    assert _scores(resumed) == _scores(full)
    # cut the full run's records inside an image (one record kept of a multi-expression image) plus a torn line
    shutil.copytree(tmp_path / "full" / "records", tmp_path / "cut" / "records")
    (records,) = (tmp_path / "cut" / "records").glob("*.rank0.jsonl")
    lines = records.read_text().splitlines(keepends=True)
    records.write_text(lines[0] + lines[1][:17])
    again = run_refseg(_config(data, tmp_path / "cut", protocol="glamm", seed=4, resume=True),
                       segmenter_factory=SyntheticSegmenter)
    assert _scores(again) == _scores(full)
    assert len(records.read_text().splitlines()) == full["n_expressions"]


def test_glamm_protocol_is_deterministic_per_seed(data, tmp_path):
    def run(name, seed):
        entry = run_refseg(_config(data, tmp_path / name, protocol="glamm", seed=seed, refer_seg_data="refcoco|testA"),
                           segmenter_factory=SyntheticSegmenter)
        (records,) = (tmp_path / name / "records").glob("*.jsonl")
        return entry, [(r["ref_id"], r["sent_id"], r["question"]) for r in map(json.loads, records.open())]

    first, first_records = run("a", 0)
    second, second_records = run("b", 0)
    other, other_records = run("c", 1)
    assert _scores(first) == _scores(second) and first_records == second_records
    assert other_records != first_records
    assert (other["giou"], other["ciou"]) != (first["giou"], first["ciou"])
    assert first["seed"] == 0 and first["protocol"] == "glamm"


def test_saved_masks_rescore_to_the_same_numbers(data, tmp_path):
    model_run = run_refseg(_config(data, tmp_path / "model"), segmenter_factory=SyntheticSegmenter)
    (records,) = (tmp_path / "model" / "records").glob("*.jsonl")
    assert main(_argv(data, tmp_path / "rescored", "refcoco|val", "--num_retain_tokens", "192",
                      "--predictions", str(records))) == 0
    (entry,) = load_stats(tmp_path / "rescored")
    assert _scores(entry) == _scores(model_run)
    assert model_run["mean_visual_tokens"] == 192.0


def test_stats_entries_are_appended_per_run(data, tmp_path):
    truth = _ground_truth(data, "refcoco", "val")
    _write_predictions(tmp_path / "pred.jsonl", truth)
    for method in ("litelvlm", "visionzip"):
        assert main(_argv(data, tmp_path / "res", "refcoco|val", "--predictions", str(tmp_path / "pred.jsonl"),
                          "--method", method)) == 0
    assert [e["method"] for e in load_stats(tmp_path / "res")] == ["litelvlm", "visionzip"]
    assert main(["--results_path", str(tmp_path / "res"), "--show-stats"]) == 0


def test_rerun_without_resume_and_changed_inputs_are_refused(data, tmp_path, capsys):
    truth = _ground_truth(data, "refcoco", "val")
    _write_predictions(tmp_path / "pred.jsonl", truth)
    _write_predictions(tmp_path / "other.jsonl", truth)
    argv = _argv(data, tmp_path / "res", "refcoco|val", "--predictions", str(tmp_path / "pred.jsonl"))
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert "pass --resume" in capsys.readouterr().err
    other = _argv(data, tmp_path / "res", "refcoco|val", "--predictions", str(tmp_path / "other.jsonl"), "--resume")
    assert main(other) == 2
    err = capsys.readouterr().err
    assert "other inputs" in err and "pred.jsonl" in err and "other.jsonl" in err


@pytest.mark.parametrize("extra, message", [
    (["--dataset_dir", "/nonexistent/data", "--version", "ckpt"], "refs file not found: /nonexistent/data/Refer_Segm"),
    (["--version", "/nonexistent/ckpt"], "GLaMM checkpoint directory not found: /nonexistent/ckpt"),
    (["--refer_seg_data", "refcocog|testB", "--version", "x"], "split 'testB' of refcocog has no refs"),
    (["--refer_seg_data", "refcoco"], "must look like 'refcoco|val'"),
    ([], "--version (the GLaMM checkpoint folder) is required"),
    (["--version", "x", "--allow-missing"], "--allow-missing only applies"),
    (["--version", "x", "--num_retain_tokens", "0"], "positive number of visual tokens"),
    (["--predictions", "/nonexistent/p.jsonl"], "predictions file not found: /nonexistent/p.jsonl"),
])
def test_bad_inputs_give_one_clear_line(data, tmp_path, capsys, extra, message):
    argv = ["--dataset_dir", str(data.dataset_dir), "--results_path", str(tmp_path), "--refer_seg_data",
            "refcoco|val", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


class WaitingSegmenter(SyntheticSegmenter):
    """Waits 50 ms (wall time, no CPU time) inside its one timed stage, under the harness's clock."""

    def segment(self, image, *args, **kwargs):
        import time

        from litelvlm.timing import StageTimer

        timer = StageTimer()
        with timer("segment"):
            time.sleep(0.05)
            res = super().segment(image, *args, **kwargs)
        res.timings = timer.as_dict()
        return res


@pytest.mark.parametrize("clock, counts_waiting", [("cpu", False), ("wall", True), (None, True)])
def test_the_clock_times_the_model_and_is_pinned_in_the_run_meta(data, tmp_path, clock, counts_waiting):
    run_refseg(_config(data, tmp_path, clock=clock, limit=1), segmenter_factory=WaitingSegmenter)
    (records,) = (tmp_path / "records").glob("*.rank0.jsonl")
    timed = [json.loads(line)["timings"]["total"] for line in records.read_text().splitlines()]
    assert timed and all((seconds >= 0.05) == counts_waiting for seconds in timed)
    (meta,) = (tmp_path / "records").glob("*.meta.json")
    assert json.loads(meta.read_text()).get("clock") == clock  # None: not pinned, as before the option
    with pytest.raises(ValueError, match="clock must be one of wall, cpu, got 'gpu'"):
        _config(data, tmp_path, clock="gpu")


def test_wrong_mask_shape_from_the_model_is_an_error(data, tmp_path):
    class OneRowShort(SyntheticSegmenter):
        def segment(self, image, *args, **kwargs):
            res = super().segment(image, *args, **kwargs)
            res.masks = res.masks[:, :-1]
            return res

    with pytest.raises(ValueError, match=r"segmenter returned masks of shape .* expected \(expressions, H, W\)"):
        run_refseg(_config(data, tmp_path), segmenter_factory=OneRowShort)


def test_vision_tower_default_is_a_hub_id_named_when_not_cached(data, tmp_path, capsys):
    """The default --vision-tower is openai/clip-vit-large-patch14-336: offline and not cached, one line says so."""
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert main(_argv(data, tmp_path / "r", "refcoco|val", "--version", str(tmp_path / "ckpt"))) == 2
    err = capsys.readouterr().err
    assert "CLIP vision tower openai/clip-vit-large-patch14-336 is not in the Hugging Face cache" in err
    assert "hf download openai/clip-vit-large-patch14-336" in err and "VISION_TOWER" in err and len(err.strip().splitlines()) == 1


# ---- glamm scores against the released summed-polygon ground truth; all against the union ----------------------

def _released_truth(data, dataset, split):
    """{(ref_id, sent_id): uint8 gt} built as RefCOCO_Segm_ds.py does: sum of the decoded polygons."""
    return {(ref["ref_id"], sent["sent_id"]): released_ground_truth(seg, h, w)
            for ref, h, w, seg in refer_split(data.dataset_dir, dataset, split) for sent in ref["sentences"]}


def _released_pairs(truth, preds, keys):
    """Per-expression foreground (I, U) of the released call; float32 inputs because CPU histc has no int kernel."""
    pairs = {}
    for key in keys:
        prediction = torch.from_numpy(preds[key]).int().float()
        target = torch.from_numpy(truth[key]).int().float()
        inter, union, _ = intersection_and_union_gpu(prediction.contiguous().clone(), target.contiguous(), 2, 255)
        pairs[key] = (int(inter[1]), int(union[1]))
    return pairs


def _released_scores(pairs):
    """The released accuracy_iou loop and meters: gIoU sum / (count + 1e-5), cIoU sum I / (sum U + 1e-10)."""
    giou_sum = sum(i / (u + 1e-5) + (1.0 if u == 0 else 0.0) for i, u in pairs)
    return giou_sum / (len(pairs) + 1e-5), sum(i for i, _ in pairs) / (sum(u for _, u in pairs) + 1e-10)


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory):
    return write_synthetic_refer(tmp_path_factory.mktemp("overlap"), datasets=("refcoco",), seed=1,
                                 images_per_split=4, overlapping_polygons=True)


def test_glamm_scores_the_released_ground_truth_and_all_the_union(overlapping, tmp_path):
    union_truth = _ground_truth(overlapping, "refcoco", "val")
    released_truth = _released_truth(overlapping, "refcoco", "val")
    rng = np.random.default_rng(0)
    # predictions close to the object (the union of its parts), so the overlaps are predicted
    preds = {key: gt ^ (rng.random(gt.shape) < 0.05) for key, gt in union_truth.items()}
    _write_predictions(tmp_path / "pred.jsonl", preds)
    entries = {}
    for protocol in ("glamm", "all"):
        results = tmp_path / protocol
        assert main(_argv(overlapping, results, "refcoco|val", "--predictions", str(tmp_path / "pred.jsonl"),
                          "--protocol", protocol, "--seed", "2")) == 0
        (entries[protocol],) = load_stats(results)
    glamm, all_ = entries["glamm"], entries["all"]
    (records,) = (tmp_path / "glamm" / "records").glob("*.jsonl")
    recorded = {(r["ref_id"], r["sent_id"]): (r["intersection"], r["union"]) for r in map(json.loads, records.open())}
    assert len(recorded) == glamm["n_expressions"] < len(union_truth)  # glamm samples <= 3 sentences per image
    # per expression: the harness's glamm records are the released intersectionAndUnionGPU on the summed polygons
    released = _released_pairs(released_truth, preds, recorded)
    assert recorded == released
    giou, ciou = _released_scores(list(released.values()))
    assert glamm["giou"] == pytest.approx(giou, rel=1e-12) and glamm["ciou"] == pytest.approx(ciou, rel=1e-12)
    assert glamm["ground_truth"] == "summed polygons (released)" and glamm["giou_denominator"] == "expressions + 1e-05"
    # the overlaps matter on these expressions: the union rule gives other pairs and another cIoU
    union_pairs = {k: (int((preds[k] & union_truth[k]).sum()), int((preds[k] | union_truth[k]).sum()))
                   for k in recorded}
    assert union_pairs != released
    union_ciou = sum(i for i, _ in union_pairs.values()) / sum(u for _, u in union_pairs.values())
    assert abs(union_ciou - glamm["ciou"]) > 0.01
    # all: every sentence, union ground truth, plain mean, as the independent restatement predicts
    giou_all, ciou_all = _independent_scores(union_truth, preds)
    assert all_["giou"] == pytest.approx(giou_all, abs=1e-12) and all_["ciou"] == pytest.approx(ciou_all, abs=1e-12)
    assert all_["ground_truth"] == "union of polygons" and all_["giou_denominator"] == "expressions"
    _, released_ciou_all = _released_scores(list(_released_pairs(released_truth, preds, union_truth).values()))
    assert abs(released_ciou_all - all_["ciou"]) > 0.01
    print(f"cIoU union {ciou_all:.6f} vs summed {released_ciou_all:.6f} over all sentences "
          f"(diff {ciou_all - released_ciou_all:+.6f}); glamm sentences: union {union_ciou:.6f} vs summed "
          f"{glamm['ciou']:.6f} (diff {union_ciou - glamm['ciou']:+.6f})")


def test_glamm_records_made_with_the_union_ground_truth_are_not_resumed(overlapping, tmp_path, capsys):
    truth = _ground_truth(overlapping, "refcoco", "val")
    _write_predictions(tmp_path / "pred.jsonl", truth)
    argv = _argv(overlapping, tmp_path / "res", "refcoco|val", "--predictions", str(tmp_path / "pred.jsonl"),
                 "--protocol", "glamm", "--limit", "1")
    assert main(argv) == 0
    (meta_path,) = (tmp_path / "res" / "records").glob("*.meta.json")
    meta = json.loads(meta_path.read_text())
    assert meta["ground_truth"] == "summed polygons (released)"
    assert main(argv[:-2] + ["--resume"]) == 0  # the same rule resumes
    del meta["ground_truth"]  # as a run written before glamm used the released ground truth
    meta_path.write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(argv[:-2] + ["--resume"]) == 2
    assert "other inputs" in capsys.readouterr().err

"""Score a predictions folder ``PRED_DIR/<video>/<exp_id>/<frame>.png`` against RVOS ground truth.

- MeViS (``score_expressions``; tools/eval_mevis.py semantics): per expression, J and F are averaged over all
  its frames; J and F are then averaged over expressions and J&F = (J + F) / 2.
- Ref-DAVIS17 (``score_ref_davis17``): each of the 4 annotator settings is scored with the DAVIS-2017
  unsupervised protocol (see eval/rvos/davis_protocol.py); the reported J, F, J&F are the means of the settings.

Missing videos, expression folders or frames raise MissingPredictionsError listing them (counts and first names)
unless ``allow_missing=True``, in which case they are scored as empty masks and counted under "missing".
Results are fractions in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.metrics.davis import DEFAULT_BOUND_TH, f_measure_sequence, jaccard_sequence

from .datasets import DAVIS_ANNOTATOR_SETTINGS, RefDavis17Dataset, RVOSDataset, RVOSSample
from .davis_protocol import DavisVideoGT, merge_object_masks, score_unsupervised_video
from .predictions import check_predictions, load_prediction_masks

__all__ = ["score_expressions", "score_ref_davis17", "score_rvos"]


def _require_gt(dataset: RVOSDataset) -> None:
    if not dataset.has_gt:
        raise ValueError(f"{dataset.name} split {dataset.split!r} under {dataset.root} has no ground truth to score; "
                         "use eval.rvos.submission.write_submission_zip for the official server")


def _score_expression(dataset, pred_dir: Path, sample: RVOSSample, allow_missing: bool, bound_th: float) -> dict:
    gt = dataset.load_gt_masks(sample)
    pred, n_missing = load_prediction_masks(pred_dir, sample, gt.shape[1:], allow_missing)
    j = float(jaccard_sequence(gt, pred).mean())
    f = float(f_measure_sequence(gt, pred, bound_th=bound_th).mean())
    return {"video": sample.video_id, "exp_id": sample.exp_id, "expression": sample.expression,
            "J": j, "F": f, "J&F": (j + f) / 2, "n_frames": len(sample.frames), "missing_frames": n_missing}


def score_expressions(dataset: RVOSDataset, pred_dir: str | Path, allow_missing: bool = False,
                      bound_th: float = DEFAULT_BOUND_TH) -> dict:
    """MeViS aggregation: mean over expressions of each expression's frame-mean J and F."""
    _require_gt(dataset)
    pred_dir = Path(pred_dir)
    samples = list(dataset.samples())
    if not samples:
        raise ValueError(f"{dataset.meta_path} lists no expressions to score")
    missing = check_predictions(pred_dir, samples, allow_missing)
    details = [_score_expression(dataset, pred_dir, s, allow_missing, bound_th) for s in samples]
    j = float(np.mean([d["J"] for d in details]))
    f = float(np.mean([d["F"] for d in details]))
    return {"dataset": dataset.name, "split": dataset.split, "protocol": "per-expression mean",
            "J": j, "F": f, "J&F": (j + f) / 2, "n_expressions": len(details),
            "missing": missing.as_dict(), "expressions": details}


def _score_davis_setting(dataset: RefDavis17Dataset, pred_dir: Path, video: str, annotator: int,
                         gt: DavisVideoGT, allow_missing: bool, bound_th: float) -> tuple[list[dict], list[dict]]:
    samples = dataset.annotator_samples(video, annotator)
    preds = [load_prediction_masks(pred_dir, s, gt.void.shape[1:], allow_missing)[0] for s in samples]
    labels = merge_object_masks(preds) if preds else np.zeros(gt.void.shape, dtype=np.uint8)
    objects = score_unsupervised_video(gt, labels, bound_th)
    by_proposal = {o["proposal"]: o for o in objects}
    for o in objects:
        o["video"] = video
        o["exp_id"] = samples[o["proposal"]].exp_id if o["proposal"] < len(samples) else None
    expressions = []
    for k, s in enumerate(samples):
        matched = by_proposal.get(k)
        expressions.append({"video": video, "exp_id": s.exp_id, "expression": s.expression, "annotator": annotator,
                            "object_id": matched["object_id"] if matched else None,
                            "J": matched["J"] if matched else None, "F": matched["F"] if matched else None})
    return objects, expressions


def _summarise_setting(annotator: int, objects: list[dict]) -> dict:
    if not objects:
        raise ValueError("Ref-DAVIS17 ground truth holds no objects (first annotation frames are empty)")
    j = float(np.mean([o["J"] for o in objects]))
    f = float(np.mean([o["F"] for o in objects]))
    return {"name": DAVIS_ANNOTATOR_SETTINGS[annotator], "J": j, "F": f, "J&F": (j + f) / 2,
            "n_objects": len(objects), "objects": objects}


def score_ref_davis17(dataset: RefDavis17Dataset, pred_dir: str | Path, allow_missing: bool = False,
                      bound_th: float = DEFAULT_BOUND_TH) -> dict:
    """Ref-DAVIS17: DAVIS unsupervised protocol per annotator setting (anno_0..anno_3) and their mean."""
    if not isinstance(dataset, RefDavis17Dataset):
        raise TypeError(f"score_ref_davis17 needs a RefDavis17Dataset, got {type(dataset).__name__}")
    _require_gt(dataset)
    pred_dir = Path(pred_dir)
    missing = check_predictions(pred_dir, list(dataset.samples()), allow_missing)
    objects: dict[int, list[dict]] = {a: [] for a in range(4)}
    expressions: list[dict] = []
    for video in dataset.video_ids():
        gt = DavisVideoGT.from_label_maps(dataset.load_label_maps(video), bound_th)
        for a in range(4):
            objs, exps = _score_davis_setting(dataset, pred_dir, video, a, gt, allow_missing, bound_th)
            objects[a] += objs
            expressions += exps
    settings = {f"anno_{a}": _summarise_setting(a, objects[a]) for a in range(4)}
    j = float(np.mean([s["J"] for s in settings.values()]))
    f = float(np.mean([s["F"] for s in settings.values()]))
    return {"dataset": dataset.name, "split": dataset.split, "protocol": "DAVIS-2017 unsupervised, 4 settings",
            "J": j, "F": f, "J&F": (j + f) / 2, "n_expressions": len(expressions),
            "missing": missing.as_dict(), "settings": settings, "expressions": expressions}


def score_rvos(dataset: RVOSDataset, pred_dir: str | Path, allow_missing: bool = False) -> dict:
    """Score with the dataset's official protocol: Ref-DAVIS17 -> 4-setting DAVIS, otherwise per expression."""
    if isinstance(dataset, RefDavis17Dataset):
        return score_ref_davis17(dataset, pred_dir, allow_missing)
    return score_expressions(dataset, pred_dir, allow_missing)

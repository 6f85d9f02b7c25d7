"""Score a predictions folder ``PRED_DIR/<video>/<exp_id>/<frame>.png`` against RVOS ground truth.

- MeViS (``score_expressions``; tools/eval_mevis.py semantics): per expression, J and F are averaged over all
  its frames; J and F are then averaged over expressions and J&F = (J + F) / 2.
- Ref-DAVIS17 (``score_ref_davis17``): each of the 4 annotator settings is scored with the DAVIS-2017
  unsupervised protocol (see eval/rvos/davis_protocol.py); the reported J, F, J&F are the means of the settings.

Missing predictions (a ``<video>/`` folder, an ``<exp_id>/`` folder of a present video, or frame PNGs) raise
MissingPredictionsError listing them (counts and first names) unless ``allow_missing=True``. With it, each benchmark
follows what its official scorer does, never "missing = empty mask" where that would be rewarded:

- MeViS: every expression with a missing video, expression folder or frame scores J = F = 0. For a missing video
  this is tools/eval_mevis.py (``if not os.path.exists(pred/vid): out_dict[exp] = [0, 0]``). A missing expression
  folder or frame of a present video makes the official script crash (``cv2.imread`` returns None), so it has no
  official score; litelvlm extends the zero rule to them instead of reading them as empty masks (an empty mask
  scores J = F = 1 on frames whose GT is empty, which would reward the missing prediction).
- Ref-DAVIS17: the official flow merges each setting's expressions into indexed PNGs (one label per expression)
  and an expression that is never painted is just an empty proposal. So a missing expression folder, or missing
  frames of an expression, are scored as an empty proposal on those frames. A video with no prediction at all
  (not one frame PNG of any of its expressions) is refused with MissingPredictionsError even with allow_missing:
  davis2017-evaluation's ``Results._read_mask`` prints "<seq> frame <id> not found!" and calls sys.exit() when a
  sequence's PNGs are absent, so such a video has no official score.
- Splits without public GT (Ref-YouTube-VOS valid, MeViS valid) are not scored here: the upload zip
  (eval/rvos/submission.py) holds an empty mask for each missing frame, counted as ``n_filled_empty`` and warned
  about by the harness; the server scores them as the empty masks they are.

Per-expression details carry ``"missing"`` (None, ``"video"``, ``"expression"`` or ``"frames"``) and
``"missing_frames"`` (absent frame PNGs); the summary's ``"missing"`` counts videos, expressions and frames.
Results are fractions in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.metrics.davis import DEFAULT_BOUND_TH, f_measure_sequence, jaccard_sequence

from .datasets import DAVIS_ANNOTATOR_SETTINGS, RefDavis17Dataset, RVOSDataset, RVOSSample
from .davis_protocol import DavisVideoGT, merge_object_masks, score_unsupervised_video
from .predictions import MissingPredictions, MissingPredictionsError, check_predictions, load_prediction_masks

__all__ = ["score_expressions", "score_ref_davis17", "score_rvos", "missing_rule", "check_scorable"]

MEVIS_MISSING_RULE = "each expression with a missing video, expression folder or frame scores J = F = 0"
DAVIS_MISSING_RULE = ("missing expressions / frames are empty proposals (DAVIS unsupervised protocol); a video "
                      "without any prediction cannot be scored")
ZIP_MISSING_RULE = "missing frames go into the upload zip as empty masks, which the server scores as such"


def missing_rule(dataset: RVOSDataset) -> str:
    """What ``allow_missing`` does with missing predictions of ``dataset`` (one phrase, for messages)."""
    if not dataset.has_gt:
        return ZIP_MISSING_RULE
    return DAVIS_MISSING_RULE if isinstance(dataset, RefDavis17Dataset) else MEVIS_MISSING_RULE


def check_scorable(dataset: RVOSDataset, missing: MissingPredictions) -> None:
    """Ref-DAVIS17 with GT: raise MissingPredictionsError naming the videos without any prediction (the official
    DAVIS scorer exits on missing sequences), whatever ``allow_missing`` says. Other datasets: nothing to check."""
    if not (isinstance(dataset, RefDavis17Dataset) and dataset.has_gt and missing):
        return
    videos = missing.videos_without_predictions(list(dataset.samples()))
    if videos:
        raise MissingPredictionsError(
            f"Ref-DAVIS17 cannot score {len(videos)} video(s) without any prediction under {missing.pred_dir}: "
            f"{', '.join(videos)}; the official DAVIS-2017 scorer (davis2017-evaluation) stops on missing "
            "sequences, so allow_missing / --allow-missing does not cover them")


def _require_gt(dataset: RVOSDataset) -> None:
    if not dataset.has_gt:
        raise ValueError(f"{dataset.name} split {dataset.split!r} under {dataset.root} has no ground truth to score; "
                         "use eval.rvos.submission.write_submission_zip for the official server")


def _score_expression(dataset, pred_dir: Path, sample: RVOSSample, missing: MissingPredictions,
                      bound_th: float) -> dict:
    kind = missing.kind(sample)
    if kind is not None:  # only reached with allow_missing: the zero rule (module docstring)
        j = f = 0.0
    else:
        gt = dataset.load_gt_masks(sample)
        pred, _ = load_prediction_masks(pred_dir, sample, gt.shape[1:], allow_missing=False)
        j = float(jaccard_sequence(gt, pred).mean())
        f = float(f_measure_sequence(gt, pred, bound_th=bound_th).mean())
    return {"video": sample.video_id, "exp_id": sample.exp_id, "expression": sample.expression,
            "J": j, "F": f, "J&F": (j + f) / 2, "n_frames": len(sample.frames), "missing": kind,
            "missing_frames": missing.n_missing_frames(sample)}


def score_expressions(dataset: RVOSDataset, pred_dir: str | Path, allow_missing: bool = False,
                      bound_th: float = DEFAULT_BOUND_TH) -> dict:
    """MeViS aggregation: mean over expressions of each expression's frame-mean J and F.

    With ``allow_missing`` an expression whose video, expression folder or any frame PNG is missing scores
    J = F = 0 (tools/eval_mevis.py for a missing video; the official script crashes on the other two, litelvlm
    extends the zero rule); without it they raise MissingPredictionsError.
    """
    _require_gt(dataset)
    pred_dir = Path(pred_dir)
    samples = list(dataset.samples())
    if not samples:
        raise ValueError(f"{dataset.meta_path} lists no expressions to score")
    missing = check_predictions(pred_dir, samples, allow_missing,
                                f"Pass allow_missing=True to score them: {MEVIS_MISSING_RULE}")
    details = [_score_expression(dataset, pred_dir, s, missing, bound_th) for s in samples]
    j = float(np.mean([d["J"] for d in details]))
    f = float(np.mean([d["F"] for d in details]))
    return {"dataset": dataset.name, "split": dataset.split, "protocol": "per-expression mean",
            "J": j, "F": f, "J&F": (j + f) / 2, "n_expressions": len(details),
            "missing": missing.as_dict(), "expressions": details}


def _score_davis_setting(dataset: RefDavis17Dataset, pred_dir: Path, video: str, annotator: int,
                         gt: DavisVideoGT, missing: MissingPredictions, allow_missing: bool,
                         bound_th: float) -> tuple[list[dict], list[dict]]:
    samples = dataset.annotator_samples(video, annotator)
    # a missing expression folder / frame reads as an empty mask: an empty proposal of the merged label maps
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
                            "J": matched["J"] if matched else None, "F": matched["F"] if matched else None,
                            "missing": missing.kind(s), "missing_frames": missing.n_missing_frames(s)})
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
    """Ref-DAVIS17: DAVIS unsupervised protocol per annotator setting (anno_0..anno_3) and their mean.

    With ``allow_missing`` a missing expression folder or missing frames of an expression are an empty proposal on
    those frames (an object never painted in the merged label maps); a video without any prediction still raises
    MissingPredictionsError naming it (davis2017-evaluation exits on missing sequences). Without ``allow_missing``
    any missing item raises.
    """
    if not isinstance(dataset, RefDavis17Dataset):
        raise TypeError(f"score_ref_davis17 needs a RefDavis17Dataset, got {type(dataset).__name__}")
    _require_gt(dataset)
    pred_dir = Path(pred_dir)
    missing = check_predictions(pred_dir, list(dataset.samples()), allow_missing,
                                f"Pass allow_missing=True to score them: {DAVIS_MISSING_RULE}")
    check_scorable(dataset, missing)
    objects: dict[int, list[dict]] = {a: [] for a in range(4)}
    expressions: list[dict] = []
    for video in dataset.video_ids():
        gt = DavisVideoGT.from_label_maps(dataset.load_label_maps(video), bound_th)
        for a in range(4):
            objs, exps = _score_davis_setting(dataset, pred_dir, video, a, gt, missing, allow_missing, bound_th)
            objects[a] += objs
            expressions += exps
    settings = {f"anno_{a}": _summarise_setting(a, objects[a]) for a in range(4)}
    j = float(np.mean([s["J"] for s in settings.values()]))
    f = float(np.mean([s["F"] for s in settings.values()]))
    return {"dataset": dataset.name, "split": dataset.split, "protocol": "DAVIS-2017 unsupervised, 4 settings",
            "J": j, "F": f, "J&F": (j + f) / 2, "n_expressions": len(expressions),
            "missing": missing.as_dict(), "settings": settings, "expressions": expressions}


def score_rvos(dataset: RVOSDataset, pred_dir: str | Path, allow_missing: bool = False) -> dict:
    """Score with the dataset's official protocol: Ref-DAVIS17 -> 4-setting DAVIS, otherwise per expression (MeViS).
    Missing predictions follow the benchmark's rule (module docstring)."""
    if isinstance(dataset, RefDavis17Dataset):
        return score_ref_davis17(dataset, pred_dir, allow_missing)
    return score_expressions(dataset, pred_dir, allow_missing)

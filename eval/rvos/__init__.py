"""Referring video object segmentation evaluation: dataset readers, scoring, submission zips, synthetic data.

- ``datasets``: MeViS / Ref-YouTube-VOS / Ref-DAVIS17 readers yielding :class:`RVOSSample`.
- ``predictions``: the ``PRED_DIR/<video>/<exp_id>/<frame>.png`` folder (write, read, find missing).
- ``scoring``: MeViS per-expression J&F and the Ref-DAVIS17 4-setting DAVIS unsupervised protocol.
- ``submission``: upload zips for Ref-YouTube-VOS valid and MeViS valid.
- ``synthetic``: tiny datasets in the three real layouts.
- harness (``python -m eval.rvos``): ``config`` (``RVOSConfig``), ``model`` (``build_video_segmenter``), ``runner``
  (``run_rvos``: sharded, resumable, per-video loop), ``report`` (merge, failures, scores / zip, stats.json),
  ``cli``, ``synthetic_segmenter`` (a fake ``VideoSegmenter`` for tests and demos).
"""

from .datasets import (
    DATASET_NAMES,
    DAVIS_ANNOTATOR_SETTINGS,
    MevisDataset,
    RefDavis17Dataset,
    RefYtvosDataset,
    RVOSDataset,
    RVOSSample,
    check_inputs,
    open_rvos_dataset,
    read_frames,
)
from .predictions import (
    MissingPredictions,
    MissingPredictionsError,
    find_missing_predictions,
    prediction_path,
    read_prediction_mask,
    write_mask_sequence,
    write_prediction_masks,
)
from .scoring import score_expressions, score_ref_davis17, score_rvos
from .submission import write_submission_zip
from .config import RVOSConfig  # noqa: E402  (the harness builds on the modules above)
from .runner import run_rvos  # noqa: E402

__all__ = [
    "DATASET_NAMES",
    "DAVIS_ANNOTATOR_SETTINGS",
    "MevisDataset",
    "RefDavis17Dataset",
    "RefYtvosDataset",
    "RVOSDataset",
    "RVOSSample",
    "check_inputs",
    "open_rvos_dataset",
    "read_frames",
    "MissingPredictions",
    "MissingPredictionsError",
    "find_missing_predictions",
    "prediction_path",
    "read_prediction_mask",
    "write_mask_sequence",
    "write_prediction_masks",
    "score_expressions",
    "score_ref_davis17",
    "score_rvos",
    "write_submission_zip",
    "RVOSConfig",
    "run_rvos",
]

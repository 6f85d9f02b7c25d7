"""Ready-to-upload submission zips for the RVOS splits without public GT (Ref-YouTube-VOS valid, MeViS valid).

Entries are 0/255 greyscale PNGs ``<folder>/<video>/<exp_id>/<frame>.png`` for every expression and frame of the
split. The default top folder follows each server's instructions: ``Annotations/`` for Ref-YouTube-VOS
(ReferFormer docs: rename the output folder to Annotations and zip it) and none for MeViS (its
sample_submission_valid.zip holds the video folders directly). Entries are written in dataset order with a fixed
timestamp, so the same predictions give byte-identical zips. Entry names are built with
``eval.common.names.zip_entry`` from checked plain names (no ``..``, ``/`` or absolute parts: no zip slip). The zip
is written through ``eval.common.writer`` (a temporary file renamed over it; no symbolic link followed).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from eval.common.images import check_rgb_image
from eval.common.names import safe_name, zip_entry
from eval.common.writer import atomic_results_file

from .datasets import RefYtvosDataset, RVOSDataset, RVOSSample
from .predictions import check_predictions, mask_png_bytes, prediction_path, read_prediction_mask

__all__ = ["DEFAULT_ZIP_FOLDER", "write_submission_zip"]

DEFAULT_ZIP_FOLDER = {"ref_ytvos": "Annotations", "mevis": ""}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _frame_shape(sample: RVOSSample, index: int) -> tuple[int, int]:
    return check_rgb_image(sample.frame_paths()[index], "frame image").shape


def _sample_masks(pred_dir: Path, sample: RVOSSample, allow_missing: bool):
    for i, frame in enumerate(sample.frames):
        path = prediction_path(pred_dir, sample.video_id, sample.exp_id, frame)
        if path.is_file():
            yield frame, read_prediction_mask(path), False
        elif allow_missing:
            yield frame, np.zeros(_frame_shape(sample, i), dtype=bool), True
        else:
            raise FileNotFoundError(f"prediction mask not found: {path}")


def write_submission_zip(dataset: RVOSDataset, pred_dir: str | Path, zip_path: str | Path,
                         allow_missing: bool = False, folder: str | None = None,
                         root: str | Path | None = None, omit: frozenset[str] = frozenset()) -> dict:
    """Zip the predictions of every expression of ``dataset``; returns counts and the path.

    ``folder`` overrides the top folder (default per dataset, see DEFAULT_ZIP_FOLDER). Missing predictions
    raise MissingPredictionsError unless ``allow_missing``, which writes empty masks of the frame's size. ``omit``:
    keys ``<video>/<exp_id>`` left out of the zip altogether, no folder and no file (``no_seg: skip``: the released
    eval_mevis.py writes nothing for an answer without [SEG]). The zip is written below ``root`` (default: its
    folder) without following a link (``eval.common.writer``).
    """
    if dataset.name not in DEFAULT_ZIP_FOLDER:
        raise ValueError(f"{dataset.name} has public GT: score it with eval.rvos.scoring instead of a zip")
    if dataset.name == "mevis" and dataset.has_gt:
        raise ValueError(f"MeViS split {dataset.split!r} has GT (mask_dict.json): score it locally instead")
    if isinstance(dataset, RefYtvosDataset) and dataset.split != "valid":
        raise ValueError(f"Ref-YouTube-VOS submissions are for the valid split, got {dataset.split!r}")
    pred_dir, zip_path = Path(pred_dir), Path(zip_path)
    top = DEFAULT_ZIP_FOLDER[dataset.name] if folder is None else folder
    every = list(dataset.samples())
    samples = [s for s in every if s.key not in omit]
    missing = check_predictions(pred_dir, samples, allow_missing)
    n_files = n_empty = 0
    with atomic_results_file(zip_path.parent if root is None else root, zip_path) as handle, \
            zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for sample in samples:
            for frame, mask, was_missing in _sample_masks(pred_dir, sample, allow_missing):
                name = zip_entry(sample.video_id, sample.exp_id, f"{safe_name(frame, 'frame name')}.png", folder=top)
                zf.writestr(zipfile.ZipInfo(name, date_time=_ZIP_TIME), mask_png_bytes(mask),
                            compress_type=zipfile.ZIP_DEFLATED)
                n_files += 1
                n_empty += was_missing
    return {"zip": str(zip_path), "n_videos": len(dataset.video_ids()), "n_expressions": len(every),
            "n_omitted": len(every) - len(samples), "n_files": n_files, "n_filled_empty": n_empty,
            "missing": missing.as_dict()}

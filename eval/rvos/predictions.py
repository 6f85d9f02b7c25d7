"""Prediction folders ``PRED_DIR/<video>/<exp_id>/<frame>.png`` (nonzero = object): write, read, check.

What a folder lacks is classified per expression (:func:`sample_missing`): ``"video"`` (no ``<video>`` folder),
``"expression"`` (the video folder exists, ``<exp_id>`` does not) or ``"frames"`` (some frame PNGs absent). How a
missing item is scored under ``allow_missing`` depends on the benchmark and lives in eval/rvos/scoring.py.

Every path here is built from dataset-controlled names (video id, expression id, frame name) through
``eval.common.names``: each must be a plain name, so a crafted ``meta_expressions.json`` cannot name a path outside
the predictions folder. Masks are written through ``eval.common.writer`` below a root folder (the results folder in
a run): no symbolic link is followed, so a link planted in the folder cannot send a mask elsewhere. Reading a
``--predictions`` folder follows links (it is the user's input).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from eval.common.files import DataFileError, require_regular_file
from eval.common.images import open_image
from eval.common.names import safe_name, safe_path
from eval.common.writer import open_results_fd, write_all

from .datasets import RVOSSample

__all__ = [
    "MissingPredictions",
    "MissingPredictionsError",
    "prediction_path",
    "video_dir",
    "expression_dir",
    "mask_png_bytes",
    "write_prediction_masks",
    "write_mask_sequence",
    "read_prediction_mask",
    "sample_missing",
    "find_missing_predictions",
    "check_predictions",
    "load_prediction_masks",
]


def video_dir(pred_dir: str | Path, video_id: str) -> Path:
    """``PRED_DIR/<video>`` with the video id checked to be a plain name (``eval.common.names``)."""
    return safe_path(pred_dir, video_id, what="video id")


def expression_dir(pred_dir: str | Path, video_id: str, exp_id: str) -> Path:
    """``PRED_DIR/<video>/<exp_id>`` with both names checked to be plain names."""
    return safe_path(video_dir(pred_dir, video_id), str(exp_id), what="expression id")


def prediction_path(pred_dir: str | Path, video_id: str, exp_id: str, frame: str) -> Path:
    """``PRED_DIR/<video>/<exp_id>/<frame>.png`` with every name checked to be a plain name."""
    name = f"{safe_name(frame, 'frame name')}.png"
    return safe_path(expression_dir(pred_dir, video_id, exp_id), name, what="frame name")


def mask_png_bytes(mask: np.ndarray) -> bytes:
    """A mask (nonzero = object) as a 0/255 greyscale PNG file's bytes (format given: a frame named '...' makes a
    file name without a usable extension)."""
    buf = io.BytesIO()
    Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_mask_sequence(pred_dir: str | Path, video_id: str, exp_id: str, frames, masks,
                        root: str | Path | None = None) -> list[Path]:
    """Write ``masks`` (T, H, W), nonzero = object, as 0/255 greyscale PNGs, one per frame name, through
    ``eval.common.writer`` below ``root`` (default ``pred_dir``): no link followed from ``root`` down."""
    arr, frames = np.asarray(masks), list(frames)
    if arr.ndim != 3 or len(arr) != len(frames):
        raise ValueError(f"masks for {video_id}/{exp_id} must be (T={len(frames)}, H, W), got shape {arr.shape}")
    paths = []
    for frame, mask in zip(frames, arr):
        path = prediction_path(pred_dir, video_id, exp_id, frame)
        fd = open_results_fd(pred_dir if root is None else root, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            write_all(fd, mask_png_bytes(mask), path)
        finally:
            os.close(fd)
        paths.append(path)
    return paths


def write_prediction_masks(pred_dir: str | Path, sample: RVOSSample, masks,
                           root: str | Path | None = None) -> list[Path]:
    """Write the predicted masks (T, H, W) of ``sample`` under ``pred_dir`` as 0/255 PNGs (``write_mask_sequence``)."""
    return write_mask_sequence(pred_dir, sample.video_id, sample.exp_id, sample.frames, masks, root)


def read_prediction_mask(path: str | Path) -> np.ndarray:
    """A predicted mask PNG as (H, W) bool, nonzero = object (palette PNGs: nonzero index); a missing, corrupt or
    oversized (decompression bomb) file is an error naming it."""
    path = Path(path)
    require_regular_file(path, "prediction mask")
    try:
        with open_image(path, "prediction mask") as img:
            if img.mode not in ("1", "L", "P", "I", "I;16"):
                raise DataFileError(f"{path}: expected a single-channel PNG (modes 1/L/P/I), got {img.mode}")
            return np.asarray(img) != 0
    except DataFileError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise DataFileError(f"prediction mask {path} is truncated or corrupt ({err}); write it again") from None


@dataclass
class MissingPredictions:
    """What a prediction folder lacks: whole videos, expression folders of present videos, frame files.

    ``per_expression`` maps every incomplete expression's key ``<video>/<exp_id>`` to (kind, number of missing
    frame PNGs) with kind ``"video"``, ``"expression"`` or ``"frames"``.
    """

    pred_dir: Path
    videos: list[str] = field(default_factory=list)
    expressions: list[str] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    per_expression: dict[str, tuple[str, int]] = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return bool(self.videos or self.expressions or self.frames)

    def as_dict(self) -> dict[str, int]:
        return {"videos": len(self.videos), "expressions": len(self.expressions), "frames": len(self.frames)}

    def kind(self, sample: RVOSSample) -> str | None:
        """``"video"``, ``"expression"``, ``"frames"`` or None (complete) for one expression."""
        entry = self.per_expression.get(sample.key)
        return entry[0] if entry else None

    def n_missing_frames(self, sample: RVOSSample) -> int:
        """How many of the expression's frame PNGs are absent (all of them for a missing video / expression)."""
        entry = self.per_expression.get(sample.key)
        return entry[1] if entry else 0

    def videos_without_predictions(self, samples: list[RVOSSample]) -> list[str]:
        """Videos (in ``samples`` order) for which not one frame PNG of any of their expressions exists."""
        empty: dict[str, bool] = {}
        for s in samples:
            nothing = s.key in self.per_expression and self.n_missing_frames(s) == len(s.frames)
            empty[s.video_id] = empty.get(s.video_id, True) and nothing
        return [v for v, nothing in empty.items() if nothing]

    def summary(self, limit: int = 5) -> str:
        parts = []
        for kind, names in (("videos", self.videos), ("expressions", self.expressions), ("frames", self.frames)):
            if names:
                more = ", ..." if len(names) > limit else ""
                parts.append(f"{len(names)} missing {kind} (e.g. {', '.join(names[:limit])}{more})")
        return f"predictions under {self.pred_dir}: " + ("; ".join(parts) if parts else "complete")


class MissingPredictionsError(FileNotFoundError):
    """Raised when predictions are missing and missing ones were not allowed."""


def sample_missing(pred_dir: str | Path, sample: RVOSSample) -> tuple[str | None, list[str]]:
    """(kind, absent frame names) of one expression: kind ``"video"`` when ``<video>/`` is absent, ``"expression"``
    when ``<video>/<exp_id>/`` is, ``"frames"`` when some ``<frame>.png`` are, None when complete."""
    if not video_dir(pred_dir, sample.video_id).is_dir():
        return "video", list(sample.frames)
    if not expression_dir(pred_dir, sample.video_id, sample.exp_id).is_dir():
        return "expression", list(sample.frames)
    absent = [f for f in sample.frames if not prediction_path(pred_dir, sample.video_id, sample.exp_id, f).is_file()]
    return ("frames" if absent else None), absent


def find_missing_predictions(pred_dir: str | Path, samples: list[RVOSSample]) -> MissingPredictions:
    """List the videos, expression folders and frame PNGs that ``samples`` need but ``pred_dir`` lacks."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"predictions folder not found: {pred_dir}")
    missing = MissingPredictions(pred_dir)
    for sample in samples:
        kind, absent = sample_missing(pred_dir, sample)
        if kind is None:
            continue
        missing.per_expression[sample.key] = (kind, len(absent))
        if kind == "video":
            if sample.video_id not in missing.videos:
                missing.videos.append(sample.video_id)
        elif kind == "expression":
            missing.expressions.append(sample.key)
        else:
            missing.frames += [f"{sample.key}/{frame}.png" for frame in absent]
    return missing


def check_predictions(pred_dir: str | Path, samples: list[RVOSSample], allow_missing: bool,
                      hint: str = "Pass allow_missing=True to accept them") -> MissingPredictions:
    """Find missing predictions; raise MissingPredictionsError listing them (then ``hint``) unless
    ``allow_missing``. What allow_missing does with them is the caller's rule (eval/rvos/scoring.py)."""
    missing = find_missing_predictions(pred_dir, samples)
    if missing and not allow_missing:
        raise MissingPredictionsError(f"{missing.summary()}. {hint}.")
    return missing


def load_prediction_masks(pred_dir: str | Path, sample: RVOSSample, shape: tuple[int, int],
                          allow_missing: bool = False) -> tuple[np.ndarray, int]:
    """(T, H, W) bool predictions of ``sample`` and how many frames were missing.

    A missing frame raises MissingPredictionsError unless ``allow_missing``, which reads it as an empty mask: the
    Ref-DAVIS17 rule (an object never painted in the merged label maps is an empty proposal). MeViS scoring does
    not read incomplete expressions at all (they score 0, see eval/rvos/scoring.py).
    """
    out = np.zeros((len(sample.frames), *shape), dtype=bool)
    n_missing = 0
    for i, frame in enumerate(sample.frames):
        path = prediction_path(pred_dir, sample.video_id, sample.exp_id, frame)
        if not path.is_file():
            if not allow_missing:
                raise MissingPredictionsError(f"prediction mask not found: {path}")
            n_missing += 1
            continue
        mask = read_prediction_mask(path)
        if mask.shape != tuple(shape):
            raise ValueError(f"{path}: prediction size {mask.shape} differs from the GT size {tuple(shape)}")
        out[i] = mask
    return out, n_missing

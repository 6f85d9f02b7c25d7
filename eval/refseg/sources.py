"""Where predicted masks come from: a segmentation model, or a file of saved predictions.

A source's ``predict(task, image)`` returns a ``Prediction`` holding (E, H, W) bool masks for the task's
expressions. ``ModelSource`` calls a ``GLaMMSegmenter``-like object; ``PredictionSource`` looks masks up in
a JSONL file of ``{"ref_id", "sent_id", "rle"}`` lines (the records the harness writes with --save-masks
have that shape too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from eval.common.files import as_int

from .masks import rle_to_mask
from .protocols import ImageTask

__all__ = ["Prediction", "MaskSource", "ModelSource", "PredictionSource", "load_predictions", "missing_predictions"]

Key = tuple[int, int]


@dataclass
class Prediction:
    """Masks (E, H, W) bool for one task, plus what the model reports about the run."""

    masks: np.ndarray
    num_visual_tokens: int | None = None
    timings: dict[str, float] = field(default_factory=dict)


class MaskSource(Protocol):
    needs_image: bool

    def predict(self, task: ImageTask, image: np.ndarray | None) -> Prediction: ...


class ModelSource:
    """Masks from a segmenter with GLaMMSegmenter's ``segment`` interface."""

    needs_image = True

    def __init__(self, segmenter: Any, method: str, budget: int | None):
        self.segmenter = segmenter
        self.method = method
        self.budget = budget

    def predict(self, task: ImageTask, image: np.ndarray | None) -> Prediction:
        res = self.segmenter.segment(
            image, [e.sentence for e in task.expressions], budget=self.budget, method=self.method,
            questions=list(task.questions), answers=list(task.answers),
            prune_scope=task.prune_scope, conversation=task.conversation)
        masks = np.asarray(res.masks)
        expected = (len(task.expressions), task.image.height, task.image.width)
        if masks.shape != expected:
            raise ValueError(f"segmenter returned masks of shape {masks.shape} for image {task.image.image_id}; "
                             f"expected (expressions, H, W) = {expected}")
        timings = {str(k): float(v) for k, v in (getattr(res, "timings", None) or {}).items()}
        return Prediction(masks=masks != 0, num_visual_tokens=int(res.num_visual_tokens), timings=timings)


class PredictionSource:
    """Masks decoded from saved predictions; with ``allow_missing`` an absent one is an empty mask. ``source`` (the
    predictions file) is named in errors."""

    needs_image = False

    def __init__(self, predictions: dict[Key, dict], allow_missing: bool = False, source: str | Path = "predictions"):
        self.predictions = predictions
        self.allow_missing = allow_missing
        self.source = source

    def predict(self, task: ImageTask, image: np.ndarray | None) -> Prediction:
        h, w = task.image.height, task.image.width
        masks = np.zeros((len(task.expressions), h, w), dtype=bool)
        for i, expr in enumerate(task.expressions):
            rle = self.predictions.get(expr.key)
            if rle is None:
                if not self.allow_missing:
                    raise KeyError(f"no prediction for ref_id={expr.ref_id}, sent_id={expr.sent_id}")
                continue
            try:
                masks[i] = rle_to_mask(rle, h, w)
            except ValueError as err:
                raise ValueError(f"{self.source}: the prediction for ref_id={expr.ref_id}, sent_id={expr.sent_id} "
                                 f"(image {task.image.image_id}): {err}; fix or rewrite the file") from None
        return Prediction(masks=masks)


def load_predictions(path: str | Path) -> dict[Key, dict]:
    """``{(ref_id, sent_id): rle}`` from a JSONL file; malformed or duplicated lines are errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    predictions: dict[Key, dict] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key = (_integer(item["ref_id"]), _integer(item["sent_id"]))
                rle = _checked_rle(item["rle"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError) as err:
                detail = "nested too deeply" if isinstance(err, RecursionError) else f"{type(err).__name__}: {err}"
                raise ValueError(f"{path}: line {number} must be a JSON object with integer 'ref_id', 'sent_id' "
                                 f"and an 'rle' {{size: [h, w], counts}} ({detail})") from None
            if key in predictions:
                raise ValueError(f"{path}: line {number} repeats the prediction for ref_id={key[0]}, sent_id={key[1]}")
            predictions[key] = rle
    return predictions


def _integer(value: object) -> int:
    number = as_int(value)
    if number is None:
        raise ValueError(f"{value!r:.40} is not an integer")
    return number


def _checked_rle(rle: object) -> dict:
    """``rle`` if it is a dict with an integer ``size`` [h, w] and ``counts`` (its decoding is checked later)."""
    if not isinstance(rle, dict) or "counts" not in rle:
        raise ValueError("the rle is not a dict with 'size' and 'counts'")
    size = rle.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(as_int(v) is not None and as_int(v) >= 0 for v in size)):
        raise ValueError(f"the rle size {size!r:.40} is not [height, width]")
    return rle


def missing_predictions(predictions: dict[Key, dict], tasks: Iterable[ImageTask]) -> list[Key]:
    """Keys of the tasks' expressions that have no prediction, in task order."""
    return [key for task in tasks for key in task.keys if key not in predictions]

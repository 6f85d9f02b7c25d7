"""What a run writes for an expression whose answer has no ``[SEG]``: the preset's ``no_seg`` (video/preset.py).

- ``empty`` (litelvlm's default): empty masks are written; the record's status is ``no_seg``.
- ``skip`` (the released ``eval_mevis.py``, which runs MeViS and Ref-YouTube-VOS): nothing is written for the
  expression, no mask file and no ``<video>/<exp_id>/`` folder, so it is absent from a submission zip too; the record's
  status is ``no_seg`` with ``masks_written: false``. Scoring reads it as a missing prediction under the benchmark's
  rule (eval/rvos/scoring.py; MeViS: J = F = 0), which is expected here, not an error.
- ``refuse`` (the released ``eval_referdavis_infer.py``, whose ``video_segments[0][0]`` raises KeyError on such an
  answer and ends the whole run): the video is refused before anything of it is written, with one line naming the
  expression and clip; its expressions are recorded as failed, the run goes on with the other videos and ends
  non-zero, as for any failed video.

With several clips per call (``clip_length``), ``skip`` leaves out an expression with no ``[SEG]`` in any clip (a
clip without one among clips with one gets empty masks on its frames), while ``refuse`` refuses a video as soon as
one clip of one expression has none (the released loop reads every clip's masks).

Why it matters: the official scorers treat a missing prediction and an empty one differently where the ground truth
is empty. MeViS scores a missing expression J = F = 0 but an empty mask J = F = 1 on a frame whose ground truth is
empty (eval/rvos/scoring.py); Ref-DAVIS17 reads a missing expression as an empty proposal (the same score).
"""

from __future__ import annotations

from .datasets import RVOSSample
from .model import VideoPrediction

__all__ = ["NoSegRefusal", "refuse_without_seg", "writes_masks", "record_fields"]


class NoSegRefusal(RuntimeError):
    """A video refused under ``no_seg: refuse``; ``clips_without_seg`` maps exp_id -> its clips without [SEG]."""

    def __init__(self, message: str, clips_without_seg: dict[str, list[int]]):
        super().__init__(message)
        self.clips_without_seg = clips_without_seg


def writes_masks(rule: str, pred: VideoPrediction, index: int) -> bool:
    """Whether expression ``index``'s masks are written: always, except under ``skip`` for an answer without [SEG]."""
    return rule != "skip" or pred.has_seg[index]


def record_fields(rule: str, pred: VideoPrediction, index: int) -> dict:
    """The [SEG] fields of expression ``index``'s record: ``has_seg``, ``clips_without_seg``, ``masks_written``."""
    return {"has_seg": pred.has_seg[index], "clips_without_seg": pred.clips_without_seg(index),
            "masks_written": writes_masks(rule, pred, index)}


def refuse_without_seg(rule: str, video: str, samples: list[RVOSSample], pred: VideoPrediction) -> None:
    """Under ``refuse``, raise ``NoSegRefusal`` (one line) when a clip of an expression of ``video`` has no [SEG]."""
    if rule != "refuse":
        return
    missing = {s.exp_id: pred.clips_without_seg(i) for i, s in enumerate(samples) if pred.clips_without_seg(i)}
    if not missing:
        return
    first = next(s for s in samples if s.exp_id in missing)
    clips = len(pred.clip_has_seg[samples.index(first)])
    more = f" (and {len(missing) - 1} more expression(s) of the video)" if len(missing) > 1 else ""
    raise NoSegRefusal(f"video {video}: expression {first.exp_id} ({first.expression!r}) was answered without [SEG] in "
                       f"clip {missing[first.exp_id][0] + 1} of {clips}{more}; no_seg: refuse, as the released Ref-DAVIS17 "
                       f"script (KeyError): the video is not scored (--preset default writes empty masks instead)", missing)

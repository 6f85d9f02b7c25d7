"""A deterministic stand-in for ``video.VideoSegmenter``, for tests and demos of the RVOS harness (no model).

``SyntheticVideoSegmenter.segment`` has the real interface. Each expression's masks threshold one colour channel of
every frame, with the channel, threshold and a small shift drawn from a hash of (video pixels, expression, budget,
method); about one expression in five gets ``has_seg=False`` and empty masks. ``fail_digests`` makes the call raise
for chosen videos (identified by ``frames_digest`` of their pixels), to exercise failure recording.
Use it from the command line with ``--segmenter-factory eval.rvos.synthetic_segmenter:SyntheticVideoSegmenter``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

__all__ = ["SyntheticVideoResult", "SyntheticVideoSegmenter", "SyntheticSegmentError", "frames_digest"]

CLIP_TOKENS = 576
VIDEO_TOKENS = 64


def frames_digest(frames: np.ndarray) -> str:
    """Hex SHA-256 of a (T, H, W, 3) uint8 frame array (shape included)."""
    frames = np.ascontiguousarray(frames)
    return hashlib.sha256(repr(frames.shape).encode() + frames.tobytes()).hexdigest()


class SyntheticSegmentError(RuntimeError):
    """The failure ``SyntheticVideoSegmenter`` raises for a video listed in ``fail_digests``."""


@dataclass
class SyntheticVideoResult:
    """What ``VideoSegmenter.segment`` returns."""

    masks: np.ndarray
    kept: list
    visual_tokens_per_frame: int
    has_seg: list[bool]
    timings: dict[str, float]


class SyntheticVideoSegmenter:
    """Fake VideoGLaMM: masks derived deterministically from the frames and the expression; counts its calls."""

    def __init__(self, config: Any = None, fail_digests: Iterable[str] = ()):
        self.config = config
        self.fail_digests = set(fail_digests)
        self.calls = 0

    def segment(self, frames: np.ndarray, expressions: list[str], budget: int | None = None,
                method: str = "litelvlm") -> SyntheticVideoResult:
        import torch

        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
        if not expressions:
            raise ValueError("segment needs at least one expression")
        self.calls += 1
        digest = frames_digest(frames)
        if digest in self.fail_digests:
            raise SyntheticSegmentError(f"synthetic failure for the video with digest {digest[:12]}")
        tokens = CLIP_TOKENS if budget is None else min(int(budget), CLIP_TOKENS)
        masks, has_seg = zip(*(self._expression_masks(frames, f"{digest}/{e}/{tokens}/{method}") for e in expressions))
        kept = [torch.arange(tokens, dtype=torch.long).repeat(len(frames), 1) for _ in expressions]
        timings = {"encode": 0.001 * len(frames), "llm": 0.002 * len(expressions), "decode": 0.0005 * len(frames)}
        return SyntheticVideoResult(masks=np.stack(masks), kept=kept, visual_tokens_per_frame=tokens + VIDEO_TOKENS,
                                    has_seg=list(has_seg), timings=timings)

    @staticmethod
    def _expression_masks(frames: np.ndarray, text: str) -> tuple[np.ndarray, bool]:
        h = hashlib.sha256(text.encode()).digest()
        if h[2] < 52:
            return np.zeros(frames.shape[:3], dtype=bool), False
        channel, threshold, shift = h[0] % 3, 40 + h[1] % 150, h[3] % 3 - 1
        return np.roll(frames[..., channel] > threshold, shift, axis=2), True

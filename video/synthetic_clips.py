"""Small synthetic clips cut from the bundled sample scene, and what litelvlm-time sends for each.

Kinds of clip (``CLIP_KINDS``), each ``num_frames`` RGB uint8 frames of ``size`` (H, W) made from the sample scene
(``litelvlm.demo.sample_image_path``), resized to cover the frame:

* ``static``: one frame, repeated.
* ``slow_pan``: a window sliding right across the scene by ``PAN_STEPS["slow_pan"]`` (1%) of the frame width per frame.
* ``fast_pan``: the same at ``PAN_STEPS["fast_pan"]`` (10%) per frame.
* ``moving_object``: the static frame with a small square (an eighth of the short side, the scene's colours
  inverted) crossing it left to right along the middle row.
* ``noise``: independent uniform noise in every frame (seeded).

``time_tokens_per_clip_kind`` runs a segmenter (teacher forced, no masks) on each kind and reports litelvlm-time's
tokens per clip: CLIP-stream cells sent, cells reused (kept but carried by an earlier frame's copy) and video
tokens; ``count_time_tokens`` does the same from a clip's ``FrameSelection`` records, ``time_tokens`` from a
``ClipTokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from litelvlm.demo import sample_image_path
from litelvlm.pruning import ClipTokens, FrameSelection, TokenSelector, get_method, method_from_spec
from litelvlm.viz import load_rgb

__all__ = ["CLIP_KINDS", "PAN_STEPS", "synthetic_clip", "synthetic_clips", "TimeTokens", "count_time_tokens", "time_tokens",
           "time_tokens_per_clip_kind"]

CLIP_KINDS = ("static", "slow_pan", "fast_pan", "moving_object", "noise")
PAN_STEPS = {"slow_pan": 0.01, "fast_pan": 0.10}  # of the frame width per frame
FORCED_ANSWER = "Sure, [SEG]."


# ---------------------------------------------------------------------------- clips
def _check(kind: str, num_frames: int, size) -> tuple[int, int]:
    if kind not in CLIP_KINDS:
        raise ValueError(f"unknown clip kind {kind!r}; choose one of: {', '.join(CLIP_KINDS)}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 16 for s in size)):
        raise ValueError(f"size must be (height, width), two ints >= 16, got {size!r}")
    return int(size[0]), int(size[1])


def _scene(height: int, min_width: int) -> np.ndarray:
    """The sample scene resized (bicubic, aspect kept) to at least ``height`` rows and ``min_width`` columns."""
    scene = load_rgb(sample_image_path())
    scale = max(height / scene.shape[0], min_width / scene.shape[1])
    new_size = (max(min_width, round(scene.shape[1] * scale)), max(height, round(scene.shape[0] * scale)))
    return np.asarray(Image.fromarray(scene).resize(new_size, Image.BICUBIC))


def _window(scene: np.ndarray, height: int, width: int, left: int) -> np.ndarray:
    top = (scene.shape[0] - height) // 2
    return scene[top : top + height, left : left + width]


def _pan(height: int, width: int, num_frames: int, step: float) -> np.ndarray:
    shift = max(1, round(step * width))
    scene = _scene(height, width + shift * (num_frames - 1))
    return np.stack([_window(scene, height, width, f * shift) for f in range(num_frames)])


def _moving_object(height: int, width: int, num_frames: int) -> np.ndarray:
    background = _window(_scene(height, width), height, width, 0)
    side = min(height, width) // 8
    square = 255 - background[:side, :side]
    top = (height - side) // 2
    frames = np.repeat(background[None], num_frames, axis=0)
    for f in range(num_frames):
        left = round(f * (width - side) / max(num_frames - 1, 1))
        frames[f, top : top + side, left : left + side] = square
    return frames


def synthetic_clip(kind: str, num_frames: int = 16, size: tuple[int, int] = (240, 320), seed: int = 0) -> np.ndarray:
    """(num_frames, H, W, 3) uint8 frames of one ``kind`` of ``CLIP_KINDS`` (module docstring); ``seed``: noise only."""
    height, width = _check(kind, num_frames, size)
    if kind == "static":
        return np.repeat(_window(_scene(height, width), height, width, 0)[None], num_frames, axis=0)
    if kind in PAN_STEPS:
        return _pan(height, width, num_frames, PAN_STEPS[kind])
    if kind == "moving_object":
        return _moving_object(height, width, num_frames)
    return np.random.default_rng(seed).integers(0, 256, size=(num_frames, height, width, 3), dtype=np.uint8)


def synthetic_clips(num_frames: int = 16, size: tuple[int, int] = (240, 320), seed: int = 0,
                    kinds: Sequence[str] = CLIP_KINDS) -> dict[str, np.ndarray]:
    """``{kind: synthetic_clip(kind, ...)}`` for each of ``kinds``."""
    return {kind: synthetic_clip(kind, num_frames, size, seed) for kind in kinds}


# ---------------------------------------------------------------------------- litelvlm-time's tokens
@dataclass(frozen=True)
class TimeTokens:
    """What a clip-level method sent for one clip: CLIP-stream cells sent and reused, video tokens sent."""

    kind: str
    frames: int
    cells_sent: int
    cells_reused: int
    video_tokens: int

    @property
    def total(self) -> int:
        """LLM visual tokens of the clip (cells sent + video tokens)."""
        return self.cells_sent + self.video_tokens


def count_time_tokens(selections: Sequence[FrameSelection], kind: str = "") -> TimeTokens:
    """The ``TimeTokens`` of one clip's per-frame ``FrameSelection`` records."""
    return TimeTokens(kind, len(selections), sum(len(s.image_cells) for s in selections),
                      sum(len(s.reused_cells) for s in selections), sum(len(s.video_cells) for s in selections))


def _method(selector) -> TokenSelector:
    if selector is None:
        return get_method("litelvlm-time")
    return method_from_spec(selector) if isinstance(selector, str) else get_method(selector)


def time_tokens(tokens: ClipTokens, budget: int, selector: TokenSelector | str | None = None, kind: str = "") -> TimeTokens:
    """What ``selector`` (default litelvlm-time; a built method or a spec string) sends for ``tokens`` at ``budget``."""
    return count_time_tokens(_method(selector).select_clip(tokens, budget), kind)


def time_tokens_per_clip_kind(segmenter, budget: int = 81, text: str = "the object in the middle",
                              selector: TokenSelector | str | None = None, size: tuple[int, int] = (240, 320), seed: int = 0,
                              kinds: Sequence[str] = CLIP_KINDS) -> list[TimeTokens]:
    """Per kind of clip, what ``selector`` (default litelvlm-time) sends at ``budget`` when ``segmenter`` (a
    ``VideoSegmenter``) segments ``text`` in a clip of ``segmenter.config.num_frames`` frames, teacher forced and
    without masks (the LLM runs once per clip; SAM2 does not)."""
    method = _method(selector)
    if method.stage != "clip":
        raise ValueError(f"method {method.name!r} prunes each frame on its own: it sends no per-frame records to count")
    clips = synthetic_clips(segmenter.config.num_frames, size, seed, kinds)
    rows = []
    for kind, frames in clips.items():
        result = segmenter.segment(frames, [text], budget=budget, method=method, answer=FORCED_ANSWER, mask_mode="none")
        rows.append(count_time_tokens(result.frame_tokens[0], kind))
    return rows

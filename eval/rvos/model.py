"""Building the video segmentation model the harness evaluates (the one place that constructs it), and checking
what its ``segment`` call returns.

The model is ``video.segmenter.VideoSegmenter`` (VideoGLaMM with visual-token pruning):
``VideoSegmenter.from_pretrained(checkpoint=, vision_tower=, video_tower=, device=, dtype=)`` and
``seg.segment(frames (T, H, W, 3) uint8, expressions, budget=, method=)`` returning masks (E, T, H, W),
kept indices, visual tokens per frame, has_seg flags and stage timings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eval.common.model import import_callable, resolve_checkpoint, resolve_device, resolve_dtype

from .config import RVOSConfig

__all__ = ["VideoPrediction", "build_video_segmenter", "check_model_inputs", "check_segment_result"]


def check_model_inputs(config: RVOSConfig) -> None:
    """Fail early (before any record is written) on a bad ``--segmenter-factory`` or missing checkpoint paths."""
    run_preset(config)  # a bad preset fails before any work
    if config.segmenter_factory:
        import_callable(config.segmenter_factory)
        return
    resolve_checkpoint(config.checkpoint, "VideoGLaMM checkpoint", "--version", "videoglamm")
    resolve_checkpoint(config.vision_tower, "CLIP vision tower", "--vision-tower or VISION_TOWER", "clip")
    if config.video_tower is not None:
        resolve_checkpoint(config.video_tower, "InternVideo2 video tower (.pt)", "--video-tower or VIDEO_TOWER")


def run_preset(config: RVOSConfig):
    """The run's ``VideoPreset`` (video/presets/), with the benchmark's overrides applied."""
    from video.preset import load_preset

    return load_preset(config.preset, config.benchmark)


def build_video_segmenter(config: RVOSConfig) -> Any:
    """The segmenter of this run: ``--segmenter-factory`` if given (called with the config), else VideoGLaMM built
    as ``--preset`` says (dtype, autocast, attention, segmenter settings, with ``--memory-budget`` / ``--memory-selector``);
    an explicit ``--dtype`` replaces the preset's precision (that dtype, no autocast)."""
    if config.segmenter_factory:
        return import_callable(config.segmenter_factory)(config)
    check_model_inputs(config)
    from dataclasses import asdict

    from video.segmenter import VideoSegmenter

    preset = run_preset(config)
    device = resolve_device(config.device)
    dtype, autocast = preset.precision(device, resolve_dtype(config.dtype))
    segmenter = VideoSegmenter.from_pretrained(checkpoint=config.checkpoint, vision_tower=config.vision_tower,
                                               video_tower=config.video_tower, device=device, dtype=dtype, autocast=autocast,
                                               attn_implementation=preset.attn_implementation(),
                                               clip_attn_implementation=preset.clip_attn_implementation(),
                                               **asdict(config.segmenter_config()))
    if (config.memory_budget is not None or config.memory_selector is not None) and segmenter.config.mask_mode == "propagate":
        # e.g. a memory budget above the decoder's tokens: refused before any video
        segmenter.model.pixel_decoder.check_memory_options(segmenter.config.memory_budget, segmenter.config.memory_selector)
    return segmenter


@dataclass
class VideoPrediction:
    """What one ``segment`` call produced for a video's expressions, checked and converted to plain types."""

    masks: np.ndarray  # (E, T, H, W) bool
    has_seg: list[bool]
    visual_tokens_per_frame: float
    timings: dict[str, float] = field(default_factory=dict)
    clip_has_seg: list[list[bool]] = field(default_factory=list)  # per expression, per clip: [SEG] in that clip's answer

    def clips_without_seg(self, index: int) -> list[int]:
        """The clips of expression ``index`` whose answer held no [SEG] (all of them when it has none)."""
        return [k for k, flag in enumerate(self.clip_has_seg[index]) if not flag]


def check_segment_result(result: Any, n_expressions: int, frames_shape: tuple[int, ...], video: str) -> VideoPrediction:
    """Validate a ``segment`` result against the call (E expressions, frames (T, H, W, 3)); raise naming the video."""
    masks = np.asarray(result.masks)
    expected = (n_expressions, *frames_shape[:3])
    if masks.shape != expected:
        raise ValueError(f"segmenter returned masks of shape {masks.shape} for video {video}; "
                         f"expected (expressions, frames, H, W) = {expected}")
    has_seg = [bool(flag) for flag in result.has_seg]
    if len(has_seg) != n_expressions:
        raise ValueError(f"segmenter returned {len(has_seg)} has_seg flags for {n_expressions} expressions of "
                         f"video {video}")
    timings = {str(k): float(v) for k, v in (getattr(result, "timings", None) or {}).items()}
    return VideoPrediction(masks=masks != 0, has_seg=has_seg, visual_tokens_per_frame=float(result.visual_tokens_per_frame),
                           timings=timings, clip_has_seg=_clip_has_seg(result, has_seg, video))


def _clip_has_seg(result: Any, has_seg: list[bool], video: str) -> list[list[bool]]:
    """Per expression and clip, whether the clip's answer held [SEG]; a segmenter without ``clip_has_seg`` (one clip
    per call) gives ``[[has_seg]]`` per expression."""
    clips = getattr(result, "clip_has_seg", None)
    if not clips:
        return [[flag] for flag in has_seg]
    rows = [[bool(flag) for flag in row] for row in clips]
    if len(rows) != len(has_seg) or any(not row or any(row) != flag for row, flag in zip(rows, has_seg)):
        raise ValueError(f"segmenter returned clip_has_seg {rows} that does not match has_seg {has_seg} for video {video}")
    return rows

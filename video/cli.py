"""``litelvlm segment-video``: one video, several expressions, per-frame mask PNGs and an overlay mp4."""

from __future__ import annotations

import json

import numpy as np

from litelvlm.outputs import prepare_output_dir
from litelvlm.segment_cli import slug
from litelvlm.viz import PALETTE_NAMES, save_png

from .io import TooManyFrames, read_video, write_overlay_mp4

__all__ = ["segment_video_to_folder"]


def segment_video_to_folder(video_path, texts, *, budget, checkpoint, vision_tower, video_tower, out_dir, method="litelvlm",
                            device="cpu", dtype=None, autocast=None, attn_implementation=None, clip_attn_implementation=None,
                            clip_budget=None, kept_pictures=False, max_frames: int, **config) -> dict:
    """Segment ``texts`` in the video; write ``<expr>/<frame>.png`` masks (0/255), ``overlay.mp4``, ``result.json``,
    and with ``kept_pictures`` ``<expr>/kept_tokens[_clipNN].png`` (``video.kept_pictures``). The whole video is
    held in memory (every frame is segmented), so one of more than ``max_frames`` frames (``--max-frames``,
    counted from its container) is refused before it is decoded."""
    from .segmenter import VideoSegmenter

    frames, names, fps = _read_bounded(video_path, max_frames)  # fail on a bad video before loading the model
    out = prepare_output_dir(out_dir)  # and on a bad --out
    segmenter = VideoSegmenter.from_pretrained(checkpoint, vision_tower=vision_tower, video_tower=video_tower,
                                               device=device, dtype=dtype, autocast=autocast, attn_implementation=attn_implementation,
                                               clip_attn_implementation=clip_attn_implementation, **config)
    result = segmenter.segment(frames, texts, budget=budget, method=method, clip_budget=clip_budget)
    pictures = _kept_pictures(frames, result, texts, segmenter.stream_geometry()) if kept_pictures else {}
    rows = []
    for i, (text, masks) in enumerate(zip(texts, result.masks)):
        folder = out / f"{i:02d}_{slug(text)}"
        for name, mask in zip(names, masks):
            save_png(mask.astype(np.uint8) * 255, folder / f"{name}.png")
        rows.append({"text": text, "masks": str(folder), "has_seg": result.has_seg[i], "answers": result.answers[i],
                     "overlay_colour": PALETTE_NAMES[i % len(PALETTE_NAMES)],
                     "mask_pixels_per_frame": [int(m.sum()) for m in masks], "llm_visual_tokens": result.llm_visual_tokens[i]})
        if kept_pictures:
            rows[-1]["kept_pictures"] = [str(figure.save(folder / name)) for name, figure in pictures[i]]
    overlay = write_overlay_mp4(frames, result.masks, out / "overlay.mp4", fps or 10.0)
    report = {"video": str(video_path), "frames": len(frames), "method": result.method, "budget": budget, "clip_budget": clip_budget,
              "sampled_frames": result.sampled_frames,
              "visual_tokens_per_frame": result.visual_tokens_per_frame, "clip_tokens_per_frame": result.clip_tokens_per_frame,
              "timings": result.timings, "overlay": str(overlay), "expressions": rows}
    (out / "result.json").write_text(json.dumps(report, indent=2))
    return report


def _read_bounded(video_path, max_frames: int):
    """``read_video`` refusing more than ``max_frames`` frames, in the words of ``--max-frames``."""
    try:
        return read_video(video_path, max_frames=max_frames)
    except TooManyFrames as err:
        raise ValueError(f"{err.what} has {err.counted}, more than --max-frames {max_frames}: raise --max-frames (memory: "
                         f"width x height x 3 bytes a frame) or cut the video, e.g. ffmpeg -i IN -frames:v {max_frames} OUT.mp4") from None


def _kept_pictures(frames, result, texts, geometry) -> dict[int, list]:
    """Per expression, (file name, titled figure) of each clip's kept-token sheet."""
    from .kept_pictures import kept_token_figures

    out: dict[int, list] = {i: [] for i in range(len(texts))}
    figures = kept_token_figures(frames, result, texts, geometry)
    several = len(result.sampled_frames) > 1
    for e, c, figure in figures:
        out[e].append((f"kept_tokens_clip{c:02d}.png" if several else "kept_tokens.png", figure))
    return out

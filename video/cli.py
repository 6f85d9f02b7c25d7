"""``litelvlm segment-video``: one video, several expressions, per-frame mask PNGs and an overlay mp4."""

from __future__ import annotations

import json

import numpy as np

from litelvlm.outputs import prepare_output_dir
from litelvlm.segment_cli import PALETTE_NAMES, slug
from litelvlm.viz import mask_overlay, save_png

from .io import read_video, write_mp4

__all__ = ["segment_video_to_folder"]


def segment_video_to_folder(video_path, texts, *, budget, checkpoint, vision_tower, video_tower, out_dir, method="litelvlm",
                            device="cpu", dtype=None, attn_implementation=None, clip_attn_implementation=None, **config) -> dict:
    """Segment ``texts`` in the video; write ``<expr>/<frame>.png`` masks (0/255), ``overlay.mp4``, ``result.json``."""
    from .segmenter import VideoSegmenter

    frames, names, fps = read_video(video_path)  # fail on a bad video before loading the model
    out = prepare_output_dir(out_dir)  # and on a bad --out
    segmenter = VideoSegmenter.from_pretrained(checkpoint, vision_tower=vision_tower, video_tower=video_tower,
                                               device=device, dtype=dtype, attn_implementation=attn_implementation,
                                               clip_attn_implementation=clip_attn_implementation, **config)
    result = segmenter.segment(frames, texts, budget=budget, method=method)
    rows = []
    for i, (text, masks) in enumerate(zip(texts, result.masks)):
        folder = out / f"{i:02d}_{slug(text)}"
        for name, mask in zip(names, masks):
            save_png(mask.astype(np.uint8) * 255, folder / f"{name}.png")
        rows.append({"text": text, "masks": str(folder), "has_seg": result.has_seg[i], "answers": result.answers[i],
                     "overlay_colour": PALETTE_NAMES[i % len(PALETTE_NAMES)],
                     "mask_pixels_per_frame": [int(m.sum()) for m in masks]})
    overlay = write_mp4(np.stack([mask_overlay(f, result.masks[:, t]) for t, f in enumerate(frames)]), out / "overlay.mp4", fps or 10.0)
    report = {"video": str(video_path), "frames": len(frames), "method": result.method, "budget": budget,
              "visual_tokens_per_frame": result.visual_tokens_per_frame, "clip_tokens_per_frame": result.clip_tokens_per_frame,
              "timings": result.timings, "overlay": str(overlay), "expressions": rows}
    (out / "result.json").write_text(json.dumps(report, indent=2))
    return report

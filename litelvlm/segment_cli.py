"""``litelvlm segment``: one image, several expressions, masks and pictures written to a folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .viz import kept_token_map, load_rgb, mask_overlay, save_png

__all__ = ["segment_image_to_folder", "slug"]


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of ``text``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "expr"


def segment_image_to_folder(image_path, texts, *, budget, glamm_dir, vision_tower, out_dir, method="litelvlm", device="cpu", dtype=None) -> dict:
    """Segment ``texts`` in the image; write mask PNGs (0/255), an overlay, kept-token maps and ``result.json``."""
    from .glamm import GLaMMSegmenter

    image = load_rgb(image_path)  # fail on a bad image before loading a 7B model
    segmenter = GLaMMSegmenter.from_pretrained(glamm_dir, vision_tower=vision_tower, device=device, dtype=dtype)
    result = segmenter.segment(image, texts, budget=budget, method=method)
    out = Path(out_dir)
    side = segmenter.clip.vision.config.image_size // segmenter.clip.vision.config.patch_size
    rows = []
    for i, (text, mask, kept) in enumerate(zip(texts, result.masks, result.kept)):
        stem = f"{i:02d}_{slug(text)}"
        mask_path = save_png(mask.astype(np.uint8) * 255, out / f"mask_{stem}.png")
        kept_path = save_png(kept_token_map(image, (side, side), kept.numpy(), crop=segmenter.clip.vision.config.image_size), out / f"kept_{stem}.png")
        rows.append({"text": text, "mask": str(mask_path), "kept_map": str(kept_path), "mask_pixels": int(mask.sum()),
                     "kept": kept.tolist()})
    overlay = save_png(mask_overlay(image, result.masks), out / "overlay.png")
    report = {"image": str(image_path), "method": result.method, "budget": budget, "num_visual_tokens": result.num_visual_tokens,
              "timings": result.timings, "overlay": str(overlay), "expressions": rows}
    (out / "result.json").write_text(json.dumps(report, indent=2))
    return report

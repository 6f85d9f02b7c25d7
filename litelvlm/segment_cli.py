"""``litelvlm segment``: one image, several expressions, masks and pictures written to a folder.

The output folder is checked before any model loads (``litelvlm.outputs.prepare_output_dir``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .outputs import prepare_output_dir

from .viz import DROPPED_COLOUR, KEPT_COLOUR, PALETTE, PALETTE_NAMES, Figure, kept_token_map, load_rgb, mask_overlay, save_png

__all__ = ["segment_image_to_folder", "result_pictures", "slug", "budget_phrase"]



def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of ``text``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "expr"


def budget_phrase(method: str, kept: int, total: int, unit: str = "tokens") -> str:
    """'method litelvlm: 64 of 576 visual tokens kept' / 'no pruning: all 576 visual tokens'."""
    if method == "none":
        return f"no pruning (method none): all {total} visual {unit}"
    return f"method {method}: {kept} of {total} visual {unit} kept"


def result_pictures(image: np.ndarray, result, texts, clip_config, source: str = "the image") -> tuple[Figure, list[Figure], list[dict]]:
    """The titled figures of one ``GLaMMSegmenter`` result: the mask overlay (legend: colour per expression),
    one kept-token map per expression (legend: kept / dropped), and a summary row per expression."""
    from .pruning import get_method  # torch: imported once a result exists

    side, crop = clip_config.image_size // clip_config.patch_size, clip_config.image_size
    total = side * side
    pruning = budget_phrase(result.method, result.num_visual_tokens, total)
    kept_what = (f"kept by {result.method} inside the LLM (all tokens enter it)" if get_method(result.method).stage == "llm"
                 else "kept: reaches the LLM")
    maps, rows = [], []
    for i, (text, mask, kept) in enumerate(zip(texts, result.masks, result.kept)):
        maps.append(Figure(
            kept_token_map(image, (side, side), kept.numpy(), crop=crop),
            [f"Kept visual tokens, expression {i + 1} of {len(texts)}", f"'{text}'", pruning,
             f"CLIP's view of the image ({crop}x{crop} centre crop), one cell per token"],
            [(KEPT_COLOUR, f"{kept_what} ({len(kept)} tokens, framed blue)"),
             (DROPPED_COLOUR, f"dropped: never seen by the LLM ({total - len(kept)} tokens, dimmed)")]))
        rows.append({"text": text, "mask_pixels": int(mask.sum()), "overlay_colour": PALETTE_NAMES[i % len(PALETTE_NAMES)],
                     "kept": kept.tolist()})
    legend = [(PALETTE[i % len(PALETTE)], f"'{row['text']}': {row['mask_pixels']} mask pixels"
               + ("" if row["mask_pixels"] else " (empty mask)")) for i, row in enumerate(rows)]
    overlay = Figure(mask_overlay(image, result.masks), [f"Masks of {len(texts)} expression(s) on {source}", pruning], legend)
    return overlay, maps, rows


def segment_image_to_folder(image_path, texts, *, budget, glamm_dir, vision_tower, out_dir, method="litelvlm", device="cpu", dtype=None) -> dict:
    """Segment ``texts`` in the image; write mask PNGs (0/255), an overlay, kept-token maps and ``result.json``.

    The overlay and the kept-token maps carry a title (what, which expression, method, budget) and a legend."""
    from .glamm import GLaMMSegmenter

    image = load_rgb(image_path)  # fail on a bad image before loading a 7B model
    out = prepare_output_dir(out_dir)  # and on a bad --out
    segmenter = GLaMMSegmenter.from_pretrained(glamm_dir, vision_tower=vision_tower, device=device, dtype=dtype)
    result = segmenter.segment(image, texts, budget=budget, method=method)
    overlay, maps, rows = result_pictures(image, result, texts, segmenter.clip.vision.config, Path(image_path).name)
    for i, (text, mask, picture, row) in enumerate(zip(texts, result.masks, maps, rows)):
        stem = f"{i:02d}_{slug(text)}"
        row["mask"] = str(save_png(mask.astype(np.uint8) * 255, out / f"mask_{stem}.png"))
        row["kept_map"] = str(picture.save(out / f"kept_{stem}.png"))
    overlay_path = overlay.save(out / "overlay.png")
    report = {"image": str(image_path), "method": result.method, "budget": budget, "num_visual_tokens": result.num_visual_tokens,
              "timings": result.timings, "overlay": str(overlay_path), "expressions": rows}
    (out / "result.json").write_text(json.dumps(report, indent=2))
    return report

"""``litelvlm segment``: one image, several expressions, masks and pictures written to a folder.

Also the check every writing sub-command shares: the output folder (``prepare_out_dir``, before any model loads)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np

from .viz import DROPPED_COLOUR, KEPT_COLOUR, PALETTE, kept_token_map, load_rgb, mask_overlay, save_annotated_png, save_png

__all__ = ["segment_image_to_folder", "slug", "prepare_out_dir", "budget_phrase", "PALETTE_NAMES"]

PALETTE_NAMES = ("red", "green", "yellow", "blue", "orange", "purple", "cyan", "magenta")  # viz.PALETTE, in order


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of ``text``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "expr"


def prepare_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create the output folder ``path`` (with its parents), or raise a ``ValueError`` saying why it cannot hold
    the outputs (an existing file, a parent that is a file, no permission, not writable). Call it before
    loading any model, so a bad ``--out`` costs nothing."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag} {out} is an existing file, not a folder: pass a folder path (created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
        where = f"{blocker} is a file" if blocker is not None else "a part of the path is not a folder"
        raise ValueError(f"{flag} {out}: cannot create the folder, {where}") from None
    except OSError as err:
        raise ValueError(f"{flag} {out}: cannot create the folder ({err.strerror or err})") from None
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ValueError(f"{flag} {out} is not writable ({err.strerror or err}): pass a folder you can write to") from None
    return out


def budget_phrase(method: str, kept: int, total: int, unit: str = "tokens") -> str:
    """'method litelvlm: 64 of 576 visual tokens kept' / 'no pruning: all 576 visual tokens'."""
    if method == "none":
        return f"no pruning (method none): all {total} visual {unit}"
    return f"method {method}: {kept} of {total} visual {unit} kept"


def segment_image_to_folder(image_path, texts, *, budget, glamm_dir, vision_tower, out_dir, method="litelvlm", device="cpu", dtype=None) -> dict:
    """Segment ``texts`` in the image; write mask PNGs (0/255), an overlay, kept-token maps and ``result.json``.

    The overlay and the kept-token maps carry a title (what, which expression, method, budget) and a legend."""
    from .glamm import GLaMMSegmenter

    image = load_rgb(image_path)  # fail on a bad image before loading a 7B model
    out = prepare_out_dir(out_dir)  # and on a bad --out
    segmenter = GLaMMSegmenter.from_pretrained(glamm_dir, vision_tower=vision_tower, device=device, dtype=dtype)
    result = segmenter.segment(image, texts, budget=budget, method=method)
    config = segmenter.clip.vision.config
    side, crop = config.image_size // config.patch_size, config.image_size
    total = side * side
    pruning = budget_phrase(result.method, result.num_visual_tokens, total)
    kept_what = "kept by FastV inside the LLM (all tokens enter it)" if result.method == "fastv" else "kept: reaches the LLM"
    rows = []
    for i, (text, mask, kept) in enumerate(zip(texts, result.masks, result.kept)):
        stem = f"{i:02d}_{slug(text)}"
        mask_path = save_png(mask.astype(np.uint8) * 255, out / f"mask_{stem}.png")
        kept_path = save_annotated_png(
            kept_token_map(image, (side, side), kept.numpy(), crop=crop), out / f"kept_{stem}.png",
            [f"Kept visual tokens, expression {i + 1} of {len(texts)}", f"'{text}'", pruning,
             f"CLIP's view of the image ({crop}x{crop} centre crop), one cell per token"],
            [(KEPT_COLOUR, f"{kept_what} ({len(kept)} tokens, framed blue)"),
             (DROPPED_COLOUR, f"dropped: never seen by the LLM ({total - len(kept)} tokens, dimmed)")],
        )
        rows.append({"text": text, "mask": str(mask_path), "kept_map": str(kept_path), "mask_pixels": int(mask.sum()),
                     "overlay_colour": PALETTE_NAMES[i % len(PALETTE_NAMES)], "kept": kept.tolist()})
    legend = [(PALETTE[i % len(PALETTE)], f"'{row['text']}': {row['mask_pixels']} mask pixels"
               + ("" if row["mask_pixels"] else " (empty mask)")) for i, row in enumerate(rows)]
    overlay = save_annotated_png(mask_overlay(image, result.masks), out / "overlay.png",
                                 [f"Masks of {len(texts)} expression(s) on {Path(image_path).name}", pruning], legend)
    report = {"image": str(image_path), "method": result.method, "budget": budget, "num_visual_tokens": result.num_visual_tokens,
              "timings": result.timings, "overlay": str(overlay), "expressions": rows}
    (out / "result.json").write_text(json.dumps(report, indent=2))
    return report

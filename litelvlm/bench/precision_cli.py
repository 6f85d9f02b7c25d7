"""``litelvlm precision``: the kept-token agreement table of ``litelvlm.bench.precision``."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..clip import load_clip_towers, random_clip_towers
from ..glamm.prompt import question_for
from ..table import print_table
from ..viz import load_rgb
from . import check_outputs
from .precision import PAIRS, kept_token_changes

__all__ = ["run_precision", "default_images", "DEFAULT_TEXTS"]

DEFAULT_TEXTS = tuple(question_for(e) for e in ("red car on the left", "man in a blue shirt", "the brown dog"))


def default_images() -> list[np.ndarray]:
    """The bundled sample scene and 7 deterministic crops / flips of it (8 images)."""
    from ..demo import sample_image_path

    scene = load_rgb(sample_image_path())
    h, w = scene.shape[:2]
    crops = [scene, scene[:, ::-1], scene[: h * 3 // 4], scene[h // 4 :], scene[:, : w * 3 // 4], scene[:, w // 4 :],
             scene[h // 8 : h * 7 // 8, w // 8 : w * 7 // 8], scene[::-1]]
    return [np.ascontiguousarray(c) for c in crops]


def _towers(args, tmp: Path):
    if args.vision_tower:
        return load_clip_towers(args.vision_tower), f"CLIP from {args.vision_tower}"
    torch.manual_seed(args.seed)
    if args.scale == "tiny":
        from ..tiny_clip import make_tiny_clip

        return load_clip_towers(make_tiny_clip(tmp / "clip", seed=args.seed)), "random weights: the tiny test CLIP"
    from .image import architecture_for

    return random_clip_towers(architecture_for(args.scale)), f"random weights: GLaMM's CLIP at the {args.scale} bench scale"


def run_precision(args) -> int:
    """Print (and optionally write) the table; returns the exit status."""
    budgets = tuple(args.budget or (64, 192))
    texts = list(args.text or DEFAULT_TEXTS)
    images = [load_rgb(p) for p in args.image] if args.image else default_images()
    check_outputs(None, args.json)  # an unusable --json fails before the work
    with tempfile.TemporaryDirectory() as tmp:
        towers, weights = _towers(args, Path(tmp))
        rows, state_error = kept_token_changes(towers, images, texts, budgets)
    table = []
    for row in rows:
        entry = {"budget": row.budget}
        for a, b in PAIRS:
            key = f"{a} vs {b}"
            entry[f"{key}: changed (mean/max)"] = f"{row.changed_mean[key]:.1f} / {row.changed_max[key]}"
        entry["ties at the cut (bf16-eager)"] = f"{row.boundary_ties} of {row.images}"
        table.append(entry)
    print_table(table, title=f"Kept tokens (LiteLVLM, {len(texts)} texts scored jointly) that differ between precision "
                             f"paths, over {len(images)} images; {weights}")
    print("max |select-layer states - fp32|: " + ", ".join(f"{k} {v:.2e}" for k, v in state_error.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"weights": weights, "texts": texts, "images": len(images),
                                               "rows": [asdict(r) for r in rows], "state_error": state_error}, indent=2))
        print(f"wrote {args.json}")
    return 0

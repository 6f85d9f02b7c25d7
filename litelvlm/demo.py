"""``litelvlm demo``: prune the bundled sample image with a tiny *random* CLIP and draw the kept tokens.

The weights are random (nothing is downloaded), so which tokens are kept says nothing about the
method's quality; the demo shows the mechanics: budgets, the similarity/context split, the outputs.
"""

from __future__ import annotations

import json
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .clip import load_clip_towers
from .pruning import context_scores, text_similarity
from .outputs import prepare_output_dir
from .viz import DROPPED_COLOUR, HIGHLIGHT_COLOUR, KEPT_COLOUR, kept_token_map, load_rgb, save_annotated_png

__all__ = ["run_demo", "sample_image_path"]


def sample_image_path() -> Path:
    """The bundled synthetic sample scene (drawn for this project)."""
    return Path(str(resources.files("litelvlm") / "assets" / "sample_scene.jpg"))


def run_demo(out_dir: str | Path, texts: list[str], budgets: list[int], clip_dir: str | Path | None = None, seed: int = 0) -> dict:
    """Prune the sample image at each budget; write one kept-token PNG per budget (titled, with a legend) and
    ``summary.json``."""
    out = prepare_output_dir(out_dir)
    torch.manual_seed(seed)
    random_weights = clip_dir is None
    weights = "random (tiny CLIP written on the fly)" if random_weights else str(clip_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if clip_dir is None:
            from .tiny_clip import make_tiny_clip

            clip_dir = make_tiny_clip(Path(tmp) / "clip", seed=seed)
        clip = load_clip_towers(clip_dir)
        image = load_rgb(sample_image_path())
        pixels = clip.image_processor(images=[image], return_tensors="pt", input_data_format="channels_last").pixel_values
        pruner = clip.pruner()
        text_embeds = pruner.text_embeds(texts)
        frames = pruner.encode(pixels)
        summary = {"weights": weights, "texts": texts, "num_tokens": frames.num_tokens, "budgets": []}
        sim = text_similarity(frames.projected(), text_embeds)[0]
        ctx = context_scores(frames.query, frames.key, frames.value)[0]
        for budget in budgets:
            kept = pruner.select(frames, budget, text_embeds).indices[0].numpy()
            per_text = budget // len(texts)
            similar = np.unique(torch.topk(sim, per_text, dim=-1, largest=False).indices.numpy())
            picture = kept_token_map(image, frames.grid, kept, highlight=similar, crop=pixels.shape[-1])
            title = [f"LiteLVLM demo: kept tokens at budget {budget} of {frames.num_tokens}",
                     *(f"text {j + 1}: '{t}'" for j, t in enumerate(texts)),
                     "RANDOM WEIGHTS (tiny CLIP made on the fly): the mechanics only, not the method's quality"
                     if random_weights else f"weights: {clip_dir}"]
            legend = [
                (HIGHLIGHT_COLOUR, f"similarity tokens ({similar.size}): each text's {per_text} lowest-similarity tokens, framed red"),
                (KEPT_COLOUR, f"context tokens ({int(budget - similar.size)}): the rest of the budget by CLS attention, framed blue"),
                (DROPPED_COLOUR, f"dropped ({frames.num_tokens - len(kept)}): dimmed, never reach the LLM"),
            ]
            path = save_annotated_png(picture, out / f"kept_{budget}.png", title, legend)
            summary["budgets"].append({
                "budget": budget, "similarity_tokens": int(similar.size), "context_tokens": int(budget - similar.size),
                "top_context_kept": int(np.isin(torch.argsort(ctx, descending=True)[:10].numpy(), kept).sum()),
                "picture": str(path),
            })
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary

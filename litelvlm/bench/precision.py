"""How far LiteLVLM's kept tokens depend on the precision path of the CLIP towers.

The release runs CLIP in bf16 with transformers 4's eager attention (its only CLIP attention); transformers 5
defaults to SDPA. Three paths over the same weights, images and texts:

* ``fp32``: float32, SDPA (litelvlm's CPU default);
* ``bf16-eager``: bfloat16, eager attention (the released path; GLaMM ``--protocol glamm`` uses it);
* ``bf16-sdpa``: bfloat16, SDPA (transformers 5's default in bf16).

For every budget: how many of the R kept tokens differ between two paths (mean and max over images), the
largest difference of the select-layer states, and how often the released bf16 path has a tie at the
similarity cut (ties are broken by index here; the release's CUDA kernels may break them otherwise).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..clip import ClipTowers
from ..pruning.features import text_similarity

__all__ = ["PATHS", "PAIRS", "PrecisionRow", "towers_on_path", "kept_token_changes"]

PATHS = {"fp32": (torch.float32, "sdpa"), "bf16-eager": (torch.bfloat16, "eager"), "bf16-sdpa": (torch.bfloat16, "sdpa")}
PAIRS = (("fp32", "bf16-eager"), ("fp32", "bf16-sdpa"), ("bf16-eager", "bf16-sdpa"))


@dataclass
class PrecisionRow:
    """One budget: kept tokens that differ per path pair (mean, max over images) and ties at the cut."""

    budget: int
    changed_mean: dict[str, float]
    changed_max: dict[str, int]
    boundary_ties: int
    images: int


def towers_on_path(towers: ClipTowers, dtype: torch.dtype, attn_implementation: str) -> ClipTowers:
    """A copy of ``towers`` in ``dtype`` running ``attn_implementation`` (same weights, rounded)."""
    vision, text = copy.deepcopy(towers.vision).to(dtype), copy.deepcopy(towers.text).to(dtype)
    for model in (vision, text):
        model.set_attn_implementation(attn_implementation)
    return ClipTowers(vision, text, towers.tokenizer, towers.image_processor, towers.path)


def _boundary_ties(frames, text_embeds: torch.Tensor, budget: int) -> int:
    """Images whose (budget // T)-th lowest similarity equals the next one for some text (a tie at the cut)."""
    sim = text_similarity(frames.projected(), text_embeds.to(frames.states.dtype))  # (F, T, N)
    per_text = budget // text_embeds.shape[0]
    if per_text >= sim.shape[-1]:
        return 0
    ordered = sim.sort(dim=-1).values
    return int((ordered[..., per_text - 1] == ordered[..., per_text]).any(dim=-1).sum())


def _kept(towers: ClipTowers, pixels: torch.Tensor, texts: list[str], budgets, select_layer: int):
    pruner = towers.pruner(select_layer)  # LiteLVLM
    text_embeds = pruner.text_embeds(texts)
    frames = pruner.encode(pixels.to(towers.vision.dtype))
    kept = {b: pruner.select(frames, b, text_embeds).indices for b in budgets}
    return frames, text_embeds, kept


@torch.no_grad()
def kept_token_changes(towers: ClipTowers, images: list[np.ndarray], texts: list[str], budgets=(64, 192),
                       select_layer: int = -2) -> tuple[list[PrecisionRow], dict[str, float]]:
    """Rows per budget, and the largest |states - fp32 states| per path. ``texts`` are scored jointly
    (the released image-scope pruning of up to 3 questions)."""
    pixels = towers.image_processor(images=list(images), return_tensors="pt", input_data_format="channels_last").pixel_values
    results = {name: _kept(towers_on_path(towers, dtype, attn), pixels, texts, budgets, select_layer)
               for name, (dtype, attn) in PATHS.items()}
    reference = results["fp32"][0].states.float()
    state_error = {name: float((frames.states.float() - reference).abs().max()) for name, (frames, _, _) in results.items()}
    rows = []
    for budget in budgets:
        changed: dict[str, list[int]] = {}
        for a, b in PAIRS:
            ka, kb = results[a][2][budget], results[b][2][budget]
            changed[f"{a} vs {b}"] = [budget - len(set(x.tolist()) & set(y.tolist())) for x, y in zip(ka, kb)]
        frames, text_embeds, _ = results["bf16-eager"]
        rows.append(PrecisionRow(budget, {k: float(np.mean(v)) for k, v in changed.items()}, {k: int(max(v)) for k, v in changed.items()},
                                 _boundary_ties(frames, text_embeds, budget), len(images)))
    return rows, state_error

"""The LiteLVLM selection rule on precomputed scores (FACTS §1).

Pure tensor functions: no model, no state. ``litelvlm_select`` is the released rule, bit for bit
in indices and order; its keyword options extend it and are off by default.
"""

from __future__ import annotations

import math

import torch

__all__ = ["litelvlm_select", "check_budget"]


def check_budget(budget: int, num_tokens: int, num_texts: int | None = None) -> None:
    """Raise a ``ValueError`` naming the problem when ``budget`` cannot be honoured."""
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise ValueError(f"budget must be an int, got {budget!r} ({type(budget).__name__})")
    if budget < 1 or budget > num_tokens:
        raise ValueError(f"budget={budget} is out of range: choose 1 <= budget <= {num_tokens} (the number of visual tokens)")
    if num_texts is not None:
        if num_texts < 1:
            raise ValueError("no texts given: text-guided pruning needs at least one text (expression or question)")
        if budget < num_texts:
            raise ValueError(
                f"budget={budget} is smaller than the number of texts ({num_texts}): each text needs at least one "
                "low-similarity token; raise the budget or pass fewer texts"
            )


def litelvlm_select(
    similarity: torch.Tensor,
    context: torch.Tensor,
    budget: int,
    *,
    context_share: float = 0.0,
    raster_order: bool = False,
) -> torch.Tensor:
    """Indices of the ``budget`` visual tokens kept by LiteLVLM for one image or frame.

    ``similarity`` is (T, N), one row of CLIP patch-text similarities per text; ``context`` is (N,),
    the CLS-attention context score of each patch. Released rule: per text the ``budget // T``
    lowest-similarity tokens, their union sorted ascending, then the highest-context tokens not yet
    kept (descending context) fill the budget. Output order: ``[context..., union...]``.

    Options (off by default): ``context_share`` reserves ``ceil(context_share * budget)`` slots for
    context tokens before the per-text share is computed (the released rule gives a single text no
    context at all); ``raster_order`` returns the kept indices sorted ascending.
    """
    if similarity.dim() != 2:
        raise ValueError(f"similarity must be (T, N), got shape {tuple(similarity.shape)}")
    num_texts, num_tokens = similarity.shape
    if context.shape != (num_tokens,):
        raise ValueError(f"context must be ({num_tokens},) to match similarity (T, N)={tuple(similarity.shape)}, got {tuple(context.shape)}")
    if not 0.0 <= context_share < 1.0:
        raise ValueError(f"context_share must be in [0, 1), got {context_share}")
    check_budget(budget, num_tokens, num_texts)

    reserved = math.ceil(context_share * budget) if context_share > 0 else 0
    per_text = (budget - reserved) // num_texts
    if per_text < 1:
        raise ValueError(
            f"context_share={context_share} leaves no similarity tokens for {num_texts} texts at budget={budget}"
        )
    lowest = torch.topk(similarity, per_text, dim=-1, largest=False, sorted=True).indices
    union = torch.unique(lowest.reshape(-1))  # sorted ascending
    ranked = torch.sort(context, descending=True, stable=True).indices
    remaining = ranked[~torch.isin(ranked, union)]
    kept = torch.cat([remaining[: budget - union.numel()], union]).to(torch.long)
    if raster_order:
        kept = torch.sort(kept).values
    return kept

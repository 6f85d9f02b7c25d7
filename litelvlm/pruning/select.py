"""The LiteLVLM selection rule on precomputed scores (FACTS §1).

Pure tensor functions: no model, no state. ``litelvlm_select`` is the released rule, bit for bit
in indices and order; its keyword options extend it and are off by default.
"""

from __future__ import annotations

import math

import torch

__all__ = ["litelvlm_select", "litelvlm_select_cells", "cell_tokens", "check_budget"]


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


def cell_tokens(grid: tuple[int, int], cell: int) -> torch.Tensor:
    """(cells, cell*cell) raster indices of the tokens in each ``cell`` x ``cell`` block of ``grid``."""
    h, w = grid
    if h % cell or w % cell:
        raise ValueError(f"a {h}x{w} token grid cannot be split into {cell}x{cell} cells")
    idx = torch.arange(h * w).view(h // cell, cell, w // cell, cell)
    return idx.permute(0, 2, 1, 3).reshape(-1, cell * cell)


def litelvlm_select_cells(
    similarity: torch.Tensor,
    context: torch.Tensor,
    budget: int,
    grid: tuple[int, int],
    cell: int = 2,
    *,
    context_share: float = 0.0,
    raster_order: bool = False,
) -> torch.Tensor:
    """The LiteLVLM rule at the granularity of ``cell`` x ``cell`` blocks, still returning exactly
    ``budget`` token indices.

    Token scores are averaged per block; the rule picks ``ceil(budget / cell**2)`` blocks (in its
    order); each block contributes its tokens, lowest similarity first, until ``budget`` tokens are
    taken (only the last block can be partial). When the LLM sees one pooled token per block (as
    VideoGLaMM's 2x2 pooling gives it), this puts the budget into the fewest blocks.
    """
    num_texts, num_tokens = similarity.shape
    check_budget(budget, num_tokens, num_texts)
    members = cell_tokens(grid, cell).to(similarity.device)
    if members.numel() != num_tokens:
        raise ValueError(f"grid {grid} has {members.numel()} tokens but similarity has {num_tokens}")
    num_cells = math.ceil(budget / cell**2)
    if num_cells < num_texts:
        raise ValueError(f"budget={budget} fills {num_cells} {cell}x{cell} cells, fewer than the {num_texts} texts: raise the budget")
    cells = litelvlm_select(
        similarity[:, members].mean(-1), context[members].mean(-1), num_cells,
        context_share=context_share,
    )
    chosen = members[cells]  # (n_cells, cell*cell)
    order = torch.argsort(similarity.min(0).values[chosen], dim=-1, stable=True)
    kept = torch.gather(chosen, 1, order).reshape(-1)[:budget].to(torch.long)
    return torch.sort(kept).values if raster_order else kept

"""How the kept CLIP tokens of a frame reach the LLM.

VideoGLaMM projects each frame's 24x24 CLIP tokens and average-pools them to 12x12 (144 LLM tokens
per frame); a pooled grid cannot take an arbitrary subset, so the layout is a choice:

- ``cells`` (default): each 2x2 cell that holds at least one kept token becomes one LLM token, the
  mean of its kept tokens' projected features. With all 576 tokens kept this is exactly VideoGLaMM's
  pooling; with LiteLVLM at cell granularity (``cell=2``) a budget B fills ``ceil(B / 4)`` cells, so
  the LLM sees ``ceil(B / 4)`` tokens per frame (196 -> 49, 81 -> 21).
- ``regrid``: the kept tokens, in raster order, re-gridded into a sqrt(B) x sqrt(B) square and
  adaptively pooled to 12x12, as a square-grid pooling forces (B must be a square): CLIP-side pruning
  only, the LLM still sees 144 tokens per frame.
- ``unpooled``: the kept tokens' projected features, raster order, no pooling (B LLM tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["LAYOUTS", "layout_frame_tokens", "masked_cell_pool", "regrid_pool", "raster_sorted", "adaptive_pool_tokens",
           "check_layout_budget"]

LAYOUTS = ("cells", "regrid", "unpooled")


def check_layout_budget(layout: str, budget: int | None, method: str, option: str = "--budget") -> None:
    """Refuse, before any model loads, a per-frame budget or method that ``layout`` cannot take (the budget's range,
    1 to 576, is ``litelvlm.run_options.check_frame_budget``'s): ``regrid`` re-grids a per-frame method's kept
    tokens into a square, so its budget must be a square number; the in-LLM methods (FastV, IVC-Prune) need per-frame
    LLM tokens (``cells`` or ``unpooled``)."""
    from litelvlm.pruning import get_method
    from litelvlm.run_options import split_method_spec

    from .fastv import fastv_quota

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    name = split_method_spec(method)[0] if isinstance(method, str) else method.name
    if budget is None or name == "none":
        return
    stage = get_method(method).stage
    if stage == "llm":
        fastv_quota(layout, budget, name)
    side = math.isqrt(budget)
    if layout == "regrid" and side * side != budget and stage != "clip":
        raise ValueError(f"{option} {budget} with layout 'regrid': the kept tokens of a frame are re-gridded into a square, "
                         f"so the budget must be a square number (e.g. 576, 196, 81; nearest: {side * side}, "
                         f"{(side + 1) ** 2}), or use layout 'cells' (--layout cells, or --preset default)")


def raster_sorted(indices: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept ``indices`` (F, B) sorted ascending, with ``features`` (F, B, D) reordered alike."""
    order = torch.argsort(indices, dim=1)
    return torch.gather(indices, 1, order), torch.gather(features, 1, order.unsqueeze(-1).expand_as(features))


def masked_cell_pool(indices: torch.Tensor, features: torch.Tensor, grid: tuple[int, int], cell: int = 2) -> list[torch.Tensor]:
    """Per frame, one token per ``cell`` x ``cell`` block that holds kept tokens: their mean.

    ``indices`` (F, B) raster indices into ``grid``; ``features`` (F, B, D). Blocks in raster order.
    """
    h, w = grid
    cells_w = w // cell
    block = (indices // w // cell) * cells_w + (indices % w) // cell  # (F, B)
    num_cells = (h // cell) * cells_w
    out = []
    for f in range(indices.shape[0]):
        sums = features.new_zeros(num_cells, features.shape[-1]).index_add_(0, block[f], features[f])
        counts = torch.bincount(block[f], minlength=num_cells)
        present = counts > 0
        out.append(sums[present] / counts[present].unsqueeze(-1).to(features.dtype))
    return out


def adaptive_pool_tokens(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """(F, N, D) tokens of a square sqrt(N) x sqrt(N) grid -> (F, grid*grid, D) by adaptive average
    pooling, as VideoGLaMM's ``apply_adaptive_avg_pooling`` (row-major in and out)."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be (frames, N, D), got shape {tuple(tokens.shape)}")
    frames, count, width = tokens.shape
    side = int(round(count**0.5))
    if side * side != count:
        raise ValueError(f"VideoGLaMM pools square token grids; got {count} tokens per frame (keep a square number)")
    x = tokens.transpose(1, 2).reshape(frames, width, side, side)
    return F.adaptive_avg_pool2d(x, grid).flatten(2).transpose(1, 2)


def regrid_pool(indices: torch.Tensor, features: torch.Tensor, out_side: int) -> torch.Tensor:
    """Kept tokens in raster order as a sqrt(B) x sqrt(B) grid, adaptively pooled to ``out_side``^2."""
    budget = indices.shape[1]
    side = math.isqrt(budget)
    if side * side != budget:
        raise ValueError(f"layout 'regrid' needs a square budget (e.g. 576, 196, 81), got {budget}")
    return adaptive_pool_tokens(raster_sorted(indices, features)[1], out_side)


def layout_frame_tokens(layout: str, indices: torch.Tensor, projected: torch.Tensor, grid: tuple[int, int],
                        pooled_side: int = 12) -> list[torch.Tensor]:
    """The LLM tokens of each frame (a list of F tensors (n_f, D)) from its kept projected tokens."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if layout == "cells":
        return masked_cell_pool(indices, projected, grid, grid[0] // pooled_side)
    if layout == "regrid":
        return list(regrid_pool(indices, projected, pooled_side))
    return list(raster_sorted(indices, projected)[1])

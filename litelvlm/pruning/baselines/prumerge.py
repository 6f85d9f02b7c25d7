"""LLaVA-PruMerge / PruMerge+ (Shang et al., 2024): CLS-attention outliers (+ spatial extras), merged."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..methods import Selection, TokenSelector, register_method
from .common import (
    check_attention_inputs,
    complement,
    fullwidth_cls_attention,
    iqr_outlier_mask,
    ranked,
    strided_positions,
    upcast,
)

__all__ = ["PruMergePlusSelector", "PruMergeSelector", "prumerge_keep", "prumerge_merge"]


def prumerge_keep(attention: torch.Tensor, count: int, spatial_extras: bool) -> torch.Tensor:
    """Indices of the ``count`` kept tokens: IQR outliers of ``attention`` (N,) by descending attention
    (the top ``count`` when there are more), then the fill: with ``spatial_extras`` the non-outliers at
    raster positions ``floor(i * R / n)`` of their ascending list (R of them, n to fill), otherwise
    the next tokens by descending attention."""
    order = ranked(attention)
    outliers = order[iqr_outlier_mask(attention)[order]][:count]
    missing = count - outliers.numel()
    if missing == 0:
        return outliers
    if not spatial_extras:
        return order[:count]  # the outliers are exactly the top of this ranking
    rest = complement(outliers, attention.shape[0])
    extras = rest[strided_positions(missing, rest.numel(), device=rest.device)]
    return torch.cat([outliers, extras])


def prumerge_merge(
    attention: torch.Tensor, keys: torch.Tensor, patches: torch.Tensor, kept: torch.Tensor, neighbours: int, aggregate: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, features): each kept token plus the attention-weighted sum of its ``neighbours``
    most key-similar other tokens (cosine; kept or not); with ``aggregate`` one more token, the
    attention-weighted sum of all unkept tokens, indexed by the highest-attention unkept token."""
    num_tokens = attention.shape[0]
    attention, patches = upcast(attention), upcast(patches)
    normed = F.normalize(upcast(keys), dim=-1)
    similarity = normed[kept] @ normed.T
    similarity[torch.arange(kept.numel(), device=kept.device), kept] = float("-inf")  # a token is not its own neighbour
    nearest = ranked(similarity)[:, : min(neighbours, num_tokens - 1)]
    weights = torch.zeros_like(similarity).scatter_(1, nearest, attention[nearest])  # (kept, N): a_j on the neighbours
    merged = patches[kept] + weights @ patches
    if not aggregate:
        return kept, merged
    unkept = complement(kept, num_tokens)
    slot = unkept[ranked(attention[unkept])[:1]]
    return torch.cat([kept, slot]), torch.cat([merged, (attention[unkept] @ patches[unkept]).unsqueeze(0)])


@register_method("prumerge+")
class PruMergePlusSelector(TokenSelector):
    """LLaVA-PruMerge+, fixed budget: CLS-attention outliers + uniformly strided extras, merged by key similarity.

    Rule (released code, ``token_prune_merge_advanced_plus``): the last layer's q/k (``layers[23]``,
    computed on the select-layer states), single-head full-width CLS attention
    ``a = softmax(q_cls k^T / sqrt(D))`` over the 1+N keys, patch columns. Kept: the IQR outliers
    of ``a`` (``a > Q3 + 1.5 IQR``) by descending attention, then spatially strided extra tokens.
    Every kept token becomes ``x_i + sum_j a_j x_j`` over its 32 nearest other tokens by cosine
    similarity of the (full-width) keys, and one extra token ``sum_j a_j x_j`` over all pruned
    tokens is appended. Source: github.com/42Shawn/LLaVA-PruMerge,
    ``llava/model/multimodal_encoder/clip_encoder.py``.

    Adaptations to a fixed budget (the released count is adaptive):
    - ``budget - 1`` tokens are kept and the appended aggregate token is the last of the ``budget``
      (``aggregate_token=False`` keeps ``budget`` tokens and drops it). Its index, needed for
      ``.kept``, is the highest-attention pruned token.
    - Kept: the outliers first; if there are more than the kept count, the highest-attention ones;
      otherwise the shortfall is filled with uniformly strided tokens: positions ``floor(i * R / n)``
      of the R non-outliers in raster order (released: raster stride ``int(int(N/outliers)/3)`` from
      0, a count that ignores any budget). Output order as released: outliers, extras, aggregate.
    - Outliers are found per frame (released: over the whole batch, which was one image). With fewer
      than ``neighbours + 1`` tokens every other token is a neighbour. Arithmetic in at
      least float32 (float64 inputs stay float64).
    """

    spatial_extras = True

    def __init__(self, neighbours: int = 32, aggregate_token: bool = True):
        if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 1:
            raise ValueError(f"neighbours must be a positive int, got {neighbours!r}")
        if not isinstance(aggregate_token, bool):
            raise ValueError(f"aggregate_token must be True or False, got {aggregate_token!r}")
        self.neighbours = neighbours
        self.aggregate_token = aggregate_token

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        check_attention_inputs(features)
        attention = fullwidth_cls_attention(features.query, features.key)
        keys = features.key[:, 1:]
        count = budget - int(self.aggregate_token)
        rows = []
        for f in range(features.num_frames):
            kept = prumerge_keep(attention[f], count, self.spatial_extras)
            rows.append(prumerge_merge(attention[f], keys[f], features.patches[f], kept, self.neighbours, self.aggregate_token))
        indices = torch.stack([r[0] for r in rows])
        return Selection(indices, torch.stack([r[1] for r in rows]).to(features.states.dtype))


@register_method("prumerge")
class PruMergeSelector(PruMergePlusSelector):
    """LLaVA-PruMerge (without +), fixed budget: as ``prumerge+`` but the kept tokens are the top of the
    CLS attention only (the IQR outliers first, then the next by attention), no spatial extras.
    Source: ``token_prune_merge_advanced`` in the same file; same adaptations."""

    spatial_extras = False

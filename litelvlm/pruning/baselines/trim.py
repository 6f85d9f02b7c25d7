"""TRIM (Song et al., 2024): token reduction by CLIP text-image similarity."""

from __future__ import annotations

import torch

from ..features import text_similarity
from ..methods import Selection, TokenSelector, register_method
from .common import complement, ranked, upcast

__all__ = ["TrimSelector", "trim_scores", "round_robin", "trim_frame"]


def trim_scores(similarity: torch.Tensor, negate: bool = True) -> torch.Tensor:
    """(.., T, N) TRIM scores: per text a softmax over the N tokens of the similarity, negated first
    when ``negate`` (the released behaviour)."""
    similarity = upcast(similarity)
    return torch.softmax(-similarity if negate else similarity, dim=-1)


def round_robin(rankings: torch.Tensor) -> torch.Tensor:
    """(N,) all tokens in the order of a round robin over the per-text rankings (T, N): first of text
    0, first of text 1, ..., second of text 0, ...; a token keeps its first position."""
    num_texts, num_tokens = rankings.shape
    sequence = rankings.T.reshape(-1)
    first = torch.full((num_tokens,), sequence.numel(), dtype=torch.long, device=rankings.device)
    first.scatter_reduce_(0, sequence, torch.arange(sequence.numel(), device=rankings.device), reduce="amin")
    return torch.argsort(first)


def trim_frame(
    scores: torch.Tensor, patches: torch.Tensor, budget: int, aggregate: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One frame: (indices, features or None). ``scores`` (T, N); the kept tokens are the first
    ``budget`` (``budget - 1`` with ``aggregate``) of the round robin over the per-text rankings, in
    raster order; with ``aggregate`` the mean of all other tokens is appended, indexed by the next
    token of the round robin."""
    order = round_robin(ranked(scores))
    count = budget - int(aggregate)
    kept = order[:count].sort().values
    if not aggregate:
        return kept, None
    mean = upcast(patches[complement(kept, patches.shape[0])]).mean(dim=0, keepdim=True)
    return torch.cat([kept, order[count : count + 1]]), torch.cat([upcast(patches[kept]), mean])


@register_method("trim")
class TrimSelector(TokenSelector):
    """TRIM, fixed budget: CLIP patch-text similarity outliers + one aggregated token of the rest.

    Rule (released code): ``sim = visual_projection(post_layernorm(patches)) . text_embeds``
    (unnormalised; ``features.projected()``), ``scores = softmax(-sim)`` over the N tokens, keep the
    IQR outliers of ``scores`` (``> Q3 + 1.5 IQR``) in raster order and append the mean of the
    unselected tokens. Source: github.com/FreedomIntelligence/TRIM,
    ``llava/model/multimodal_encoder/clip_encoder.py`` (``CLIPVisionTower.token_reduction``).

    Sign flip: the paper keeps the tokens most similar to the text, but the released code negates
    the similarity before the softmax, so it keeps the *least* similar ones. ``negate_similarity=True``
    (default) reproduces the release; ``False`` gives the paper's stated intent.

    Adaptations to a fixed budget (the released count is adaptive):
    - ``budget - 1`` tokens are kept and the mean token is the last of the ``budget``
      (``aggregate_token=False`` keeps ``budget`` tokens and no mean). The mean token's index, needed
      for ``.kept``, is the best-ranked token not kept.
    - The IQR count is replaced by the budget. The IQR outliers are exactly the top-scoring tokens,
      so "outliers first, then fill (or trim) by score" is the top-scoring tokens: for one text the
      count is all the IQR rule decides, and it is not computed.
    - Several texts (TRIM takes one question): each text ranks the tokens by its own score and the
      kept tokens are taken round robin over the texts, skipping repeats (one text: plain ranking).
    Scores are computed in at least float32 (float64 inputs stay float64).
    """

    uses_text = True

    def __init__(self, negate_similarity: bool = True, aggregate_token: bool = True):
        for name, value in (("negate_similarity", negate_similarity), ("aggregate_token", aggregate_token)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        self.negate_similarity = negate_similarity
        self.aggregate_token = aggregate_token

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        scores = trim_scores(text_similarity(upcast(features.projected()), text_embeds), self.negate_similarity)
        rows = [trim_frame(scores[f], features.patches[f], budget, self.aggregate_token) for f in range(features.num_frames)]
        indices = torch.stack([r[0] for r in rows])
        if not self.aggregate_token:
            return Selection(indices)
        return Selection(indices, torch.stack([r[1] for r in rows]).to(features.states.dtype))

"""DivPrune (Alvar et al., CVPR 2025): max-min diversity selection of visual tokens, query-agnostic."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..methods import Selection, TokenSelector, register_method
from .common import max_min_order, upcast

__all__ = ["DivPruneSelector", "divprune_frame", "cosine_distances"]


def cosine_distances(tokens: torch.Tensor) -> torch.Tensor:
    """(N, N) ``1 - cos`` of the rows of ``tokens`` (N, D), in at least float32."""
    normed = F.normalize(upcast(tokens), dim=-1)
    return 1.0 - normed @ normed.T


def divprune_frame(tokens: torch.Tensor, budget: int) -> torch.Tensor:
    """(budget,) ascending indices of one frame's ``tokens`` (N, D): the released greedy max-min selection.

    First the token whose nearest other token (the second-smallest distance of its column, the smallest being
    its own ~0) is farthest; then repeatedly the token farthest from its nearest chosen token."""
    distances = cosine_distances(tokens)
    if distances.shape[0] == 1:
        return torch.zeros(1, dtype=torch.long, device=tokens.device)
    isolation = torch.topk(distances, 2, dim=0, largest=False).values[1]
    return max_min_order(distances, int(torch.argmax(isolation)), budget).sort().values


@register_method("divprune")
class DivPruneSelector(TokenSelector):
    """DivPrune, fixed budget: the ``budget`` most mutually distant tokens by greedy max-min selection.

    Rule (released code): ``d = 1 - cos`` between all visual tokens as the LLM receives them (the projector's
    outputs, ``features.llm_tokens()``); the first token maximises the distance
    to its nearest neighbour, each next one maximises the minimum distance to the tokens already chosen; the
    chosen tokens reach the LLM in raster order. Source: github.com/vbdi/divprune (commit 799e2d9),
    ``LLaVA/llava/model/llava_arch.py``: ``encode_images`` (:141-144: ``mm_projector`` of the vision tower's
    output :143), ``pairwise_cosine_similarity`` (:147), ``DivPrune`` (:152-171: count ``round(ratio * N)``
    :153, ``1 - cos`` :155, first pick by the second-smallest column value :165, then the column minimum over
    chosen rows :167, ``argmax`` :169) and its call before the LLM (:366-379) on the image's rows of the spliced
    input embeddings (``new_input_embeds[0][SYS_TOKEN_LEN:...]`` :374-375, i.e. the projected features; kept
    positions sorted :379).

    Adaptations:
    - Budget: the released count ``round(SUBSET_RATIO * N)`` (README default ratio 0.098) is the budget.
    - Features: as released, the projector's outputs: GLaMM's ``mm_projector`` of the select-layer patch
      states; in VideoGLaMM its ``image_mm_projector`` of every CLIP token before the 2x2 pooling (each frame is
      selected on its own over its CLIP tokens and the kept ones reach the LLM through ``layout``).
    - A chosen token is never chosen again (the release re-scores chosen tokens and, with exactly duplicated
      tokens, could pick one twice and deliver fewer distinct tokens); ties go to the lowest index, as
      ``argmax`` does. Distances in at least float32 (the release: the model dtype, fp16).
    """

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        tokens = features.llm_tokens("divprune")  # (F, N, H): the distances' features, as released
        rows = [divprune_frame(tokens[f], budget) for f in range(features.num_frames)]
        return Selection(torch.stack(rows))

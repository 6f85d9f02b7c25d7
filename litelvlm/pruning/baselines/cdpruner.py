"""CDPruner (Zhang et al., NeurIPS 2025): a conditional DPP over visual tokens, instruction-relevance weighted."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..features import text_similarity
from ..methods import Selection, TokenSelector, register_method
from .common import ranked, upcast

__all__ = ["CDPrunerSelector", "cdpruner_relevance", "cdpruner_kernel", "dpp_greedy_map"]


def cdpruner_relevance(cosine: torch.Tensor, theta: float | None = None) -> torch.Tensor:
    """(N,) relevance from one frame's patch-text cosine similarities (T, N): the mean over texts of the NEGATED
    cosine, min-max normalised as released (``(r - min + 1e-6) / (max - min)``), then, with ``theta``,
    ``exp(theta / (2 (1 - theta)) * r)``. A constant relevance (max = min) is 1 for every token."""
    relevance = (-cosine).mean(dim=0)
    spread = relevance.max() - relevance.min()
    relevance = (relevance - relevance.min() + 1e-6) / spread if spread > 0 else torch.ones_like(relevance)
    if theta is not None:
        relevance = torch.exp(theta / (2 * (1 - theta)) * relevance)
    return relevance


def cdpruner_kernel(tokens: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """(N, N) conditional DPP kernel ``r_i cos(x_i, x_j) r_j`` of one frame's ``tokens`` (N, D)."""
    normed = F.normalize(upcast(tokens), dim=-1)
    relevance = relevance.to(normed.dtype)
    return relevance[:, None] * (normed @ normed.T) * relevance[None, :]


def dpp_greedy_map(kernel: torch.Tensor, count: int, fill_order: torch.Tensor) -> torch.Tensor:
    """(count,) ascending indices: fast greedy MAP inference of a DPP (Chen et al., 2018) on ``kernel`` (N, N).

    Each step takes the token of largest remaining gain ``d_j^2`` (lowest index on ties), appends its
    Cholesky row ``e = (L_j - c_j^T C) / d_j`` and lowers every gain by ``e^2``. Once no token has a positive
    gain left (the kernel's rank is spent), the rest of ``count`` comes from ``fill_order`` (unchosen tokens
    in that order), where the release would divide by the square root of a non-positive number."""
    num_tokens = kernel.shape[0]
    rows = kernel.new_zeros(count, num_tokens)
    gains = torch.diagonal(kernel).clone()
    chosen = torch.empty(count, dtype=torch.long, device=kernel.device)
    for i in range(count):
        j = torch.argmax(gains)
        if not gains[j] > 0:
            taken = torch.zeros(num_tokens, dtype=torch.bool, device=kernel.device)
            taken[chosen[:i]] = True
            chosen[i:] = fill_order[~taken[fill_order]][: count - i]
            break
        chosen[i] = j
        row = (kernel[j] - rows[:i, j] @ rows[:i]) / torch.sqrt(gains[j])
        rows[i] = row
        gains -= row.square()
        gains[j] = float("-inf")
    return chosen.sort().values


@register_method("cdpruner")
class CDPrunerSelector(TokenSelector):
    """CDPruner, fixed budget: MAP of a DPP whose kernel weighs token similarity by instruction relevance.

    Rule (released code): ``similarity = cos`` between the visual tokens as the LLM receives them (the
    projector's outputs, ``features.llm_tokens()``); ``relevance`` = the mean over the
    texts of the negated cosine between each token's CLIP image embedding (``visual_projection(post_layernorm
    (select-layer patch))``, ``features.projected()``) and the CLIP text embeddings, min-max normalised;
    ``kernel = r_i * similarity_ij * r_j``; ``budget`` tokens by fast greedy MAP inference, kept in raster
    order. Source: github.com/Theia-4869/CDPruner (commit 9541616), ``llava/model/llava_arch.py``
    (``LlavaMetaForCausalLM.encode_images``: ``image_features = mm_projector(image_features)`` :148, then the
    cosine of those projected features :150-153, relevance :155-160 with the sign flip at :159
    and the min-max at :160, the optional theta (commented out) :163-166, kernel :167, greedy MAP :169-181,
    sorted :183) and ``llava/model/multimodal_encoder/clip_encoder.py`` (``forward``: image and text embeds).
    The count is ``--visual_token_num`` (``llava/eval/model_vqa*.py``), i.e. the budget.

    Options: ``theta`` (default None, as released: no exponent) applies the release's commented-out
    ``relevance = exp(alpha * relevance)``, ``alpha = theta / (2 (1 - theta))``, theta in (0, 1).

    Adaptations:
    - Similarity features: as released, the projector's outputs: GLaMM's ``mm_projector`` of the select-layer
      patch states; in VideoGLaMM its ``image_mm_projector`` of every CLIP token before the 2x2 pooling (the
      selection is over CLIP tokens; the kept ones are pooled by ``layout`` afterwards). The relevance is as
      released (CLIP's joint image-text space).
    - Per frame: the release min-max normalises the relevance over its whole batch of crops (one image for
      LLaVA-1.5); here each image or video frame is normalised and selected on its own. Several texts (the
      prune scope "image", or a long text split into 77-token pieces in the release) are averaged alike.
    - When the kernel's rank is spent before ``budget`` tokens (no positive gain left; the release divides
      by ``sqrt`` of a non-positive number there and may repeat tokens), the remaining slots go to the
      unchosen tokens of highest relevance. A constant relevance (the release divides by zero) is 1.
    - Scores in at least float32 (float64 inputs stay float64), as the release's float32 kernel.
    """

    uses_text = True

    def __init__(self, theta: float | None = None):
        if theta is not None and (isinstance(theta, bool) or not isinstance(theta, (int, float)) or not 0.0 < theta < 1.0):
            raise ValueError(f"theta must be None (released) or a number in (0, 1), got {theta!r}")
        self.theta = None if theta is None else float(theta)

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        unit = lambda t: F.normalize(upcast(t), dim=-1)  # noqa: E731
        cosine = text_similarity(unit(features.projected()), unit(text_embeds))  # (F, T, N)
        tokens = features.llm_tokens("cdpruner")  # (F, N, H): the similarity's features, as released
        rows = []
        for f in range(features.num_frames):
            relevance = cdpruner_relevance(cosine[f], self.theta)
            kernel = cdpruner_kernel(tokens[f], relevance)
            rows.append(dpp_greedy_map(kernel, budget, ranked(relevance)))
        return Selection(torch.stack(rows))

"""VisionZip (Yang et al., 2025): dominant tokens by CLS attention + merged contextual tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..methods import Selection, TokenSelector, register_method
from .common import producing_layer_qk, check_attention_inputs, complement, head_mean_keys, multihead_cls_attention, ranked, upcast

__all__ = ["VisionZipSelector", "visionzip_frame", "visionzip_split"]


def visionzip_split(budget: int, contextual_share: float) -> tuple[int, int]:
    """(dominant, contextual) patch-token counts for ``budget``: ``contextual = round(budget * share)``."""
    contextual = round(budget * contextual_share)
    return budget - contextual, contextual


def visionzip_frame(
    attention: torch.Tensor, metric: torch.Tensor, patches: torch.Tensor, dominant: int, contextual: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame: (indices, features) of ``dominant + contextual`` tokens.

    ``attention`` (N,) head-summed CLS attention, ``metric`` (N, d) merge keys, ``patches`` (N, D)
    the states. Dominant = the top-``dominant`` tokens by attention, in raster order. The rest, in
    raster order, get ``contextual`` targets at positions ``0, s, 2s, ...`` (``s = max(1, R //
    contextual)``); every other remaining token joins the target of highest cosine key similarity
    (first on ties), and a contextual token is ``target + mean(joined tokens)`` (the target alone when
    nothing joins). Output: ``[dominant..., contextual targets...]``.
    """
    num_tokens = attention.shape[0]
    kept = ranked(attention)[:dominant].sort().values
    features = upcast(patches[kept])
    if contextual == 0:
        return kept, features
    rest = complement(kept, num_tokens)
    step = max(1, rest.numel() // contextual)
    is_target = torch.zeros(rest.numel(), dtype=torch.bool, device=rest.device)
    is_target[torch.arange(0, rest.numel(), step, device=rest.device)[:contextual]] = True
    targets, others = rest[is_target], rest[~is_target]
    keys = F.normalize(upcast(metric), dim=-1)
    assign = (keys[others] @ keys[targets].T).argmax(dim=1)
    one_hot = F.one_hot(assign, contextual).to(keys.dtype)  # (others, contextual): a matmul keeps the sum deterministic
    counts = one_hot.sum(dim=0).clamp(min=1).unsqueeze(1)
    merged = upcast(patches[targets]) + one_hot.T @ upcast(patches[others]) / counts
    return torch.cat([kept, targets]), torch.cat([features, merged])


@register_method("visionzip")
class VisionZipSelector(TokenSelector):
    """VisionZip, fixed budget: dominant tokens by CLS attention + contextual tokens merged by key similarity.

    Rule (released code): multi-head CLS attention ``softmax(q k^T / sqrt(d_head))`` over the 1+N
    keys, CLS row, summed over heads; the top tokens are *dominant*. The remaining tokens are merged
    into uniformly strided targets by cosine similarity of the head-averaged keys (see
    ``visionzip_frame``). Source: github.com/dvlab-research/VisionZip, ``visionzip/clip_encoder.py``
    (``CLIPVisionTower_VisionZip.forward``) and ``visionzip/utils.py`` (the head-mean key ``metric``).

    Adaptations:
    - Attention layer: as released, ``attentions[-2]`` and that layer's keys, i.e. the self-attention
      *inside* the layer that produces the select-layer (-2) states (``ClipFrameFeatures.select_query``
      / ``select_key``).
    - Budget split: VisionZip's 64/128/192 settings are 54+10, 108+20, 162+30 (dominant+contextual),
      i.e. contextual = budget * 10/64; ``contextual_share`` (default 10/64) scales it to any budget,
      rounded. Dominant counts patches only: VisionZip counts the CLS token among its dominant
      tokens, but only patch tokens reach this LLM, so its slot goes to one more dominant patch.
    - Scores and merged features are computed in at least float32 (float64 stays float64) and cast
      back to the states' dtype.
    """

    def __init__(self, contextual_share: float = 10 / 64):
        if not 0.0 <= contextual_share < 1.0:
            raise ValueError(f"contextual_share must be in [0, 1), got {contextual_share}")
        self.contextual_share = float(contextual_share)

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        check_attention_inputs(features)
        query, key = producing_layer_qk(features)
        attention = multihead_cls_attention(query, key, features.num_heads).sum(dim=1)
        metric = head_mean_keys(key, features.num_heads)[:, 1:]
        dominant, contextual = visionzip_split(budget, self.contextual_share)
        rows = [
            visionzip_frame(attention[f], metric[f], features.patches[f], dominant, contextual)
            for f in range(features.num_frames)
        ]
        indices = torch.stack([r[0] for r in rows])
        merged = torch.stack([r[1] for r in rows]).to(features.states.dtype)
        return Selection(indices, merged)

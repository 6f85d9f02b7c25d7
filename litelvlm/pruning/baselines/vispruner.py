"""VisPruner (Zhang et al., 2025): important tokens by CLS attention + diverse tokens by de-duplication."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..methods import Selection, TokenSelector, register_method
from .common import producing_layer_qk, check_attention_inputs, multihead_cls_attention, ranked, upcast

__all__ = ["VisPrunerSelector", "vispruner_select"]


def vispruner_select(
    attention: torch.Tensor, patches: torch.Tensor, important: int, diverse: int, drop_per_step: int = 8
) -> torch.Tensor:
    """(F, important + diverse) ascending indices, every frame on its own.

    ``attention`` (F, N) head-mean CLS attention, ``patches`` (F, N, D). Important = the top
    ``important`` by attention. The rest, kept in descending-attention order, is thinned until
    ``diverse`` remain: each round splits it into alternating halves ``a = rest[0::2]``, ``b =
    rest[1::2]``, scores every ``a`` token by its highest cosine similarity to any ``b`` token, drops
    the ``r = min(drop_per_step, len(rest) - diverse)`` highest-scoring ``a`` tokens and continues
    with ``[a kept in descending score order, b]``. The round sizes do not depend on the data, so
    frames run batched (as released) on each frame's precomputed cosine Gram matrix.
    """
    order = ranked(attention)
    kept, rest = order[:, :important], order[:, important:]
    if diverse == 0:
        return kept.sort(dim=1).values
    normed = F.normalize(upcast(patches), dim=-1)
    gram = normed @ normed.transpose(1, 2)  # (F, N, N)
    frame = torch.arange(gram.shape[0], device=gram.device)[:, None, None]
    while True:
        drop = min(drop_per_step, rest.shape[1] - diverse)
        if drop <= 0:
            break
        a, b = rest[:, 0::2], rest[:, 1::2]
        duplication = gram[frame, a[:, :, None], b[:, None, :]].max(dim=2).values  # (F, |a|)
        rest = torch.cat([torch.gather(a, 1, ranked(duplication)[:, drop:]), b], dim=1)
    return torch.cat([kept, rest], dim=1).sort(dim=1).values


@register_method("vispruner")
class VisPrunerSelector(TokenSelector):
    """VisPruner, fixed budget: important tokens by CLS attention, then diverse tokens from the rest.

    Rule (released code): ``important = int(budget * important_ratio)`` tokens with the highest
    multi-head CLS attention (softmax over the 1+N keys per head, CLS row, mean over heads); the
    ``budget - important`` diverse tokens come from iteratively dropping the most duplicated of the
    remaining tokens (cosine similarity of the select-layer patch states, see ``vispruner_select``).
    The kept tokens reach the LLM in raster order (VisPruner applies them as an index mask).
    Source: github.com/Theia-4869/VisPruner, ``llava/model/llava_arch.py``
    (``LlavaMetaForCausalLM.encode_images``) and ``llava/model/multimodal_encoder/clip_encoder.py``
    (``feature_select``); ``important_ratio`` defaults to 0.5, the ``--important_ratio`` default of
    its ``llava/eval/model_vqa*.py`` entry points.

    Adaptations:
    - Attention layer: as released, ``attentions[select_layer]`` (= -2), the self-attention inside the
      layer that produces the select-layer states (``ClipFrameFeatures.select_query`` / ``select_key``).
    - Odd-sized remainders: the released indexing assumes an even remainder; here the alternating
      halves simply differ in size by one, and at most ``len(a)`` tokens are dropped per round (the
      released arithmetic on even sizes is unchanged). Scores are computed in at least
      float32 (float64 inputs stay float64).
    """

    def __init__(self, important_ratio: float = 0.5, drop_per_step: int = 8):
        if not 0.0 <= important_ratio <= 1.0:
            raise ValueError(f"important_ratio must be in [0, 1], got {important_ratio}")
        if isinstance(drop_per_step, bool) or not isinstance(drop_per_step, int) or drop_per_step < 1:
            raise ValueError(f"drop_per_step must be a positive int, got {drop_per_step!r}")
        self.important_ratio = float(important_ratio)
        self.drop_per_step = drop_per_step

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        check_attention_inputs(features)
        query, key = producing_layer_qk(features)
        attention = multihead_cls_attention(query, key, features.num_heads).mean(dim=1)
        important = int(budget * self.important_ratio)
        return Selection(vispruner_select(attention, features.patches, important, budget - important, self.drop_per_step))

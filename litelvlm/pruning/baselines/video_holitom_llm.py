"""HoliTom's inner-LLM merging (the rule and its adaptation; the pre-LLM part and settings: ``video_holitom``). Kept
apart because it needs transformers, which ``litelvlm.pruning`` does not import.

Source: ``holitom/modeling_qwen2.py`` (cokeshao/HoliTom at e9b2972), ``Qwen2Model_holitom.forward``, on with
``HOLITOM_k`` K and ``HOLITOM_r`` r (:121-122; the released 18 and 0.5). In a multi-token forward (the prefill,
``position_ids.size(1) > 1``, :146):

1. Layer K-1 returns its attention (eager, causal, rotary; :210-211). Its head mean, row of the last position (the
   prompt's last token, :150-152), over the V visual tokens ranks them; the top ``round(V (1 - r))`` stay (:158-160).
2. Every other visual token, in ascending order, is averaged into the staying token of highest cosine similarity
   (``dot / (|a| |b|)`` of the layer-K input states, :171-175): ``h[dst] = (h[dst] + h[src]) / 2`` in turn (:177-181),
   so a staying token with members m1 < m2 < ... ends as ``(((h + m1) / 2 + m2) / 2 ...)``.
3. The staying tokens keep their original position ids (``position_ids = keep_indexs``, :204), and layers K.. run on
   the shorter sequence; layers < K keep the whole prompt in their cache. Decoded tokens skip the merge and take the
   position id that continues the unmerged numbering (layer 0's cache length).

Adaptation to VideoGLaMM: the visual tokens are both streams' tokens together (every frame's CLIP-stream tokens, then
every frame's video tokens, one contiguous run as the release's one image block). The ranking query is the
generation prompt's last token; a teacher-forced row is scored at the end of its prompt (``prompt_lengths``), so the
fixed answer is not read and it keeps the position ids its decoded tokens would have: teacher-forced and generated
[SEG] states agree. Without a KV cache every decoding step re-runs the merged prefill over prompt and generated
tokens, scored on the prompt (the same choice every step). Attention and similarities are float32 (the release uses
the model dtype); ties keep the lower index (``topk`` leaves them unspecified) and a token joins the first staying
token, in ranking order, of highest similarity. The sequential averages are computed in one pass as the equal
weighted sum (``2^-n`` for the staying token with n members, ``2^-(n-i+1)`` for its i-th member). On an LLM too shallow
for K, K becomes ``layers - 1`` with a warning (``video_llm_merge.usable_merge_layer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...fastv import last_position_attention
from .common import complement, ranked, upcast
from .video_holitom import inner_keep_count
from .video_llm_merge import MergedRow, merge_generation_forward, merge_prefill

__all__ = ["HoliTomPlan", "inner_merge", "prompt_attention"]


def inner_merge(states: torch.Tensor, scores: torch.Tensor, merge_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept (K,) ascending indices, merged (K, H) float32) of visual ``states`` (V, H) ranked by ``scores`` (V,): the
    module docstring's steps 1-2."""
    x = upcast(states)
    top = ranked(scores)[: inner_keep_count(states.shape[0], merge_ratio)]
    rest = complement(top, states.shape[0])
    similarity = F.normalize(x[rest], dim=-1) @ F.normalize(x[top], dim=-1).T
    target = similarity.argmax(dim=1) if rest.numel() else rest
    members = torch.bincount(target, minlength=top.numel())
    order = torch.argsort(target, stable=True)  # members of each staying token, ascending
    grouped = target[order]
    rank = torch.arange(order.numel(), device=x.device) - (torch.cumsum(members, 0) - members)[grouped] + 1
    weights = torch.pow(2.0, -(members[grouped] - rank + 1).to(x.dtype))
    merged = x[top] * torch.pow(2.0, -members.to(x.dtype))[:, None]
    merged = merged.index_add(0, grouped, weights[:, None] * x[rest[order]])
    ascending = torch.argsort(top)
    return top[ascending], merged[ascending]


def prompt_attention(decoder_layer, hidden: torch.Tensor, rotary, rows, ends: list[int]) -> torch.Tensor:
    """(B, L) head-mean attention of each row's prompt-end position (``ends[b] - 1``) over all keys in
    ``decoder_layer`` (``litelvlm.fastv.last_position_attention``)."""
    index = torch.arange(hidden.shape[1], device=hidden.device)[None]
    mask = (index < torch.tensor(ends, device=hidden.device)[:, None]).to(rows.mask.dtype)
    return last_position_attention(decoder_layer, hidden, rotary, mask)


@dataclass
class HoliTomPlan:
    """HoliTom's inner merge for one visual sequence of ``num_visual`` tokens: from layer ``layer`` on,
    ``round(V (1 - merge_ratio))`` visual tokens stay, the others averaged into them. ``last_kept``: per row of the
    last prefill, the kept indices among the visual tokens."""

    num_visual: int
    layer: int = 18
    merge_ratio: float = 0.5
    last_kept: list[torch.Tensor] | None = None

    @property
    def tokens_after_layer(self) -> int:
        return inner_keep_count(self.num_visual, self.merge_ratio)

    def prefill(self, llm, batch, prompt_lengths=None, use_cache: bool = False):
        """The merged prefill of ``batch`` (``video_llm_merge.merge_prefill``, original position ids kept)."""
        kept = []

        def merge_row(b: int, visual: torch.Tensor, scores: torch.Tensor) -> MergedRow:
            if visual.shape[0] != self.num_visual:
                raise ValueError(f"row {b} holds {visual.shape[0]} visual tokens; this HoliTom plan was made for {self.num_visual}")
            indices, merged = inner_merge(visual, scores, self.merge_ratio)
            kept.append(indices.cpu())
            return MergedRow(merged, indices)

        out = merge_prefill(llm, batch, self.layer, merge_row, renumber=False, prompt_lengths=prompt_lengths,
                            use_cache=use_cache, score=prompt_attention, method="holitom")
        self.last_kept = kept
        return out

    def generation_forward(self, llm, prompt_token_ids: torch.Tensor, use_cache: bool):
        return merge_generation_forward(self.prefill, llm, prompt_token_ids, use_cache, self.layer, "holitom")

"""IVC-Prune (Sun et al., ICLR 2026): implicit-visual-coordinate tokens + value-similarity foreground, chosen
once at an intermediate LLM layer.

Released rule (github.com/FireRedTeam/IVC-Prune; the LLaVA-1.5 / LLaMA implementation, the architecture of
GLaMM's Vicuna-7B: ``transformers/src/transformers/models/llama/modeling_llama.py``; "Qwen file" below is
``.../models/qwen2_5_vl/modeling_qwen2_5_vl.py``, its grounding implementation):

- At decoder layer K-1 (``ivcp_k`` = 16 for LLaVA-1.5-7B, ``VLMEvalKit/vlmeval/config.py:511-519``) the input
  passes ``input_layernorm`` and ``v_proj`` (:967-975, ``compute_attention_weights`` :734-797); per key/value
  head ``W = softmax(V V^T / sqrt(d))`` over all tokens (:765-766), averaged over heads (:896).
- Seeds: the image tokens with the highest mean ``W`` over the question rows, every position from two past
  the image on (:899-908); ``max(1, round(0.01 N))`` of them.
- Foreground: the image tokens with the highest mean ``W`` over the seed rows and the question rows together
  (:911-922).
- IVC tokens: the image positions whose RoPE ``cos`` (the rotation nearest the identity), resp. ``sin`` (nearest
  a 90 degree rotation), averaged over the head dimension, is largest (:926-936).
- Kept: every text token and the union of the image tokens above (:938-945); before layer K the others leave
  the sequence, the mask and the rotary embeddings, the kept tokens keeping their original position ids
  (:950-962). Layers [0, K) see every token.

Adaptations to GLaMM and to a fixed budget (per row, per group of candidate image tokens; one group per
conversation in the image path):

- Budget: the LLaMA release keeps a variable union (IVC ``round(0.05 N)`` per axis, seeds, foreground
  ``round(0.2 N)``). The Qwen file states the fixed-count form (:1520-1541): IVC tokens (``round(0.1 N)`` per
  axis at a target of ``round(0.5 N)``) and the seeds come first, then foreground tokens in descending score
  fill the target. Here the target is ``budget``: IVC tokens per axis ``round(coordinate_share * budget)``
  (default 0.2, the Qwen file's 0.1 N of 0.5 N), at most ``(budget - 1) // 2`` so a seed always fits; seeds
  ``max(1, round(seed_share * N))`` (0.01, as both files), at most the slots left; the foreground fills the
  rest by its score (the same seeds are the anchors of that score). At a budget equal to the LLaMA release's
  union size, with the same IVC count, the kept set is the release's.
- Scores: the LLaMA file's (softmax over all of the row's tokens; the Qwen file restricts it to image keys),
  computed in float32 on the rows needed only, over the row's valid (unpadded) tokens (the release runs
  batch size 1). Image positions are read from the spliced row (the release's LLaVA config fixes the start at
  5, ``config.py:516``). The question rows are those from two past the last image token to the row's end; in
  GLaMM's teacher-forced prefill they include the fixed answer, as FastV's last position does here.
- KV cache: the release also cuts layers 1..K-1's cache for later decoding steps (:964, :1025-1027); the image
  path is one teacher-forced prefill with no decoding, so there is nothing to cut. ``litelvlm.ivc_prune_llm``
  holds the LLM side.

VideoGLaMM (Phi-3-mini, 32 layers; per frame, through FastV's in-LLM plan ``video.fastv.VideoFastVPlan``):

- Where the coordinates come from: Phi-3 has 1D RoPE over one sequence in which the 16 frames' CLIP-derived LLM
  tokens (144 pooled cells each, or 576 unpooled) follow each other, then the InternVideo2 tokens. RoPE gives
  no 2D coordinates; what the release reads is the rotation the LLM applies at each image position (the
  ``cos``/``sin`` of layer K-1's rotary embeddings, :926-936; the Qwen file's video path likewise reads each
  visual token's own rotary angles, not positions re-based per frame). So each frame's IVC tokens are the
  positions of that frame whose rotation, at their actual position ids, is nearest the identity (``cos`` mean)
  or a 90 degree turn (``sin`` mean), averaged over Phi-3's whole rotated head dimension (96, all rotated).
  Rebasing each frame to position 0 would pick the same cells in every frame, anchors at rotations the LLM
  never applies to them; the actual angles differ from frame to frame (a frame spans 144 or 576 positions), so
  each frame gets its own anchors, as every frame gets its own seeds and foreground.
- Groups: one per sampled frame, its CLIP-derived LLM tokens the candidates, the ``quota`` FastV keeps per frame
  (ceil(budget / 4) cells for ``cells``, ``budget`` tokens for ``unpooled``; ``regrid`` is refused as for
  FastV), the seeds ``max(1, round(0.01 N))`` of the frame's N tokens. The InternVideo2 tokens are in no group
  and always stay (they carry no frame's grid); they and the text still enter the value weights (softmax over
  all tokens, as the LLaMA file).
- Question rows: from two past the last visual token (the last InternVideo2 token; the two positions after it
  are skipped as in the release) to the row's end: the question, its chat tail and, teacher forced, the answer.
- Layer: K = 16 (Phi-3-mini has the 32 layers of LLaVA-1.5-7B's LLM, so the release's depth share is kept).
  The value rows are the last ``kv_heads * d`` rows of Phi-3's fused ``qkv_proj``; Phi-3's sliding window is
  not applied to the value weights (they are not attention; the release's ignore causality too).
- Decoding (KV-cache generation): as FastV's video plan, layers < K keep the whole prompt's cache and layers
  >= K the pruned one; the release cuts layers 1..K-1's cache too, so its later tokens would see every image
  token in layer 0 and only the kept ones in layers 1..K-1 (not a state any prefill produces). The released
  no-cache loop re-runs the prompt for every token and so re-chooses with the tokens generated so far.
"""

from __future__ import annotations

import math

import torch

from ..methods import InLLMSelector, check_llm_layer, register_method
from .common import ranked

__all__ = ["IVCPruneSelector", "value_weights", "coordinate_tokens", "ivc_counts", "ivc_keep", "QUESTION_OFFSET"]

QUESTION_OFFSET = 2  # the question rows start this many positions past the image (modeling_llama.py:900)


def value_weights(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(len(rows), n): for the tokens ``rows``, ``softmax(v_r . v_j / sqrt(d))`` over all n tokens per head of
    ``values`` (heads, n, d), averaged over heads, in float32 (or float64)."""
    values = values.to(torch.promote_types(values.dtype, torch.float32))
    logits = values[:, rows] @ values.transpose(1, 2) / math.sqrt(values.shape[-1])
    return logits.softmax(dim=-1).mean(dim=0)


def coordinate_tokens(cos: torch.Tensor, sin: torch.Tensor, count: int) -> torch.Tensor:
    """Ascending indices of the IVC tokens among m positions: the ``count`` largest head-dimension means of the
    rotary ``cos`` (m, d) and the ``count`` largest of ``sin`` (m, d), united."""
    if count == 0:
        return torch.zeros(0, dtype=torch.long, device=cos.device)
    top = [t.float().mean(dim=-1).topk(count).indices for t in (cos, sin)]
    return torch.unique(torch.cat(top))


def ivc_counts(quota: int, candidates: int, coordinate_share: float, seed_share: float) -> tuple[int, int]:
    """(IVC tokens per axis, seeds wanted) for a group keeping ``quota`` of ``candidates`` image tokens."""
    per_axis = min(round(coordinate_share * quota), (quota - 1) // 2)
    return per_axis, max(1, round(seed_share * candidates))


def ivc_keep(values: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, question: torch.Tensor, candidates: torch.Tensor,
             quota: int, coordinate_share: float = 0.2, seed_share: float = 0.01) -> torch.Tensor:
    """Ascending indices into ``candidates`` of the ``quota`` image tokens one group keeps.

    ``values`` (heads, n, d) are the row's value vectors at layer K-1, ``cos``/``sin`` (n, r) its rotary
    embeddings, ``question`` the question rows and ``candidates`` the group's image positions (all in 0..n-1).
    Priority: IVC tokens and seeds (by the question rows' mean value weight); the rest by the mean value weight
    of the seed rows and question rows together, highest first.
    """
    per_axis, seeds_wanted = ivc_counts(quota, candidates.numel(), coordinate_share, seed_share)
    coords = coordinate_tokens(cos[candidates], sin[candidates], per_axis)
    question_weights = value_weights(values, question)
    seeds = ranked(question_weights.mean(dim=0)[candidates])[: min(seeds_wanted, quota - coords.numel())]
    anchor_weights = torch.cat([value_weights(values, candidates[seeds]), question_weights]).mean(dim=0)
    priority = torch.unique(torch.cat([coords, seeds]))
    taken = torch.zeros(candidates.numel(), dtype=torch.bool, device=candidates.device)
    taken[priority] = True
    order = ranked(anchor_weights[candidates])
    fill = order[~taken[order]][: quota - priority.numel()]
    return torch.cat([priority, fill]).sort().values


@register_method("ivcprune")
class IVCPruneSelector(InLLMSelector):
    """IVC-Prune (inside the LLM; the rule, its sources and adaptations: this module's docstring).

    ``layer`` K (default 16, the release's LLaVA-1.5-7B setting; GLaMM's LLM has the same 32 layers) is the
    first layer that sees the pruned sequence; the value weights come from layer K-1's input.
    ``coordinate_share`` (0.2) and ``seed_share`` (0.01) size the IVC tokens per axis (of the budget) and the
    seeds (of the image tokens). ``select`` keeps every token; ``prefill`` prunes.
    """

    def __init__(self, layer: int = 16, coordinate_share: float = 0.2, seed_share: float = 0.01):
        self.layer = check_llm_layer(layer, "IVC-Prune", "layer K-1's value vectors")
        for name, value in (("coordinate_share", coordinate_share), ("seed_share", seed_share)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 0.5:
                raise ValueError(f"{name} must be a number in [0, 0.5], got {value!r}")
        self.coordinate_share = float(coordinate_share)
        self.seed_share = float(seed_share)

    def ranker(self):
        from ...ivc_prune_llm import ivc_ranker  # transformers: imported when an LLM runs

        return ivc_ranker(self.coordinate_share, self.seed_share)

    def prefill(self, llm, batch, budget: int):
        from ...ivc_prune_llm import ivc_prefill  # transformers: imported when an LLM runs

        return ivc_prefill(llm, batch, budget=budget, layer=self.layer, coordinate_share=self.coordinate_share,
                           seed_share=self.seed_share)

"""FastV (and IVC-Prune) in the VideoGLaMM path: per-frame quotas of CLIP-derived LLM tokens, pruned inside the LLM.

Before the LLM nothing is pruned: every frame keeps its 576 CLIP tokens and the layout turns them
into the usual LLM tokens (``cells``: 144 per frame, ``unpooled``: 576; ``regrid`` is rejected). At
decoder layer K, per frame, the ``quota`` of that frame's CLIP-derived LLM tokens that receive the
most head-mean attention from the last position in layer K-1 stay (``litelvlm.fastv``);
InternVideo2 tokens and text always stay. ``quota`` = ceil(budget / 4) for ``cells`` (what
LiteLVLM's cell selection delivers at that budget) and ``budget`` for ``unpooled``. IVC-Prune runs the same plan
with its own ranking (``rank``: ``litelvlm.ivc_prune_llm.IVCRanker``; its video adaptation:
``litelvlm.pruning.baselines.ivcprune``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from litelvlm.fastv import KeepGroup, Ranker, fastv_decode_step, fastv_prefill_groups
from litelvlm.lvlm import GENERATED_TOKEN_ID, SplicedBatch, generation_row

__all__ = ["fastv_quota", "VideoFastVPlan", "GENERATED_TOKEN_ID"]



def fastv_quota(layout: str, budget: int, method: str = "fastv") -> int:
    """LLM tokens an in-LLM ``method`` (FastV, IVC-Prune) keeps per frame: ceil(budget / 4) cells for ``cells``,
    ``budget`` for ``unpooled``."""
    if layout == "cells":
        return math.ceil(budget / 4)
    if layout == "unpooled":
        return budget
    raise ValueError(f"method {method!r} does not support layout {layout!r}: it prunes the LLM tokens of each frame inside the LLM, "
                     "use layout 'cells' (12x12 pooled cells per frame) or 'unpooled' (576 tokens per frame)")


@dataclass
class VideoFastVPlan:
    """Per-frame FastV groups of one visual sequence (frames' LLM tokens, then video tokens).

    ``frame_tokens``: LLM tokens per sampled frame (all 144 cells or all 576 tokens); ``grid``: the
    CLIP token grid (24, 24); ``cell``: tokens per cell side for ``cells`` (2), 1 for ``unpooled``;
    ``rank``: the ranking at layer K-1 (``litelvlm.fastv.Ranker``; None: FastV's).
    """

    frame_tokens: list[int]
    quota: int
    grid: tuple[int, int]
    cell: int
    layer: int
    keep_position_ids: bool
    rank: Ranker | None = None

    def groups(self) -> list[KeepGroup]:
        """One group per frame: its LLM tokens' indices among the row's visual tokens."""
        starts = [sum(self.frame_tokens[:f]) for f in range(len(self.frame_tokens))]
        return [KeepGroup(torch.arange(s, s + n), self.quota) for s, n in zip(starts, self.frame_tokens)]

    def clip_indices(self, kept: list[torch.Tensor]) -> torch.Tensor:
        """(frames, cell^2 * quota): per frame the sorted CLIP indices (0..575) its kept LLM tokens cover."""
        h, w = self.grid
        cells_w = w // self.cell
        offsets = torch.arange(self.cell)
        block = (offsets[:, None] * w + offsets[None, :]).flatten()  # a cell's tokens relative to its corner
        rows = []
        for frame_kept in kept:
            frame_kept = frame_kept.cpu()
            corner = (frame_kept // cells_w) * self.cell * w + (frame_kept % cells_w) * self.cell
            rows.append((corner[:, None] + block[None]).flatten().sort().values)
        return torch.stack(rows)

    def prefill(self, llm, batch: SplicedBatch, use_cache: bool = False):
        """``fastv_prefill_groups`` of ``batch`` with every row split into this plan's frame groups."""
        groups = [self.groups() for _ in range(batch.inputs_embeds.shape[0])]
        return fastv_prefill_groups(llm, batch, groups, layer=self.layer, keep_position_ids=self.keep_position_ids,
                                    use_cache=use_cache, rank=self.rank)

    def generation_forward(self, llm, prompt_token_ids: torch.Tensor, use_cache: bool):
        """A ``generate`` ``forward``: FastV prefill, then (with the cache) one-token decode steps.

        Decode position ids continue from the original length in layers < K, and in layers >= K from
        the original length (``keep_position_ids``) or the pruned one. ``forward.kept`` holds the first
        prefill's per-frame kept LLM tokens (the prompt's; the no-cache loop re-ranks every step)."""

        def forward(inputs_embeds: torch.Tensor, state):
            if state is not None:
                hidden = fastv_decode_step(llm, inputs_embeds, state["cache"], layer=self.layer, positions=state["next"])
                state["next"] = (state["next"][0] + 1, state["next"][1] + 1)
                return hidden, state
            out = self.prefill(llm, generation_row(inputs_embeds, prompt_token_ids), use_cache=use_cache)
            forward.kept = forward.kept if forward.kept is not None else out.kept[0]
            pruned_next = int(out.positions[0, -1]) + 1
            return out.hidden, ({"cache": out.cache, "next": (out.length, pruned_next)} if use_cache else None)

        forward.kept = None
        return forward


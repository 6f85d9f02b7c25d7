"""Merging the visual tokens inside the LLM at one decoder layer: the prefill and the decoding shared by STTM's
in-LLM placement (``video_sttm``, merged at layer K's input, positions renumbered) and HoliTom's inner merge
(``video_holitom_llm``, ranked by layer K-1's attention, original positions kept).

Layers [0, K) run on the whole rows. At layer K's input a ``merge_row`` rule replaces each row's visual states by a
merged set (``MergedRow``), and layers K.. run on the shorter rows. With ``renumber`` the prompt's positions after
the first visual token are renumbered contiguously (STTM: ``position_ids[:, :merged_num_tokens]``), else every
token keeps its original position id (HoliTom: ``position_ids = keep_indexs``). Positions at or after a row's
``prompt_lengths`` (a teacher-forced answer) keep their original ids in every layer: the ids the releases give
decoded tokens, whose cache position counts the unmerged prompt (layer 0's cache length). With ``use_cache`` the
cache holds the whole prompt in layers < K and the merged one in layers >= K; ``merge_generation_forward`` continues
it one token at a time (``litelvlm.fastv.fastv_decode_step``). Needs transformers: imported when a clip runs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from transformers.cache_utils import DynamicCache

from ...fastv import _attention_inputs, _decoder_of, _Rows, _row_lengths, _run_layers, fastv_decode_step
from ...lvlm import VISUAL_TOKEN_ID, SplicedBatch, generation_row

__all__ = ["MergedRow", "MergePrefill", "usable_merge_layer", "merge_prefill", "merge_generation_forward"]


@dataclass
class MergedRow:
    """A row's visual tokens from layer K on: ``hidden`` (M, H) and ``source`` (M,), the visual token (index among
    the row's visual tokens) each stands at: its original position when positions are kept."""

    hidden: torch.Tensor
    source: torch.Tensor


@dataclass
class MergePrefill:
    """Final-norm ``hidden`` (B, L', H) of the merged rows, their ``token_ids`` (-1 at visual positions and padding)
    and ``positions`` (B, L'), the filled ``cache`` (or None), ``length`` L (the unmerged padded length) and per row
    the visual tokens layers K.. see (``visual_after``)."""

    hidden: torch.Tensor
    token_ids: torch.Tensor
    positions: torch.Tensor
    cache: DynamicCache | None
    length: int
    visual_after: list[int]


MergeRule = Callable[[int, torch.Tensor, torch.Tensor | None], MergedRow]
"""``merge_row(b, visual_hidden (V, H), visual_scores (V,) or None) -> MergedRow`` for row b."""

ScoreRule = Callable[[torch.nn.Module, torch.Tensor, tuple, _Rows, list[int]], torch.Tensor]
"""``score(layer K-1, its input (B, L, H), rotary, rows, ends) -> (B, L)``: scores read before layer K-1 runs."""


def usable_merge_layer(method: str, layer: int, num_layers: int) -> int:
    """K for an LLM of ``num_layers`` layers: ``layer`` when 1 <= K < num_layers, else ``num_layers - 1`` with a
    warning that says so (the tiny test models); an LLM of one layer is refused."""
    if num_layers < 2:
        raise ValueError(f"{method}: merging inside the LLM needs at least 2 decoder layers, the LLM has {num_layers}")
    if 1 <= layer < num_layers:
        return layer
    warnings.warn(f"{method}: layer K={layer} does not fit an LLM of {num_layers} layers; merging at layer {num_layers - 1} "
                  f"instead (choose with get_method('{method}', layer=...))", stacklevel=3)
    return num_layers - 1


def _visual_span(token_ids: torch.Tensor, length: int, b: int) -> torch.Tensor:
    visual = (token_ids[:length] == VISUAL_TOKEN_ID).nonzero().flatten()
    if visual.numel() == 0:
        raise ValueError(f"row {b} has no visual tokens")
    if int(visual[-1] - visual[0]) + 1 != visual.numel():
        raise ValueError(f"row {b}'s visual tokens are not one contiguous run (one clip per prompt)")
    return visual


def _row_positions(length: int, start: int, visual: int, merged: int, end: int, source: torch.Tensor,
                   renumber: bool, device) -> torch.Tensor:
    """Position ids of a merged row: text before the visual run, the merged tokens, the text after it."""
    before = torch.arange(start, device=device)
    after = torch.arange(start + visual, length, device=device)
    if renumber:
        shifted = torch.where(after < end, after - (visual - merged), after)  # the answer keeps the decoded ids
        return torch.cat([before, torch.arange(start, start + merged, device=device), shifted])
    return torch.cat([before, start + source.to(device), after])


def _merged_row(rows: _Rows, hidden: torch.Tensor, b: int, length: int, end: int, merge_row: MergeRule,
                scores: torch.Tensor | None, renumber: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row b's (hidden, token ids, position ids) from layer K on: its visual run replaced by ``merge_row``'s tokens."""
    visual = _visual_span(rows.token_ids[b], length, b)
    start, count = int(visual[0]), visual.numel()
    merged = merge_row(b, hidden[b, visual], None if scores is None else scores[b, visual])
    m, ids = merged.hidden.shape[0], rows.token_ids[b]
    states = torch.cat([hidden[b, :start], merged.hidden.to(hidden.dtype), hidden[b, start + count : length]])
    token_ids = torch.cat([ids[:start], ids.new_full((m,), VISUAL_TOKEN_ID), ids[start + count : length]])
    return states, token_ids, _row_positions(length, start, count, m, end, merged.source, renumber, hidden.device)


def _pack(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], like: _Rows) -> _Rows:
    """Right-padded rows of (hidden, token ids, position ids); padding is -1 / masked."""
    batch, width = len(parts), max(h.shape[0] for h, _, _ in parts)
    hidden = parts[0][0]
    packed = _Rows(hidden.new_zeros(batch, width, hidden.shape[-1]),
                   torch.zeros(batch, width, dtype=like.mask.dtype, device=hidden.device),
                   torch.arange(width, device=hidden.device).repeat(batch, 1),
                   torch.full((batch, width), VISUAL_TOKEN_ID, dtype=like.token_ids.dtype, device=hidden.device))
    for b, (h, ids, positions) in enumerate(parts):
        n = h.shape[0]
        packed.hidden[b, :n], packed.mask[b, :n], packed.token_ids[b, :n], packed.positions[b, :n] = h, 1, ids, positions
    return packed


def merge_prefill(llm, batch: SplicedBatch, layer: int, merge_row: MergeRule, *, renumber: bool,
                  prompt_lengths: Sequence[int] | None = None, use_cache: bool = False, score: ScoreRule | None = None,
                  method: str = "merge") -> MergePrefill:
    """Run ``batch`` (right-padded rows, one contiguous visual run each) with the visual states replaced at layer
    K = ``layer``'s input by ``merge_row`` (module docstring). ``score`` (optional) is read on layer K-1's input and
    handed to ``merge_row`` at the visual positions; ``prompt_lengths`` tells where each row's prompt ends (the
    score's query, and the answer that keeps its decoded position ids); ``use_cache`` needs one row."""
    decoder = _decoder_of(llm)
    k = usable_merge_layer(method, layer, len(decoder.layers))
    rows_count, length = batch.inputs_embeds.shape[:2]
    if use_cache and rows_count != 1:
        raise ValueError(f"use_cache needs a batch of one row (generation is per sequence), got {rows_count}")
    lengths = _row_lengths(batch.attention_mask).tolist()
    ends = lengths if prompt_lengths is None else [int(p) for p in prompt_lengths]
    if len(ends) != rows_count or any(not 1 <= e <= n for e, n in zip(ends, lengths)):
        raise ValueError(f"prompt_lengths {ends} must give one length in [1, row length] per row (row lengths {lengths})")
    positions = torch.arange(length, device=batch.inputs_embeds.device).unsqueeze(0)
    rows = _Rows(batch.inputs_embeds, batch.attention_mask, positions, batch.token_ids)
    causal_mask, rotary = _attention_inputs(decoder, rows)
    cache = DynamicCache() if use_cache else None
    hidden = _run_layers(decoder.layers[: k - 1], rows.hidden, positions, causal_mask, rotary, cache)
    scores = None if score is None else score(decoder.layers[k - 1], hidden, rotary, rows, ends)
    hidden = _run_layers(decoder.layers[k - 1 : k], hidden, positions, causal_mask, rotary, cache)
    parts = [_merged_row(rows, hidden, b, n, e, merge_row, scores, renumber) for b, (n, e) in enumerate(zip(lengths, ends))]
    merged = _pack(parts, rows)
    counts = [int((ids == VISUAL_TOKEN_ID).sum()) for _, ids, _ in parts]
    causal_mask, rotary = _attention_inputs(decoder, merged)
    hidden = _run_layers(decoder.layers[k:], merged.hidden, merged.positions, causal_mask, rotary, cache)
    return MergePrefill(decoder.norm(hidden), merged.token_ids, merged.positions, cache, length, counts)


def merge_generation_forward(prefill: Callable[..., MergePrefill], llm, prompt_token_ids: torch.Tensor, use_cache: bool,
                             layer: int, method: str):
    """A ``litelvlm.decoding.generate`` ``forward`` around ``prefill(llm, batch, prompt_lengths=, use_cache=)``. With the
    cache: the prompt's merged prefill, then one token per call against that cache, at position ids that continue the
    unmerged numbering in every layer (as the releases decode). Without it: every call runs the prefill over prompt
    and generated tokens, the prompt's end given, so the generated tokens get the same ids."""
    prompt_length = int(prompt_token_ids.shape[-1])
    k = usable_merge_layer(method, layer, len(_decoder_of(llm).layers))

    def forward(inputs_embeds: torch.Tensor, state):
        if state is not None:
            hidden = fastv_decode_step(llm, inputs_embeds, state["cache"], layer=k, positions=(state["next"], state["next"]))
            state["next"] += 1
            return hidden, state
        out = prefill(llm, generation_row(inputs_embeds, prompt_token_ids), prompt_lengths=[prompt_length], use_cache=use_cache)
        forward.visual_after = out.visual_after[0]
        return out.hidden, ({"cache": out.cache, "next": out.length} if use_cache else None)

    forward.visual_after = None
    return forward

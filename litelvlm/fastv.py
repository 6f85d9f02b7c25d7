"""FastV: image-token pruning inside the LLM prefill (FACTS §6; pkunlp-icler/FastV, in-place variant).

Layers [0, K) run on the whole spliced sequence. The head-mean attention that each row's last valid
position pays to every key in layer K-1 ranks that row's image tokens; the best stay (in their
original order), the others leave the hidden states, the mask and the token ids, and layers [K, L)
run on the shorter rows. Kept tokens keep their original position ids (FastV) or are re-numbered
contiguously. ``fastv_prefill`` keeps ``budget`` of all image tokens per row (the image path);
``fastv_prefill_groups`` keeps a ``quota`` per group of candidate image tokens (e.g. per video
frame) and keeps image tokens outside every group; it can also fill a KV cache, which
``fastv_decode_step`` continues one token at a time.

One implementation serves LLaMA-style attention (``q_proj``/``k_proj``) and Phi-3 (fused
``qkv_proj``: q = the first heads*d output rows, k = the next kv_heads*d), with the model's sliding
window (Phi-3) applied by token index as the model's own masks do. The model keeps its attention
implementation (SDPA, flash-attn): the one attention row FastV needs is recomputed from layer K-1's
input (input_layernorm -> q/k projections -> rotary -> masked softmax).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

from .hf_compat import cache_kwargs
from .lvlm import VISUAL_TOKEN_ID, SplicedBatch

__all__ = ["fastv_prefill", "fastv_prefill_groups", "fastv_decode_step", "last_position_attention", "KeepGroup",
           "FastVPrefill", "Ranker", "VISUAL_TOKEN_ID"]



@dataclass
class KeepGroup:
    """``candidates``: indices among a row's image tokens (0 = its first image token); ``quota`` of them stay."""

    candidates: torch.Tensor
    quota: int


@dataclass
class FastVPrefill:
    """Output of ``fastv_prefill_groups``: final-norm ``hidden`` (B, L', H) of the pruned rows, their
    ``token_ids`` and ``positions`` (B, L'), ``kept[b][g]`` ascending indices into group g's candidates,
    the filled ``cache`` (or None) and ``length`` L, the unpruned padded length."""

    hidden: torch.Tensor
    token_ids: torch.Tensor
    positions: torch.Tensor
    kept: list[list[torch.Tensor]]
    cache: DynamicCache | None
    length: int


@dataclass
class _Rows:
    """Right-padded hidden states with their 2D mask, position ids (B or 1, L) and token ids (-1: image/padding)."""

    hidden: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    token_ids: torch.Tensor


def _decoder_of(llm: nn.Module) -> nn.Module:
    decoder = getattr(llm, "model", llm)
    for part in ("layers", "norm", "rotary_emb", "config"):
        if not hasattr(decoder, part):
            raise ValueError(f"FastV needs a LLaMA-style LLM (Llama/Phi3 ForCausalLM or Model); {type(llm).__name__} has no {part!r}")
    return decoder


def _sliding_window(config) -> int | None:
    return getattr(config, "sliding_window", None)


def _row_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Valid tokens per row of a right-padded 2D mask (raises on any other layout)."""
    lengths = mask.long().sum(1)
    expected = torch.arange(mask.shape[1], device=mask.device)[None] < lengths[:, None]
    if not torch.equal(mask.bool(), expected) or bool((lengths == 0).any()):
        raise ValueError("attention_mask must be right-padded (ones, then zeros) with at least one token per row")
    return lengths


def _rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` (B, heads, L, d) with ``cos``/``sin`` (B, L, r); dims past r pass (partial rotary)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    rotated, passed = x[..., : cos.shape[-1]], x[..., cos.shape[-1] :]
    return torch.cat([rotated * cos + rotate_half(rotated) * sin, passed], dim=-1)


def _query_key_weights(attn: nn.Module):
    """(weight, bias) of the query and of the key projection: separate (LLaMA) or rows of a fused qkv (Phi-3)."""
    if hasattr(attn, "q_proj") and hasattr(attn, "k_proj"):
        return (attn.q_proj.weight, attn.q_proj.bias), (attn.k_proj.weight, attn.k_proj.bias)
    if hasattr(attn, "qkv_proj") and hasattr(attn, "num_key_value_heads"):
        q_rows = attn.config.num_attention_heads * attn.head_dim
        k_rows = attn.num_key_value_heads * attn.head_dim
        weight, bias = attn.qkv_proj.weight, attn.qkv_proj.bias
        rows = (slice(0, q_rows), slice(q_rows, q_rows + k_rows))
        return tuple((weight[r], bias[r] if bias is not None else None) for r in rows)
    raise ValueError(f"{type(attn).__name__} has neither q_proj/k_proj (LLaMA) nor a fused qkv_proj (Phi-3): FastV scoring cannot recompute it")


def last_position_attention(decoder_layer: nn.Module, hidden_states: torch.Tensor, position_embeddings, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) float32: head-mean softmax attention of each row's last valid query over all keys in
    ``decoder_layer``, given the layer's input ``hidden_states`` (B, L, H), the rotary ``(cos, sin)``
    and the right-padded 2D ``attention_mask``; masked keys (and keys outside a sliding window) get 0."""
    attn = decoder_layer.self_attn
    if not all(hasattr(attn, p) for p in ("head_dim", "scaling", "num_key_value_groups")):
        raise ValueError(f"{type(attn).__name__} is not LLaMA-style attention: FastV scoring cannot recompute it")
    (q_weight, q_bias), (k_weight, k_bias) = _query_key_weights(attn)
    batch, length, _ = hidden_states.shape
    last = _row_lengths(attention_mask) - 1
    rows = torch.arange(batch, device=hidden_states.device)
    normed = decoder_layer.input_layernorm(hidden_states)
    query = F.linear(normed[rows, last], q_weight, q_bias).view(batch, -1, 1, attn.head_dim)  # (B, heads, 1, d)
    key = F.linear(normed, k_weight, k_bias).view(batch, length, -1, attn.head_dim).transpose(1, 2)  # (B, kv heads, L, d)
    cos, sin = (t.expand(batch, -1, -1) for t in position_embeddings)
    query = _rotary(query, cos[rows, last][:, None], sin[rows, last][:, None])
    key = repeat_kv(_rotary(key, cos, sin), attn.num_key_value_groups)
    logits = torch.einsum("bhqd,bhkd->bhk", query.float(), key.float()) * attn.scaling
    index = torch.arange(length, device=hidden_states.device)[None]
    visible = index <= last[:, None]  # causal; right padding lies beyond
    window = _sliding_window(getattr(attn, "config", None))
    if window is not None:
        visible &= index > last[:, None] - window  # as transformers' sliding_window_overlay
    logits = logits.masked_fill(~visible[:, None], float("-inf"))
    return logits.softmax(-1).mean(1)


Ranker = Callable[[nn.Module, torch.Tensor, tuple, torch.Tensor, torch.Tensor, Sequence[Sequence[KeepGroup]]], torch.Tensor]
"""``rank(decoder_layer, hidden, rotary, attention_mask, token_ids, groups)`` -> (B, L) scores: given layer K-1,
its input ``hidden`` (B, L, H), the rotary ``(cos, sin)``, the right-padded 2D mask, the token ids (-1 at image
positions) and the groups, each group keeps its ``quota`` best-scored candidates."""


def _last_position_scores(decoder_layer, hidden, rotary, attention_mask, token_ids, groups) -> torch.Tensor:
    """FastV's ranking: the head-mean attention each row's last position pays every key in layer K-1."""
    return last_position_attention(decoder_layer, hidden, rotary, attention_mask)


def _attention_inputs(decoder: nn.Module, rows: _Rows):
    """The causal (or sliding-window) mask and rotary embeddings of ``rows``, built as the model's forward builds them."""
    make_mask = create_causal_mask if _sliding_window(decoder.config) is None else create_sliding_window_causal_mask
    causal_mask = make_mask(config=decoder.config, inputs_embeds=rows.hidden, attention_mask=rows.mask, **cache_kwargs(None),
                            position_ids=rows.positions)
    return causal_mask, decoder.rotary_emb(rows.hidden, position_ids=rows.positions)


def _run_layers(layers, hidden: torch.Tensor, positions: torch.Tensor, causal_mask, position_embeddings, cache=None) -> torch.Tensor:
    for decoder_layer in layers:
        hidden = decoder_layer(hidden, attention_mask=causal_mask, position_embeddings=position_embeddings,
                               position_ids=positions, use_cache=cache is not None, **cache_kwargs(cache))
    return hidden


def _keep_plan(scores: torch.Tensor, rows: _Rows, groups: Sequence[Sequence[KeepGroup]]):
    """Per row: the sequence positions that stay, and per group the ascending kept indices into its candidates."""
    positions, kept = [], []
    for b, length in enumerate(_row_lengths(rows.mask).tolist()):
        visual = (rows.token_ids[b, :length] == VISUAL_TOKEN_ID).nonzero().flatten()
        stay = torch.ones(length, dtype=torch.bool, device=visual.device)
        row_kept = []
        for g, group in enumerate(groups[b]):
            candidates = group.candidates.to(visual.device)
            if candidates.numel() < group.quota:
                raise ValueError(f"row {b} group {g} has {candidates.numel()} image tokens, fewer than budget={group.quota}: lower the budget")
            if candidates.numel() and int(candidates.max()) >= visual.numel():
                raise ValueError(f"row {b} group {g} names image token {int(candidates.max())}, but the row has {visual.numel()}")
            top = scores[b, visual[candidates]].topk(group.quota).indices.sort().values
            stay[visual[candidates]] = False
            stay[visual[candidates[top]]] = True
            row_kept.append(top)
        positions.append(stay.nonzero().flatten())
        kept.append(row_kept)
    return positions, kept


def _gather_rows(rows: _Rows, hidden: torch.Tensor, stay: list[torch.Tensor], keep_position_ids: bool) -> _Rows:
    """The staying positions of every row, right-padded to the longest; padding is -1 / masked."""
    batch, width = len(stay), max(s.numel() for s in stay)
    device = hidden.device
    out = _Rows(
        hidden=hidden.new_zeros(batch, width, hidden.shape[-1]),
        mask=torch.zeros(batch, width, dtype=rows.mask.dtype, device=device),
        positions=torch.arange(width, device=device).repeat(batch, 1),
        token_ids=torch.full((batch, width), VISUAL_TOKEN_ID, dtype=rows.token_ids.dtype, device=device),
    )
    original_positions = rows.positions.expand(batch, -1)
    for b, index in enumerate(stay):
        n = index.numel()
        out.hidden[b, :n] = hidden[b, index]
        out.mask[b, :n] = 1
        out.token_ids[b, :n] = rows.token_ids[b, index]
        if keep_position_ids:
            out.positions[b, :n] = original_positions[b, index]
    return out


def _check_budget(budget) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an int >= 1 (image tokens kept per row), got {budget!r}")


def _check_layer(layer, num_layers: int) -> None:
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= num_layers:
        raise ValueError(
            f"FastV layer K={layer!r} is out of range: choose 1 <= K <= {num_layers} (the LLM's layers); "
            "K ranks image tokens by layer K-1's attention, so K=0 has no attention to rank by"
        )


def _check_groups(groups, batch_size: int) -> None:
    if len(groups) != batch_size:
        raise ValueError(f"groups must hold one list of KeepGroup per row: got {len(groups)} lists for {batch_size} rows")
    for row in groups:
        for group in row:
            _check_budget(group.quota)


def fastv_prefill_groups(llm: nn.Module, batch: SplicedBatch, groups: Sequence[Sequence[KeepGroup]], *, layer: int = 2,
                         keep_position_ids: bool = True, use_cache: bool = False, rank: Ranker | None = None) -> FastVPrefill:
    """Prefill that keeps, per row and per ``KeepGroup``, the ``quota`` best of its candidate image tokens
    from decoder layer ``layer`` on; image tokens in no group and all text tokens always stay.

    ``use_cache`` (batch size 1) fills a fresh ``DynamicCache``: layers < K cache the whole sequence,
    layers >= K the pruned one; continue with ``fastv_decode_step``. ``rank`` replaces FastV's ranking (see
    ``Ranker``; IVC-Prune: ``litelvlm.ivc_prune_llm``).
    """
    decoder = _decoder_of(llm)
    _check_layer(layer, len(decoder.layers))
    _check_groups(groups, batch.inputs_embeds.shape[0])
    if use_cache and batch.inputs_embeds.shape[0] != 1:
        raise ValueError(f"use_cache needs a batch of one row (generation is per sequence), got {batch.inputs_embeds.shape[0]}")
    cache = DynamicCache() if use_cache else None
    length = batch.inputs_embeds.shape[1]
    positions = torch.arange(length, device=batch.inputs_embeds.device).unsqueeze(0)  # as LlamaModel.forward
    rows = _Rows(batch.inputs_embeds, batch.attention_mask, positions, batch.token_ids)
    causal_mask, rotary = _attention_inputs(decoder, rows)
    hidden = _run_layers(decoder.layers[: layer - 1], rows.hidden, positions, causal_mask, rotary, cache)
    scores = (rank or _last_position_scores)(decoder.layers[layer - 1], hidden, rotary, rows.mask, rows.token_ids, groups)
    hidden = _run_layers(decoder.layers[layer - 1 : layer], hidden, positions, causal_mask, rotary, cache)
    stay, kept = _keep_plan(scores, rows, groups)
    pruned = _gather_rows(rows, hidden, stay, keep_position_ids)
    causal_mask, rotary = _attention_inputs(decoder, pruned)
    hidden = _run_layers(decoder.layers[layer:], pruned.hidden, pruned.positions, causal_mask, rotary, cache)
    return FastVPrefill(decoder.norm(hidden), pruned.token_ids, pruned.positions, kept, cache, length)


def fastv_prefill(llm: nn.Module, batch: SplicedBatch, *, budget: int, layer: int = 2, keep_position_ids: bool = True,
                  rank: Ranker | None = None):
    """Teacher-forced prefill that keeps ``budget`` image tokens per row from decoder layer ``layer`` on.

    ``llm`` is a LlamaForCausalLM / Phi3ForCausalLM (or its inner model); ``batch`` a right-padded
    ``SplicedBatch`` whose image positions carry token id -1. Returns ``(hidden (B, L', H)`` after the
    final norm, ``token_ids (B, L')`` of the pruned rows (so ``hidden_before`` still finds ``[SEG]``),
    ``kept (B, budget)`` ascending indices among each row's image tokens). ``rank``: as in ``fastv_prefill_groups``.
    """
    _check_budget(budget)
    _check_layer(layer, len(_decoder_of(llm).layers))
    groups = []
    for b, length in enumerate(_row_lengths(batch.attention_mask).tolist()):
        num_visual = int((batch.token_ids[b, :length] == VISUAL_TOKEN_ID).sum())
        groups.append([KeepGroup(torch.arange(num_visual, device=batch.token_ids.device), budget)])
    out = fastv_prefill_groups(llm, batch, groups, layer=layer, keep_position_ids=keep_position_ids, rank=rank)
    return out.hidden, out.token_ids, torch.stack([row[0] for row in out.kept])


def _window_mask(decoder: nn.Module, keys: int, like: torch.Tensor) -> torch.Tensor | None:
    """Additive (1, 1, 1, keys) mask of one query over ``keys`` cached keys: None unless a sliding window cuts some."""
    window = _sliding_window(decoder.config)
    if window is None or keys <= window:
        return None
    mask = torch.zeros(1, 1, 1, keys, dtype=like.dtype, device=like.device)
    mask[..., : keys - window] = torch.finfo(like.dtype).min  # visible: index > (keys - 1) - window
    return mask


def fastv_decode_step(llm: nn.Module, inputs_embeds: torch.Tensor, cache: DynamicCache, *, layer: int,
                      positions: tuple[int, int]) -> torch.Tensor:
    """One token (1, 1, H) through all layers after ``fastv_prefill_groups(use_cache=True)``; returns its
    final-norm state (1, 1, H). ``positions``: its position id in layers < K (original numbering) and in
    layers >= K (original, or pruned numbering when the prefill re-numbered)."""
    decoder = _decoder_of(llm)
    _check_layer(layer, len(decoder.layers))
    if inputs_embeds.shape[:2] != (1, 1):
        raise ValueError(f"fastv_decode_step feeds one token of one sequence: inputs_embeds must be (1, 1, H), got {tuple(inputs_embeds.shape)}")
    hidden = inputs_embeds
    spans = ((range(0, layer), positions[0]), (range(layer, len(decoder.layers)), positions[1]))
    for indices, position in spans:
        position_ids = torch.tensor([[position]], device=hidden.device)
        rotary = decoder.rotary_emb(hidden, position_ids=position_ids)
        for index in indices:
            mask = _window_mask(decoder, cache.get_seq_length(index) + 1, hidden)
            hidden = decoder.layers[index](hidden, attention_mask=mask, position_embeddings=rotary, position_ids=position_ids,
                                           use_cache=True, **cache_kwargs(cache))
    return decoder.norm(hidden)

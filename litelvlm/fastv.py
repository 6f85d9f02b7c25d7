"""FastV: image-token pruning inside the LLM prefill (FACTS §6; pkunlp-icler/FastV, in-place variant).

Layers [0, K) run on the whole spliced sequence. The head-mean attention that each row's last valid
position pays to every key in layer K-1 ranks that row's image tokens; the ``budget`` best stay (in
their original order), the others leave the hidden states, the mask and the token ids, and layers
[K, L) run on the shorter rows. Kept tokens keep their original position ids (FastV) or are
re-numbered contiguously.

The model keeps its attention implementation (SDPA, flash-attn): the one attention row FastV needs
is recomputed from layer K-1's input (input_layernorm -> q_proj/k_proj -> rotary -> masked softmax).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from .lvlm import SplicedBatch

__all__ = ["fastv_prefill", "last_position_attention", "VISUAL_TOKEN_ID"]

VISUAL_TOKEN_ID = -1  # ``SplicedBatch.token_ids`` value at visual positions (and at padding)


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
            raise ValueError(f"fastv_prefill needs a LLaMA-style LLM (LlamaForCausalLM or LlamaModel); {type(llm).__name__} has no {part!r}")
    return decoder


def _row_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Valid tokens per row of a right-padded 2D mask (raises on any other layout)."""
    lengths = mask.long().sum(1)
    expected = torch.arange(mask.shape[1], device=mask.device)[None] < lengths[:, None]
    if not torch.equal(mask.bool(), expected) or bool((lengths == 0).any()):
        raise ValueError("attention_mask must be right-padded (ones, then zeros) with at least one token per row")
    return lengths


def last_position_attention(decoder_layer: nn.Module, hidden_states: torch.Tensor, position_embeddings, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) float32: head-mean softmax attention of each row's last valid query over all keys in
    ``decoder_layer``, given the layer's input ``hidden_states`` (B, L, H), the rotary ``(cos, sin)``
    and the right-padded 2D ``attention_mask``; masked keys get 0."""
    attn = decoder_layer.self_attn
    if not all(hasattr(attn, p) for p in ("q_proj", "k_proj", "head_dim", "scaling", "num_key_value_groups")):
        raise ValueError(f"{type(attn).__name__} is not LLaMA-style attention (separate q_proj/k_proj): FastV scoring cannot recompute it")
    batch, length, _ = hidden_states.shape
    last = _row_lengths(attention_mask) - 1
    rows = torch.arange(batch, device=hidden_states.device)
    normed = decoder_layer.input_layernorm(hidden_states)
    query = attn.q_proj(normed[rows, last]).view(batch, -1, 1, attn.head_dim)  # (B, heads, 1, d)
    key = attn.k_proj(normed).view(batch, length, -1, attn.head_dim).transpose(1, 2)  # (B, kv heads, L, d)
    cos, sin = (t.expand(batch, -1, -1) for t in position_embeddings)
    query, _ = apply_rotary_pos_emb(query, query, cos[rows, last][:, None], sin[rows, last][:, None])
    _, key = apply_rotary_pos_emb(key, key, cos, sin)
    key = repeat_kv(key, attn.num_key_value_groups)
    logits = torch.einsum("bhqd,bhkd->bhk", query.float(), key.float()) * attn.scaling
    visible = torch.arange(length, device=hidden_states.device)[None] <= last[:, None]  # causal; right padding lies beyond
    logits = logits.masked_fill(~visible[:, None], float("-inf"))
    return logits.softmax(-1).mean(1)


def _attention_inputs(decoder: nn.Module, rows: _Rows):
    """The causal mask and rotary embeddings of ``rows``, built as ``LlamaModel.forward`` builds them."""
    causal_mask = create_causal_mask(
        config=decoder.config, inputs_embeds=rows.hidden, attention_mask=rows.mask, past_key_values=None, position_ids=rows.positions,
    )
    return causal_mask, decoder.rotary_emb(rows.hidden, position_ids=rows.positions)


def _run_layers(layers, hidden: torch.Tensor, positions: torch.Tensor, causal_mask, position_embeddings) -> torch.Tensor:
    for decoder_layer in layers:
        hidden = decoder_layer(hidden, attention_mask=causal_mask, position_embeddings=position_embeddings,
                               position_ids=positions, past_key_values=None, use_cache=False)
    return hidden


def _keep_plan(scores: torch.Tensor, rows: _Rows, budget: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per row: the sequence positions that stay, and the (B, budget) kept indices among its image tokens."""
    positions, kept = [], []
    for b, length in enumerate(_row_lengths(rows.mask).tolist()):
        visual = (rows.token_ids[b, :length] == VISUAL_TOKEN_ID).nonzero().flatten()
        if visual.numel() < budget:
            raise ValueError(f"row {b} has {visual.numel()} image tokens, fewer than budget={budget}: lower the budget")
        top = scores[b, visual].topk(budget).indices.sort().values
        stay = torch.ones(length, dtype=torch.bool, device=visual.device)
        stay[visual] = False
        stay[visual[top]] = True
        positions.append(stay.nonzero().flatten())
        kept.append(top)
    return positions, torch.stack(kept)


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


def _check_options(budget, layer, num_layers: int) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an int >= 1 (image tokens kept per row), got {budget!r}")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= num_layers:
        raise ValueError(
            f"FastV layer K={layer!r} is out of range: choose 1 <= K <= {num_layers} (the LLM's layers); "
            "K ranks image tokens by layer K-1's attention, so K=0 has no attention to rank by"
        )


def fastv_prefill(llm: nn.Module, batch: SplicedBatch, *, budget: int, layer: int = 2, keep_position_ids: bool = True):
    """Teacher-forced prefill that keeps ``budget`` image tokens per row from decoder layer ``layer`` on.

    ``llm`` is a LlamaForCausalLM (or its LlamaModel); ``batch`` a right-padded ``SplicedBatch`` whose
    image positions carry token id -1. Returns ``(hidden (B, L', H)`` after the final norm,
    ``token_ids (B, L')`` of the pruned rows (so ``hidden_before`` still finds ``[SEG]``),
    ``kept (B, budget)`` ascending indices among each row's image tokens).
    """
    decoder = _decoder_of(llm)
    _check_options(budget, layer, len(decoder.layers))
    length = batch.inputs_embeds.shape[1]
    positions = torch.arange(length, device=batch.inputs_embeds.device).unsqueeze(0)  # as LlamaModel.forward
    rows = _Rows(batch.inputs_embeds, batch.attention_mask, positions, batch.token_ids)
    causal_mask, rotary = _attention_inputs(decoder, rows)
    hidden = _run_layers(decoder.layers[: layer - 1], rows.hidden, positions, causal_mask, rotary)
    scores = last_position_attention(decoder.layers[layer - 1], hidden, rotary, rows.mask)
    hidden = _run_layers(decoder.layers[layer - 1 : layer], hidden, positions, causal_mask, rotary)
    stay, kept = _keep_plan(scores, rows, budget)
    pruned = _gather_rows(rows, hidden, stay, keep_position_ids)
    causal_mask, rotary = _attention_inputs(decoder, pruned)
    hidden = _run_layers(decoder.layers[layer:], pruned.hidden, pruned.positions, causal_mask, rotary)
    return decoder.norm(hidden), pruned.token_ids, kept

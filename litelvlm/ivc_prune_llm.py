"""IVC-Prune's LLM side: its ranking plugged into the FastV prefill (``litelvlm.fastv``; the rule, sources and
adaptations: ``litelvlm.pruning.baselines.ivcprune``).

Layers [0, K-1) run on the whole sequence; layer K-1's input gives every row's value vectors (``input_layernorm``
-> ``v_proj``, or the value rows of Phi-3's fused ``qkv_proj``); per group of candidate image tokens the IVC
tokens, seeds and foreground are chosen (``ivc_keep``); the others leave before layer K, the kept tokens keeping
their original position ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .fastv import KeepGroup, _decoder_of, _row_lengths, fastv_prefill
from .lvlm import VISUAL_TOKEN_ID, SplicedBatch
from .pruning.baselines.ivcprune import QUESTION_OFFSET, ivc_keep

__all__ = ["layer_values", "IVCRanker", "ivc_ranker", "ivc_prefill"]


def _value_weight(attn: nn.Module):
    """(weight, bias) of the value projection: ``v_proj`` (LLaMA) or the last rows of a fused ``qkv_proj`` (Phi-3)."""
    if hasattr(attn, "v_proj"):
        return attn.v_proj.weight, attn.v_proj.bias
    if hasattr(attn, "qkv_proj") and hasattr(attn, "num_key_value_heads"):
        start = (attn.config.num_attention_heads + attn.num_key_value_heads) * attn.head_dim
        bias = attn.qkv_proj.bias
        return attn.qkv_proj.weight[start:], None if bias is None else bias[start:]
    raise ValueError(f"{type(attn).__name__} has neither v_proj (LLaMA) nor a fused qkv_proj (Phi-3): IVC-Prune cannot read its values")


def layer_values(decoder_layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """(kv heads, n, d) value vectors of ``decoder_layer`` for its input ``hidden`` (n, H)."""
    attn = decoder_layer.self_attn
    weight, bias = _value_weight(attn)
    values = F.linear(decoder_layer.input_layernorm(hidden), weight, bias)
    return values.view(hidden.shape[0], -1, attn.head_dim).transpose(0, 1)


def _question_rows(visual: torch.Tensor, length: int, row: int) -> torch.Tensor:
    """The positions from ``QUESTION_OFFSET`` past the row's last image token to its end (at least one)."""
    start = int(visual.max()) + 1 + QUESTION_OFFSET
    if start >= length:
        raise ValueError(f"row {row} has no text {QUESTION_OFFSET} tokens past its image: IVC-Prune scores image tokens "
                         "by the question's value vectors, so the prompt must go on after the image")
    return torch.arange(start, length, device=visual.device)


def _row_kept_positions(decoder_layer, hidden, cos, sin, visual, groups, row, coordinate_share, seed_share) -> list[torch.Tensor]:
    """The positions IVC-Prune keeps in one unpadded row (``hidden`` (n, H), rotary ``cos``/``sin`` (n, r), the
    row's image positions ``visual``), group by group."""
    values = layer_values(decoder_layer, hidden)
    question = _question_rows(visual, hidden.shape[0], row)
    kept = []
    for group in groups:
        local = group.candidates.to(visual.device)
        if group.quota > local.numel() or (local.numel() and int(local.max()) >= visual.numel()):
            continue  # fastv's keep plan raises the error that names this group
        candidates = visual[local]
        kept.append(candidates[ivc_keep(values, cos, sin, question, candidates, group.quota, coordinate_share, seed_share)])
    return kept


@dataclass(frozen=True)
class IVCRanker:
    """A ``litelvlm.fastv.Ranker``: 1 for the image tokens IVC-Prune keeps in each group, 0 elsewhere, so each
    group's top ``quota`` are exactly its IVC-Prune selection. Equal settings compare equal (the video path batches
    the expressions whose in-LLM plans are equal)."""

    coordinate_share: float
    seed_share: float

    def __call__(self, decoder_layer, hidden, rotary, attention_mask, token_ids, groups: Sequence[Sequence[KeepGroup]]) -> torch.Tensor:
        scores = torch.zeros(hidden.shape[:2], dtype=torch.float32, device=hidden.device)
        cos, sin = rotary
        for b, length in enumerate(_row_lengths(attention_mask).tolist()):
            visual = (token_ids[b, :length] == VISUAL_TOKEN_ID).nonzero().flatten()
            if visual.numel():
                row = min(b, cos.shape[0] - 1)  # the rotary embeddings may be shared by all rows
                for positions in _row_kept_positions(decoder_layer, hidden[b, :length], cos[row, :length], sin[row, :length],
                                                     visual, groups[b], b, self.coordinate_share, self.seed_share):
                    scores[b, positions] = 1.0
        return scores


def ivc_ranker(coordinate_share: float, seed_share: float) -> IVCRanker:
    """IVC-Prune's ranking for ``litelvlm.fastv`` (``IVCRanker``)."""
    return IVCRanker(float(coordinate_share), float(seed_share))


def ivc_prefill(llm: nn.Module, batch: SplicedBatch, *, budget: int, layer: int = 16, coordinate_share: float = 0.2,
                seed_share: float = 0.01):
    """Teacher-forced prefill keeping ``budget`` image tokens per row from decoder layer ``layer`` on, chosen by
    IVC-Prune; returns what ``litelvlm.fastv.fastv_prefill`` returns (hidden, token ids, kept)."""
    num_layers = len(_decoder_of(llm).layers)
    if not 1 <= layer <= num_layers:
        raise ValueError(f"IVC-Prune layer K={layer} is out of range: choose 1 <= K <= {num_layers} (the LLM's layers); "
                         "K-1 is the layer whose value vectors choose the tokens")
    return fastv_prefill(llm, batch, budget=budget, layer=layer, keep_position_ids=True,
                         rank=ivc_ranker(coordinate_share, seed_share))

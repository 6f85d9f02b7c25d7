"""SAM2 memory attention over memory keys and values projected once per memory frame.

transformers' ``Sam2VideoMemoryAttention`` (and Meta's) re-projects and re-rotates every memory frame's keys
and values in every layer for every later frame that attends to it (up to 7 frames x 4096 tokens each), and
runs layer 0 once per object although its input, the frame's features, is the same for all of them. This
restatement, with the module's own weights and attention kernel:

* projects each memory frame once per layer. The key input is memory + spatial position + the temporal
  encoding of the frame's slot, and the slot moves as frames advance; by linearity
  ``k_proj(m + p + t) = k_proj(m + p) + W_k t`` and RoPE is linear per position, so ``rope(k_proj(m + p))``
  is kept per frame and ``rope(W_k t)`` per (layer, slot), ``v_proj(m)`` per frame. Object-pointer tokens
  (not rotated) change every frame and are projected every frame.
* runs layer 0's self-attention and cross-attention queries once for all objects.
* computes the queries' RoPE tables once per video, and applies RoPE as one complex multiplication (the same
  products and sums as transformers' ``x * cos + rotate_pairwise(x) * sin``, without its four temporaries).
* projects self-attention's queries, keys and values in one matrix product (the three weights stacked) and applies
  the MLP's ReLU in place.

The result equals the module's up to float rounding (the sums are grouped differently). A memory frame may keep
only some spatial tokens (``rows``, from ``memory_select``): each keeps its own RoPE row and position encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ProjectedMemory", "MemoryAttentionRunner"]


@dataclass
class ProjectedMemory:
    """One memory frame's cross-attention keys and values, per layer (E, heads, n, head_dim)."""

    keys: list[torch.Tensor]  # rope(k_proj(memory + position)) of the kept tokens
    values: list[torch.Tensor]  # v_proj(memory)
    rows: torch.Tensor | None  # (E, n) kept raster indices; None: every token, in raster order


def rope_table(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' RoPE tables (..., d) (each angle repeated for its pair of channels) -> complex (..., d / 2)."""
    return torch.complex(cos[..., 0::2].float().contiguous(), sin[..., 0::2].float().contiguous())


def _rotate(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """transformers' 2-d RoPE (``apply_rotary_pos_emb_2d``: channel pairs (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin))
    as a complex product with ``rope_table``: in float32, back to ``x``'s dtype."""
    pairs = torch.view_as_complex(x.float().contiguous().view(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * table).flatten(-2).type_as(x)


def _at_rows(table: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """Per-token table (..., N, d) -> its rows (E, ..., n, d) for kept indices (E, n); unchanged without rows."""
    if rows is None:
        return table
    return table.movedim(-2, 0)[rows].movedim(1, -2)


class MemoryAttentionRunner:
    """Memory attention of one video (one ``propagate_logits`` call): RoPE tables and temporal key terms kept."""

    def __init__(self, module, dtype: torch.dtype):
        self.module, self.layers, self.dtype = module, module.layers, dtype
        reference = module.layers[0].cross_attn_image
        self.heads, self.head_dim = reference.num_attention_heads, reference.head_dim
        cos, sin = module.rotary_emb(module.position_ids, module.position_ids)  # (1, N, head_dim)
        self.rope = rope_table(cos[0], sin[0])  # (N, head_dim / 2) complex
        self.self_qkv = [self._stacked(layer.self_attn) for layer in self.layers]
        self.relu = [type(layer.activation) is torch.nn.ReLU for layer in self.layers]  # SAM2's MLP: ReLU, applied in place
        self._temporal: dict[tuple[int, int], torch.Tensor] = {}

    @staticmethod
    def _stacked(attn) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-attention's q/k/v projections as one weight (3C, C) and bias (3C)."""
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        return torch.cat([p.weight for p in projections]), torch.cat([p.bias for p in projections])

    @property
    def tokens(self) -> int:
        """Spatial tokens per frame (the RoPE grid)."""
        return self.rope.shape[0]

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(E, n, heads * head_dim) -> (E, heads, n, head_dim)."""
        return x.view(x.shape[0], -1, self.heads, self.head_dim).transpose(1, 2)

    def project(self, features: torch.Tensor, position: torch.Tensor, rows: torch.Tensor | None = None) -> ProjectedMemory:
        """Keys and values of one memory frame (features and position (N, E, mem_dim)), at ``rows`` (E, n) if given."""
        memory = features.to(self.dtype).transpose(0, 1)  # (E, N, mem_dim)
        keyed = memory + position.to(self.dtype).transpose(0, 1)
        if rows is not None:
            index = rows[..., None].expand(-1, -1, memory.shape[-1])
            memory, keyed = memory.gather(1, index), keyed.gather(1, index)
        table = _at_rows(self.rope, rows)
        if rows is not None:
            table = table[:, None]  # (E, 1, n, head_dim / 2): broadcast over heads
        keys, values = [], []
        for layer in self.layers:
            attn = layer.cross_attn_image
            keys.append(_rotate(self._split_heads(attn.k_proj(keyed)), table))
            values.append(self._split_heads(attn.v_proj(memory)))
        return ProjectedMemory(keys, values, rows)

    def _temporal_keys(self, layer: int, slot: int, encoding: torch.Tensor) -> torch.Tensor:
        """rope(W_k t_slot) at every position (heads, N, head_dim): the key term of the temporal encoding."""
        if (layer, slot) not in self._temporal:
            weight = self.layers[layer].cross_attn_image.k_proj.weight
            term = F.linear(encoding.reshape(-1).to(self.dtype), weight).view(self.heads, 1, self.head_dim)
            self._temporal[layer, slot] = _rotate(term, self.rope)
        return self._temporal[layer, slot]

    def _memory_keys_values(self, layer: int, memories, temporal, pointers, pointer_position):
        """Cross-attention keys and values (E, heads, M, head_dim): every memory frame at its slot, then the pointers."""
        attn = self.layers[layer].cross_attn_image
        keys, values = [], []
        for memory, slot in memories:
            keys.append(memory.keys[layer] + _at_rows(self._temporal_keys(layer, slot, temporal[slot]), memory.rows))
            values.append(memory.values[layer])
        pointers, pointer_position = pointers.to(self.dtype).transpose(0, 1), pointer_position.to(self.dtype).transpose(0, 1)
        keys.append(self._split_heads(attn.k_proj(pointers + pointer_position)))
        values.append(self._split_heads(attn.v_proj(pointers)))
        return torch.cat(keys, dim=2), torch.cat(values, dim=2)

    def _attend(self, attn, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The module's attention kernel (its ``_attn_implementation``) and output projection -> (B, 1, N, C)."""
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.sam2_video.modeling_sam2_video import eager_attention_forward

        interface = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
        out, _ = interface(attn, q, keys, values, attention_mask=None, dropout=0.0, scaling=attn.scaling, is_causal=False)
        return attn.o_proj(out.reshape(q.shape[0], 1, -1, self.heads * self.head_dim))

    def _self_attention(self, index: int, query: torch.Tensor) -> torch.Tensor:
        """``Sam2VideoRoPEAttention`` of the queries (B, 1, N, C) with themselves: q, k, v in one product."""
        weight, bias = self.self_qkv[index]
        q, k, v = F.linear(query[:, 0], weight, bias).chunk(3, dim=-1)
        q, k = _rotate(self._split_heads(q), self.rope), _rotate(self._split_heads(k), self.rope)
        return self._attend(self.layers[index].self_attn, q, k, self._split_heads(v))

    def _cross_attention(self, attn, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``Sam2VideoRoPEAttention`` on queries (B, 1, N, C), B = 1 (shared) or E, over projected keys and values."""
        q = _rotate(self._split_heads(attn.q_proj(query[:, 0])), self.rope)
        return self._attend(attn, q.expand(keys.shape[0], -1, -1, -1), keys, values)

    def _layer(self, index: int, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``Sam2VideoMemoryAttentionLayer`` (eval: dropout off); ``queries`` (B, 1, N, C) -> (E, 1, N, C)."""
        layer = self.layers[index]
        queries = queries + self._self_attention(index, layer.layer_norm1(queries))
        queries = queries + self._cross_attention(layer.cross_attn_image, layer.layer_norm2(queries), keys, values)
        hidden = layer.linear1(layer.layer_norm3(queries))
        hidden = F.relu_(hidden) if self.relu[index] else layer.activation(hidden)
        return queries + layer.linear2(hidden)

    def __call__(self, current: torch.Tensor, current_position: torch.Tensor, memories, temporal: torch.Tensor,
                 pointers: torch.Tensor, pointer_position: torch.Tensor) -> torch.Tensor:
        """The frame's features (N, 1, C) and position (N, 1, C) attended over ``memories`` [(ProjectedMemory, slot)]
        (``temporal``: the (slots, ..., mem_dim) temporal encodings) and object pointers (P, E, mem_dim) -> (N, E, C)."""
        queries = (current + 0.1 * current_position).transpose(0, 1)[:, None]  # (1, 1, N, C): shared by all objects
        for index in range(len(self.layers)):
            keys, values = self._memory_keys_values(index, memories, temporal, pointers, pointer_position)
            queries = self._layer(index, queries, keys, values)
        return self.module.layer_norm(queries)[:, 0].transpose(0, 1)

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
* computes the queries' RoPE tables once per video.

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


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' 2-d RoPE (``apply_rotary_pos_emb_2d``): in float32, back to ``x``'s dtype."""
    from transformers.models.sam2_video.modeling_sam2_video import rotate_pairwise

    x32 = x.float()
    return ((x32 * cos) + (rotate_pairwise(x32) * sin)).type_as(x)


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
        self.cos, self.sin = cos[0], sin[0]  # (N, head_dim)
        self._temporal: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def tokens(self) -> int:
        """Spatial tokens per frame (the RoPE grid)."""
        return self.cos.shape[0]

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
        cos, sin = _at_rows(self.cos, rows), _at_rows(self.sin, rows)
        if rows is not None:
            cos, sin = cos[:, None], sin[:, None]  # (E, 1, n, head_dim): broadcast over heads
        keys, values = [], []
        for layer in self.layers:
            attn = layer.cross_attn_image
            keys.append(_rotate(self._split_heads(attn.k_proj(keyed)), cos, sin))
            values.append(self._split_heads(attn.v_proj(memory)))
        return ProjectedMemory(keys, values, rows)

    def _temporal_keys(self, layer: int, slot: int, encoding: torch.Tensor) -> torch.Tensor:
        """rope(W_k t_slot) at every position (heads, N, head_dim): the key term of the temporal encoding."""
        if (layer, slot) not in self._temporal:
            weight = self.layers[layer].cross_attn_image.k_proj.weight
            term = F.linear(encoding.reshape(-1).to(self.dtype), weight).view(self.heads, 1, self.head_dim)
            self._temporal[layer, slot] = _rotate(term, self.cos, self.sin)
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

    def _cross_attention(self, attn, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``Sam2VideoRoPEAttention`` on queries (B, 1, N, C), B = 1 (shared) or E, over projected keys and values."""
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.sam2_video.modeling_sam2_video import eager_attention_forward

        num_objects = keys.shape[0]
        q = _rotate(self._split_heads(attn.q_proj(query[:, 0])), self.cos, self.sin)
        q = q.expand(num_objects, -1, -1, -1)
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
        out, _ = interface(attn, q, keys, values, attention_mask=None, dropout=0.0, scaling=attn.scaling, is_causal=False)
        return attn.o_proj(out.reshape(num_objects, 1, -1, self.heads * self.head_dim))

    def _layer(self, index: int, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``Sam2VideoMemoryAttentionLayer`` (eval: dropout off); ``queries`` (B, 1, N, C) -> (E, 1, N, C)."""
        layer = self.layers[index]
        rope = (self.cos[None], self.sin[None])
        query = layer.layer_norm1(queries)
        query, _ = layer.self_attn(query=query, key=query, value=query, position_embeddings=rope)
        queries = queries + query
        queries = queries + self._cross_attention(layer.cross_attn_image, layer.layer_norm2(queries), keys, values)
        query = layer.layer_norm3(queries)
        return queries + layer.linear2(layer.activation(layer.linear1(query)))

    def __call__(self, current: torch.Tensor, current_position: torch.Tensor, memories, temporal: torch.Tensor,
                 pointers: torch.Tensor, pointer_position: torch.Tensor) -> torch.Tensor:
        """The frame's features (N, 1, C) and position (N, 1, C) attended over ``memories`` [(ProjectedMemory, slot)]
        (``temporal``: the (slots, ..., mem_dim) temporal encodings) and object pointers (P, E, mem_dim) -> (N, E, C)."""
        queries = (current + 0.1 * current_position).transpose(0, 1)[:, None]  # (1, 1, N, C): shared by all objects
        for index in range(len(self.layers)):
            keys, values = self._memory_keys_values(index, memories, temporal, pointers, pointer_position)
            queries = self._layer(index, queries, keys, values)
        return self.module.layer_norm(queries)[:, 0].transpose(0, 1)

"""transformers' Hiera attention without the attention matrix it computes and throws away.

``Sam2MultiScaleAttention.forward`` (transformers 5.x) first computes ``softmax(q k^T)`` eagerly, never uses it,
then runs the attention kernel on the same q, k, v. For Hiera-L's global blocks (4096 tokens, 8 heads) that is
three unused 4096 x 4096 x 8 matrices per frame. Dropping the unused lines leaves every output bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.sam2.modeling_sam2 import ALL_ATTENTION_FUNCTIONS, Sam2MultiScaleAttention, do_pool, eager_attention_forward

__all__ = ["HieraAttention", "drop_unused_attention_weights"]


class HieraAttention(Sam2MultiScaleAttention):
    """``Sam2MultiScaleAttention`` (same parameters and names) whose forward skips the unused attention matrix."""

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        batch_size, height, width, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch_size, height * width, 3, self.num_attention_heads, -1)
        query, key, value = torch.unbind(qkv, 2)
        if self.query_stride:  # Q pooling (for downsample at stage changes)
            query = do_pool(query.reshape(batch_size, height, width, -1), self.query_stride)
            height, width = query.shape[1:3]
            query = query.reshape(batch_size, height * width, self.num_attention_heads, -1)
        query, key, value = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        attn_output, _ = attention_interface(
            self, query, key, value, attention_mask=None, is_causal=self.is_causal, scaling=self.scale, **kwargs
        )
        return self.proj(attn_output.reshape(batch_size, height, width, -1))


def drop_unused_attention_weights(module: nn.Module) -> int:
    """Turn every transformers Hiera attention inside ``module`` into a ``HieraAttention`` (in place, weights kept);
    returns how many."""
    count = 0
    for child in module.modules():
        if type(child) is Sam2MultiScaleAttention:
            child.__class__ = HieraAttention
            count += 1
    return count

"""Analytic FLOPs of SAM2 memory attention (2 per multiply-add) for one frame and one object."""

from __future__ import annotations

__all__ = ["memory_attention_flops"]


def memory_attention_flops(num_queries: int, memory_tokens: int, pointer_tokens: int, config) -> dict:
    """FLOPs of ``Sam2VideoMemoryAttention`` on one frame for one object, summed over its layers.

    ``num_queries``: the frame's tokens (64 x 64 = 4096 at 1024 px); ``memory_tokens``: spatial memory tokens
    attended (memory frames x tokens kept per frame); ``pointer_tokens``: object-pointer tokens; ``config``: a
    transformers ``Sam2VideoConfig``. Matrix products only (biases, norms, softmax and RoPE are elementwise and
    left out). ``cross_attention_projections`` counts the key/value projection of every attended token, as
    transformers computes it; ``MemoryAttentionRunner`` projects each memory frame once instead.
    Keys: self_attention_projections, self_attention_matrix, cross_attention_projections,
    cross_attention_matrix, mlp, total.
    """
    counts = {"num_queries": num_queries, "memory_tokens": memory_tokens, "pointer_tokens": pointer_tokens}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "num_queries" else 0):
            raise ValueError(f"{name} must be an int >= {1 if name == 'num_queries' else 0}, got {value!r}")
    hidden = config.memory_attention_hidden_size
    inner = hidden // config.memory_attention_downsample_rate
    kv_dim = config.memory_encoder_output_channels  # memory width: the cross-attention key/value input
    ffn = config.memory_attention_feed_forward_hidden_size
    layers = config.memory_attention_num_layers
    q, m = num_queries, memory_tokens + pointer_tokens
    per_layer = {
        "self_attention_projections": 2 * q * hidden * inner * 4,  # q, k, v, o
        "self_attention_matrix": 2 * q * q * inner * 2,  # q k^T and (softmax) v
        "cross_attention_projections": 2 * q * hidden * inner * 2 + 2 * m * kv_dim * inner * 2,  # q, o; k, v
        "cross_attention_matrix": 2 * q * m * inner * 2,
        "mlp": 2 * q * hidden * ffn * 2,
    }
    out = {name: layers * value for name, value in per_layer.items()}
    out["total"] = sum(out.values())
    return out

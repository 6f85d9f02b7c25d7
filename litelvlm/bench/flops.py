"""Analytic forward FLOPs per stage (2 FLOPs per multiply-add; norms, softmax and activations ignored).

Counts what the pipeline actually runs: e.g. CLIP stops at the select layer plus the last layer's
q/k/v, the LLM prefill has no LM head.
"""

from __future__ import annotations

from ..glamm.build import GLaMMArchitecture

__all__ = ["transformer_layer_flops", "glamm_stage_flops", "flops_shares"]


def transformer_layer_flops(tokens: int, width: int, mlp: int, *, gated: bool = False, attn_span: int | None = None, kv_tokens: int | None = None) -> float:
    """One pre-norm transformer layer: q/k/v/o projections, attention scores and mixing, MLP.
    ``attn_span`` is how many keys each query sees (windowed attention), default all tokens."""
    span = tokens if attn_span is None else attn_span
    projections = 2 * tokens * 4 * width * width
    attention = 2 * 2 * tokens * span * width
    mlp_flops = 2 * tokens * (3 if gated else 2) * width * mlp
    return projections + attention + mlp_flops


def _sam_encoder_flops(sam, image_tokens_side: int = 64) -> float:
    tokens = image_tokens_side**2
    w = sam.vision_width
    patch = 2 * tokens * 3 * sam.patch_size**2 * w
    pad_side = -(-image_tokens_side // sam.window_size) * sam.window_size
    window_tokens = sam.window_size**2
    total = patch
    for i in range(sam.vision_depth):
        if i in sam.global_attn_indexes:
            total += transformer_layer_flops(tokens, w, sam.vision_mlp_dim)
        else:  # windowed: padded grid, each query sees its window
            padded = pad_side**2
            total += transformer_layer_flops(padded, w, sam.vision_mlp_dim, attn_span=window_tokens)
    neck = 2 * tokens * w * sam.embed_dim + 2 * tokens * 9 * sam.embed_dim**2
    return total + neck


def _mask_decoder_flops(sam, num_prompts: int, image_tokens_side: int = 64) -> float:
    tokens, d = image_tokens_side**2, sam.embed_dim
    prompt_tokens = 1 + sam.num_multimask_outputs + 1 + 1  # iou + mask tokens + the [SEG] prompt
    inner = d // sam.attention_downsample_rate
    per_layer = (
        transformer_layer_flops(prompt_tokens, d, sam.decoder_mlp_dim)  # token self-attention + MLP
        + 2 * 2 * (prompt_tokens * d * inner + tokens * d * inner) * 2  # two cross-attentions' projections
        + 2 * 2 * 2 * prompt_tokens * tokens * inner  # their scores and mixing
    )
    upscale = 2 * (4 * tokens) * d * (d // 4) * 4 + 2 * (16 * tokens) * (d // 4) * (d // 8) * 4
    return num_prompts * (sam.decoder_depth * per_layer + upscale)


def glamm_stage_flops(arch: GLaMMArchitecture, *, visual_tokens: int, text_tokens: int, num_expressions: int = 1,
                      clip_text_tokens: int = 16, unpruned_llm_layers: int = 0) -> dict[str, float]:
    """FLOPs of each stage of segmenting ``num_expressions`` expressions of one image.

    ``unpruned_llm_layers``: leading LLM layers that still see all 576 visual tokens (FastV's K)."""
    patches = 576
    clip_vision = 2 * patches * 3 * 14 * 14 * arch.clip_width
    clip_vision += (arch.clip_layers - 1) * transformer_layer_flops(patches + 1, arch.clip_width, arch.clip_mlp)
    clip_vision += 2 * (patches + 1) * 3 * arch.clip_width**2  # last layer's q/k/v only
    clip_vision += 2 * patches * arch.clip_width * arch.clip_projection  # projected patches for similarity
    clip_text = num_expressions * arch.text_layers * transformer_layer_flops(clip_text_tokens, arch.text_width, arch.text_mlp)
    projected = patches if unpruned_llm_layers else visual_tokens
    layer = lambda tokens: transformer_layer_flops(tokens + text_tokens, arch.llm_width, arch.llm_mlp, gated=True)  # noqa: E731
    llm = num_expressions * (
        unpruned_llm_layers * layer(patches) + (arch.llm_layers - unpruned_llm_layers) * layer(visual_tokens)
        + 2 * projected * (arch.clip_width * arch.llm_width + arch.llm_width**2)  # mm_projector
    )
    return {
        "clip_vision": float(clip_vision),
        "clip_text": float(clip_text),
        "llm_prefill": float(llm),
        "sam_image_encoder": float(_sam_encoder_flops(arch.sam)),
        "mask_decoder": float(_mask_decoder_flops(arch.sam, num_expressions)),
    }


def flops_shares(stage_flops: dict[str, float]) -> dict[str, float]:
    """Each stage's fraction of the total."""
    total = sum(stage_flops.values())
    return {k: v / total for k, v in stage_flops.items()}

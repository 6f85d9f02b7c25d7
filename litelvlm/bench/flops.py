"""Analytic forward FLOPs per stage (2 FLOPs per multiply-add; norms, softmax and activations ignored).

Counts what the pipeline actually runs: e.g. CLIP stops at the select layer plus the last layer's
q/k/v, the LLM prefill has no LM head.
"""

from __future__ import annotations

from ..glamm.build import GLaMMArchitecture

__all__ = ["transformer_layer_flops", "two_way_decoder_flops", "glamm_stage_flops", "flops_shares", "sam2_image_encoder_flops",
           "sam2_memory_encoder_flops", "sam2_mask_decoder_flops"]


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


def two_way_decoder_flops(hidden: int, mlp: int, depth: int, downsample: int, num_tokens: int, image_side: int,
                          mask_tokens: int = 4) -> float:
    """SAM's (and SAM2's) mask decoder for one prompt: ``depth`` two-way blocks (token self-attention, token-to-image and
    image-to-token cross-attention at width hidden / downsample, token MLP), the final token-to-image attention, the
    two transposed-conv upscalings (kernel 2, stride 2: one input pixel per output pixel) and the mask product.
    ``num_tokens``: output tokens (object score, IoU, mask tokens) plus sparse prompt tokens. The heads on the
    tokens: per mask token a 3-layer hypernetwork MLP (to hidden / 8), the 3-layer IoU MLP."""
    image, inner = image_side**2, hidden // downsample
    cross = 2 * (2 * (num_tokens + image) * hidden * inner + 2 * num_tokens * image * inner)  # projections, scores + mixing
    block = transformer_layer_flops(num_tokens, hidden, mlp) + 2 * cross
    upscale = 2 * (4 * image) * hidden * (hidden // 4) + 2 * (16 * image) * (hidden // 4) * (hidden // 8)
    masks = 2 * mask_tokens * (hidden // 8) * 16 * image  # hypernetwork outputs x upscaled features
    heads = 2 * mask_tokens * (2 * hidden**2 + hidden * (hidden // 8)) + 2 * (2 * hidden**2 + hidden * mask_tokens)
    return depth * block + cross + upscale + masks + heads


def _mask_decoder_flops(sam, num_prompts: int, image_tokens_side: int = 64) -> float:
    tokens = 1 + sam.num_multimask_outputs + 1 + 1  # iou + mask tokens + the [SEG] prompt
    return num_prompts * two_way_decoder_flops(sam.embed_dim, sam.decoder_mlp_dim, sam.decoder_depth,
                                               sam.attention_downsample_rate, tokens, image_tokens_side,
                                               sam.num_multimask_outputs + 1)


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


# ----------------------------------------------------------------------------- SAM2 (VideoGLaMM's pixel decoder)
# ``sam2`` is a ``video.sam2.Sam2Architecture`` (read by its fields only: litelvlm never imports video/).


def _hiera_block_flops(side: int, dim: int, dim_out: int, mlp_ratio: float, window: int, pooled: bool) -> float:
    """One Hiera block on a side x side grid: qkv (dim -> 3 dim_out), windowed (window 0: global) attention whose
    queries are max-pooled 2x2 on a stage's first block (then also the dim -> dim_out skip projection), output
    projection and MLP at the (pooled) resolution."""
    padded = side if window == 0 else -(-side // window) * window
    tokens, queries = padded**2, (padded // 2) ** 2 if pooled else padded**2
    span = side**2 if window == 0 else window**2
    out_side_tokens = (side // 2) ** 2 if pooled else side**2
    flops = 2 * tokens * dim * 3 * dim_out + 2 * 2 * queries * span * dim_out + 2 * queries * dim_out * dim_out
    flops += 2 * out_side_tokens * 2 * dim_out * round(dim_out * mlp_ratio)
    if dim != dim_out:
        flops += 2 * side**2 * dim * dim_out
    return flops


def sam2_image_encoder_flops(sam2) -> float:
    """SAM2's image encoder on one frame: patch embedding, the Hiera trunk, the FPN neck (1x1 convs of every
    stage) and the mask decoder's conv_s0 / conv_s1 on the two high-resolution levels (run once per frame)."""
    side = sam2.image_size // 4
    dims = [sam2.embed_dim * 2**s for s in range(len(sam2.blocks_per_stage))]
    flops = 2 * side**2 * 3 * sam2.patch_kernel_size**2 * dims[0]
    block, prev_dim, stage_sides = 0, dims[0], []
    for stage, count in enumerate(sam2.blocks_per_stage):
        for i in range(count):
            first = stage > 0 and i == 0
            window = 0 if block in sam2.global_attention_blocks else sam2.window_spec[stage - 1 if first else stage]
            flops += _hiera_block_flops(side, prev_dim, dims[stage], sam2.mlp_ratio, window, first)
            side = side // 2 if first else side
            prev_dim, block = dims[stage], block + 1
        stage_sides.append(side)
    flops += sum(2 * s**2 * d * sam2.hidden_size for s, d in zip(stage_sides, dims))
    s0, s1 = stage_sides[0], stage_sides[1]
    return float(flops + 2 * s0**2 * sam2.hidden_size * (sam2.hidden_size // 8) + 2 * s1**2 * sam2.hidden_size * (sam2.hidden_size // 4))


def sam2_memory_encoder_flops(sam2) -> float:
    """SAM2's memory encoder for one object on one frame: the mask downsampler (3x3 stride-2 convs from the
    full-resolution mask, channels x4 per layer, then a 1x1 conv), the 1x1 feature projection, the fuser's
    ConvNeXt blocks (depthwise conv and two pointwise layers) and the 1x1 projection to the memory width."""
    side, hidden = sam2.image_size, sam2.hidden_size
    flops, channels = 0, 1
    for _ in range(sam2.mask_downsampler_layers):
        side //= 2
        flops += 2 * side**2 * channels * 4 * channels * 9
        channels *= 4
    tokens = side**2
    flops += 2 * tokens * channels * hidden + 2 * tokens * hidden * hidden
    fuser = 2 * tokens * hidden * sam2.fuser_kernel_size**2 + 2 * 2 * tokens * hidden * sam2.fuser_intermediate_dim
    return float(flops + sam2.fuser_layers * fuser + 2 * tokens * hidden * sam2.memory_dim)


def sam2_mask_decoder_flops(sam2, prompt_tokens: int = 2) -> float:
    """SAM2's mask decoder for one object on one frame, with its object-score MLP and the object-pointer projection
    (3-layer MLPs); ``prompt_tokens`` sparse tokens (VideoGLaMM: 3 on the prompted frame, [not-a-point, padding,
    [SEG]]; 2 on tracked frames)."""
    mask_tokens, hidden = sam2.num_multimask_outputs + 1, sam2.hidden_size
    tokens = 1 + 1 + mask_tokens + prompt_tokens  # object score, IoU, mask tokens, prompt
    decoder = two_way_decoder_flops(hidden, sam2.decoder_mlp_dim, sam2.decoder_depth, sam2.decoder_downsample_rate,
                                    tokens, sam2.image_size // 16, mask_tokens)
    return float(decoder + 2 * (2 * hidden**2 + hidden) + 2 * 3 * hidden**2)

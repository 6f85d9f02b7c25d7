"""Tiny random SAM2 weights in the original (facebookresearch/sam2) naming, for tests and tiny checkpoints."""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch

from .architecture import TINY_SAM2_IMAGE_SIZE, Sam2Architecture
from .convert import expected_hf_shapes, to_original_sam2_state_dict

__all__ = ["tiny_sam2_architecture", "random_sam2_tensors", "write_tiny_sam2_state_dict"]

# Learned tokens, embeddings and position encodings (either naming): drawn at unit scale so that
# e.g. the mask tokens, and thus the chosen mask's object pointer, differ clearly.
_EMBEDDING_LIKE = re.compile(
    r"(tokens?|embed|embedding|embeddings\.\d+|encoding|enc|pos_embed_window|pointer|ptr|gaussian_matrix)(\.weight)?$"
)


def tiny_sam2_architecture(
    *,
    embed_dim: int = 8,
    blocks_per_stage: tuple[int, ...] = (1, 2, 2, 1),
    window0: int = 4,
    hidden_size: int = 128,
    memory_attention_layers: int = 2,
    num_maskmem: int = 7,
) -> Sam2Architecture:
    """A small SAM2 that follows the conventions ``sam2_config_from_state_dict`` applies to non-released layouts.

    ``hidden_size`` (the [SEG] prompt width) should exceed the 64-channel memory width, as in real SAM2
    (256): object pointers are then split into several memory tokens, and transformers' own session
    API (used as a test peer) only supports that case.
    """
    if embed_dim > 96:
        raise ValueError(f"tiny SAM2 embed_dim must be <= 96 (the 1-head convention), got {embed_dim}")
    return Sam2Architecture(
        image_size=TINY_SAM2_IMAGE_SIZE,
        embed_dim=embed_dim,
        num_heads=1,
        blocks_per_stage=tuple(blocks_per_stage),
        window_spec=(window0, 4, 14, 7),
        global_attention_blocks=(sum(blocks_per_stage[:3]) - 1,),
        window_pos_embed_bkg=(4, 4),
        hidden_size=hidden_size,
        decoder_mlp_dim=2 * hidden_size,
        iou_head_hidden_dim=hidden_size,
        memory_attention_layers=memory_attention_layers,
        memory_attention_ffn_dim=2 * hidden_size,
        fuser_intermediate_dim=2 * hidden_size,
        num_maskmem=num_maskmem,
    )


def random_sam2_tensors(shapes: Mapping[str, Sequence[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded float32 tensors for SAM2 parameter names: all distinct, at scales that keep activations tame.

    Biases ~ N(0, 0.1); 1-d weights (norms) and layer scales ~ 1 + N(0, 0.1); tokens, embeddings
    and position encodings ~ N(0, 1); everything else ~ N(0, 1/fan_in) with fan_in = numel / first dim.
    """
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        noise = torch.randn(shape, generator=generator)
        if name.endswith("bias"):
            out[name] = 0.1 * noise
        elif len(shape) == 1:
            out[name] = 1.0 + 0.1 * noise
        elif _EMBEDDING_LIKE.search(name):
            out[name] = noise
        else:
            fan_in = max(1, noise.numel() // shape[0])
            out[name] = noise / fan_in**0.5
    return out


def write_tiny_sam2_state_dict(
    seed: int = 0, layer_scale_name: str = "gamma", object_score_bias: float = 1.0, **sizes
) -> dict[str, torch.Tensor]:
    """Random weights of ``tiny_sam2_architecture(**sizes)`` in the original SAM2 naming.

    ``object_score_bias`` is added to the object-score head's output bias: random SAM2 heads give
    scores near a seed-dependent constant, and a negative score blanks every tracked mask, so the
    default +1 keeps tiny objects "present"; pass e.g. -5 to exercise the absent-object path.
    ``layer_scale_name="weight"`` gives VideoGLaMM's spelling of the memory-fuser layer scale.
    """
    shapes = expected_hf_shapes(tiny_sam2_architecture(**sizes).to_transformers())
    hf = random_sam2_tensors(shapes, seed)
    fourier = hf["prompt_encoder.shared_embedding.positional_embedding"]
    hf["shared_image_embedding.positional_embedding"] = fourier.clone()  # transformers keeps two copies
    hf["mask_decoder.pred_obj_score_head.proj_out.bias"] += object_score_bias
    return to_original_sam2_state_dict(hf, layer_scale_name=layer_scale_name)

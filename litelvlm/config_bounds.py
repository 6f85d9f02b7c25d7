"""Bounds on what a checkpoint's config may claim, checked before any model is built.

A corrupt or hostile ``config.json`` saying ``num_hidden_layers: 10000000`` would have transformers build ten
million layers (minutes) before the weights prove it wrong, and ``rms_norm_eps: NaN`` would silently turn every
hidden state into NaN. So every size is an integer from 1 to ``BOUND_FACTOR`` (8) times the released
architecture's value (LLaMA-7B for GLaMM, Phi-3-mini for VideoGLaMM, CLIP ViT-L/14-336, InternVideo2-Stage2 1B,
SAM ViT-H, SAM2 Hiera-L); epsilons are finite numbers in (0, 1), dropout rates in [0, 1], RoPE values finite
and positive. A violation is one ``ValueError`` naming the file (``where``), the field and the accepted range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

__all__ = [
    "BOUND_FACTOR", "Released", "LLAMA_7B", "PHI3_MINI", "CLIP_L_336_VISION", "CLIP_L_336_TEXT", "INTERNVIDEO2_1B",
    "SAM_VIT_H", "SAM2_HIERA_L", "SAM2_MEMORY_TOKENS", "check_sizes", "check_llm_config", "check_clip_config", "check_select_layer",
]

BOUND_FACTOR = 8


@dataclass(frozen=True)
class Released:
    """A released architecture's sizes (``sizes``: field name -> value), named in error messages."""

    name: str
    sizes: Mapping[str, int]

    def bound(self, field: str) -> int:
        return BOUND_FACTOR * self.sizes[field]


LLAMA_7B = Released("LLaMA-7B", {
    "vocab_size": 32007, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128, "max_position_embeddings": 4096,
})
# Phi-3-mini-4k and -128k: the larger value of the two releases.
PHI3_MINI = Released("Phi-3-mini", {
    "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 96, "max_position_embeddings": 131072,
    "original_max_position_embeddings": 4096, "sliding_window": 262144,
})
CLIP_L_336_VISION = Released("CLIP ViT-L/14-336 vision tower", {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
    "image_size": 336, "patch_size": 14, "projection_dim": 768, "num_channels": 3,
})
CLIP_L_336_TEXT = Released("CLIP ViT-L/14-336 text tower", {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "projection_dim": 768,
})
INTERNVIDEO2_1B = Released("InternVideo2-Stage2 1B", {
    "image_size": 224, "patch_size": 14, "tubelet_size": 1, "num_frames": 8, "in_channels": 3, "width": 1408,
    "depth": 40, "num_heads": 16, "mlp_hidden_dim": 6144,
})
SAM_VIT_H = Released("SAM ViT-H", {
    "vision_width": 1280, "vision_depth": 32, "vision_heads": 16, "vision_mlp_dim": 5120, "image_size": 1024,
    "patch_size": 16, "num_channels": 3, "embed_dim": 256, "decoder_depth": 2, "decoder_mlp_dim": 2048,
    "iou_head_depth": 3, "iou_head_hidden_dim": 256, "num_point_embeddings": 4, "num_multimask_outputs": 3,
})
SAM2_HIERA_L = Released("SAM2 Hiera-L", {
    "image_size": 1024, "embed_dim": 144, "num_heads": 2, "hidden_size": 256, "decoder_depth": 2,
    "decoder_mlp_dim": 2048, "iou_head_depth": 3, "iou_head_hidden_dim": 256, "memory_attention_layers": 4,
    "memory_attention_ffn_dim": 2048, "mask_downsampler_layers": 4, "fuser_layers": 2, "fuser_intermediate_dim": 1024,
    "total_blocks": 48,
})

SAM2_MEMORY_TOKENS = (SAM2_HIERA_L.sizes["image_size"] // 16) ** 2  # spatial memory tokens per SAM2 memory frame (1024 px)

_FIX = "the file is corrupt or not a checkpoint of this model; fix it or re-download it"


def _shown(value) -> str:
    """``repr(value)``, cut to 40 characters (a config value may be anything, of any length)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_sizes(values: Mapping, released: Released, where: str) -> None:
    """Every field of ``released`` present (and not None) in ``values`` is an int in 1..8x the released value."""
    for field in released.sizes:
        value = values.get(field)
        if value is None:
            continue
        bound = released.bound(field)
        if not _is_int(value) or not 1 <= value <= bound:
            raise ValueError(f"{where}: {field} {_shown(value)} is out of range: expected an integer from 1 to {bound} "
                             f"({BOUND_FACTOR}x the {released.sizes[field]} of {released.name}); {_FIX}")


def _check_eps(values: Mapping, field: str, where: str) -> None:
    value = values.get(field)
    if value is not None and not (_is_number(value) and math.isfinite(value) and 0 < value < 1):
        raise ValueError(f"{where}: {field} {_shown(value)} must be a finite number between 0 and 1 (e.g. 1e-06); {_FIX}")


def _check_rate(values: Mapping, field: str, where: str) -> None:
    value = values.get(field)
    if value is not None and not (_is_number(value) and math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"{where}: {field} {_shown(value)} must be a probability from 0 to 1; {_FIX}")


def _positive_finite(value) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0


def _check_rope(values: Mapping, where: str) -> None:
    """``rope_theta`` a finite positive number; ``rope_scaling`` null or an object of strings, finite positive
    numbers and lists of them (e.g. Phi-3-128k's ``long_factor``)."""
    theta = values.get("rope_theta")
    if theta is not None and not _positive_finite(theta):
        raise ValueError(f"{where}: rope_theta {_shown(theta)} must be a finite positive number (e.g. 10000.0); {_FIX}")
    scaling = values.get("rope_scaling")
    if scaling is None:
        return
    if not isinstance(scaling, Mapping):
        raise ValueError(f"{where}: rope_scaling must be null or an object, got {_shown(scaling)}; {_FIX}")
    for key, value in scaling.items():
        if isinstance(value, str):  # rope_type / type
            continue
        items = value if isinstance(value, list) else [value]
        if not items or len(items) > 4096 or not all(_positive_finite(v) for v in items):
            raise ValueError(f"{where}: rope_scaling.{key} must be a finite positive number or a list of them "
                             f"(at most 4096); {_FIX}")


def _check_heads(values: Mapping, where: str) -> None:
    hidden, heads, kv = values.get("hidden_size"), values.get("num_attention_heads"), values.get("num_key_value_heads")
    if values.get("head_dim") is None and hidden % heads:
        raise ValueError(f"{where}: num_attention_heads {heads} does not divide hidden_size {hidden}; {_FIX}")
    if kv is not None and heads % kv:
        raise ValueError(f"{where}: num_key_value_heads {kv} does not divide num_attention_heads {heads}; {_FIX}")


def check_llm_config(values: Mapping, released: Released, where: str) -> None:
    """An LLM's config fields (LLaMA / Phi-3 names): sizes, ``rms_norm_eps``, RoPE, dropout rates, head counts."""
    check_sizes(values, released, where)
    _check_eps(values, "rms_norm_eps", where)
    _check_rope(values, where)
    for rate in ("resid_pdrop", "embd_pdrop", "attention_dropout"):
        _check_rate(values, rate, where)
    if values.get("hidden_size") is not None and values.get("num_attention_heads") is not None:
        _check_heads(values, where)


def _check_clip_tower(values, released: Released, where: str) -> None:
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(values).__name__}; {_FIX}")
    check_sizes(values, released, where)
    _check_eps(values, "layer_norm_eps", where)
    _check_rate(values, "attention_dropout", where)
    if values.get("hidden_size") is not None and values.get("num_attention_heads") is not None:
        _check_heads(values, where)


def check_clip_config(raw: Mapping, where: str) -> None:
    """A CLIP ``config.json`` (``vision_config`` / ``text_config`` objects): sizes, epsilons, and at most 8x the
    577 positions (CLS + 24x24 patches) of CLIP ViT-L/14-336 per image."""
    check_sizes(raw, Released("CLIP ViT-L/14-336", {"projection_dim": 768}), where)
    if "text_config" in raw and raw["text_config"] is not None:
        _check_clip_tower(raw["text_config"], CLIP_L_336_TEXT, f"{where}: text_config")
    vision = raw.get("vision_config")
    if vision is None:
        return
    _check_clip_tower(vision, CLIP_L_336_VISION, f"{where}: vision_config")
    image, patch = vision.get("image_size"), vision.get("patch_size")
    if image is not None and patch is not None:
        positions = (image // patch) ** 2 + 1
        if image < patch or positions > BOUND_FACTOR * 577:
            raise ValueError(f"{where}: vision_config image_size {image} / patch_size {patch} gives {positions} positions "
                             f"per image: expected 2 to {BOUND_FACTOR * 577} ({BOUND_FACTOR}x the 577 of CLIP ViT-L/14-336); "
                             f"{_FIX}")


def check_select_layer(value, where: str, field: str = "mm_vision_select_layer") -> int:
    """The CLIP hidden-state index an LVLM config names (released: -2): an integer within the bounded CLIP depth."""
    layers = CLIP_L_336_VISION.bound("num_hidden_layers")
    if not _is_int(value) or not -(layers + 1) <= value <= layers:
        raise ValueError(f"{where}: {field} {_shown(value)} must be an integer from {-(layers + 1)} to {layers} "
                         f"(a CLIP hidden-state index; released: -2); {_FIX}")
    return value

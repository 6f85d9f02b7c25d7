"""Key mapping between original SAM2 weights (facebookresearch/sam2 naming) and transformers' Sam2VideoModel.

One direction is written out (transformers name -> original name, ``_original_key``); the other is
its inverse over the keys a ``Sam2VideoModel`` of the inferred config expects, so the two can never
disagree. Two keys are special: the original four ``point_embeddings.{i}.weight`` rows form one
``point_embed.weight`` table, and the prompt encoder's random-Fourier matrix is stored twice in
transformers (``prompt_encoder.shared_embedding`` and ``shared_image_embedding``).

VideoGLaMM renamed the memory fuser's layer scale ``gamma`` to ``weight`` (see the docstring of
``video.sam2``); both spellings are accepted on input.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

import torch

__all__ = [
    "VIDEOGLAMM_SAM2_PREFIX",
    "extract_sam2_state_dict",
    "convert_sam2_state_dict",
    "to_original_sam2_state_dict",
    "expected_hf_shapes",
]

VIDEOGLAMM_SAM2_PREFIX = "model.visual_model."
POINT_TABLE = "prompt_encoder.point_embed.weight"
PE_MATRIX = "prompt_encoder.shared_embedding.positional_embedding"
PE_MATRIX_COPY = "shared_image_embedding.positional_embedding"
LAYER_SCALE = re.compile(r"^(memory_encoder\.fuser\.layers\.\d+)\.(gamma|weight)$")
LAYER_SCALE_NAMES = ("gamma", "weight")
MAX_NAMED = 12

# Whole-key renames of top-level parameters (transformers -> original).
_TOP_LEVEL = {
    "no_memory_embedding": "no_mem_embed",
    "no_memory_positional_encoding": "no_mem_pos_enc",
    "memory_temporal_positional_encoding": "maskmem_tpos_enc",
    "no_object_pointer": "no_obj_ptr",
    "occlusion_spatial_embedding_parameter": "no_obj_embed_spatial",
}

# Ordered (pattern, replacement) rewrites applied to every transformers key (after MLP renames).
_RULES: list[tuple[str, str | Callable]] = [
    (r"^vision_encoder\.backbone\.", "image_encoder.trunk."),
    (r"^vision_encoder\.neck\.convs\.(\d+)\.", r"image_encoder.neck.convs.\1.conv."),
    (r"^prompt_encoder\.", "sam_prompt_encoder."),
    (r"^mask_decoder\.", "sam_mask_decoder."),
    (r"^object_pointer_proj\.", "obj_ptr_proj."),
    (r"^temporal_positional_encoding_projection_layer\.", "obj_ptr_tpos_proj."),
    (r"\.patch_embed\.projection\.", ".patch_embed.proj."),
    (r"\.mask_embed\.conv1\.", ".mask_downscaling.0."),
    (r"\.mask_embed\.layer_norm1\.", ".mask_downscaling.1."),
    (r"\.mask_embed\.conv2\.", ".mask_downscaling.3."),
    (r"\.mask_embed\.layer_norm2\.", ".mask_downscaling.4."),
    (r"\.mask_embed\.conv3\.", ".mask_downscaling.6."),
    (r"\.shared_embedding\.positional_embedding$", ".pe_layer.positional_encoding_gaussian_matrix"),
    (r"\.upscale_conv1\.", ".output_upscaling.0."),
    (r"\.upscale_layer_norm\.", ".output_upscaling.1."),
    (r"\.upscale_conv2\.", ".output_upscaling.3."),
    (r"\.layer_norm_final_attn\.", ".norm_final_attn."),
    (r"\.mask_downsampler\.layers\.(\d+)\.conv\.", lambda m: f".mask_downsampler.encoder.{3 * int(m.group(1))}."),
    (r"\.mask_downsampler\.layers\.(\d+)\.layer_norm\.", lambda m: f".mask_downsampler.encoder.{3 * int(m.group(1)) + 1}."),
    (r"^memory_encoder\.feature_projection\.", "memory_encoder.pix_feat_proj."),
    (r"^memory_encoder\.projection\.", "memory_encoder.out_proj."),
    (r"\.memory_fuser\.", ".fuser."),
    (r"\.depthwise_conv\.", ".dwconv."),
    (r"\.pointwise_conv(\d)\.", r".pwconv\1."),
    (r"\.layer_norm(\d*)\.", r".norm\1."),
    (r"\.o_proj\.", ".out_proj."),
]
_COMPILED = [(re.compile(p), r) for p, r in _RULES]


def extract_sam2_state_dict(checkpoint_sd: Mapping[str, torch.Tensor], prefix: str = VIDEOGLAMM_SAM2_PREFIX) -> dict:
    """The SAM2 part of a full checkpoint (VideoGLaMM keeps it under ``model.visual_model.``), prefix stripped."""
    part = {k[len(prefix):]: v for k, v in checkpoint_sd.items() if k.startswith(prefix)}
    if not part:
        raise KeyError(f"checkpoint has no key starting with '{prefix}'; pass the prefix under which SAM2 is stored")
    return part


def _feedforward_depths(hf_keys) -> dict[str, int]:
    """Depth of every transformers feed-forward block (``proj_in``, ``layers.k``, ``proj_out``), by prefix."""
    prefixes = {k[: -len(".proj_in.weight")] for k in hf_keys if k.endswith(".proj_in.weight")}
    depths = {}
    for prefix in prefixes:
        hidden = {m.group(1) for k in hf_keys if (m := re.match(re.escape(prefix) + r"\.layers\.(\d+)\.", k))}
        depths[prefix] = 2 + len(hidden)
    return depths


def _rename_feedforward(key: str, depths: Mapping[str, int]) -> str:
    """``proj_in`` -> ``layers.0``, ``layers.k`` -> ``layers.k+1``, ``proj_out`` -> ``layers.(depth-1)``."""
    for prefix, depth in depths.items():
        if not key.startswith(prefix + "."):
            continue
        rest = key[len(prefix) + 1 :]
        if rest.startswith("proj_in."):
            return f"{prefix}.layers.0.{rest[len('proj_in.'):]}"
        if rest.startswith("proj_out."):
            return f"{prefix}.layers.{depth - 1}.{rest[len('proj_out.'):]}"
        if m := re.match(r"layers\.(\d+)\.(.*)$", rest):
            return f"{prefix}.layers.{int(m.group(1)) + 1}.{m.group(2)}"
    return key


def _original_key(hf_key: str, depths: Mapping[str, int], downsampler_layers: int, layer_scale_name: str) -> str:
    """Original SAM2 name of one transformers ``Sam2VideoModel`` key (not the two special keys)."""
    if hf_key in _TOP_LEVEL:
        return _TOP_LEVEL[hf_key]
    key = _rename_feedforward(hf_key, depths)
    key = key.replace("mask_downsampler.final_conv.", f"mask_downsampler.encoder.{3 * downsampler_layers}.")
    for pattern, replacement in _COMPILED:
        key = pattern.sub(replacement, key)
    return re.sub(r"(\.fuser\.layers\.\d+)\.scale$", rf"\1.{layer_scale_name}", key)


def _original_names(hf_keys, layer_scale_name: str = "gamma") -> dict[str, str]:
    """transformers key -> original key, for every key except the point table and the Fourier matrix copy."""
    if layer_scale_name not in LAYER_SCALE_NAMES:
        raise ValueError(f"layer_scale_name must be one of {LAYER_SCALE_NAMES}, got {layer_scale_name!r}")
    hf_keys = list(hf_keys)
    depths = _feedforward_depths(hf_keys)
    downsampler = re.compile(r"memory_encoder\.mask_downsampler\.layers\.(\d+)\.")
    downsampler_layers = len({m.group(1) for k in hf_keys if (m := downsampler.match(k))})
    special = {POINT_TABLE, PE_MATRIX_COPY}
    return {k: _original_key(k, depths, downsampler_layers, layer_scale_name) for k in hf_keys if k not in special}


def to_original_sam2_state_dict(hf_sd: Mapping[str, torch.Tensor], layer_scale_name: str = "gamma") -> dict:
    """A transformers ``Sam2VideoModel`` state dict in the original SAM2 naming.

    ``layer_scale_name``: ``"gamma"`` as in facebookresearch/sam2 checkpoints, ``"weight"`` as in VideoGLaMM's.
    """
    for key in (POINT_TABLE, PE_MATRIX, PE_MATRIX_COPY):
        if key not in hf_sd:
            raise KeyError(f"transformers Sam2Video state dict lacks '{key}'")
    is_meta = hf_sd[PE_MATRIX].device.type == "meta"  # shape-only dicts (e.g. a meta-device Hiera-L) skip the check
    if not is_meta and not torch.equal(hf_sd[PE_MATRIX], hf_sd[PE_MATRIX_COPY]):
        raise ValueError(f"'{PE_MATRIX}' and '{PE_MATRIX_COPY}' differ; the original layout stores one matrix")
    out = {orig: hf_sd[k] for k, orig in _original_names(hf_sd.keys(), layer_scale_name).items()}
    for i, row in enumerate(hf_sd[POINT_TABLE]):
        out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = row[None].clone()
    return out


def expected_hf_shapes(config) -> dict[str, torch.Size]:
    """Keys and shapes of a ``Sam2VideoModel(config)`` state dict (built on the meta device, no memory)."""
    from transformers import Sam2VideoModel

    with torch.device("meta"):
        model = Sam2VideoModel(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def _canonical_layer_scale(original_sd: Mapping[str, torch.Tensor]) -> dict:
    """Rename VideoGLaMM's fuser ``...layers.i.weight`` layer scale to the original ``gamma``."""
    out = {}
    for key, value in original_sd.items():
        m = LAYER_SCALE.match(key)
        name = f"{m.group(1)}.gamma" if m else key
        if name in out:
            raise ValueError(f"SAM2 state dict holds both '{m.group(1)}.gamma' and '{m.group(1)}.weight'")
        out[name] = value
    return out


def _named(keys) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else ""
    return ", ".join(keys[:MAX_NAMED]) + more


def _check_keys(given, expected, what: str) -> None:
    missing, unexpected = set(expected) - set(given), set(given) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {_named(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {_named(unexpected)}")
    if problems:
        raise ValueError(f"{what} does not match the inferred SAM2 architecture; " + "; ".join(problems))


def convert_sam2_state_dict(original_sd: Mapping[str, torch.Tensor], config=None) -> dict:
    """An original-naming SAM2 state dict as a transformers ``Sam2VideoModel`` state dict.

    ``config`` defaults to ``sam2_config_from_state_dict(original_sd)``. Missing, unexpected and
    wrongly shaped keys raise ``ValueError`` naming them.
    """
    from .architecture import sam2_config_from_state_dict

    original_sd = _canonical_layer_scale(original_sd)
    shapes = expected_hf_shapes(config if config is not None else sam2_config_from_state_dict(original_sd))
    to_hf = {orig: hf for hf, orig in _original_names(shapes).items()}
    points = [f"sam_prompt_encoder.point_embeddings.{i}.weight" for i in range(shapes[POINT_TABLE][0])]
    _check_keys(original_sd, [*to_hf, *points], "SAM2 state dict")
    hf_sd = {hf: original_sd[orig] for orig, hf in to_hf.items()}
    hf_sd[POINT_TABLE] = torch.cat([original_sd[k] for k in points], dim=0)
    hf_sd[PE_MATRIX_COPY] = hf_sd[PE_MATRIX].clone()
    from_hf = {hf: orig for orig, hf in to_hf.items()} | {POINT_TABLE: "sam_prompt_encoder.point_embeddings.*"}
    wrong = {from_hf.get(k, k): (tuple(v.shape), tuple(shapes[k])) for k, v in hf_sd.items() if v.shape != shapes[k]}
    if wrong:
        raise ValueError(f"SAM2 tensors with unexpected shapes (given, expected): {wrong}")
    return hf_sd

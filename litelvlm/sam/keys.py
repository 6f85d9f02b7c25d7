"""Renaming SAM weights between the original segment-anything naming and transformers' ``SamModel``.

Both directions use one table of template pairs, so the mapping is a bijection by construction
(plus transformers' tied copy of the prompt positional-encoding matrix). Unknown, missing and
unexpected keys are errors that name the keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .config import infer_sam_architecture

__all__ = [
    "convert_sam_state_dict",
    "to_segment_anything_state_dict",
    "expected_hf_keys",
    "expected_original_keys",
    "strip_prefix",
]

_PLACEHOLDERS = {
    "i": r"\d+",
    "n": r"[1-4]",
    "p": r"weight|bias",
    "qkv": r"qkv|proj",
    "rel": r"rel_pos_h|rel_pos_w",
    "lin": r"lin1|lin2",
    "embed": r"not_a_point_embed|no_mask_embed",
    "token": r"iou_token|mask_tokens",
    "attn": r"self_attn|cross_attn_token_to_image|cross_attn_image_to_token",
    "proj": r"q_proj|k_proj|v_proj|out_proj",
}

# (original segment-anything template, transformers SamModel template)
_RENAMES: tuple[tuple[str, str], ...] = (
    ("image_encoder.patch_embed.proj.{p}", "vision_encoder.patch_embed.projection.{p}"),
    ("image_encoder.pos_embed", "vision_encoder.pos_embed"),
    ("image_encoder.blocks.{i}.norm{n}.{p}", "vision_encoder.layers.{i}.layer_norm{n}.{p}"),
    ("image_encoder.blocks.{i}.attn.{qkv}.{p}", "vision_encoder.layers.{i}.attn.{qkv}.{p}"),
    ("image_encoder.blocks.{i}.attn.{rel}", "vision_encoder.layers.{i}.attn.{rel}"),
    ("image_encoder.blocks.{i}.mlp.{lin}.{p}", "vision_encoder.layers.{i}.mlp.{lin}.{p}"),
    ("image_encoder.neck.0.weight", "vision_encoder.neck.conv1.weight"),
    ("image_encoder.neck.1.{p}", "vision_encoder.neck.layer_norm1.{p}"),
    ("image_encoder.neck.2.weight", "vision_encoder.neck.conv2.weight"),
    ("image_encoder.neck.3.{p}", "vision_encoder.neck.layer_norm2.{p}"),
    ("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", "prompt_encoder.shared_embedding.positional_embedding"),
    ("prompt_encoder.point_embeddings.{i}.weight", "prompt_encoder.point_embed.{i}.weight"),
    ("prompt_encoder.{embed}.weight", "prompt_encoder.{embed}.weight"),
    ("prompt_encoder.mask_downscaling.0.{p}", "prompt_encoder.mask_embed.conv1.{p}"),
    ("prompt_encoder.mask_downscaling.1.{p}", "prompt_encoder.mask_embed.layer_norm1.{p}"),
    ("prompt_encoder.mask_downscaling.3.{p}", "prompt_encoder.mask_embed.conv2.{p}"),
    ("prompt_encoder.mask_downscaling.4.{p}", "prompt_encoder.mask_embed.layer_norm2.{p}"),
    ("prompt_encoder.mask_downscaling.6.{p}", "prompt_encoder.mask_embed.conv3.{p}"),
    ("mask_decoder.{token}.weight", "mask_decoder.{token}.weight"),
    ("mask_decoder.transformer.layers.{i}.{attn}.{proj}.{p}", "mask_decoder.transformer.layers.{i}.{attn}.{proj}.{p}"),
    ("mask_decoder.transformer.layers.{i}.norm{n}.{p}", "mask_decoder.transformer.layers.{i}.layer_norm{n}.{p}"),
    ("mask_decoder.transformer.layers.{i}.mlp.{lin}.{p}", "mask_decoder.transformer.layers.{i}.mlp.{lin}.{p}"),
    ("mask_decoder.transformer.final_attn_token_to_image.{proj}.{p}", "mask_decoder.transformer.final_attn_token_to_image.{proj}.{p}"),
    ("mask_decoder.transformer.norm_final_attn.{p}", "mask_decoder.transformer.layer_norm_final_attn.{p}"),
    ("mask_decoder.output_upscaling.0.{p}", "mask_decoder.upscale_conv1.{p}"),
    ("mask_decoder.output_upscaling.1.{p}", "mask_decoder.upscale_layer_norm.{p}"),
    ("mask_decoder.output_upscaling.3.{p}", "mask_decoder.upscale_conv2.{p}"),
)
# transformers keeps a second, tied copy of the prompt encoder's positional-encoding matrix.
_TIED_HF_KEY = "shared_image_embedding.positional_embedding"
_TIED_SOURCE_HF_KEY = "prompt_encoder.shared_embedding.positional_embedding"
# MLP heads: layers.0..d-1 in the original, proj_in / layers.0..d-3 / proj_out in transformers.
_MLP_PREFIX = r"(mask_decoder\.(?:iou_prediction_head|output_hypernetworks_mlps\.\d+))\."
_MLP_LAYER = {False: re.compile(_MLP_PREFIX + r"(layers\.\d+)\."), True: re.compile(_MLP_PREFIX + r"(proj_in|proj_out|layers\.\d+)\.")}


def _compile(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(re.escape(part) if k % 2 == 0 else f"(?P<{part}>{_PLACEHOLDERS[part]})" for k, part in enumerate(parts))
    return re.compile(regex + r"\Z")


def _mlp_rules(keys, hf: bool) -> list[tuple[str, str]]:
    """Concrete (original, hf) rename pairs for the MLP heads present in ``keys`` (their depth read off the keys)."""
    layers: dict[str, set[str]] = {}
    for key in keys:
        if m := _MLP_LAYER[hf].match(key):
            layers.setdefault(m.group(1), set()).add(m.group(2))
    rules = []
    for prefix, names in sorted(layers.items()):
        depth = len(names)
        rules.append((f"{prefix}.layers.0.{{p}}", f"{prefix}.proj_in.{{p}}"))
        rules += [(f"{prefix}.layers.{j}.{{p}}", f"{prefix}.layers.{j - 1}.{{p}}") for j in range(1, depth - 1)]
        rules.append((f"{prefix}.layers.{depth - 1}.{{p}}", f"{prefix}.proj_out.{{p}}"))
    return rules


def _rename_all(state_dict: Mapping, rules: list[tuple[str, str]], source: str) -> dict:
    compiled = [(_compile(src), dst) for src, dst in rules]
    renamed, unknown = {}, []
    for key, value in state_dict.items():
        match = next(((m, dst) for pattern, dst in compiled if (m := pattern.match(key))), None)
        if match is None:
            unknown.append(key)
            continue
        renamed[match[1].format(**match[0].groupdict())] = value
    if unknown:
        raise ValueError(f"{source} state dict has {len(unknown)} unrecognised SAM keys: {_names(unknown)}")
    return renamed


def _names(keys, limit: int = 20) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(repr(k) for k in keys[:limit]) + more


def expected_hf_keys(config) -> set[str]:
    """State-dict keys of a transformers ``SamModel`` built from ``config`` (built on the meta device, no memory)."""
    from transformers import SamModel

    with torch.device("meta"):
        return set(SamModel(config).state_dict().keys())


def _check_key_set(actual, expected, what: str) -> None:
    missing, unexpected = set(expected) - set(actual), set(actual) - set(expected)
    parts = [f"{len(missing)} missing keys: {_names(missing)}"] if missing else []
    parts += [f"{len(unexpected)} unexpected keys: {_names(unexpected)}"] if unexpected else []
    if parts:
        raise ValueError(f"{what}: {'; '.join(parts)}")


def _to_hf_rules(original_keys) -> list[tuple[str, str]]:
    return list(_RENAMES) + _mlp_rules(original_keys, hf=False)


def _to_original_rules(hf_keys) -> list[tuple[str, str]]:
    return [(dst, src) for src, dst in _RENAMES] + [(dst, src) for src, dst in _mlp_rules(hf_keys, hf=True)]


def expected_original_keys(config) -> set[str]:
    """Original segment-anything state-dict keys of the SAM described by ``config``."""
    hf_keys = expected_hf_keys(config) - {_TIED_HF_KEY}
    return set(_rename_all(dict.fromkeys(hf_keys), _to_original_rules(hf_keys), "SamModel"))


def convert_sam_state_dict(original_sd: Mapping[str, torch.Tensor], decoder_num_heads: int | None = None) -> dict[str, torch.Tensor]:
    """Rename an original segment-anything state dict to transformers ``SamModel`` keys (tensors are shared).

    Raises ``ValueError`` naming every key missing from or unexpected in the SAM whose architecture
    the shapes describe (see ``infer_sam_architecture``; ``decoder_num_heads`` only matters there).
    """
    config = infer_sam_architecture(original_sd, decoder_num_heads).to_sam_config()
    _check_key_set(original_sd, expected_original_keys(config), "segment-anything SAM state dict")
    hf_sd = _rename_all(original_sd, _to_hf_rules(original_sd.keys()), "segment-anything")
    hf_sd[_TIED_HF_KEY] = hf_sd[_TIED_SOURCE_HF_KEY]
    return hf_sd


def to_segment_anything_state_dict(hf_sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers ``SamModel`` state dict to the original segment-anything keys (inverse of
    ``convert_sam_state_dict``); raises ``ValueError`` naming unrecognised, missing or unexpected keys."""
    hf_sd = dict(hf_sd)
    tied = hf_sd.pop(_TIED_HF_KEY, None)
    source = hf_sd.get(_TIED_SOURCE_HF_KEY)
    if tied is not None and source is not None and not torch.equal(tied, source):
        raise ValueError(f"SamModel state dict: {_TIED_HF_KEY!r} differs from its tied copy {_TIED_SOURCE_HF_KEY!r}")
    original_sd = _rename_all(hf_sd, _to_original_rules(hf_sd.keys()), "SamModel")
    config = infer_sam_architecture(original_sd).to_sam_config()
    present = set(hf_sd) | ({_TIED_HF_KEY} if tied is not None else set())
    _check_key_set(present, expected_hf_keys(config), "SamModel state dict")
    return original_sd


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "model.grounding_encoder.") -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` under ``prefix``, with the prefix removed (e.g. SAM inside a GLaMM checkpoint)."""
    selected = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
    if not selected:
        raise ValueError(f"state dict has no keys under {prefix!r} (e.g. {_names(list(state_dict)[:3])})")
    return selected

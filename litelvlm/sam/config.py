"""SAM architecture: a dataclass that decides it, the transformers ``SamConfig`` it builds, and its
inference from the tensor shapes of an original (segment-anything naming) state dict."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import config_bounds

__all__ = [
    "SamArchitecture",
    "SAM_VIT_B",
    "SAM_VIT_L",
    "SAM_VIT_H",
    "SAM_DECODER_HEADS",
    "infer_sam_architecture",
    "sam_config_from_state_dict",
]

# The mask decoder's attention heads leave no trace in the weights; every released SAM uses 8.
SAM_DECODER_HEADS = 8
_VISION_LAYER_NORM_EPS = 1e-6  # segment-anything builds the ViT and LayerNorm2d with eps 1e-6
_DECODER_LAYER_NORM_EPS = 1e-5  # TwoWayAttentionBlock's norms are plain nn.LayerNorm (eps 1e-5)


@dataclass(frozen=True)
class SamArchitecture:
    """Everything that decides a SAM model: ViT image encoder, prompt encoder and mask decoder.

    ``embed_dim`` is the shared width of the neck output, the prompt embeddings and the mask decoder.
    A block listed in ``global_attn_indexes`` attends over the whole ``grid_size`` x ``grid_size`` grid;
    the others attend inside ``window_size`` x ``window_size`` windows. Defaults are SAM ViT-H.
    """

    vision_width: int = 1280
    vision_depth: int = 32
    vision_heads: int = 16
    vision_mlp_dim: int = 5120
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    image_size: int = 1024
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    embed_dim: int = 256
    mask_in_channels: int = 16
    num_point_embeddings: int = 4
    num_multimask_outputs: int = 3
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = SAM_DECODER_HEADS
    attention_downsample_rate: int = 2
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    def __post_init__(self):
        object.__setattr__(self, "global_attn_indexes", tuple(int(i) for i in self.global_attn_indexes))
        problems = _architecture_problems(self)
        if problems:
            raise ValueError(f"Invalid SamArchitecture: {'; '.join(problems)}")

    @property
    def grid_size(self) -> int:
        """Side of the image-embedding grid (image_size / patch_size; 64 for released SAMs)."""
        return self.image_size // self.patch_size

    def to_sam_config(self):
        """The transformers ``SamConfig`` for this architecture."""
        from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

        vision = SamVisionConfig(
            hidden_size=self.vision_width, output_channels=self.embed_dim, num_hidden_layers=self.vision_depth,
            num_attention_heads=self.vision_heads, num_channels=self.num_channels, image_size=self.image_size,
            patch_size=self.patch_size, layer_norm_eps=_VISION_LAYER_NORM_EPS, qkv_bias=self.qkv_bias,
            use_abs_pos=True, use_rel_pos=True, window_size=self.window_size,
            global_attn_indexes=list(self.global_attn_indexes), num_pos_feats=self.embed_dim // 2,
            mlp_dim=self.vision_mlp_dim,
        )
        prompt = SamPromptEncoderConfig(
            hidden_size=self.embed_dim, image_size=self.image_size, patch_size=self.patch_size,
            mask_input_channels=self.mask_in_channels, num_point_embeddings=self.num_point_embeddings,
            layer_norm_eps=_VISION_LAYER_NORM_EPS,
        )
        decoder = SamMaskDecoderConfig(
            hidden_size=self.embed_dim, mlp_dim=self.decoder_mlp_dim, num_hidden_layers=self.decoder_depth,
            num_attention_heads=self.decoder_heads, attention_downsample_rate=self.attention_downsample_rate,
            num_multimask_outputs=self.num_multimask_outputs, iou_head_depth=self.iou_head_depth,
            iou_head_hidden_dim=self.iou_head_hidden_dim, layer_norm_eps=_DECODER_LAYER_NORM_EPS,
        )
        return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def _architecture_problems(arch: SamArchitecture) -> list[str]:
    problems = []
    if arch.image_size % arch.patch_size:
        problems.append(f"image_size {arch.image_size} is not a multiple of patch_size {arch.patch_size}")
    if arch.vision_width % arch.vision_heads:
        problems.append(f"vision_heads {arch.vision_heads} does not divide vision_width {arch.vision_width}")
    if arch.embed_dim % 8:
        problems.append(f"embed_dim {arch.embed_dim} must be a multiple of 8 (mask upscaling uses embed_dim / 8)")
    internal = arch.embed_dim // max(arch.attention_downsample_rate, 1)
    if arch.embed_dim % arch.attention_downsample_rate or internal % arch.decoder_heads:
        problems.append(
            f"decoder_heads {arch.decoder_heads} must divide embed_dim / attention_downsample_rate "
            f"({arch.embed_dim} / {arch.attention_downsample_rate}); pass decoder_num_heads= for such a model"
        )
    if arch.attention_downsample_rate != 2:
        problems.append(
            f"attention_downsample_rate {arch.attention_downsample_rate} is not supported: transformers' two-way "
            "attention blocks hard-code 2 (the value of every released SAM)"
        )
    if arch.iou_head_depth < 2:
        problems.append(f"iou_head_depth {arch.iou_head_depth} < 2 is not supported by transformers' SamFeedForward")
    outside = [i for i in arch.global_attn_indexes if not 0 <= i < arch.vision_depth]
    if outside:
        problems.append(f"global_attn_indexes {outside} outside 0..{arch.vision_depth - 1}")
    return problems


SAM_VIT_B = SamArchitecture(vision_width=768, vision_depth=12, vision_heads=12, vision_mlp_dim=3072, global_attn_indexes=(2, 5, 8, 11))
SAM_VIT_L = SamArchitecture(vision_width=1024, vision_depth=24, vision_heads=16, vision_mlp_dim=4096, global_attn_indexes=(5, 11, 17, 23))
SAM_VIT_H = SamArchitecture()


# ---------------------------------------------------------------- inference from shapes


@dataclass
class _Shapes:
    """Tensor shapes of an original SAM state dict, with lookups that name what is missing."""

    shapes: dict[str, tuple[int, ...]]
    hint: str = field(default="")

    def __call__(self, key: str) -> tuple[int, ...]:
        if key not in self.shapes:
            raise ValueError(
                f"SAM state dict lacks {key!r}: expected the original segment-anything naming "
                f"(image_encoder.*, prompt_encoder.*, mask_decoder.*) without any checkpoint prefix{self.hint}"
            )
        return self.shapes[key]

    def count(self, prefix: str) -> int:
        """Number of consecutive indexed children ``prefix{0..n-1}.*``; raises if none or if there are gaps."""
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        found = {int(m.group(1)) for key in self.shapes if (m := pattern.match(key))}
        if not found or found != set(range(len(found))):
            raise ValueError(f"SAM state dict has indexes {sorted(found)} under {prefix!r}; expected 0..n-1 with n >= 1")
        return len(found)


def _prefix_hint(keys) -> str:
    """A hint naming the checkpoint prefix when the keys carry one (e.g. ``model.grounding_encoder.``)."""
    for key in keys:
        at = key.find("image_encoder.")
        if at > 0:
            return f" (keys such as {key!r} carry the prefix {key[:at]!r}: strip it first)"
    return ""


def _infer_vision(shape: _Shapes) -> dict:
    width, channels, patch, _ = shape("image_encoder.patch_embed.proj.weight")
    grid = shape("image_encoder.pos_embed")[1]
    depth = shape.count("image_encoder.blocks.")
    head_dim = shape("image_encoder.blocks.0.attn.rel_pos_h")[1]
    if width % head_dim:
        raise ValueError(f"rel_pos width {head_dim} (head dim) does not divide the ViT width {width}")
    sides = [(shape(f"image_encoder.blocks.{i}.attn.rel_pos_h")[0] + 1) // 2 for i in range(depth)]
    global_indexes = tuple(i for i, side in enumerate(sides) if side == grid)
    window_sides = sorted({side for side in sides if side != grid})
    if len(window_sides) > 1:
        raise ValueError(f"windowed blocks have different window sizes {window_sides}; SamVisionConfig holds one")
    return dict(
        vision_width=width, vision_depth=depth, vision_heads=width // head_dim,
        vision_mlp_dim=shape("image_encoder.blocks.0.mlp.lin1.weight")[0],
        window_size=window_sides[0] if window_sides else 0, global_attn_indexes=global_indexes,
        image_size=grid * patch, patch_size=patch, num_channels=channels,
        qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in shape.shapes,
        embed_dim=shape("image_encoder.neck.0.weight")[0],
    )


def _infer_prompt_and_decoder(shape: _Shapes, decoder_num_heads: int | None) -> dict:
    embed_dim = shape("mask_decoder.iou_token.weight")[1]
    pe_features = shape("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")[1]
    if 2 * pe_features != embed_dim:
        raise ValueError(f"prompt positional encoding has {pe_features} frequencies; expected embed_dim/2 = {embed_dim // 2}")
    internal = shape("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0]
    return dict(
        mask_in_channels=shape("prompt_encoder.mask_downscaling.3.weight")[0],
        num_point_embeddings=shape.count("prompt_encoder.point_embeddings."),
        num_multimask_outputs=shape("mask_decoder.mask_tokens.weight")[0] - 1,
        decoder_depth=shape.count("mask_decoder.transformer.layers."),
        decoder_mlp_dim=shape("mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
        decoder_heads=SAM_DECODER_HEADS if decoder_num_heads is None else int(decoder_num_heads),
        attention_downsample_rate=embed_dim // internal,
        iou_head_depth=shape.count("mask_decoder.iou_prediction_head.layers."),
        iou_head_hidden_dim=shape("mask_decoder.iou_prediction_head.layers.0.weight")[0],
    )


def infer_sam_architecture(state_dict: Mapping, decoder_num_heads: int | None = None) -> SamArchitecture:
    """Read a ``SamArchitecture`` off the shapes of an original segment-anything state dict.

    Rules: width, channels and patch size from ``patch_embed.proj.weight``; grid (and image size =
    grid x patch) from ``pos_embed``; ViT heads = width / head_dim, where head_dim is the width of
    ``rel_pos_h`` (exact for any model, 12/16/16 for ViT-B/L/H); a block is global when its
    ``rel_pos_h`` has 2*grid-1 rows, otherwise its window is (rows+1)/2 (a window equal to the grid is
    the same computation as global attention). The mask decoder's heads cannot be read from weights:
    ``decoder_num_heads`` defaults to 8, the value of every released SAM.
    """
    shape = _Shapes({k: tuple(v.shape) for k, v in state_dict.items()}, _prefix_hint(state_dict.keys()))
    vision = _infer_vision(shape)
    rest = _infer_prompt_and_decoder(shape, decoder_num_heads)
    if vision["embed_dim"] != shape("mask_decoder.iou_token.weight")[1]:
        raise ValueError(f"image_encoder neck width {vision['embed_dim']} differs from the mask decoder width")
    config_bounds.check_sizes({**vision, **rest}, config_bounds.SAM_VIT_H, "SAM weights (sizes read off their tensor shapes)")
    return SamArchitecture(**vision, **rest)


def sam_config_from_state_dict(state_dict: Mapping, decoder_num_heads: int | None = None):
    """The transformers ``SamConfig`` of an original segment-anything state dict (see ``infer_sam_architecture``)."""
    return infer_sam_architecture(state_dict, decoder_num_heads).to_sam_config()

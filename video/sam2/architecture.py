"""The SAM2 architecture as a small dataclass, inferred from an original-naming state dict.

Original naming = the keys of facebookresearch/sam2 ``SAM2Base`` (``image_encoder.trunk.*``,
``sam_prompt_encoder.*``, ``sam_mask_decoder.*``, ``memory_attention.*``, ``memory_encoder.*``,
``maskmem_tpos_enc``, ...), as shipped in ``sam2_hiera_*.pt`` and, under a prefix, in VideoGLaMM.

Most fields are read from tensor shapes. A few are not stored in the weights and follow conventions
(all documented on ``Sam2Architecture`` and in ``RELEASED_HIERA_LAYOUTS``):

* Hiera stage-0 heads, window sizes and global-attention blocks: looked up by (embed dim, blocks per
  stage) for the four released models (t, s, b+, l). Any other layout (tiny test models) uses
  heads = 1 if embed dim <= 96 else 2, windows = (w0, 4, 14, 7) with w0 read from
  ``pos_embed_window``, and global attention on the last block of the third stage (that block is
  global in every released model).
* Heads and widths double at every stage (Hiera dim_mul = head_mul = 2); patch embed stride 4 and
  padding (kernel - 1) // 2; q-pooling on the first block of stages 2-4; FPN top-down levels (2, 3)
  with nearest interpolation and the lowest-resolution level dropped (scalp 1).
* Image size: 1024 for the released layouts (VideoGLaMM asserts 1024), ``TINY_SAM2_IMAGE_SIZE``
  (64) for any other layout. Pass ``image_size=`` to override.
* Mask-decoder heads 8, memory-attention heads 1, RoPE theta 10000, mask-downsampler kernel 3 /
  stride 2 / padding 1, at most 16 object pointers, dynamic multimask via stability
  (delta 0.05, threshold 0.98) as VideoGLaMM's ``build_sam2*`` overrides set them.
* SAM 2.1 extras (``no_obj_embed_spatial``, ``obj_ptr_tpos_proj``) are switched on by the presence
  of their keys; VideoGLaMM's SAM2 (2.0, Hiera-L) has neither.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Mapping

import torch

from litelvlm.config_bounds import SAM2_HIERA_L, check_sizes

__all__ = [
    "Sam2Architecture",
    "HieraLayout",
    "RELEASED_HIERA_LAYOUTS",
    "SAM2_IMAGE_SIZE",
    "TINY_SAM2_IMAGE_SIZE",
    "infer_sam2_architecture",
    "sam2_config_from_state_dict",
]

SAM2_IMAGE_SIZE = 1024
TINY_SAM2_IMAGE_SIZE = 64
BACKBONE_STRIDE = 16
TRUNK = "image_encoder.trunk."
DECODER = "sam_mask_decoder."
PROMPT = "sam_prompt_encoder."


@dataclass(frozen=True)
class HieraLayout:
    """Hiera settings that the weights do not store."""

    num_heads: int
    window_spec: tuple[int, ...]
    global_attention_blocks: tuple[int, ...]
    image_size: int


# Keyed by (embed_dim, blocks per stage); values from facebookresearch/sam2 sam2_hiera_{t,s,b+,l}.yaml.
RELEASED_HIERA_LAYOUTS: dict[tuple[int, tuple[int, ...]], HieraLayout] = {
    (96, (1, 2, 7, 2)): HieraLayout(1, (8, 4, 14, 7), (5, 7, 9), SAM2_IMAGE_SIZE),
    (96, (1, 2, 11, 2)): HieraLayout(1, (8, 4, 14, 7), (7, 10, 13), SAM2_IMAGE_SIZE),
    (112, (2, 3, 16, 3)): HieraLayout(2, (8, 4, 14, 7), (12, 16, 20), SAM2_IMAGE_SIZE),
    (144, (2, 6, 36, 4)): HieraLayout(2, (8, 4, 16, 8), (23, 33, 43), SAM2_IMAGE_SIZE),
}


@dataclass(frozen=True)
class Sam2Architecture:
    """Every size that decides a SAM2 (Hiera + SAM heads + memory) model; see the module docstring."""

    image_size: int
    embed_dim: int
    num_heads: int
    blocks_per_stage: tuple[int, ...]
    window_spec: tuple[int, ...]
    global_attention_blocks: tuple[int, ...]
    window_pos_embed_bkg: tuple[int, int]
    mlp_ratio: float = 4.0
    patch_kernel_size: int = 7
    hidden_size: int = 256
    mask_input_channels: int = 16
    num_point_embeddings: int = 4
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    decoder_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    memory_attention_layers: int = 4
    memory_attention_ffn_dim: int = 2048
    memory_attention_downsample_rate: int = 1
    memory_dim: int = 64
    mask_downsampler_layers: int = 4
    fuser_layers: int = 2
    fuser_kernel_size: int = 7
    fuser_intermediate_dim: int = 1024
    num_maskmem: int = 7
    temporal_pos_for_pointers: bool = False
    occlusion_spatial_embedding: bool = False

    @property
    def embed_dim_per_stage(self) -> list[int]:
        return [self.embed_dim * 2**s for s in range(len(self.blocks_per_stage))]

    @property
    def feature_sizes(self) -> list[list[int]]:
        """Spatial sizes of the three FPN levels used (strides 4, 8, 16)."""
        return [[self.image_size // s] * 2 for s in (4, 8, BACKBONE_STRIDE)]

    def to_transformers(self):
        """The equivalent ``transformers.Sam2VideoConfig``."""
        from transformers import Sam2VideoConfig

        return Sam2VideoConfig(
            vision_config=self._vision_config(),
            prompt_encoder_config=self._prompt_encoder_config(),
            mask_decoder_config=self._mask_decoder_config(),
            image_size=self.image_size,
            num_maskmem=self.num_maskmem,
            memory_attention_hidden_size=self.hidden_size,
            memory_attention_num_layers=self.memory_attention_layers,
            memory_attention_num_attention_heads=1,
            memory_attention_downsample_rate=self.memory_attention_downsample_rate,
            memory_attention_feed_forward_hidden_size=self.memory_attention_ffn_dim,
            memory_attention_rope_feat_sizes=self.feature_sizes[-1],
            memory_encoder_hidden_size=self.hidden_size,
            memory_encoder_output_channels=self.memory_dim,
            mask_downsampler_embed_dim=self.hidden_size,
            mask_downsampler_total_stride=2**self.mask_downsampler_layers,
            memory_fuser_num_layers=self.fuser_layers,
            memory_fuser_embed_dim=self.hidden_size,
            memory_fuser_intermediate_dim=self.fuser_intermediate_dim,
            memory_fuser_kernel_size=self.fuser_kernel_size,
            memory_fuser_padding=self.fuser_kernel_size // 2,
            enable_temporal_pos_encoding_for_object_pointers=self.temporal_pos_for_pointers,
            enable_occlusion_spatial_embedding=self.occlusion_spatial_embedding,
        )

    def _vision_config(self):
        from transformers import Sam2HieraDetConfig, Sam2VisionConfig

        dims = self.embed_dim_per_stage
        hiera = Sam2HieraDetConfig(
            hidden_size=self.embed_dim,
            num_attention_heads=self.num_heads,
            image_size=[self.image_size, self.image_size],
            patch_kernel_size=[self.patch_kernel_size] * 2,
            patch_stride=[4, 4],
            patch_padding=[(self.patch_kernel_size - 1) // 2] * 2,
            window_positional_embedding_background_size=list(self.window_pos_embed_bkg),
            blocks_per_stage=list(self.blocks_per_stage),
            embed_dim_per_stage=dims,
            num_attention_heads_per_stage=[self.num_heads * 2**s for s in range(len(dims))],
            window_size_per_stage=list(self.window_spec),
            global_attention_blocks=list(self.global_attention_blocks),
            mlp_ratio=self.mlp_ratio,
        )
        return Sam2VisionConfig(
            backbone_config=hiera,
            backbone_channel_list=dims[::-1],
            backbone_feature_sizes=self.feature_sizes,
            fpn_hidden_size=self.hidden_size,
        )

    def _prompt_encoder_config(self):
        from transformers.models.sam2_video.configuration_sam2_video import Sam2VideoPromptEncoderConfig

        return Sam2VideoPromptEncoderConfig(
            hidden_size=self.hidden_size,
            image_size=self.image_size,
            patch_size=BACKBONE_STRIDE,
            mask_input_channels=self.mask_input_channels,
            num_point_embeddings=self.num_point_embeddings,
        )

    def _mask_decoder_config(self):
        from transformers.models.sam2_video.configuration_sam2_video import Sam2VideoMaskDecoderConfig

        return Sam2VideoMaskDecoderConfig(
            hidden_size=self.hidden_size,
            mlp_dim=self.decoder_mlp_dim,
            num_hidden_layers=self.decoder_depth,
            num_attention_heads=self.decoder_heads,
            attention_downsample_rate=self.decoder_downsample_rate,
            num_multimask_outputs=self.num_multimask_outputs,
            iou_head_depth=self.iou_head_depth,
            iou_head_hidden_dim=self.iou_head_hidden_dim,
            dynamic_multimask_via_stability=True,
            dynamic_multimask_stability_delta=0.05,
            dynamic_multimask_stability_thresh=0.98,
        )


# ----------------------------------------------------------------------------- inference from shapes


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        hint = ""
        if not any(k.startswith(TRUNK) for k in sd):
            hint = (
                " No key starts with 'image_encoder.trunk.': if this comes from a VideoGLaMM checkpoint, "
                "select the SAM2 part first with extract_sam2_state_dict(sd, prefix='model.visual_model.')."
            )
        raise KeyError(f"SAM2 state dict lacks '{key}', needed to infer the architecture.{hint}")
    return tuple(sd[key].shape)


def _indices(sd: Mapping[str, torch.Tensor], prefix: str) -> set[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return {int(m.group(1)) for k in sd if (m := pattern.match(k))}


def _count(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Number of numbered children ``prefix{i}.`` (they must be 0..n-1)."""
    found = _indices(sd, prefix)
    if found != set(range(len(found))):
        raise KeyError(f"SAM2 state dict has non-contiguous '{prefix}<i>.' entries: {sorted(found)}")
    return len(found)


def _hiera_stages(sd: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Blocks per stage: a stage starts at every block that projects to a wider dim (has ``proj``)."""
    depth = _count(sd, TRUNK + "blocks.")
    starts = [0] + [i for i in range(depth) if f"{TRUNK}blocks.{i}.proj.weight" in sd]
    ends = starts[1:] + [depth]
    return tuple(b - a for a, b in zip(starts, ends))


def _hiera_layout(embed_dim: int, stages: tuple[int, ...], window0: int, overrides: Mapping) -> HieraLayout:
    released = RELEASED_HIERA_LAYOUTS.get((embed_dim, stages))
    if released is None:
        last_of_third = sum(stages[:3]) - 1
        released = HieraLayout(
            num_heads=1 if embed_dim <= 96 else 2,
            window_spec=(window0, 4, 14, 7),
            global_attention_blocks=(last_of_third,),
            image_size=TINY_SAM2_IMAGE_SIZE,
        )
    fields = {k: v for k, v in overrides.items() if v is not None}
    layout = HieraLayout(**{**released.__dict__, **fields})
    if layout.window_spec[0] != window0:
        raise ValueError(
            f"Hiera window_spec[0]={layout.window_spec[0]} disagrees with pos_embed_window size {window0} in the weights"
        )
    return layout


def _hiera_fields(sd: Mapping[str, torch.Tensor], overrides: Mapping) -> dict:
    embed_dim, _, kernel, _ = _shape(sd, TRUNK + "patch_embed.proj.weight")
    stages = _hiera_stages(sd)
    if len(stages) != 4:
        raise ValueError(f"SAM2 Hiera trunk must have 4 stages, found blocks per stage {stages}")
    window0 = _shape(sd, TRUNK + "pos_embed_window")[-1]
    layout = _hiera_layout(embed_dim, stages, window0, overrides)
    mlp_hidden = _shape(sd, TRUNK + "blocks.0.mlp.layers.0.weight")[0]
    return dict(
        image_size=layout.image_size,
        embed_dim=embed_dim,
        num_heads=layout.num_heads,
        blocks_per_stage=stages,
        window_spec=tuple(layout.window_spec),
        global_attention_blocks=tuple(layout.global_attention_blocks),
        window_pos_embed_bkg=tuple(_shape(sd, TRUNK + "pos_embed")[-2:]),
        mlp_ratio=mlp_hidden / embed_dim,
        patch_kernel_size=kernel,
    )


def _head_fields(sd: Mapping[str, torch.Tensor]) -> dict:
    for required in (DECODER + "obj_score_token.weight", DECODER + "conv_s0.weight"):
        _shape(sd, required)  # transformers' Sam2Video always predicts object scores and uses high-res features
    hidden = _shape(sd, PROMPT + "no_mask_embed.weight")[1]
    internal = _shape(sd, DECODER + "transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0]
    return dict(
        hidden_size=hidden,
        mask_input_channels=_shape(sd, PROMPT + "mask_downscaling.3.weight")[0],
        num_point_embeddings=_count(sd, PROMPT + "point_embeddings."),
        decoder_depth=_count(sd, DECODER + "transformer.layers."),
        decoder_mlp_dim=_shape(sd, DECODER + "transformer.layers.0.mlp.layers.0.weight")[0],
        decoder_downsample_rate=hidden // internal,
        num_multimask_outputs=_shape(sd, DECODER + "mask_tokens.weight")[0] - 1,
        iou_head_depth=_count(sd, DECODER + "iou_prediction_head.layers."),
        iou_head_hidden_dim=_shape(sd, DECODER + "iou_prediction_head.layers.0.weight")[0],
    )


def _memory_fields(sd: Mapping[str, torch.Tensor]) -> dict:
    hidden = _shape(sd, "memory_attention.norm.weight")[0]
    kv_in = _shape(sd, "memory_attention.layers.0.cross_attn_image.k_proj.weight")[1]
    memory_dim = _shape(sd, "memory_encoder.out_proj.weight")[0]
    if kv_in != 64 or memory_dim != 64:
        raise ValueError(f"transformers' Sam2Video needs 64-channel memories; weights have {memory_dim} (kv in {kv_in})")
    found = _indices(sd, "memory_encoder.mask_downsampler.encoder.")
    layers = max(found, default=0) // 3
    if not found or found != {3 * k + j for k in range(layers) for j in (0, 1)} | {3 * layers}:
        raise KeyError(f"unexpected memory_encoder.mask_downsampler.encoder layout in SAM2 weights: {sorted(found)}")
    return dict(
        memory_attention_layers=_count(sd, "memory_attention.layers."),
        memory_attention_ffn_dim=_shape(sd, "memory_attention.layers.0.linear1.weight")[0],
        memory_attention_downsample_rate=hidden // _shape(sd, "memory_attention.layers.0.self_attn.q_proj.weight")[0],
        memory_dim=memory_dim,
        mask_downsampler_layers=layers,
        fuser_layers=_count(sd, "memory_encoder.fuser.layers."),
        fuser_kernel_size=_shape(sd, "memory_encoder.fuser.layers.0.dwconv.weight")[-1],
        fuser_intermediate_dim=_shape(sd, "memory_encoder.fuser.layers.0.pwconv1.weight")[0],
        num_maskmem=_shape(sd, "maskmem_tpos_enc")[0],
        temporal_pos_for_pointers="obj_ptr_tpos_proj.weight" in sd,
        occlusion_spatial_embedding="no_obj_embed_spatial" in sd,
    )


def _check_widths(sd: Mapping[str, torch.Tensor], arch: Sam2Architecture) -> None:
    widths = {
        "image_encoder.neck.convs.0.conv.weight": _shape(sd, "image_encoder.neck.convs.0.conv.weight")[0],
        "memory_attention.norm.weight": _shape(sd, "memory_attention.norm.weight")[0],
        "memory_encoder.pix_feat_proj.weight": _shape(sd, "memory_encoder.pix_feat_proj.weight")[0],
    }
    wrong = {k: w for k, w in widths.items() if w != arch.hidden_size}
    if wrong:
        raise ValueError(f"SAM2 widths disagree with the prompt encoder's {arch.hidden_size}: {wrong}")


def infer_sam2_architecture(
    sd: Mapping[str, torch.Tensor],
    *,
    image_size: int | None = None,
    num_heads: int | None = None,
    window_spec: tuple[int, ...] | None = None,
    global_attention_blocks: tuple[int, ...] | None = None,
) -> Sam2Architecture:
    """Read a ``Sam2Architecture`` from an original-naming SAM2 state dict (shapes only)."""
    overrides = dict(
        num_heads=num_heads, window_spec=window_spec, global_attention_blocks=global_attention_blocks, image_size=image_size
    )
    arch = Sam2Architecture(**_hiera_fields(sd, overrides), **_head_fields(sd), **_memory_fields(sd))
    check_sizes({**asdict(arch), "total_blocks": sum(arch.blocks_per_stage)}, SAM2_HIERA_L,
                "SAM2 weights (sizes read off their tensor shapes)")
    _check_widths(sd, arch)
    if arch.image_size % (BACKBONE_STRIDE * 2) or arch.image_size <= 0:
        raise ValueError(f"SAM2 image_size must be a positive multiple of 32, got {arch.image_size}")
    return arch


def sam2_config_from_state_dict(sd: Mapping[str, torch.Tensor], **overrides):
    """The ``transformers.Sam2VideoConfig`` of an original-naming SAM2 state dict.

    ``overrides`` (``image_size``, ``num_heads``, ``window_spec``, ``global_attention_blocks``) replace the
    conventions for the fields that the weights do not store.
    """
    return infer_sam2_architecture(sd, **overrides).to_transformers()

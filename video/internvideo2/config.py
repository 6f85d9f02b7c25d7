"""Architecture settings of the InternVideo2 vision encoder (the ``vision_encoder`` of InternVideo2-Stage2)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InternVideo2Config", "HEAD_DIM_RULE"]

# The checkpoint stores no head count (qkv is one (3C, C) matrix and the qk-norms span all heads).
# Rule used when inferring a config from weights: heads = width // HEAD_DIM_RULE (the 1B model's
# head dim, 1408 / 16 = 88). Other widths need an explicit config (the 6B model is 3200 / 25 heads).
HEAD_DIM_RULE = 88


@dataclass(frozen=True)
class InternVideo2Config:
    """Shape and behaviour of the encoder; the defaults are InternVideo2-Stage2 1B 224p f4 as VideoGLaMM runs it.

    ``return_block_index`` picks the block whose output is returned, Python-style: ``-1`` is the last
    block, ``-2`` (VideoGLaMM: ``x_vis_return_idx=-2``) the one before it. Only the blocks up to it are
    built. ``layerscale_init`` only sets the value of freshly initialised LayerScale gammas.
    """

    image_size: int = 224
    patch_size: int = 14
    tubelet_size: int = 1
    num_frames: int = 4
    in_channels: int = 3
    width: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_hidden_dim: int = 6144  # int(1408 * 48 / 11)
    qkv_bias: bool = False
    qk_norm: bool = True
    layerscale: bool = True
    layerscale_init: float = 1e-5
    norm_eps: float = 1e-6
    separate_image_pos_embed: bool = True
    return_block_index: int = -2
    gelu_approximate: str = "none"

    def __post_init__(self):
        checks = [
            (self.image_size % self.patch_size == 0, f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"),
            (self.num_frames % self.tubelet_size == 0, f"num_frames {self.num_frames} must be a multiple of tubelet_size {self.tubelet_size}"),
            (self.width % self.num_heads == 0, f"width {self.width} must be divisible by num_heads {self.num_heads}"),
            (-self.depth <= self.return_block_index < self.depth, f"return_block_index {self.return_block_index} is outside a depth of {self.depth}"),
            (self.gelu_approximate in ("none", "tanh"), f"gelu_approximate must be 'none' or 'tanh', got {self.gelu_approximate!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"InternVideo2Config: {message}")

    @classmethod
    def stage2_1b_224p_f4(cls) -> "InternVideo2Config":
        """OpenGVLab/InternVideo2-Stage2_1B-224p-f4 with VideoGLaMM's settings (second-to-last block)."""
        return cls()

    @classmethod
    def tiny(cls) -> "InternVideo2Config":
        """A few-kilobyte model for tests: 56 px, 4x4 patch grid, width 176 (2 heads of 88), 3 blocks."""
        return cls(image_size=56, width=176, depth=3, num_heads=2, mlp_hidden_dim=256)

    @property
    def grid_size(self) -> int:
        """Patches per side of a frame (16 for 224 px / 14)."""
        return self.image_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        """Patch tokens per temporal slot (256 for the 1B model)."""
        return self.grid_size**2

    @property
    def temporal_tokens(self) -> int:
        """Temporal slots per clip: num_frames // tubelet_size."""
        return self.num_frames // self.tubelet_size

    @property
    def num_patches(self) -> int:
        """Patch tokens per clip, CLS excluded (1024 for the 1B model at 4 frames)."""
        return self.temporal_tokens * self.tokens_per_frame

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def mlp_ratio(self) -> float:
        return self.mlp_hidden_dim / self.width

    @property
    def num_blocks_run(self) -> int:
        """How many blocks produce the returned features (39 of 40 for VideoGLaMM)."""
        return self.return_block_index % self.depth + 1

"""InternVideo2 vision encoder as VideoGLaMM's video tower uses it.

Shape flow in VideoGLaMM (16 frames, 1B model): the (16, 3, 224, 224) frames are cut into 4
consecutive 4-frame chunks and encoded as a batch of 4 clips -> (4, 1 + 4*256, 1408) hidden states
after block 38 (of 0..39); CLS is dropped -> (4, 1024, 1408); ``mm_projector`` (1408 -> 3072) acts per
token; the tokens are regrouped per frame (16, 256, 3072), adaptive-average-pooled 16x16 -> 8x8
(16, 64, 3072), and laid out frame by frame after all CLIP tokens. ``frame_token_grids`` returns the
per-frame (16, 16, 1408) grids before the projector; project first, then pool, to match VideoGLaMM.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import InternVideo2Config
from .layers import Block, PatchEmbed3d
from .pos_embed import sincos_3d_with_cls

__all__ = ["InternVideo2VisionEncoder"]


class InternVideo2VisionEncoder(nn.Module):
    """Patch embedding + CLS + learned position embedding + the first ``config.num_blocks_run`` blocks.

    Parameter names equal the official ``PretrainInternVideo2`` ones (``patch_embed.proj``,
    ``cls_token``, ``pos_embed``, ``img_pos_embed``, ``blocks.N.*``). No final norm exists in this model.
    """

    def __init__(self, config: InternVideo2Config):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed3d(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.num_patches, config.width))
        if config.separate_image_pos_embed:
            self.img_pos_embed = nn.Parameter(torch.zeros(1, 1 + config.tokens_per_frame, config.width))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_blocks_run))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """InternVideo2's initialisation (sin-cos positions, truncated-normal linears, depth-scaled outputs)."""
        if self.cls_token.is_meta:
            return
        cfg = self.config
        self.pos_embed.copy_(sincos_3d_with_cls(cfg.width, cfg.grid_size, cfg.temporal_tokens)[None])
        if cfg.separate_image_pos_embed:
            self.img_pos_embed.copy_(sincos_3d_with_cls(cfg.width, cfg.grid_size, 1)[None])
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    module.bias.zero_()
        for layer_id, block in enumerate(self.blocks, start=1):
            block.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
            block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embed.proj.weight.dtype

    @property
    def hidden_size(self) -> int:
        return self.config.width

    def _position_embedding(self, frames: int) -> torch.Tensor:
        if frames == self.config.num_frames:
            return self.pos_embed
        if self.config.separate_image_pos_embed:
            return self.img_pos_embed
        per_frame = self.pos_embed[:, 1:].view(1, self.config.temporal_tokens, self.config.tokens_per_frame, -1)
        return torch.cat([self.pos_embed[:, :1], per_frame.mean(dim=1)], dim=1)

    def _check_video(self, video: torch.Tensor, what: str, frame_ok) -> None:
        cfg = self.config
        size = cfg.image_size
        if video.dim() != 5 or video.shape[1] != cfg.in_channels or tuple(video.shape[3:]) != (size, size):
            raise ValueError(
                f"{what}: expected a (B, {cfg.in_channels}, T, {size}, {size}) video tensor, got {tuple(video.shape)}; "
                "resize frames to the encoder's image_size and put channels before time"
            )
        if not frame_ok(video.shape[2]):
            raise ValueError(f"{what}: {video.shape[2]} frames is not allowed for a {cfg.num_frames}-frame encoder")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) clip -> (B, 1 + T/tubelet * G*G, width): hidden states after the selected block.

        Row 0 is CLS (VideoGLaMM drops it); then tokens in (time, row, column) order. T must equal
        ``num_frames``; T = 1 (an image) is also accepted when ``tubelet_size`` is 1.
        """
        cfg = self.config
        self._check_video(video, "InternVideo2VisionEncoder.forward", lambda t: t == cfg.num_frames or (t == 1 and cfg.tubelet_size == 1))
        tokens = self.patch_embed(video.to(self.dtype))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self._position_embedding(video.shape[2])
        for block in self.blocks:
            x = block(x)
        return x

    def chunk_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) with T a multiple of ``num_frames`` -> (B, T/num_frames, num_patches, width).

        Consecutive ``num_frames``-frame chunks are encoded independently (as VideoGLaMM's
        ``encode_videos`` does) and CLS is dropped; this is VideoGLaMM's ``video_features``.
        """
        cfg = self.config
        self._check_video(video, "InternVideo2VisionEncoder.chunk_features", lambda t: t > 0 and t % cfg.num_frames == 0)
        batch, channels, frames, height, width = video.shape
        chunks = frames // cfg.num_frames
        clips = video.reshape(batch, channels, chunks, cfg.num_frames, height, width).transpose(1, 2)
        hidden = self(clips.reshape(batch * chunks, channels, cfg.num_frames, height, width))
        return hidden[:, 1:].reshape(batch, chunks, cfg.num_patches, cfg.width)

    def frame_token_grids(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, T/tubelet, G, G, width): each frame's patch-token grid (16x16x1408 for 1B)."""
        cfg = self.config
        features = self.chunk_features(video)
        batch, chunks = features.shape[:2]
        return features.reshape(batch, chunks * cfg.temporal_tokens, cfg.grid_size, cfg.grid_size, cfg.width)

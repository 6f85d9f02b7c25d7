"""Transformer pieces of the InternVideo2 vision encoder, named so the official checkpoint keys load as-is.

Per block (pre-norm): ``x += ls1(attn(norm1(x)))``; ``x += ls2(mlp(norm2(x)))``. Norms are RMSNorm
(eps 1e-6, computed in float32). qk-norm is an RMSNorm over the full width applied to q and k before
they are split into heads. LayerScale multiplies in float32. Attention runs through torch SDPA
(which uses flash kernels on GPU when it can); the flash-attn package is never needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import InternVideo2Config

__all__ = ["RMSNorm", "LayerScale", "SelfAttention", "Mlp", "Block", "PatchEmbed3d"]


class RMSNorm(nn.Module):
    """``weight * (x / sqrt(mean(x^2) + eps))``; the normalisation runs in float32, then casts back."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class LayerScale(nn.Module):
    """Per-channel gain ``gamma``, applied in float32 and cast back to the input dtype."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.gamma.float()).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and optional full-width qk RMSNorm."""

    def __init__(self, config: InternVideo2Config):
        super().__init__()
        width = config.width
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(width, 3 * width, bias=config.qkv_bias)
        self.proj = nn.Linear(width, width)
        self.q_norm = RMSNorm(width, config.norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(width, config.norm_eps) if config.qk_norm else None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        return x.view(batch, tokens, self.num_heads, width // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))
        return self.proj(out.transpose(1, 2).reshape(x.shape))


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))`` (exact GELU unless the config says tanh)."""

    def __init__(self, config: InternVideo2Config):
        super().__init__()
        self.fc1 = nn.Linear(config.width, config.mlp_hidden_dim)
        self.act = nn.GELU(approximate=config.gelu_approximate)
        self.fc2 = nn.Linear(config.mlp_hidden_dim, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """One pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, config: InternVideo2Config):
        super().__init__()
        width = config.width
        self.norm1 = RMSNorm(width, config.norm_eps)
        self.attn = SelfAttention(config)
        self.ls1 = LayerScale(width, config.layerscale_init) if config.layerscale else nn.Identity()
        self.norm2 = RMSNorm(width, config.norm_eps)
        self.mlp = Mlp(config)
        self.ls2 = LayerScale(width, config.layerscale_init) if config.layerscale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed3d(nn.Module):
    """Conv3d patchifier: (B, C, T, H, W) -> (B, T/tubelet * (H/p) * (W/p), width), time-major, rows then columns."""

    def __init__(self, config: InternVideo2Config):
        super().__init__()
        kernel = (config.tubelet_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(config.in_channels, config.width, kernel_size=kernel, stride=kernel)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(video).flatten(2).transpose(1, 2)

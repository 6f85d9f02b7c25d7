"""Fixed 3D sine-cosine table that InternVideo2 uses to initialise its (then learned) position embedding."""

from __future__ import annotations

import torch

__all__ = ["sincos_1d", "sincos_3d_with_cls"]


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[sin(p * w_i) | cos(p * w_i)]`` with ``w_i = 10000 ** (-i / (dim / 2))``; shape (len(positions), dim)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    freqs = 10000.0 ** (-torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64).reshape(-1, 1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_3d_with_cls(width: int, grid_size: int, time_size: int) -> torch.Tensor:
    """(1 + T*G*G, width) table: a zero CLS row, then tokens in (t, row, col) order.

    Each token gets ``[temporal (width/4) | column (3/8 width) | row (3/8 width)]``; the spatial half
    that comes first encodes the column (x) coordinate, as in the InternVideo2 initialisation.
    """
    if width % 4:
        raise ValueError(f"3D sin-cos embedding needs a width divisible by 4, got {width}")
    spatial = width // 4 * 3
    if spatial % 4:
        raise ValueError(f"3D sin-cos embedding needs 3/4 of the width ({spatial}) divisible by 4")
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    plane = torch.cat([sincos_1d(spatial // 2, cols.flatten()), sincos_1d(spatial // 2, rows.flatten())], dim=1)
    times = sincos_1d(width // 4, torch.arange(time_size))
    table = torch.cat(
        [times[:, None, :].expand(-1, grid_size**2, -1), plane[None].expand(time_size, -1, -1)], dim=2
    ).reshape(time_size * grid_size**2, width)
    return torch.cat([torch.zeros(1, width, dtype=table.dtype), table], dim=0)

"""EVTP-IVS (Zhu et al., 2025): greedy k-center coverage of visual tokens in feature + scaled position space."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..methods import Selection, TokenSelector, register_method
from .common import max_min_order, upcast

__all__ = ["EVTPSelector", "evtp_points", "evtp_frame"]


def evtp_points(tokens: torch.Tensor, grid: tuple[int, int], spatial_weight: float) -> torch.Tensor:
    """(N, D + 2) the points k-center covers: unit-normalised ``tokens`` (N, D) beside ``spatial_weight`` times
    each token's (row, column) on ``grid``, each coordinate scaled to [0, 1]."""
    normed = F.normalize(upcast(tokens), dim=-1)
    h, w = grid
    rows = torch.arange(h, dtype=normed.dtype, device=normed.device).repeat_interleave(w) / max(h - 1, 1)
    cols = torch.arange(w, dtype=normed.dtype, device=normed.device).repeat(h) / max(w - 1, 1)
    return torch.cat([normed, spatial_weight * torch.stack([rows, cols], dim=1)], dim=1)


def evtp_frame(tokens: torch.Tensor, grid: tuple[int, int], budget: int, spatial_weight: float) -> torch.Tensor:
    """(budget,) ascending indices: greedy k-center (Gonzalez) on ``evtp_points`` with Euclidean distances,
    starting from the point nearest the centroid (lowest index on ties)."""
    points = evtp_points(tokens, grid, spatial_weight)
    distances = torch.cdist(points, points)
    first = int(torch.argmin(torch.linalg.vector_norm(points - points.mean(dim=0), dim=1)))
    return max_min_order(distances, first, budget).sort().values


@register_method("evtp")
class EVTPSelector(TokenSelector):
    """EVTP-IVS, fixed budget: the ``budget`` token centres of a greedy k-center cover of features + positions.

    No code is public: this restates the paper's algorithm description (arXiv 2508.11886, "builds upon the
    k-center by integrating spatial information to ensure better coverage"; segmentation-specific,
    query-agnostic, selecting right after the vision encoder). The method section itself was not available
    here, so these choices are this project's and not the paper's numbers: each token is the point
    ``[x / |x|, spatial_weight * (row / (h - 1), col / (w - 1))]`` (select-layer CLIP patch state, grid
    position); distances are Euclidean; the first centre is the point nearest the centroid of all points;
    each next centre is the point farthest from its nearest centre (lowest index on ties), until ``budget``
    centres; they reach the LLM in raster order. ``spatial_weight`` (default 1.0: unit features and the unit
    square span comparable distances) sets how much position counts; 0 gives plain feature k-center.

    Adaptations: per image or video frame on its own (every per-frame method does; in VideoGLaMM the kept
    tokens reach the LLM through ``layout``); distances in at least float32.
    """

    def __init__(self, spatial_weight: float = 1.0):
        if isinstance(spatial_weight, bool) or not isinstance(spatial_weight, (int, float)) or not 0 <= spatial_weight < math.inf:
            raise ValueError(f"spatial_weight must be a finite number >= 0, got {spatial_weight!r}")
        self.spatial_weight = float(spatial_weight)

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        h, w = features.grid
        if h * w != features.num_tokens:
            raise ValueError(f"features.grid {features.grid} has {h * w} positions but the frames have {features.num_tokens} tokens")
        rows = [evtp_frame(features.patches[f], features.grid, budget, self.spatial_weight) for f in range(features.num_frames)]
        return Selection(torch.stack(rows))

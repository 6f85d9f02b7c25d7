"""Which CLIP patches cover the pixels of each video token: the geometry of VideoGLaMM's two visual streams.

The two encoders see a frame of H x W pixels differently (FACTS §3, §6):

* CLIP, through its image processor (``ClipView``): the shortest side is resized to ``shortest_edge`` (336) and the
  long side to ``int(336 * long / short)``; a centred ``crop`` x ``crop`` square (336; top and left offsets
  ``(side - 336) // 2``) is cut out and split into a 24x24 grid of 14-pixel patches.
* InternVideo2: the whole frame is resized to 224x224 (the aspect ratio is not kept), cut into 16x16 patches and its
  projected tokens average-pooled to 8x8, so video token (i, j) stands for rows ``[i H / 8, (i + 1) H / 8)`` and
  columns ``[j W / 8, (j + 1) W / 8)`` of the frame.

On a square frame the crop is the whole frame and video token (i, j) covers exactly CLIP patches 3i..3i+2 x
3j..3j+2 (``clip_level.block_members``), each with weight 1/9. On any other frame the crop cuts the long side: on
4:3 the 16 video tokens of the first and last columns lie wholly outside the crop, on 16:9 those of columns 0 and 7
too, and columns 1 and 6 are three quarters outside; on portrait frames the same happens to rows.

``stream_overlap`` computes, exactly (rational arithmetic in the original frame's pixels), ``weights[v, p]``: the
fraction of video token v's area that CLIP patch p covers, so ``coverage[v] = sum_p weights[v, p]`` is 1 for a
token inside the crop, less for one the crop cuts, 0 for one outside it.

Scoring a video token with CLIP's per-patch scores (``StreamOverlap.pool``): the overlap-weighted mean of the
patches' scores, i.e. the mean over the part of the token that CLIP saw. A token CLIP never saw (coverage 0) has
no score of its own; it gets the caller's ``uncovered`` value, and the methods here pass one that ranks it last
(litelvlm-time: similarity +inf and context -inf, so the LiteLVLM rule takes it only when every covered token is
taken; FastVID: salience -inf, so it is never salient but still joins the density-based anchors and merging on its
own features). Giving it the frame's mean score instead would rank it above every covered token worse than the
mean on a score that was never measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import torch

__all__ = ["ClipView", "StreamOverlap", "stream_overlap"]


@dataclass(frozen=True)
class ClipView:
    """CLIP's preprocessing of a frame: shortest side resized to ``shortest_edge``, then a centred ``crop`` square
    (VideoGLaMM's CLIP ViT-L/14-336 processor: 336 and 336)."""

    shortest_edge: int = 336
    crop: int = 336

    def __post_init__(self):
        for name in ("shortest_edge", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ClipView.{name} must be a positive int, got {value!r}")
        if self.crop > self.shortest_edge:
            raise ValueError(f"a {self.crop}-pixel crop of a frame resized to {self.shortest_edge} on its short side pads "
                             "the frame: not a geometry this module maps")

    @classmethod
    def of(cls, image_processor) -> "ClipView":
        """The view of a CLIP image processor (``size['shortest_edge']``, a square ``crop_size``, resize and crop on)."""
        if not getattr(image_processor, "do_resize", True) or not getattr(image_processor, "do_center_crop", True):
            raise ValueError("the CLIP image processor must resize and centre-crop (do_resize, do_center_crop) for the "
                             "stream geometry to hold")
        shortest = image_processor.size.get("shortest_edge")
        height, width = image_processor.crop_size.get("height"), image_processor.crop_size.get("width")
        if shortest is None or height is None or height != width:
            raise ValueError(f"the CLIP image processor must resize the shortest edge and crop a square, got size "
                             f"{image_processor.size} and crop_size {image_processor.crop_size}")
        return cls(int(shortest), int(height))

    def resized(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) after the shortest-side resize, as the processor rounds it (the long side truncated)."""
        height, width = frame_size
        if width <= height:
            return int(self.shortest_edge * height / width), self.shortest_edge
        return self.shortest_edge, int(self.shortest_edge * width / height)

    def crop_origin(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """(top, left) of the crop in the resized frame's pixels."""
        height, width = self.resized(frame_size)
        return (height - self.crop) // 2, (width - self.crop) // 2


@dataclass(frozen=True)
class StreamOverlap:
    """``weights`` (video tokens, CLIP patches), float64: the fraction of each video token's area each patch covers."""

    weights: torch.Tensor

    @property
    def coverage(self) -> torch.Tensor:
        """(video tokens,) the fraction of each video token inside CLIP's crop (1 inside, 0 outside)."""
        return self.weights.sum(dim=1)

    def patches(self, token: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(CLIP patch indices ascending, their weights) of the patches video token ``token`` overlaps."""
        row = self.weights[token]
        indices = row.nonzero().flatten()
        return indices, row[indices]

    def pool(self, scores: torch.Tensor, uncovered: float) -> torch.Tensor:
        """(..., video tokens) the overlap-weighted mean of ``scores`` (..., CLIP patches) over each video token's
        patches, in ``scores``' dtype and device; ``uncovered`` for a token no patch covers. Computed in float64 on
        the CPU (a few thousand numbers; not every accelerator has float64)."""
        coverage = self.coverage
        pooled = (scores.detach().to("cpu", torch.float64) @ self.weights.T) / coverage.clamp(min=1e-12)
        pooled = torch.where(coverage > 0, pooled, torch.full_like(pooled, float(uncovered)))
        return pooled.to(scores.device, scores.dtype)


def _check_size(frame_size) -> tuple[int, int]:
    if (not isinstance(frame_size, (tuple, list)) or len(frame_size) != 2
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in frame_size)):
        raise ValueError(f"frame_size must be (height, width) in pixels, two positive ints, got {frame_size!r}")
    return int(frame_size[0]), int(frame_size[1])


def _axis_overlap(length: int, video_cells: int, resized: int, origin: int, crop: int, clip_cells: int) -> list[list[Fraction]]:
    """[video cell][CLIP patch]: the fraction of each video cell's extent along one axis (of ``length`` pixels) that
    each CLIP patch covers, in exact fractions of the original frame's pixels."""
    scale = Fraction(length, resized)  # original pixels per resized pixel
    out = []
    for v in range(video_cells):
        start, end = Fraction(v * length, video_cells), Fraction((v + 1) * length, video_cells)
        row = []
        for c in range(clip_cells):
            patch_start = (origin + Fraction(c * crop, clip_cells)) * scale
            patch_end = (origin + Fraction((c + 1) * crop, clip_cells)) * scale
            row.append(max(Fraction(0), min(end, patch_end) - max(start, patch_start)) / (end - start))
        out.append(row)
    return out


@lru_cache(maxsize=64)
def _overlap(frame_size: tuple[int, int], clip_grid: tuple[int, int], video_grid: tuple[int, int], view: ClipView) -> torch.Tensor:
    (height, width), (resized_h, resized_w) = frame_size, view.resized(frame_size)
    top, left = view.crop_origin(frame_size)
    rows = _axis_overlap(height, video_grid[0], resized_h, top, view.crop, clip_grid[0])
    cols = _axis_overlap(width, video_grid[1], resized_w, left, view.crop, clip_grid[1])
    y = torch.tensor([[float(f) for f in r] for r in rows], dtype=torch.float64)  # (Vh, Ch)
    x = torch.tensor([[float(f) for f in r] for r in cols], dtype=torch.float64)  # (Vw, Cw)
    weights = y[:, None, :, None] * x[None, :, None, :]  # (Vh, Vw, Ch, Cw)
    return weights.reshape(video_grid[0] * video_grid[1], clip_grid[0] * clip_grid[1])


def stream_overlap(frame_size: tuple[int, int], clip_grid: tuple[int, int] = (24, 24), video_grid: tuple[int, int] = (8, 8),
                   view: ClipView = ClipView()) -> StreamOverlap:
    """The ``StreamOverlap`` of a (height, width) frame: CLIP's ``clip_grid`` patches over its ``view`` crop against
    the ``video_grid`` tokens over the whole frame (see the module docstring)."""
    frame_size = _check_size(frame_size)
    grids = [tuple(int(n) for n in g) for g in (clip_grid, video_grid)]
    if any(len(g) != 2 or min(g) < 1 for g in grids):
        raise ValueError(f"clip_grid and video_grid must be (rows, columns), got {clip_grid!r} and {video_grid!r}")
    return StreamOverlap(_overlap(frame_size, grids[0], grids[1], view).clone())  # the cache's copy stays unchanged

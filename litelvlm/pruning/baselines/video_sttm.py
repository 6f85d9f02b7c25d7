"""STTM (Hyun et al., ICCV 2025): Multi-Granular Spatio-Temporal Token Merging for Training-Free Acceleration of Video
LLMs, as a clip-level method.

Source: github.com/HYUNJS/STTM at 00736c7 (LLaVA-Video / LLaVA-OneVision, Qwen2). The merge is
``quadtree_build_video`` (``token_merging_utils/quadtree_builder.py``) with its pooling and child indexing
(``quadtree_spatial_merger.py``) and the temporal merge ``cross_frame_node_merging_fast``
(``quadtree_temporal_merger.py``). It is called from the patched ``Qwen2Model_forward``
(``token_merging_monkey_patch/quadtree_attn_monkey_patch.py``). Settings: ``scripts/eval/run_vidqa.sh`` and the
defaults of ``llava/train/train.py`` (``sa_tree_weighted_avg = False``, ``sttm_slow_ver = False``,
``sim_per_head = False``).

The released rule, on the visual states of T frames of S x S tokens at the input of decoder layer
``sa_start_layer_idx`` (quadtree_attn_monkey_patch.py:88-101):

1. Pyramid (quadtree_builder.py:101-117). The sides go ``S, ceil(S/2), ...`` until a side is 2; the root is the
   ``root_level``-th coarsest (``size_per_level[root_level]``: 3 for S = 12, 4 for S = 8, with root level 1). Each
   coarser level is the mean of 2x2 blocks of the finer one; an odd side pools its first row and column alone
   (blocks 1x2, 2x1 and the 1x1 corner; quadtree_spatial_merger.py:9-56).
2. Quadtree (quadtree_builder.py:18-83, 185-195). Starting from every root node of every frame, a node stops (is
   emitted as one token with its level's mean feature) when the cosine similarity (float32) between its feature
   and each of its four child slots is >= the spatial threshold (``.all()``, line 68); otherwise its children go
   to the next level. Nodes at the leaf level are emitted. A slot with no child (odd sides) holds the child level's
   node (0, 0) of the same frame (``child_yx_coords`` initialised to zeros, quadtree_spatial_merger.py:190) and
   still counts in the ``.all()``. The emitted nodes are sorted by the index of their top-left leaf cell
   ``t H W + y W + x`` (lines 197-203).
3. Temporal merging (quadtree_temporal_merger.py:8-73, 223-285), when the temporal threshold is > 0. A node of
   frame t and a node of frame t+1 pair when one's box contains the other's; a pair is an edge when the cosine
   similarity of the two (``x / (||x|| + 1e-8)``, float32) is >= the temporal threshold. Representatives come from
   ``get_merge_dst_idx_safe``: start from ``rep = arange``; repeat {``min_rep = min(rep[dst], rep[src])`` per edge,
   ``scatter_reduce(amin)`` into ``rep`` at the destinations then the sources, ``rep = rep[rep]``} until ``rep`` is
   idempotent. It is not an exact union-find: a connected group can keep two representatives. Every node joins its
   representative, an earlier node (the earliest occurrence), and each representative becomes the mean of its
   members (``agg_feature_and_metadata``, ``weighted_avg = False``). The survivors stay in node order.
4. The merged tokens replace the visual block; layers ``sa_start_layer_idx`` .. run on the shorter sequence with
   *contiguous* position ids (``position_ids[:, :merged_num_tokens]``, quadtree_attn_monkey_patch.py:114; the
   original ids are commented out at :110-113). Layers before it keep the whole prompt in their cache; decoded
   tokens take position ids that continue the unmerged numbering (the cache length of layer 0).

Settings (run_vidqa.sh): every 7B setting uses ``--sa_start_layer_idx 2 --sa_tree_root_level 1`` (:54); the
thresholds are chosen per model, benchmark and retention (:56-87; the 72B model merges at layer 0, :89-90).
``released=True`` (spec ``sttm:released=True``) runs layer 2, root level 1 and LLaVA-Video-7B's pair for NExT-QA,
the short-video benchmark, at 50% retention: spatial 0.85, temporal 0.65 (:62). Any other released pair can be given
as ``spatial_threshold`` / ``temporal_threshold``.

Adaptation to VideoGLaMM (``ClipTokens``: per frame 12x12 CLIP-stream and 8x8 InternVideo2 LLM tokens, the LLM seeing
every frame's CLIP-stream tokens, then every frame's video tokens; no newline tokens):

- Each stream is merged on its own by the same rule and thresholds (quadtree on its own grid: roots 3x3 for the CLIP
  stream, 4x4 for the video stream at root level 1), and each keeps the release's order (frame by frame, by top-left
  cell). The merged sequence is the CLIP stream's survivors, then the video stream's.
- Placement. ``layer`` None (the default) merges the LLM's input tokens before the LLM, as the release's layer-0
  setting (the 72B model) does; ``layer=0`` means the same. ``layer`` K >= 1 merges the layer-K input states inside
  the LLM (``llm_plan`` -> ``STTMPlan``; ``video_llm_merge``): layers < K see every token and ``select_clip`` sends
  them all; positions are renumbered and the cache split as released. A teacher-forced answer keeps the position
  ids its decoded tokens would have (``prompt_lengths``), so the [SEG] states of both modes agree. On an LLM too
  shallow for K, K becomes ``layers - 1`` with a warning.
- Records (before the LLM). A token stands for the top-left cell of its node (``image_cells`` / ``video_cells``);
  ``clip_indices`` are the CLIP patches of every cell the frame's tokens cover; ``reused_cells`` the CLIP-stream cells
  of a frame's nodes merged into an earlier frame's token.
- Budget (the default, ``spatial_threshold`` None): the target is ``clip_budget``, else ``default_clip_budget(tokens,
  budget)`` (485 for budget 81 and 16 frames); a target covering every token sends everything. Otherwise the
  temporal threshold stays at ``temporal_threshold`` (the released 0.65) and the spatial threshold is searched
  among the values where a stop decision changes (each node's smallest child similarity, both streams, plus -inf:
  roots only, and +inf: leaves only): the largest that bisection finds whose exact token count fits the target. The
  quadtree's count only grows with the threshold; temporal merging over a different node set can break that in rare
  cases, so the threshold found fits but may not be the largest that does. A target below the roots-only count
  cannot be met: STTM sends that minimum and warns (``strict_budget=True`` raises). A fixed ``spatial_threshold``
  (or ``released``) ignores the budget and refuses a clip budget; merging inside the LLM needs one (the layer-K
  states are not known when the clip is selected).
- Query-agnostic: no text is read (``uses_text`` False), and the layer-K visual states depend only on the tokens
  before them, which precede the question.
- Determinism and precision: similarities, means and the pyramid are computed in at least float32 (the release uses
  the model dtype) and cast back to the stream's dtype. Block means are computed as one mean per block (the
  release's ``avg_pool2d`` of the finer level: equal up to rounding). Grids must be square (as the release's
  ``sqrt``) with side >= 2, and ``root_level`` within the pyramid (the release loops forever on a side of 1 and
  fails on a root level beyond it).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..clip_level import ClipSelector, ClipTokens, FrameSelection, clip_target
from ..methods import register_method
from .common import released_settings, upcast

__all__ = [
    "STTMSelector",
    "STTMPlan",
    "STTMStats",
    "RELEASED_SETTINGS",
    "pyramid_sides",
    "axis_groups",
    "Pyramid",
    "QuadtreeNodes",
    "quadtree",
    "merge_destinations",
    "temporal_representatives",
    "MergedStream",
    "sttm_stream",
    "spatial_threshold_candidates",
    "sttm_threshold_for_budget",
]

# run_vidqa.sh:54 (layer 2, root level 1) and :62 (LLaVA-Video-7B, NExT-QA, 50%: 0.85 / 0.65)
RELEASED_SETTINGS = {"layer": 2, "root_level": 1, "spatial_threshold": 0.85, "temporal_threshold": 0.65}
NORM_EPS = 1e-8  # filter_cross_frame_node_pairs: x / (||x|| + 1e-8)


# ---------------------------------------------------------------------------- the quadtree
def pyramid_sides(side: int, root_level: int = 1) -> list[int]:
    """Grid sides from the root to the leaves: the release's ``size_per_level[root_level:]`` for a ``side`` x ``side``
    grid (sides ``ceil(s / 2)`` down to 2, coarsest first)."""
    if side < 2:
        raise ValueError(f"STTM's quadtree needs a grid side >= 2, got {side}")
    sizes = [side]
    while sizes[0] != 2:
        sizes.insert(0, math.ceil(sizes[0] / 2))
    if not 0 <= root_level < len(sizes):
        raise ValueError(f"root_level must be in [0, {len(sizes) - 1}] for a {side}x{side} grid (levels {sizes}), got {root_level}")
    return sizes[root_level:]


def axis_groups(side: int) -> list[list[int]]:
    """Along one axis, the cells of a ``side`` level under each cell of the next coarser level: pairs from 0 for an
    even side; for an odd side the first cell alone, then pairs (the release's odd-size pooling)."""
    if side % 2 == 0:
        return [[2 * i, 2 * i + 1] for i in range(side // 2)]
    return [[0]] + [[2 * i - 1, 2 * i] for i in range(1, (side + 1) // 2)]


def _mean_matrix(side: int, dtype, device) -> torch.Tensor:
    """(ceil(side/2), side): row i averages the cells of group i."""
    groups = axis_groups(side)
    out = torch.zeros(len(groups), side, dtype=dtype, device=device)
    for i, group in enumerate(groups):
        out[i, group] = 1.0 / len(group)
    return out


def _child_slots(side: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """((p, p, 4, 2) child (y, x) at the ``side`` level of each node of the coarser level, (p, p, 4) valid): slots
    (top-left, top-right, bottom-left, bottom-right); a missing child is (0, 0) and invalid, as released."""
    groups = axis_groups(side)
    p = len(groups)
    coords = torch.zeros(p, p, 4, 2, dtype=torch.long)
    valid = torch.zeros(p, p, 4, dtype=torch.bool)
    for y, rows in enumerate(groups):
        for x, cols in enumerate(groups):
            for slot, (r, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                if r < len(rows) and c < len(cols):
                    coords[y, x, slot] = torch.tensor([rows[r], cols[c]])
                    valid[y, x, slot] = True
    return coords.to(device), valid.to(device)


def _leaf_spans(sides: list[int]) -> list[torch.Tensor]:
    """Per level, (side, 2): the [first, last + 1) leaf rows (or columns) under each cell."""
    spans = [torch.stack([torch.arange(sides[-1]), torch.arange(sides[-1]) + 1], dim=1)]
    for side in reversed(sides[1:]):
        finer = spans[0]
        spans.insert(0, torch.tensor([[int(finer[g[0], 0]), int(finer[g[-1], 1])] for g in axis_groups(side)]))
    return spans


@dataclass
class QuadtreeNodes:
    """The emitted nodes of one stream, in the release's order: ``features`` (M, C) float32 (their level's block
    means), ``frames`` (M,), ``boxes`` (M, 4) leaf-cell [y0, x0, y1, x1) of each node."""

    features: torch.Tensor
    frames: torch.Tensor
    boxes: torch.Tensor


def _block_means(finer: torch.Tensor, side: int) -> torch.Tensor:
    """(T, p, p, C) block means of a (T, side, side, C) level (p = ceil(side / 2))."""
    mean = _mean_matrix(side, finer.dtype, finer.device)
    frames, _, _, width = finer.shape
    p = mean.shape[0]
    rows = (mean @ finer.reshape(frames, side, side * width)).reshape(frames, p, side, width)
    cols = mean @ rows.transpose(1, 2).reshape(frames, side, p * width)
    return cols.reshape(frames, p, p, width).transpose(1, 2)


@dataclass
class Pyramid:
    """One stream's levels (coarsest first): ``sides``, ``levels`` (T, s, s, C) float32 block means, ``spans`` (s, 2)
    the leaf rows (or columns) under each cell."""

    sides: list[int]
    levels: list[torch.Tensor]
    spans: list[torch.Tensor]

    @classmethod
    def of(cls, tokens: torch.Tensor, side: int, root_level: int = 1) -> "Pyramid":
        """The pyramid of ``tokens`` (T, side*side, C) from the root level down."""
        sides = pyramid_sides(side, root_level)
        frames, _, width = tokens.shape
        levels = [upcast(tokens).reshape(frames, side, side, width)]
        for s in reversed(sides[1:]):
            levels.insert(0, _block_means(levels[0], s))
        return cls(sides, levels, [s.to(tokens.device) for s in _leaf_spans(sides)])


def _node_similarity(pyramid: Pyramid, level: int, t: torch.Tensor, y: torch.Tensor,
                     x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For nodes (t, y, x) of ``level``: cosine similarity (M, 4) to each child slot, child coords (M, 4, 2), valid."""
    levels = pyramid.levels
    coords, valid = _child_slots(pyramid.sides[level + 1], t.device)
    coords, valid = coords[y, x], valid[y, x]
    parent = levels[level][t, y, x]
    child = levels[level + 1][t[:, None], coords[..., 0], coords[..., 1]]
    return F.cosine_similarity(parent[:, None], child, dim=-1), coords, valid


def _all_nodes(level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, y, x) of every node of a (T, s, s, C) level, frame by frame in raster order."""
    return tuple(g.flatten() for g in torch.meshgrid(*(torch.arange(n, device=level.device) for n in level.shape[:3]), indexing="ij"))


def quadtree(pyramid: Pyramid, threshold: float) -> QuadtreeNodes:
    """STTM's spatial merging of one stream (its ``Pyramid``): the emitted quadtree nodes (module docstring, step 2),
    sorted by their top-left leaf cell."""
    sides, levels, spans = pyramid.sides, pyramid.levels, pyramid.spans
    t, y, x = _all_nodes(levels[0])
    emitted = []
    for level in range(len(sides)):
        if level == len(sides) - 1:
            emitted.append((level, t, y, x))
            break
        similarity, coords, valid = _node_similarity(pyramid, level, t, y, x)
        stop = (similarity >= threshold).all(dim=-1)
        emitted.append((level, t[stop], y[stop], x[stop]))
        split = ~stop[:, None] & valid
        t = t[:, None].expand(-1, 4)[split]
        y, x = coords[..., 0][split], coords[..., 1][split]
    features = torch.cat([levels[lv][tt, yy, xx] for lv, tt, yy, xx in emitted])
    node_frames = torch.cat([tt for _, tt, _, _ in emitted])
    boxes = torch.cat([torch.stack([spans[lv][yy, 0], spans[lv][xx, 0], spans[lv][yy, 1], spans[lv][xx, 1]], dim=1)
                       for lv, _, yy, xx in emitted])
    leaf = sides[-1]
    order = torch.argsort(node_frames * leaf * leaf + boxes[:, 0] * leaf + boxes[:, 1])
    return QuadtreeNodes(features[order], node_frames[order], boxes[order])


# ---------------------------------------------------------------------------- temporal merging
def _temporal_edges(nodes: QuadtreeNodes, threshold: float) -> torch.Tensor:
    """(L, 2) (earlier, later) node pairs of consecutive frames whose boxes nest and whose cosine similarity (norms
    + 1e-8) is >= ``threshold``, in (earlier, later) order."""
    frames, boxes = nodes.frames, nodes.boxes
    normed = nodes.features / (nodes.features.norm(dim=-1, keepdim=True) + NORM_EPS)
    starts = torch.searchsorted(frames, torch.arange(int(frames.max()) + 2, device=frames.device)).tolist()
    out = [frames.new_zeros(0, 2)]
    for t in range(len(starts) - 2):
        cur = torch.arange(starts[t], starts[t + 1], device=frames.device)
        nxt = torch.arange(starts[t + 1], starts[t + 2], device=frames.device)
        a, b = boxes[cur][:, None], boxes[nxt][None]
        nest = ((a[..., :2] <= b[..., :2]).all(-1) & (a[..., 2:] >= b[..., 2:]).all(-1)) | \
               ((a[..., :2] >= b[..., :2]).all(-1) & (a[..., 2:] <= b[..., 2:]).all(-1))
        pairs = nest.nonzero()
        pairs = torch.stack([cur[pairs[:, 0]], nxt[pairs[:, 1]]], dim=1)
        similarity = (normed[pairs[:, 0]] * normed[pairs[:, 1]]).sum(-1)
        out.append(pairs[similarity >= threshold])
    return torch.cat(out)


def merge_destinations(edges: torch.Tensor, count: int) -> torch.Tensor:
    """(count,) representatives of ``count`` nodes joined by ``edges`` (L, 2) (destination, source): the release's
    ``get_merge_dst_idx_safe`` iteration (module docstring, step 3), not an exact union-find."""
    rep = torch.arange(count, device=edges.device)
    dst, src = edges[:, 0], edges[:, 1]
    while True:
        smallest = torch.minimum(rep[dst], rep[src])
        rep = rep.scatter_reduce(0, dst, smallest, reduce="amin").scatter_reduce(0, src, smallest, reduce="amin")
        rep = rep[rep]
        if torch.equal(rep, rep[rep]):
            return rep


def temporal_representatives(nodes: QuadtreeNodes, threshold: float) -> torch.Tensor:
    """(M,) each node's representative (an index <= its own) after STTM's temporal merging; every node its own when
    ``threshold`` <= 0 (the release skips temporal merging)."""
    count = nodes.frames.numel()
    if threshold <= 0:
        return torch.arange(count, device=nodes.frames.device)
    return merge_destinations(_temporal_edges(nodes, threshold), count)


@dataclass
class MergedStream:
    """One stream after STTM: the quadtree ``nodes``, each node's representative ``rep``, and the surviving tokens
    (``features`` (K, C) float32, their node indices ``survivors``, ascending)."""

    nodes: QuadtreeNodes
    rep: torch.Tensor
    survivors: torch.Tensor
    features: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return self.survivors.numel()


def sttm_stream(tokens: torch.Tensor | Pyramid, side: int, spatial_threshold: float, temporal_threshold: float,
                root_level: int = 1) -> MergedStream:
    """STTM on one stream's tokens (T, side*side, C) (or their ``Pyramid``): quadtree, temporal representatives,
    member means."""
    pyramid = tokens if isinstance(tokens, Pyramid) else Pyramid.of(tokens, side, root_level)
    nodes = quadtree(pyramid, spatial_threshold)
    rep = temporal_representatives(nodes, temporal_threshold)
    sums = torch.zeros_like(nodes.features).index_add_(0, rep, nodes.features)
    ones = torch.ones_like(rep, dtype=nodes.features.dtype)
    counts = torch.zeros_like(ones).index_add_(0, rep, ones)
    survivors = (counts > 0).nonzero().flatten()
    return MergedStream(nodes, rep, survivors, sums[survivors] / counts[survivors, None])


# ---------------------------------------------------------------------------- budget
def _node_minimum_similarities(pyramid: Pyramid) -> torch.Tensor:
    """Every non-leaf node's smallest similarity to its child slots: a node stops exactly when the threshold is <= it."""
    out = [pyramid.levels[0].new_zeros(0)]
    for level in range(len(pyramid.sides) - 1):
        out.append(_node_similarity(pyramid, level, *_all_nodes(pyramid.levels[level]))[0].min(dim=-1).values)
    return torch.cat(out)


def spatial_threshold_candidates(pyramids: list[Pyramid]) -> list[float]:
    """The spatial thresholds at which some stop decision of the streams (their ``Pyramid``) changes, ascending:
    -inf (every root stops), each node's smallest child similarity, +inf (only leaves)."""
    values = torch.cat([_node_minimum_similarities(p) for p in pyramids])
    return [-math.inf, *torch.unique(values).tolist(), math.inf]


def _count(pyramids: list[Pyramid], spatial: float, temporal: float) -> int:
    """Tokens STTM sends for the streams: the representatives (nodes that are their own)."""
    total = 0
    for pyramid in pyramids:
        rep = temporal_representatives(quadtree(pyramid, spatial), temporal)
        total += int((rep == torch.arange(rep.numel(), device=rep.device)).sum())
    return total


def sttm_threshold_for_budget(pyramids: list[Pyramid], target: int, temporal_threshold: float) -> tuple[float, int, bool]:
    """(spatial threshold, token count, fits): the largest candidate threshold bisection finds whose summed STTM count
    of the streams (their ``Pyramid``) is <= ``target``; -inf and False when even the roots-only count exceeds it."""
    candidates = spatial_threshold_candidates(pyramids)
    lowest = _count(pyramids, candidates[0], temporal_threshold)
    if lowest > target:
        return candidates[0], lowest, False
    highest = _count(pyramids, candidates[-1], temporal_threshold)
    if highest <= target:
        return candidates[-1], highest, True
    lo, hi, best = 0, len(candidates) - 1, lowest  # candidates[lo] fits, candidates[hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        count = _count(pyramids, candidates[mid], temporal_threshold)
        if count <= target:
            lo, best = mid, count
        else:
            hi = mid
    return candidates[lo], best, True


# ---------------------------------------------------------------------------- records
def _square_side(grid: tuple[int, int]) -> int:
    if grid[0] != grid[1]:
        raise ValueError(f"STTM merges square token grids (the release's sqrt), got {grid[0]}x{grid[1]}")
    return grid[0]


def _cells_of(boxes: torch.Tensor, side: int) -> torch.Tensor:
    """The leaf cells (raster index) covered by ``boxes`` (n, 4), ascending."""
    cells = [torch.arange(int(b[0]), int(b[2]))[:, None] * side + torch.arange(int(b[1]), int(b[3]))[None] for b in boxes.cpu()]
    return torch.cat([c.flatten() for c in cells]).unique() if cells else torch.zeros(0, dtype=torch.long)


def _frame_parts(stream: MergedStream, side: int, frame: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens (k, C), top-left cells (k,), covered cells, reused cells) of one frame of a merged stream."""
    nodes, rep = stream.nodes, stream.rep
    survivor_frames = nodes.frames[stream.survivors]
    mine = survivor_frames == frame
    survivors = stream.survivors[mine]
    cells = nodes.boxes[survivors, 0] * side + nodes.boxes[survivors, 1]
    in_frame = nodes.frames == frame
    sent_here = in_frame & (nodes.frames[rep] == frame)
    reused = in_frame & (nodes.frames[rep] < frame)
    return stream.features[mine], cells.cpu(), _cells_of(nodes.boxes[sent_here], side), _cells_of(nodes.boxes[reused], side)


def _selections(tokens: ClipTokens, image: MergedStream, video: MergedStream) -> list[FrameSelection]:
    side, video_side = tokens.image_grid[0], tokens.video_grid[0]
    members = tokens.cell_members().cpu()
    out = []
    for f in range(tokens.num_frames):
        image_tokens, image_cells, covered, reused = _frame_parts(image, side, f)
        video_tokens, video_cells, _, _ = _frame_parts(video, video_side, f)
        clip = members[covered].reshape(-1).sort().values
        out.append(FrameSelection(image_tokens.to(tokens.image_tokens.dtype), video_tokens.to(tokens.video_tokens.dtype),
                                  image_cells, video_cells, clip, reused))
    return out


# ---------------------------------------------------------------------------- in the LLM
@dataclass
class STTMPlan:
    """STTM inside the LLM for one visual sequence: every frame's ``image_side``^2 CLIP-stream tokens, then every
    frame's ``video_side``^2 video tokens, merged at layer ``layer``'s input with positions renumbered
    (``video_llm_merge``). ``last_counts``: per row of the last prefill, the visual tokens layers K.. saw."""

    frames: int
    image_side: int
    video_side: int
    layer: int
    spatial_threshold: float
    temporal_threshold: float
    root_level: int = 1
    last_counts: list[int] | None = None

    @property
    def num_visual(self) -> int:
        return self.frames * (self.image_side**2 + self.video_side**2)

    def merge_row(self, b: int, visual: torch.Tensor, scores=None):
        """The merged visual states (image survivors, then video survivors) of one row, each at its top-left cell."""
        from .video_llm_merge import MergedRow

        if visual.shape[0] != self.num_visual:
            raise ValueError(f"row {b} holds {visual.shape[0]} visual tokens; this STTM plan was made for {self.num_visual}")
        split = self.frames * self.image_side**2
        parts, sources, offset = [], [], 0
        for stream, side in ((visual[:split], self.image_side), (visual[split:], self.video_side)):
            merged = sttm_stream(stream.reshape(self.frames, side * side, -1), side, self.spatial_threshold,
                                 self.temporal_threshold, self.root_level)
            boxes, frames = merged.nodes.boxes[merged.survivors], merged.nodes.frames[merged.survivors]
            parts.append(merged.features)
            sources.append(offset + frames * side * side + boxes[:, 0] * side + boxes[:, 1])
            offset += self.frames * side * side
        return MergedRow(torch.cat(parts), torch.cat(sources))

    def prefill(self, llm, batch, prompt_lengths=None, use_cache: bool = False):
        """The merged prefill of ``batch`` (``video_llm_merge.merge_prefill``, positions renumbered)."""
        from .video_llm_merge import merge_prefill

        out = merge_prefill(llm, batch, self.layer, self.merge_row, renumber=True, prompt_lengths=prompt_lengths,
                            use_cache=use_cache, method="sttm")
        self.last_counts = out.visual_after
        return out

    def generation_forward(self, llm, prompt_token_ids: torch.Tensor, use_cache: bool):
        from .video_llm_merge import merge_generation_forward

        return merge_generation_forward(self.prefill, llm, prompt_token_ids, use_cache, self.layer, "sttm")


# ---------------------------------------------------------------------------- the method
@dataclass
class STTMStats:
    """The last clip: the thresholds used, the target they were chosen for (None: fixed), and the tokens each stream
    sent before the LLM (in-LLM placement: every token; ``STTMPlan.last_counts`` has what layers K.. saw)."""

    spatial_threshold: float | None
    temporal_threshold: float
    target: int | None
    image_tokens: int
    video_tokens: int


@register_method("sttm")
class STTMSelector(ClipSelector):
    """STTM on both VideoGLaMM streams: quadtree spatial merging, then directed temporal merging into the earliest
    occurrence, query-agnostic; before the LLM by default, or at layer K inside it. Module docstring: the release and
    every adaptation.

    ``spatial_threshold`` (None: searched for the budget; 0.85 released), ``temporal_threshold`` (0.65; <= 0: off),
    ``root_level`` (1), ``layer`` (None or 0: before the LLM; K >= 1 inside it; 2 released), ``strict_budget`` (raise
    instead of warning when the budget cannot be met) and ``released``."""

    uses_text: ClassVar[bool] = False

    @property
    def acts_in_llm(self) -> bool:
        """Only with ``layer`` set: by default STTM merges before the LLM and makes no in-LLM plan, so every expression
        of a clip can share the visual prefix's prefill (``shares_prefix``)."""
        return self.layer is not None

    def __init__(self, spatial_threshold: float | None = None, temporal_threshold: float = 0.65, root_level: int = 1,
                 layer: int | None = None, strict_budget: bool = False, released: bool = False):
        given = {"layer": layer, "root_level": root_level, "spatial_threshold": spatial_threshold,
                 "temporal_threshold": temporal_threshold}
        settings = released_settings("sttm", released, given, RELEASED_SETTINGS)
        layer, spatial_threshold = settings["layer"], settings["spatial_threshold"]
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
            raise ValueError(f"layer must be None or an int >= 0 (0: merge the LLM's input tokens), got {layer!r}")
        if isinstance(root_level, bool) or not isinstance(root_level, int) or root_level < 0:
            raise ValueError(f"root_level must be an int >= 0, got {root_level!r}")
        if layer and spatial_threshold is None:
            raise ValueError(f"sttm at layer {layer} merges states the selection cannot see: give spatial_threshold (the "
                             "release: 0.85) or released=True; the budget-driven search runs before the LLM only")
        for name, value in (("spatial_threshold", spatial_threshold), ("temporal_threshold", temporal_threshold)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        self.spatial_threshold, self.temporal_threshold = spatial_threshold, float(temporal_threshold)
        self.root_level, self.layer = root_level, layer or None  # 0 and None both merge before the LLM
        self.strict_budget, self.released = bool(strict_budget), released
        self._pending: dict | None = None
        self.last_stats: STTMStats | None = None

    def clip_budget_conflict(self) -> str | None:
        if self.spatial_threshold is None:
            return None
        fixed = "released=True runs the release's" if self.released else "a given"
        return (f"{fixed} spatial threshold {self.spatial_threshold} sets the count: give either a threshold (or released) "
                "or a clip budget")

    def _thresholds(self, tokens: ClipTokens, pyramids: list[Pyramid], budget, clip_budget) -> tuple[float | None, int | None]:
        """(spatial threshold or None to send everything, the target it was chosen for)."""
        if self.spatial_threshold is not None:
            return self.spatial_threshold, None
        target = clip_target(tokens, budget, clip_budget)
        if target >= tokens.num_frames * (tokens.image_tokens.shape[1] + tokens.video_tokens.shape[1]):
            return None, target
        threshold, count, fits = sttm_threshold_for_budget(pyramids, target, self.temporal_threshold)
        if not fits:
            message = (f"STTM cannot send {target} visual tokens for {tokens.num_frames} frames: with every quadtree root "
                       f"kept whole and temporal threshold {self.temporal_threshold} it sends {count}")
            if self.strict_budget:
                raise ValueError(message)
            warnings.warn(message, stacklevel=3)
        return threshold, target

    def select_clip(self, tokens: ClipTokens, budget: int | None, clip_budget: int | None = None) -> list[FrameSelection]:
        self.refuse_clip_budget(clip_budget)
        side, video_side = _square_side(tokens.image_grid), _square_side(tokens.video_grid)
        self._pending = {"frames": tokens.num_frames, "image_side": side, "video_side": video_side}
        if self.layer is not None:  # merged inside the LLM: every token enters it
            self.last_stats = STTMStats(self.spatial_threshold, self.temporal_threshold, None,
                                        tokens.num_frames * side * side, tokens.num_frames * video_side**2)
            return FrameSelection.everything(tokens)
        pyramids = [Pyramid.of(tokens.image_tokens, side, self.root_level),
                    Pyramid.of(tokens.video_tokens, video_side, self.root_level)]
        threshold, target = self._thresholds(tokens, pyramids, budget, clip_budget)
        if threshold is None:
            frames = FrameSelection.everything(tokens)
        else:
            image, video = (sttm_stream(p, p.sides[-1], threshold, self.temporal_threshold) for p in pyramids)
            frames = _selections(tokens, image, video)
        self.last_stats = STTMStats(threshold, self.temporal_threshold, target, sum(f.image.shape[0] for f in frames),
                                    sum(f.video.shape[0] for f in frames))
        return frames

    def llm_plan(self, image_counts: list[int], video_count: int) -> STTMPlan | None:
        if self.layer is None:
            return None
        pending = self._pending
        expected = None if pending is None else [pending["image_side"] ** 2] * pending["frames"]
        if pending is None or list(image_counts) != expected or video_count != pending["frames"] * pending["video_side"] ** 2:
            raise ValueError("sttm's llm_plan must follow its select_clip for the same visual sequence "
                             f"(got {list(image_counts)} + {video_count} visual tokens)")
        return STTMPlan(pending["frames"], pending["image_side"], pending["video_side"], self.layer,
                        self.spatial_threshold, self.temporal_threshold, self.root_level)

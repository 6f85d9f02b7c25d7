"""Clip-level token selection: methods that see all F sampled frames of a video clip at once.

A per-frame method (``TokenSelector.select``) prunes each frame's CLIP patches on its own. A clip-level method
(``ClipSelector``, ``stage = "clip"``) receives ``ClipTokens``: the CLIP forward of every sampled frame (select-layer
states, last-layer q/k/v, so LiteLVLM's similarity and context scores), the text embeddings, and the LLM tokens
of both visual streams as the LLM would see them unpruned (VideoGLaMM: per frame 12x12 pooled CLIP tokens and
8x8 InternVideo2 tokens), and the frames' original size, which says which CLIP patches cover each video token's
pixels (``ClipTokens.video_scores``, ``stream_geometry``: CLIP sees a centre crop, InternVideo2 the whole frame). It
returns one ``FrameSelection`` per frame: the LLM tokens of each stream to send
(any number per frame, merged tokens allowed) and which grid cells they stand for. The LLM sequence is every
frame's image tokens, then every frame's video tokens (VideoGLaMM's order).

Budgets: ``budget`` is the per-frame CLIP budget (patch tokens per frame, as for per-frame methods);
``clip_budget`` (optional) is the total number of LLM visual tokens for the clip, both streams together.

Writing a new temporal method::

    from litelvlm.pruning import ClipSelector, FrameSelection, register_method

    @register_method("every-other-frame")
    class EveryOtherFrame(ClipSelector):
        def select_clip(self, tokens, budget, clip_budget=None):
            video = torch.arange(tokens.video_tokens.shape[1])          # all 64 InternVideo2 tokens
            return [FrameSelection.gather(tokens, f, torch.arange(tokens.image_tokens.shape[1]) if f % 2 == 0
                                          else torch.arange(0), video) for f in range(tokens.num_frames)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F

from .features import ClipFrameFeatures, context_scores, text_similarity
from .methods import TokenSelector, available_methods, get_method, method_from_spec, register_method
from .select import cell_tokens, litelvlm_select
from .stream_geometry import ClipView, StreamOverlap, stream_overlap

__all__ = ["ClipTokens", "FrameSelection", "ClipSelector", "TimeAwareLiteLVLM", "block_members", "allocate_budget",
           "default_clip_budget", "clip_target", "check_clip_budget", "clip_level_methods"]


@dataclass
class ClipTokens:
    """Everything a clip-level method may look at, for the F sampled frames of one clip."""

    frames: ClipFrameFeatures  # CLIP forward: states (F, 1+N, D), q/k/v; grid (24, 24)
    text_embeds: torch.Tensor | None  # (T, P)
    image_tokens: torch.Tensor  # (F, Ni, H): the CLIP stream's LLM tokens, unpruned (12x12 pooled)
    image_grid: tuple[int, int]
    video_tokens: torch.Tensor  # (F, Nv, H): the video stream's LLM tokens (InternVideo2, 8x8)
    video_grid: tuple[int, int]
    project: Callable[[torch.Tensor], torch.Tensor] | None = None  # CLIP states (F, n, D) -> LLM tokens (image projector)
    frame_size: tuple[int, int] | None = None  # (H, W) of the original frames; None: square (the streams align)
    clip_view: ClipView = field(default_factory=ClipView)  # CLIP's resize and centre crop
    _scores: dict = field(default_factory=dict, repr=False)

    @property
    def num_frames(self) -> int:
        return self.image_tokens.shape[0]

    @property
    def cell(self) -> int:
        """CLIP patches per image-grid side (24 / 12 = 2)."""
        return self.frames.grid[0] // self.image_grid[0]

    def similarity(self) -> torch.Tensor:
        """(F, T, N) LiteLVLM similarity of every frame's patches to every text (computed once)."""
        if self.text_embeds is None:
            raise ValueError("this method is text guided: the clip has no text embeddings")
        if "similarity" not in self._scores:
            self._scores["similarity"] = text_similarity(self.frames.projected(), self.text_embeds)
        return self._scores["similarity"]

    def context(self) -> torch.Tensor:
        """(F, N) LiteLVLM context score of every frame's patches (computed once)."""
        if "context" not in self._scores:
            self._scores["context"] = context_scores(self.frames.query, self.frames.key, self.frames.value)
        return self._scores["context"]

    def cell_members(self) -> torch.Tensor:
        """(Ni, cell*cell) CLIP patch indices of each image-grid cell."""
        return cell_tokens(self.frames.grid, self.cell).to(self.image_tokens.device)

    def video_overlap(self) -> StreamOverlap:
        """Which CLIP patches cover each video token's pixels, and how much (``stream_geometry.stream_overlap``)."""
        if "video_overlap" not in self._scores:
            size = self.frame_size or (self.clip_view.crop, self.clip_view.crop)
            self._scores["video_overlap"] = stream_overlap(size, self.frames.grid, self.video_grid, self.clip_view)
        return self._scores["video_overlap"]

    def video_scores(self, scores: torch.Tensor, uncovered: float) -> torch.Tensor:
        """(..., Nv) per-CLIP-patch ``scores`` (..., N) pooled onto the video tokens: the overlap-weighted mean over
        the patches covering each token's pixels; ``uncovered`` for a token outside CLIP's crop."""
        return self.video_overlap().pool(scores, uncovered)


@dataclass
class FrameSelection:
    """One frame's LLM tokens. ``image`` (k, H) / ``video`` (v, H) are sent; ``image_cells`` / ``video_cells`` the
    grid cells they stand for (a merged token: its representative cell); ``reused_cells`` image cells the method
    kept but did not send because an earlier frame already carries them; ``clip_indices`` the CLIP patches of the
    sent image cells (what ``VideoSegmentationResult.kept`` reports)."""

    image: torch.Tensor
    video: torch.Tensor
    image_cells: torch.Tensor
    video_cells: torch.Tensor
    clip_indices: torch.Tensor
    reused_cells: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    @classmethod
    def gather(cls, tokens: ClipTokens, frame: int, image_cells: torch.Tensor, video_cells: torch.Tensor,
               reused_cells: torch.Tensor | None = None) -> "FrameSelection":
        """The selection that sends the unmerged tokens of ``image_cells`` and ``video_cells`` (raster order)."""
        image_cells, video_cells = image_cells.sort().values.long(), video_cells.sort().values.long()
        selection = cls.build(tokens, tokens.image_tokens[frame, image_cells], tokens.video_tokens[frame, video_cells],
                              image_cells, video_cells)
        if reused_cells is not None:
            selection.reused_cells = reused_cells.sort().values.long().cpu()
        return selection

    @classmethod
    def build(cls, tokens: ClipTokens, image: torch.Tensor, video: torch.Tensor, image_cells: torch.Tensor,
              video_cells: torch.Tensor) -> "FrameSelection":
        """The selection that sends ``image`` / ``video`` (merged or not, cast to their streams' dtypes) standing for
        ``image_cells`` / ``video_cells``, in the order given; ``clip_indices`` from the image cells."""
        members = tokens.cell_members()[image_cells.to(tokens.image_tokens.device)]
        return cls(image.to(tokens.image_tokens.dtype), video.to(tokens.video_tokens.dtype), image_cells.cpu(),
                   video_cells.cpu(), members.reshape(-1).sort().values.cpu())

    @classmethod
    def everything(cls, tokens: ClipTokens) -> list["FrameSelection"]:
        """Every frame sending all its tokens of both streams, unpruned."""
        every_cell, every_block = torch.arange(tokens.image_tokens.shape[1]), torch.arange(tokens.video_tokens.shape[1])
        return [cls.gather(tokens, f, every_cell, every_block) for f in range(tokens.num_frames)]

    @property
    def num_tokens(self) -> int:
        return self.image.shape[0] + self.video.shape[0]


class ClipSelector(TokenSelector):
    """Base class of a clip-level method: ``select_clip(tokens, budget, clip_budget)`` -> one ``FrameSelection``
    per frame. Selected by name through the same registry as per-frame methods."""

    stage: ClassVar[str] = "clip"

    def select(self, features, budget, text_embeds=None):
        raise ValueError(f"method {self.name!r} selects over a whole video clip: it runs in the video path "
                         "(VideoSegmenter), not on single images")

    def select_clip(self, tokens: ClipTokens, budget: int | None, clip_budget: int | None = None) -> list[FrameSelection]:
        raise NotImplementedError

    def clip_budget_conflict(self) -> str | None:
        """Why this method, as configured, cannot take a clip budget (e.g. it runs at its release's fixed ratios), or
        None (the default: it can)."""
        return None

    def refuse_clip_budget(self, clip_budget: int | None) -> None:
        """Raise a one-line ``ValueError`` when a ``clip_budget`` is given to a method that cannot take one."""
        conflict = None if clip_budget is None else self.clip_budget_conflict()
        if conflict is not None:
            raise ValueError(f"method {self.name!r} takes no clip budget: {conflict}")

    def llm_plan(self, image_counts: list[int], video_count: int):
        """The method's part inside the LLM for a visual sequence of ``image_counts`` CLIP-stream tokens per frame
        then ``video_count`` video tokens, or None (pre-LLM only, the default). A plan has
        ``prefill(llm, batch, prompt_lengths) -> out`` (a teacher-forced pass; ``prompt_lengths``: per row, the
        positions before the fixed answer; ``out.hidden`` last-layer states, ``out.token_ids`` with -1 at visual
        positions) and ``generation_forward(llm, prompt_token_ids, use_cache) -> forward``
        (the ``forward`` of ``litelvlm.decoding.generate``), as ``video.fastv.VideoFastVPlan`` has."""
        return None


def check_clip_budget(method: str | TokenSelector, clip_budget) -> None:
    """Raise a one-line ``ValueError`` unless ``clip_budget`` is None or a positive int for a clip-level ``method``
    (a name, a ``parse_method_spec`` string or a built method) that can take one."""
    if clip_budget is None:
        return
    if isinstance(clip_budget, bool) or not isinstance(clip_budget, int) or clip_budget < 1:
        raise ValueError(f"the clip budget must be a positive number of LLM visual tokens per clip, got {clip_budget!r}")
    selector = method_from_spec(method) if isinstance(method, str) else get_method(method)
    if selector.stage != "clip":
        clip_level = ", ".join(clip_level_methods()) or "none registered"
        raise ValueError(f"a clip budget needs a clip-level method ({clip_level}); {selector.name!r} prunes each frame on its own")
    selector.refuse_clip_budget(clip_budget)


def clip_level_methods() -> list[str]:
    """The registered methods that select over a whole clip (``ClipSelector``)."""
    return [m for m in available_methods() if get_method(m).stage == "clip"]


def clip_target(tokens: ClipTokens, budget: int | None, clip_budget: int | None) -> int:
    """The total LLM visual tokens a method aims at: ``clip_budget``, else ``default_clip_budget(tokens, budget)``."""
    return default_clip_budget(tokens, budget) if clip_budget is None else clip_budget


def default_clip_budget(tokens: ClipTokens, budget: int | None) -> int:
    """The clip budget a method without its own rule spends for a per-frame CLIP budget ``budget``: the same share
    of both streams as per-frame pruning keeps of the CLIP stream (``ceil(budget / 4)`` of 144 cells), i.e.
    ``F * ceil(budget / 4) + round(F * 64 * ceil(budget / 4) / 144)``; all tokens for ``budget`` None."""
    frames, image_cells, video_cells = tokens.num_frames, tokens.image_tokens.shape[1], tokens.video_tokens.shape[1]
    if budget is None:
        return frames * (image_cells + video_cells)
    cells = min(image_cells, math.ceil(budget / tokens.cell**2))
    return frames * cells + round(frames * video_cells * cells / image_cells)


def block_members(clip_grid: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(cells, block*block) CLIP patch indices covered by each cell of a coarser ``grid`` (24x24 -> 8x8: 3x3 blocks):
    the CLIP patches under each video token on a square frame only (``ClipTokens.video_overlap`` for any frame)."""
    if clip_grid[0] % grid[0] or clip_grid[1] % grid[1]:
        raise ValueError(f"a {grid[0]}x{grid[1]} grid does not tile the {clip_grid[0]}x{clip_grid[1]} CLIP grid")
    return cell_tokens(clip_grid, clip_grid[0] // grid[0])


def allocate_budget(total: int, weights: torch.Tensor, minimum: int, maximum: int) -> list[int]:
    """``total`` split over frames: ``minimum`` each, the rest in proportion to ``weights`` (largest remainders),
    never above ``maximum``; raises when ``total`` cannot cover the minimums."""
    count = weights.numel()
    if total < count * minimum:
        raise ValueError(f"a clip budget of {total} tokens cannot give each of {count} frames its minimum of {minimum}")
    shares = [minimum] * count
    left = min(total - count * minimum, count * (maximum - minimum))
    w = weights.double().clamp(min=0)
    w = torch.ones_like(w) if w.sum() <= 0 else w
    while left > 0:
        room = torch.tensor([s < maximum for s in shares], dtype=torch.bool)
        share = w * room
        share = room.double() if share.sum() <= 0 else share  # the frames that wanted more are full: spread evenly
        ideal = left * share / share.sum()
        extra = ideal.floor().long()
        order = torch.argsort(ideal - extra, descending=True, stable=True)
        remainder = left - int(extra.sum())
        for i in order[:remainder].tolist():
            extra[i] += 1
        given = 0
        for i in range(count):
            add = min(int(extra[i]), maximum - shares[i])
            shares[i] += add
            given += add
        if given == 0:
            break
        left -= given
    return shares


@register_method("litelvlm-time")
class TimeAwareLiteLVLM(ClipSelector):
    """litelvlm's own extension of LiteLVLM to time and to both visual streams (not in the paper; off by default).

    * CLIP stream, at cell granularity (one LLM token per 2x2 cell, VideoGLaMM's pooled token): each frame keeps
      ``ceil(budget / 4)`` cells by the LiteLVLM rule on cell-averaged scores.
    * Cross-frame reuse: a kept cell is not sent again when the LLM already holds a close enough copy of it: its
      select-layer state (the mean over the cell's patches) has cosine similarity >= ``reuse_threshold`` with its
      state in the frame that last *sent* it (not with frame f-1, which may itself be a reused copy: comparing
      with the previous frame lets a slow drift be reused forever). Every frame sends at least ``min_cells`` cells
      (the most changed since their last sent copy, or never sent).
    * Video stream: each InternVideo2 token is scored by the CLIP patches covering the same pixels
      (``ClipTokens.video_scores``: CLIP sees a centre crop, InternVideo2 the whole frame); the overlap-weighted
      similarity and context scores rank it by the same rule, and each frame keeps ``video_tokens`` of the 64. A
      token outside CLIP's crop has no CLIP score and is ranked last (similarity +inf, context -inf).
    * ``clip_budget`` (total LLM visual tokens of the clip): after ``video_tokens`` per frame, the CLIP cells are
      spread over the frames in proportion to how much each changed since the previous one (frame 0: fully).

    Where the saving comes from. Against per-frame LiteLVLM at the same budget (``cells`` layout: ``ceil(B / 4)``
    cells and all 64 video tokens per frame, 16 x (21 + 64) = 1,360 tokens at B = 81), litelvlm-time saves
    16 x (64 - ``video_tokens``) = 896 tokens by sending 8 of each frame's 64 video tokens, a fixed cut whatever the
    clip shows, and at most 15 x (21 - ``min_cells``) = 285 by reuse (every cell after frame 0 reused but
    ``min_cells``). At 81 the video-stream cut is therefore at least 896 / 1,181 = 76% of the saving, and all of it
    on a clip where nothing is reused (78% on the clip measured in issue #19). ``video.synthetic_clips`` counts both
    parts per kind of clip; ``video_tokens=64`` shows what reuse alone saves.

    With ``reuse_threshold > 1``, ``video_tokens = 64`` and no clip budget it equals per-frame LiteLVLM in the
    ``cells`` layout (for budgets that are multiples of 4).
    """

    uses_text: ClassVar[bool] = True

    def __init__(self, video_tokens: int = 8, reuse_threshold: float = 0.9, min_cells: int = 2):
        if video_tokens < 1:
            raise ValueError(f"video_tokens must be >= 1, got {video_tokens}")
        if min_cells < 1:
            raise ValueError(f"min_cells must be >= 1, got {min_cells}")
        self.video_tokens, self.reuse_threshold, self.min_cells = video_tokens, reuse_threshold, min_cells

    # ------------------------------------------------------------------ scores
    @staticmethod
    def _cell_states(tokens: ClipTokens) -> torch.Tensor:
        """(F, Ni, D) mean select-layer state of each image-grid cell."""
        members = tokens.cell_members()
        return tokens.frames.patches.float()[:, members].mean(2)

    @staticmethod
    def _change(states: torch.Tensor) -> torch.Tensor:
        """(F,) how much each frame changed since the previous one: 1 - mean cosine similarity of its cells (frame 0: 1)."""
        similarity = F.cosine_similarity(states[1:], states[:-1], dim=-1).mean(-1)
        return torch.cat([torch.ones(1, device=states.device), (1 - similarity).clamp(min=0)])

    def _cells_per_frame(self, tokens: ClipTokens, budget: int | None, clip_budget: int | None, states: torch.Tensor) -> list[int]:
        cells_total = tokens.image_tokens.shape[1]
        if clip_budget is None:
            per_frame = cells_total if budget is None else math.ceil(budget / tokens.cell**2)
            return [min(cells_total, per_frame)] * tokens.num_frames
        video = min(self.video_tokens, tokens.video_tokens.shape[1]) * tokens.num_frames
        return allocate_budget(clip_budget - video, self._change(states), self.min_cells, cells_total)

    # ------------------------------------------------------------------ selection
    def select_clip(self, tokens: ClipTokens, budget: int | None, clip_budget: int | None = None) -> list[FrameSelection]:
        members = tokens.cell_members()
        similarity, context = tokens.similarity(), tokens.context()
        cell_sim, cell_ctx = similarity[:, :, members].mean(-1), context[:, members].mean(-1)  # (F, T, Ni), (F, Ni)
        video_sim = tokens.video_scores(similarity, uncovered=math.inf)  # (F, T, Nv): outside the crop ranks last
        video_ctx = tokens.video_scores(context, uncovered=-math.inf)  # (F, Nv)
        states = self._cell_states(tokens)
        cells_per_frame = self._cells_per_frame(tokens, budget, clip_budget, states)
        video_keep = min(self.video_tokens, tokens.video_tokens.shape[1])
        last_sent = torch.zeros_like(states[0])  # (Ni, D): each cell's state in the frame that last sent it
        was_sent = torch.zeros(states.shape[1], dtype=torch.bool, device=states.device)
        out = []
        for f in range(tokens.num_frames):
            kept = litelvlm_select(cell_sim[f], cell_ctx[f], cells_per_frame[f])
            sent, reused = self._reuse(kept, states[f], last_sent, was_sent)
            last_sent[sent], was_sent[sent] = states[f, sent], True
            video = litelvlm_select(video_sim[f], video_ctx[f], video_keep)
            out.append(FrameSelection.gather(tokens, f, sent, video, reused))
        return out

    def _reuse(self, kept: torch.Tensor, current: torch.Tensor, last_sent: torch.Tensor, was_sent: torch.Tensor):
        """(sent, reused) kept cells of a frame whose cell states are ``current`` (Ni, D): a kept cell is reused when
        the LLM already holds a copy of it (``was_sent``) whose state ``last_sent`` is within the threshold."""
        if self.reuse_threshold > 1 or not bool(was_sent.any()):
            return kept, None
        similarity = F.cosine_similarity(current[kept], last_sent[kept], dim=-1)
        reusable = (similarity >= self.reuse_threshold) & was_sent[kept]
        changed = torch.argsort(similarity, stable=True)  # most changed first
        must_send = changed[: min(self.min_cells, kept.numel())]
        reusable[must_send] = False
        return kept[~reusable], kept[reusable]

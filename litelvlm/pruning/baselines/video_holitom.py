"""HoliTom (Shao et al., NeurIPS 2025): Holistic Token Merging for Fast Video Large Language Models, as a clip-level
method with an in-LLM part.

Source: github.com/cokeshao/HoliTom at e9b2972 (LLaVA-OneVision / LLaVA-Video, Qwen2). The pre-LLM part is
``LlavaMetaForCausalLM_holitom`` in ``holitom/llava_arch.py``; the in-LLM part is ``Qwen2Model_holitom.forward`` in
``holitom/modeling_qwen2.py`` (``video_holitom_llm``), switched on when ``HOLITOM_k`` and ``HOLITOM_r`` are set
(``holitom/main.py:25-33``; without them the paper's "HoliTom (w/o M)"). The attention comes from the patched
``LLaVA-NeXT/llava/model/multimodal_encoder/siglip_encoder.py:618-622``.

The released rule, on the video's pooled LLM input tokens (F frames of N tokens), with the environment's settings
(llava_arch.py:348-355: ``RETAIN_RATIO`` r, ``T`` tau, ``BETA`` 0.6, ``D`` 0, ``K`` 7, ``MAX_WINDOW_SIZE`` 1024):

1. Scores and similarities (llava_arch.py:370-380). Each token's attention score is the vision tower's last-layer
   attention averaged over heads and over all queries (the attention each patch receives), pooled to the token grid
   like the features. ``s_t[n]`` is the cosine similarity of token n in frames t and t+1 (of L2-normalised tokens).
2. Global temporal segmentation (``select_static_windows``, :53-98). A window [s, e] saves
   ``c(s, e) = (e - s) * #{n : s_t[n] > tau for every t in s .. e-1}`` tokens (its static positions, kept once). A
   dynamic programme over the frames, ``dp[i] = max(dp[i-1], max over windows of 2 .. max_window_size frames ending
   at i of dp[j] + c(j+1, i))`` (strict ``>``: ties keep the shorter window or the single frame), splits the video
   into windows; ``reduced = dp[F-1]``. The ratio becomes ``r' = min(r / ((F N - reduced) / (F N)), 1)`` (:388-391).
3. Static and dynamic tokens (``get_static_dynamic_features``, :278-311). In a window of W >= 2 frames a position is
   static when all its W-1 consecutive similarities exceed tau; a static position becomes its mean over the window.
   The others are dynamic, in every frame of the window. A one-frame window has only dynamic tokens.
4. Dynamic tokens (``merge_tokens_by_attention_density``, :152-197, with D = 0). Per frame, the ``ceil(n r')`` of
   its n dynamic tokens with the highest attention score stay, in their original order; the rest are dropped
   (with D = 0 the contextual merging gets no token; its code path, D > 0, fails in the release: the positions'
   ``masked_select`` broadcasts (:174), so it is not offered here).
5. Static tokens (``merge_tokens_by_density``, :199-213, and ``merge_tokens_by_clustering``, :100-150). A window's S
   static tokens become ``round(S r')`` clusters: DPC-KNN (``cluster_dpc_knn``, :29-51: ``cdist / sqrt(C)``, density
   ``exp(-mean d^2)`` over the ``min(K, clusters)`` nearest, self included, plus ``rand * 1e-6``; the distance to the
   nearest denser token, the matrix maximum for the densest; the top ``clusters`` of density x distance) picks the
   centres, sorted by position; every other token joins its nearest centre (``argmin``), and a centre with members
   becomes ``beta * centre + (1 - beta) * mean(members)`` (``NO_BETA`` unset: :137-140), else stays. ``round(S r') = 0``
   drops them all.
6. Order (``holitom``, :234-275, no newline tokens): per window, its static tokens (by position), then frame by frame
   its dynamic tokens; windows in time order.
7. Inside the LLM: ``video_holitom_llm``.

Settings: README and ``scripts/eval_vid-7b_holitom.sh:2`` (also ``eval_ov-7b_holitom.sh:12``) run ``RETAIN_RATIO=0.15
T=0.80 HOLITOM_k=18 HOLITOM_r=0.5`` with the defaults beta 0.6, D 0, K 7, max window 1024. ``released=True`` (spec
``holitom:released=True``) runs those whatever the budget and refuses a clip budget.

Adaptation to VideoGLaMM (``ClipTokens``: per frame 12x12 CLIP-stream and 8x8 InternVideo2 LLM tokens; the LLM sees
every frame's CLIP-stream tokens, then every frame's video tokens):

- Both streams get the same rules with the same r and tau, each on its own LLM tokens (projected and pooled, as the
  release's): each has its own segmentation, static positions and r'.
- Attention score. CLIP stream: the attention inside the CLIP layer that produces the select-layer states (the
  release reads the tower's last remaining layer, whose output it consumes), ``softmax(q k^T / sqrt(d_head))``,
  averaged over heads and over all 577 queries ([CLS] included; SigLIP has none), patch columns, averaged over each
  cell's 2x2 patches (VideoGLaMM's 12x12 adaptive average pool). Video stream: InternVideo2's attention is not
  kept, so a video token takes the overlap-weighted mean over the CLIP patches covering its pixels
  (``ClipTokens.video_scores``); a token outside CLIP's crop has none and ranks last (-inf).
- Records. A window's static tokens open its first frame's tokens, so each stream's sequence is the release's. A
  static token stands for its centre's cell, a dynamic token for its own; ``reused_cells`` of a later frame of a
  window are the window's static cells (carried by its first frame).
- Budget (the default, ``retain_ratio`` None): the target is ``clip_budget``, else ``default_clip_budget(tokens,
  budget)`` (485 for budget 81 and 16 frames): the tokens entering the LLM. The segmentation does not depend on r,
  and the count (``holitom_count``: per window ``round(S r') + W ceil((N - S) r')``, ``ceil(N r')`` for one frame,
  the release's float arithmetic) only grows with r, so r is the largest value (bisection to 1e-9) whose count fits.
  A target covering every token sends everything. With ``retain_ratio`` set (or ``released``) the budget is ignored
  and a clip budget refused.
- The in-LLM merge (``llm_merge``, on by default as in the paper's HoliTom) keeps ``round(V (1 - merge_ratio))`` of
  the V visual tokens from layer ``layer`` on, at every budget; ``HoliTomSelector.last_stats.tokens_after_layer``
  records it. It ranks by the last prompt token's attention, so it reads the question; ``llm_merge=False`` is
  "HoliTom (w/o M)", query-agnostic (no text read, no in-LLM part).
- Determinism and precision: the density noise is drawn from a generator seeded with ``seed`` (default 0), fresh for
  each clustering; top-k picks keep the lower index on ties; scores, similarities and merges are float32, cast back
  to the stream's dtype (the release works in the model dtype).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..clip_level import ClipSelector, ClipTokens, FrameSelection, clip_target
from ..methods import register_method
from .common import producing_layer_qk, ranked, released_settings, upcast
from .video_prunevid import MergedWindow, density_noise, dpc_knn

__all__ = [
    "HoliTomSelector",
    "HoliTomStats",
    "RELEASED_SETTINGS",
    "frame_similarity",
    "window_savings",
    "select_static_windows",
    "adjusted_ratio",
    "static_mask",
    "merge_static",
    "HoliTomStream",
    "holitom_stream",
    "holitom_count",
    "retain_ratio_for_budget",
    "inner_keep_count",
    "received_attention",
]

# README / scripts/eval_vid-7b_holitom.sh:2 (r, tau, K_llm, r_llm) and llava_arch.py:352-355 (beta, K, max window)
RELEASED_SETTINGS = {"retain_ratio": 0.15, "tau": 0.80, "layer": 18, "merge_ratio": 0.5, "beta": 0.6, "k": 7,
                     "max_window_size": 1024, "llm_merge": True}


# ---------------------------------------------------------------------------- segmentation
def frame_similarity(tokens: torch.Tensor) -> torch.Tensor:
    """(F-1, N) cosine similarity of each token in frames t and t+1 of ``tokens`` (F, N, C), on L2-normalised tokens."""
    normed = F.normalize(upcast(tokens), p=2, dim=-1)
    return F.cosine_similarity(normed[:-1], normed[1:], dim=-1)


def window_savings(similarity: torch.Tensor, tau: float) -> torch.Tensor:
    """(F, F) ``c[s, e]``: tokens saved by the window of frames s..e (0 unless e > s): (e - s) times the positions whose
    similarities s..e-1 all exceed ``tau``."""
    frames = similarity.shape[0] + 1
    out = torch.zeros(frames, frames, dtype=torch.float32, device=similarity.device)
    above = similarity > tau
    for start in range(frames - 1):
        still = torch.cumprod(above[start:].to(torch.float32), dim=0).sum(dim=-1)  # positions static through s..e
        out[start, start + 1 :] = still * torch.arange(1, frames - start, dtype=torch.float32, device=similarity.device)
    return out


def select_static_windows(similarity: torch.Tensor, tau: float, max_window_size: int = 1024) -> tuple[list[tuple[int, int]], float]:
    """(windows [(first, last)], tokens saved): the release's dynamic programme over the frames (module docstring,
    step 2)."""
    savings = window_savings(similarity, tau).tolist()
    frames = similarity.shape[0] + 1
    best, first = [0.0] * frames, [0] * frames
    for i in range(frames):
        value, start = (best[i - 1] if i > 0 else 0.0), i
        for size in range(2, min(i + 1, max_window_size) + 1):
            j = i - size
            candidate = (best[j] if j >= 0 else 0.0) + savings[j + 1][i]
            if candidate > value:
                value, start = candidate, j + 1
        best[i], first[i] = value, start
    windows, i = [], frames - 1
    while i >= 0:
        windows.append((first[i], i))
        i = first[i] - 1
    return windows[::-1], best[-1]


def adjusted_ratio(retain_ratio: float, num_tokens: int, reduced: float) -> float:
    """The release's ``min(r / ((T - reduced) / T), 1)`` for T = F N tokens."""
    return min(retain_ratio / ((num_tokens - reduced) / num_tokens), 1)


def static_mask(similarity: torch.Tensor, first: int, last: int, tau: float) -> torch.Tensor:
    """(N,) bool: the static positions of the window first..last (none for one frame)."""
    if first == last:
        return torch.zeros(similarity.shape[1], dtype=torch.bool, device=similarity.device)
    return (similarity[first:last] > tau).all(dim=0)


# ---------------------------------------------------------------------------- merging
def merge_static(static: torch.Tensor, clusters: int, beta: float = 0.6, k: int = 7, noise: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (c, C) float32, centres (c,) ascending) of a window's static tokens (S, C): DPC-KNN centres with
    ``min(k, clusters)`` neighbours, every other token joining its nearest centre, ``beta * centre + (1 - beta) *
    mean(members)`` for a centre with members."""
    x = upcast(static)
    if clusters == 0:
        return x.new_zeros(0, x.shape[-1]), torch.zeros(0, dtype=torch.long, device=x.device)
    _, centres = dpc_knn(x, clusters, min(k, clusters), noise)
    centres = centres.sort().values
    others = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    others[centres] = False
    distance = torch.cdist(x[others][None], x[centres][None])[0]
    assign = distance.argmin(dim=1) if distance.numel() else torch.zeros(0, dtype=torch.long, device=x.device)
    one_hot = F.one_hot(assign, clusters).to(x.dtype)  # (others, clusters)
    members = one_hot.sum(dim=0)[:, None]
    mean = one_hot.T @ x[others] / members.clamp(min=1)
    merged = torch.where(members > 0, beta * x[centres] + (1 - beta) * mean, x[centres])
    return merged, centres


@dataclass
class HoliTomStream:
    """One stream after HoliTom's pre-LLM merging: its ``windows``, the tokens the segmentation saved (``reduced``)
    and the adjusted ratio r' (``ratio``)."""

    windows: list[MergedWindow]  # PruneVid's window: static tokens, then each frame's dynamic tokens
    reduced: float
    ratio: float

    @property
    def num_tokens(self) -> int:
        return sum(sum(w.group_sizes) for w in self.windows)


def _segmentation(tokens: torch.Tensor, tau: float, max_window_size: int):
    similarity = frame_similarity(tokens)
    windows, reduced = select_static_windows(similarity, tau, max_window_size)
    return similarity, windows, reduced


def holitom_count(windows: list[tuple[int, int]], static_counts: list[int], num_tokens: int, ratio: float) -> int:
    """Tokens one stream sends at adjusted ratio ``ratio``: per window ``round(S r') + W ceil((N - S) r')`` (one frame:
    ``ceil(N r')``), in the release's float arithmetic."""
    total = 0
    for (first, last), static in zip(windows, static_counts):
        length = last - first + 1
        if length == 1:
            total += math.ceil(num_tokens * ratio)
        else:
            total += round(static * ratio) + length * math.ceil((num_tokens - static) * ratio)
    return total


def holitom_stream(tokens: torch.Tensor, attention: torch.Tensor, retain_ratio: float, tau: float = 0.8, beta: float = 0.6,
                   k: int = 7, max_window_size: int = 1024, seed: int = 0) -> HoliTomStream:
    """HoliTom's pre-LLM merging of one stream: ``tokens`` (F, N, C) with per-token ``attention`` scores (F, N)."""
    frames, num, _ = tokens.shape
    similarity, windows, reduced = _segmentation(tokens, tau, max_window_size)
    ratio = adjusted_ratio(retain_ratio, frames * num, reduced)
    x, cells = upcast(tokens), torch.arange(num, device=tokens.device)
    out = []
    for first, last in windows:
        mask = static_mask(similarity, first, last, tau)
        count = int(mask.sum())
        static, centres = merge_static(x[first : last + 1, mask].mean(dim=0), round(count * ratio) if last > first else 0,
                                       beta, k, density_noise(count, seed))
        dynamic_cells = cells[~mask]
        keep = math.ceil(dynamic_cells.numel() * ratio)
        kept = [dynamic_cells[ranked(attention[f, dynamic_cells])[:keep].sort().values] for f in range(first, last + 1)]
        out.append(MergedWindow(first, last - first + 1, mask, static, cells[mask][centres],
                                 [x[first + i, c] for i, c in enumerate(kept)], kept))
    return HoliTomStream(out, reduced, ratio)


def retain_ratio_for_budget(streams: list[torch.Tensor], target: int, tau: float = 0.8, max_window_size: int = 1024) -> float:
    """The largest r in [0, 1] (bisection to 1e-9) whose summed ``holitom_count`` over ``streams`` (F, N, C) fits
    ``target``."""
    plans = []
    for tokens in streams:
        similarity, windows, reduced = _segmentation(tokens, tau, max_window_size)
        statics = [int(static_mask(similarity, a, b, tau).sum()) for a, b in windows]
        plans.append((windows, statics, tokens.shape[1], tokens.shape[0] * tokens.shape[1], reduced))

    def count(r: float) -> int:
        return sum(holitom_count(w, s, n, adjusted_ratio(r, total, reduced)) for w, s, n, total, reduced in plans)

    if count(1.0) <= target:
        return 1.0
    lo, hi = 0.0, 1.0  # count(lo) fits, count(hi) does not
    while hi - lo > 1e-9:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) <= target else (lo, mid)
    return lo


def inner_keep_count(num_visual: int, merge_ratio: float) -> int:
    """Visual tokens the inner merge keeps: the release's ``round(V (1 - r))`` (modeling_qwen2.py:159; Python's round,
    halves to even), at least 1 (the release fails on 0: ``max`` over no kept token)."""
    return max(1, round(num_visual * (1 - merge_ratio)))


# ---------------------------------------------------------------------------- scores
def received_attention(query: torch.Tensor, key: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(F, N): per frame, the softmax attention ``q k^T / sqrt(d_head)`` each patch receives, averaged over heads and
    all 1+N queries (patch columns)."""
    out = []
    for q, k in zip(upcast(query), upcast(key)):  # one frame at a time: (heads, 1+N, 1+N) stays small
        heads_q = q.reshape(q.shape[0], num_heads, -1).transpose(0, 1)
        heads_k = k.reshape(k.shape[0], num_heads, -1).transpose(0, 1)
        weights = torch.softmax(heads_q @ heads_k.transpose(-1, -2) * heads_q.shape[-1] ** -0.5, dim=-1)
        out.append(weights.mean(dim=(0, 1))[1:])
    return torch.stack(out)


# ---------------------------------------------------------------------------- the method
def _frame_records(stream: HoliTomStream, frames: int):
    """Per frame: (tokens, cells, reused cells) of one stream; a window's static tokens open its first frame."""
    rows = [[] for _ in range(frames)]
    cells = [[] for _ in range(frames)]
    reused: list[torch.Tensor | None] = [None] * frames
    for window in stream.windows:
        rows[window.start].append(window.static)
        cells[window.start].append(window.static_cells)
        for i, (dynamic, dynamic_cells) in enumerate(zip(window.dynamic, window.dynamic_cells)):
            rows[window.start + i].append(dynamic)
            cells[window.start + i].append(dynamic_cells)
            if i:
                reused[window.start + i] = window.static_mask.nonzero().flatten()
    return [torch.cat(r) for r in rows], [torch.cat(c).long() for c in cells], reused


@dataclass
class HoliTomStats:
    """The last clip: the retain ratio r (and the target it was chosen for; None: given), per stream the adjusted r',
    windows and tokens sent, and the visual tokens layers K.. see (all of them without the in-LLM merge)."""

    retain_ratio: float
    target: int | None
    image_ratio: float
    video_ratio: float
    image_tokens: int
    video_tokens: int
    tokens_after_layer: int
    image_windows: list[tuple[int, int]] = field(default_factory=list)
    video_windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def pre_llm_tokens(self) -> int:
        return self.image_tokens + self.video_tokens


@register_method("holitom")
class HoliTomSelector(ClipSelector):
    """HoliTom on both VideoGLaMM streams: global temporal segmentation, static tokens merged into the window's first
    frame, dynamic tokens by attention, before the LLM; then the inner merge at layer K (``llm_plan``). Module
    docstring: the release and every adaptation.

    ``retain_ratio`` r (None: from the budget; 0.15 released), ``tau`` (0.8), ``beta`` (0.6), ``k`` (7),
    ``max_window_size`` (1024), ``llm_merge`` (True; False: "HoliTom (w/o M)"), ``layer`` K (18), ``merge_ratio``
    (0.5), ``seed`` (the density noise) and ``released``."""

    uses_text: ClassVar[bool] = False  # no CLIP text; the inner merge (llm_merge) reads the question inside the LLM

    @property
    def acts_in_llm(self) -> bool:
        """Only with ``llm_merge`` (the default): "HoliTom (w/o M)" makes no in-LLM plan and shares the prefix."""
        return self.llm_merge

    def __init__(self, retain_ratio: float | None = None, tau: float = 0.8, beta: float = 0.6, k: int = 7,
                 max_window_size: int = 1024, llm_merge: bool = True, layer: int = 18, merge_ratio: float = 0.5,
                 seed: int = 0, released: bool = False):
        given = {"retain_ratio": retain_ratio, "tau": tau, "layer": layer, "merge_ratio": merge_ratio, "beta": beta, "k": k,
                 "max_window_size": max_window_size, "llm_merge": llm_merge}
        retain_ratio = released_settings("holitom", released, given, RELEASED_SETTINGS)["retain_ratio"]
        if retain_ratio is not None and not 0 < retain_ratio <= 1:
            raise ValueError(f"retain_ratio must be in (0, 1] or None (chosen from the budget), got {retain_ratio!r}")
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
            raise ValueError(f"layer must be an int >= 1 (layer K-1's attention ranks the tokens merged from layer K), got {layer!r}")
        if not 0 <= merge_ratio < 1:
            raise ValueError(f"merge_ratio must be in [0, 1) (the share merged away inside the LLM), got {merge_ratio!r}")
        if not 0 <= beta <= 1 or k < 1 or max_window_size < 1:
            raise ValueError(f"beta must be in [0, 1], k and max_window_size >= 1; got beta={beta!r}, k={k!r}, "
                             f"max_window_size={max_window_size!r}")
        if not isinstance(llm_merge, bool):
            raise ValueError(f"llm_merge must be True or False, got {llm_merge!r}")
        self.retain_ratio, self.tau, self.beta, self.k, self.max_window_size = retain_ratio, tau, beta, k, max_window_size
        self.llm_merge, self.layer, self.merge_ratio, self.seed, self.released = llm_merge, layer, merge_ratio, seed, released
        self._pending: dict | None = None
        self.last_stats: HoliTomStats | None = None

    def clip_budget_conflict(self) -> str | None:
        if self.retain_ratio is None:
            return None
        fixed = "released=True runs the release's" if self.released else "a given"
        return f"{fixed} retain ratio r = {self.retain_ratio}: give either retain_ratio (or released) or a clip budget"

    def salient_scores(self, tokens: ClipTokens) -> tuple[torch.Tensor, torch.Tensor]:
        """((F, Ni), (F, Nv)): the received attention averaged over each image cell's patches, and over the CLIP
        patches covering each video token's pixels (-inf outside CLIP's crop)."""
        query, key = producing_layer_qk(tokens.frames)
        attention = received_attention(query, key, tokens.frames.num_heads)
        cells = tokens.cell_members().to(attention.device)
        return attention[:, cells].mean(-1), tokens.video_scores(attention, uncovered=-math.inf)

    def ratio(self, tokens: ClipTokens, budget: int | None, clip_budget: int | None) -> tuple[float | None, int | None]:
        """(r, or None to send every token; the target it was chosen for, None when r is given)."""
        self.refuse_clip_budget(clip_budget)
        if self.retain_ratio is not None:
            return self.retain_ratio, None
        target = clip_target(tokens, budget, clip_budget)
        if target >= tokens.num_frames * (tokens.image_tokens.shape[1] + tokens.video_tokens.shape[1]):
            return None, target
        return retain_ratio_for_budget([tokens.image_tokens, tokens.video_tokens], target, self.tau, self.max_window_size), target

    def select_clip(self, tokens: ClipTokens, budget: int | None, clip_budget: int | None = None) -> list[FrameSelection]:
        ratio, target = self.ratio(tokens, budget, clip_budget)
        if ratio is None:
            out, streams = FrameSelection.everything(tokens), None
        else:
            image_scores, video_scores = self.salient_scores(tokens)
            options = dict(tau=self.tau, beta=self.beta, k=self.k, max_window_size=self.max_window_size, seed=self.seed)
            streams = (holitom_stream(tokens.image_tokens, image_scores, ratio, **options),
                       holitom_stream(tokens.video_tokens, video_scores, ratio, **options))
            out = self._records(tokens, *streams)
        image_counts = [f.image.shape[0] for f in out]
        video_count = sum(f.video.shape[0] for f in out)
        self._pending = {"image_counts": image_counts, "video_count": video_count}
        self.last_stats = self._stats(ratio, target, streams, sum(image_counts), video_count)
        return out

    def _stats(self, ratio, target, streams, image_tokens: int, video_tokens: int) -> HoliTomStats:
        visual = image_tokens + video_tokens
        after = inner_keep_count(visual, self.merge_ratio) if self.llm_merge else visual
        if streams is None:
            return HoliTomStats(1.0, target, 1.0, 1.0, image_tokens, video_tokens, after)
        windows = [[(w.start, w.start + w.length - 1) for w in s.windows] for s in streams]
        return HoliTomStats(ratio, target, streams[0].ratio, streams[1].ratio, image_tokens, video_tokens, after, *windows)

    @staticmethod
    def _records(tokens: ClipTokens, image: HoliTomStream, video: HoliTomStream) -> list[FrameSelection]:
        frames = tokens.num_frames
        image_rows, image_cells, reused = _frame_records(image, frames)
        video_rows, video_cells, _ = _frame_records(video, frames)
        out = []
        for f in range(frames):
            selection = FrameSelection.build(tokens, image_rows[f], video_rows[f], image_cells[f], video_cells[f])
            if reused[f] is not None:
                selection.reused_cells = reused[f].cpu()
            out.append(selection)
        return out

    def llm_plan(self, image_counts: list[int], video_count: int):
        if not self.llm_merge:
            return None
        pending = self._pending
        if pending is None or list(image_counts) != pending["image_counts"] or video_count != pending["video_count"]:
            raise ValueError("holitom's llm_plan must follow its select_clip for the same visual sequence "
                             f"(got {list(image_counts)} + {video_count} visual tokens)")
        from .video_holitom_llm import HoliTomPlan  # the in-LLM part needs transformers: imported when a clip runs

        return HoliTomPlan(sum(image_counts) + video_count, self.layer, self.merge_ratio)

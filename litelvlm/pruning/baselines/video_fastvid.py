"""FastVID (Shen et al., NeurIPS 2025): Dynamic Density Pruning for Fast Video LLMs, as a clip-level method.

Source: github.com/LunarShen/FastVID. The reference is the LLaVA-OneVision implementation, which the README calls
the core code (``fastvid_llavaonevision/LLaVA-NeXT/llava/model/language_model/modeling_qwen2.py``,
``Qwen2Model.forward``, the ``FastVID`` block). Its inputs are built in ``llava/model/llava_arch.py``
(``encode_images`` / ``get_attn_2dPool``) and ``multimodal_encoder/siglip_encoder.py`` (``SigLipVisionAbstract``).
Its defaults come from ``lmms-eval/lmms_eval/models/llava_onevision.py`` and ``scripts/eval.sh``: retention ratio
0.10, ``DySeg_c = 8``, ``DySeg_tau = 0.9``, ``STPrune_d = 0.4``, ``DTM_p = 4``, ``DTM_beta = 0.6``, and a
hard-coded k = 4 for DPC-KNN. The release prunes the video's LLM input embeddings (projected, 2x2-pooled tokens)
right before the first decoder layer.

The released rule (F frames, N tokens per frame, retention ratio r):

1. Dynamic Temporal Segmentation (``dynamic_segments``). ``g_f`` is each frame's global feature: the SigLIP
   attention-pooling head's output. Take ``s_t = cos(g_t, g_{t+1})`` for t < F-1. Cut after frame t for the
   ``c - 1`` smallest ``s_t`` (``topk(largest=False)``) and for every ``s_t < tau``, taking the union. Segments
   run between cuts.
2. Budget per frame. ``R = int(N r)``. There are ``C = int(R d)`` context (anchor) tokens per frame and
   ``S = R - C`` salient tokens.
3. Salient tokens (ATS). Every frame keeps its top-S tokens by the pooling head's attention over the patches
   (averaged over heads, then pooled to the token grid like the features).
4. Anchor distribution (``anchor_counts``). A segment of L frames has ``C L`` anchors. They go to its
   ``ceil(L / p)`` anchor frames: the segment's last frame, then every p-th frame going back. Each anchor frame
   gets ``(C L) // ceil(L / p)`` anchors (a floor, so some may be lost); the other frames get none.
5. Density peaks (``dpc_knn``). This runs per frame over its N - S non-salient tokens x. It uses
   ``dist = cdist(x, x) / sqrt(D)`` and ``rho_i = exp(-mean(d_ij^2))`` over the k = 4 nearest j, self included.
   Then ``delta_i = min(dist_ij)`` over j with ``rho_j > rho_i``. The densest token instead takes the largest
   distance in that frame's matrix. The score is ``rho_i * delta_i``, and an anchor frame takes its top-scoring
   tokens as anchors.
6. Merging (DTM, ``merge_into_anchors``). First pick the pool of candidates. A frame whose anchor count equals C
   (every one-frame segment) uses its own non-salient tokens. An anchor frame of a longer segment uses *all* the
   segment's non-salient tokens, and each anchor frame of that segment does so independently. The pool includes
   the anchors themselves. Each candidate joins the anchor with the highest cosine similarity (argmax). An anchor
   with n members (itself included) becomes ``w a + (1 - w) mean(members)``, with
   ``w = max(1 / (n + 1), beta)``.
7. The kept tokens (salient, plus merged anchors at their anchor's position) stay in their original order.

Adaptation to VideoGLaMM (two visual streams; ``ClipTokens``):

- Frame global feature. With ``global_feature="cls"`` (default), it is each frame's CLIP [CLS] state at the
  select layer (``frames.states[:, 0]``). That is the closest stand-in for SigLIP's pooled output: a global summary
  computed from the features the LLM consumes. CLIP-L has no attention-pooling head, and ``ClipTokens`` carries no
  later [CLS] state. ``"mean"`` uses the mean of each frame's CLIP-stream LLM tokens instead, which is the
  release's Qwen2.5-VL rule (``video_embeds...mean(1)``). One segmentation serves both streams.
- Salient score. SigLIP's pooling head attends from a probe to the patches; the stand-in is CLIP's [CLS]
  attention. It is the CLS row of the last layer's ``softmax(q k^T / sqrt(d_head))`` over the 1+576 keys, patch
  columns, averaged over heads (``nn.MultiheadAttention``'s default). That layer reads the select-layer states, as
  the pooling head reads the LLM's features. The release pools the score to the token grid the way the features
  are pooled. Here it is averaged over each CLIP-stream cell's 2x2 patches (VideoGLaMM's 12x12 adaptive average
  pool). The InternVideo2 stream has no [CLS] attention of its own: a video token takes the overlap-weighted mean
  over the CLIP patches covering the same pixels (``ClipTokens.video_scores``; CLIP sees a centre crop,
  InternVideo2 the whole frame, so on a non-square frame the 3x3 block at the same grid index covers other
  pixels). A video token outside CLIP's crop has no score and is never salient (-inf); it still takes part in the
  density peaks and merging, which read the tokens' own features.
- Both streams are pruned by the same rule within each segment. Density, anchors and merging run on the
  stream's own LLM tokens (image: (F, 144, H); video: (F, 64, H)), as the release prunes LLM input embeddings.
- Budget. The release has a single retention ratio r, with ``R = int(N r)`` per frame. The target is
  ``clip_budget``, or ``default_clip_budget(tokens, budget)`` when it is None (485 tokens for budget 81 and 16
  frames). FastVID uses the *largest common ratio r* whose exact sent-token count fits that target. The
  candidates are every ratio ``k / 144`` and ``k / 64``. Per stream,
  ``R_s = floor(N_s r)`` and the count is
  ``F S_s + sum over segments of ceil(L / p) * min(N_s - S_s, (C_s L) // ceil(L / p))`` (``fastvid_token_count``).
  The count is monotone in r, so the sent total is at most the target. It can fall short because of the release's
  floors (``int(N r)``, ``int(R d)`` and the anchor split). With ``retention_ratio`` set and no ``clip_budget``,
  the release's ratio is used as is. When the target covers every token (``F * (144 + 64)``), nothing is pruned.
- The paper's operating point: ``released=True`` (spec ``fastvid:released=True``) runs the release's values whatever
  the budget: r = 0.10, c = 8, tau = 0.9, d = 0.4, p = 4, beta = 0.6 and k = 4. Source (LunarShen/FastVID at
  a40a109, ``fastvid_llavaonevision/``): ``scripts/eval.sh:6-11`` and ``lmms-eval/lmms_eval/models/
  llava_onevision.py:88-93`` (the six ``fastvid_*`` values), ``LLaVA-NeXT/llava/model/language_model/
  modeling_qwen2.py:917-918`` (the cuts), ``:932`` and ``:934`` (``R = int(N r)``, ``S = R - int(R d)``), ``:944``
  and ``:949`` (anchor frames every p), ``:977`` (``topk(k=4)``) and ``:1003`` (``clamp(min=beta)``). Per frame the
  CLIP stream keeps R = 14 of 144 (9 salient, 5 anchors) and the video stream R = 6 of 64 (4 + 2): about
  16 x 20 = 320 tokens for 16 frames (the anchor split's floors can drop a few), at every budget. The per-frame
  budget is ignored and a clip budget is refused. The budget-driven ratio (above) stays the default.
- Anchor count clamp. An anchor frame cannot take more anchors than it has non-salient tokens
  (``N - S``). The release would fail in ``topk`` there; this can only happen at very high retention. Whether a
  frame merges its own tokens or its segment's is still decided by the unclamped count (count == C: own frame).
- Determinism. The release adds ``rand * 1e-6`` to the density to break ties. Here ties are broken by index
  instead: among equal densities the lower index counts as denser. Top-k picks (cut similarities, salient
  scores, anchor scores) keep the lower index on ties. Merge argmax ties go to the higher-ranked anchor (the
  anchors are ordered by score, as the release's ``topk`` returns them). With ``c - 1 > F - 1`` every boundary is
  cut (the release's ``topk`` would fail). Scores and merged features use at least float32 (``upcast``) and are
  cast back to the stream's dtype. Distances are exact pairwise norms (``cdist``'s non-matmul mode).
- Not reproduced: the release gives each kept token its *original* position id (it prunes inside the LLM forward).
  Here the pruned sequence reaches the LLM with contiguous positions, like every pre-LLM method in this path. It
  also uses one text-free rule, so ``uses_text`` is False.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F

from ..clip_level import ClipSelector, ClipTokens, FrameSelection, clip_target
from ..methods import register_method
from .common import complement, multihead_cls_attention, ranked, released_settings, upcast

__all__ = [
    "FastVIDSelector",
    "RELEASED_SETTINGS",
    "frame_similarities",
    "dynamic_segments",
    "stprune_split",
    "anchor_counts",
    "dpc_knn",
    "merge_into_anchors",
    "fastvid_stream",
    "fastvid_token_count",
    "fastvid_retention",
]

GLOBAL_FEATURES = ("cls", "mean")
# what released=True runs: scripts/eval.sh (r, c, tau, d, p, beta) and modeling_qwen2.py's hard-coded k = 4
RELEASED_SETTINGS = {"retention_ratio": 0.10, "c": 8, "tau": 0.9, "d": 0.4, "p": 4, "beta": 0.6, "k": 4}


# ---------------------------------------------------------------------------- Dynamic Temporal Segmentation
def frame_similarities(global_features: torch.Tensor) -> torch.Tensor:
    """(F-1,) cosine similarity of each frame's global feature (F, D) to the next frame's."""
    g = upcast(global_features)
    g = g / g.norm(dim=1, keepdim=True)
    return (g[:-1] * g[1:]).sum(dim=1)


def dynamic_segments(global_features: torch.Tensor, c: int = 8, tau: float = 0.9) -> list[int]:
    """Segment lengths (summing to F) of FastVID's Dynamic Temporal Segmentation.

    A cut goes after frame t for the ``c - 1`` lowest ``s_t = cos(g_t, g_{t+1})``, with the lower t first on ties,
    and for every ``s_t < tau``."""
    if c < 1:
        raise ValueError(f"c must be >= 1, got {c}")
    frames = global_features.shape[0]
    if frames <= 1:
        return [frames] if frames else []
    sims = frame_similarities(global_features)
    lowest = torch.sort(sims, stable=True).indices[: min(c - 1, sims.numel())]
    cuts = sorted(set(lowest.tolist()) | set((sims < tau).nonzero().flatten().tolist()))
    bounds = [-1, *cuts, frames - 1]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


# ---------------------------------------------------------------------------- Density Spatiotemporal Pruning
def stprune_split(retain: int, d: float = 0.4) -> tuple[int, int]:
    """(salient S, context C) per frame for ``retain`` = R tokens per frame: ``C = int(R d)``, ``S = R - C``."""
    context = int(retain * d)
    return retain - context, context


def anchor_counts(segments: list[int], context: int, p: int = 4) -> list[int]:
    """Unclamped anchor (context) tokens per frame. A segment of L frames spreads ``context * L`` anchors over its
    ``ceil(L / p)`` anchor frames (its last frame, then every p-th frame back), ``(context * L) // ceil(L / p)``
    each; every other frame gets 0."""
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    counts = []
    for length in segments:
        anchor_frames = -(-length // p)
        per_anchor = context * length // anchor_frames
        counts.extend(per_anchor if (length - 1 - i) % p == 0 else 0 for i in range(length))
    return counts


def dpc_knn(tokens: torch.Tensor, k: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(density, delta, score), each (M,), of one frame's tokens (M, D) by FastVID's DPC-KNN.

    ``dist = ||x_i - x_j|| / sqrt(D)``, ``density = exp(-mean of the k smallest dist^2)`` (self included). ``delta``
    is the distance to the nearest denser token; the densest token takes the largest distance in the matrix.
    Among equal densities the lower index counts as denser. ``score = density * delta``."""
    x = upcast(tokens)
    count, dim = x.shape
    if count == 0:
        empty = x.new_zeros(0)
        return empty, empty, empty
    dist = torch.cdist(x[None], x[None], compute_mode="donot_use_mm_for_euclid_dist")[0] / math.sqrt(dim)
    nearest = dist.topk(min(k, count), dim=-1, largest=False).values
    density = torch.exp(-(nearest**2).mean(dim=-1))
    index = torch.arange(count, device=x.device)
    above, tied = density[None, :] > density[:, None], density[None, :] == density[:, None]
    denser = above | (tied & (index[None, :] < index[:, None]))  # denser[i, j]: token j counts as denser than i
    delta = torch.where(denser, dist, dist.max()).min(dim=-1).values
    return density, delta, density * delta


def merge_into_anchors(anchors: torch.Tensor, pool: torch.Tensor, beta: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """(merged anchors (A, D), assignment (P,)). Each pool token joins the anchor of highest cosine similarity
    (the first such anchor on ties). An anchor with n members becomes ``w a + (1 - w) mean(members)``, where
    ``w = max(1 / (n + 1), beta)``; with no members it stays ``a``."""
    a, x = upcast(anchors), upcast(pool)
    assign = (F.normalize(x, dim=-1) @ F.normalize(a, dim=-1).T).argmax(dim=1)
    one_hot = F.one_hot(assign, a.shape[0]).to(x.dtype)  # (P, A)
    members = one_hot.sum(dim=0).unsqueeze(1)
    weight = (1 / (members + 1)).clamp(min=beta)
    mean = one_hot.T @ x / members.clamp(min=1)
    return weight * a + (1 - weight) * mean, assign


def fastvid_stream(tokens: torch.Tensor, salient_scores: torch.Tensor, segments: list[int], retain: int,
                   d: float = 0.4, p: int = 4, beta: float = 0.6, k: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One stream's FastVID selection: per frame (token indices ascending, features in at least float32).

    ``tokens`` (F, N, D) are the LLM tokens and ``salient_scores`` (F, N) the attention scores; ``segments`` are the
    segment lengths and ``retain`` = R tokens per frame."""
    frames, num, _ = tokens.shape
    if sum(segments) != frames:
        raise ValueError(f"segments {segments} do not cover {frames} frames")
    if not 0 <= retain <= num:
        raise ValueError(f"retain must be in [0, {num}], got {retain}")
    x = upcast(tokens)
    salient_num, context_num = stprune_split(retain, d)
    wanted = anchor_counts(segments, context_num, p)
    salient = [ranked(salient_scores[f])[:salient_num] for f in range(frames)]
    rest = [complement(salient[f], num) for f in range(frames)]
    out, start = [], 0
    for length in segments:
        segment_pool = torch.cat([x[f, rest[f]] for f in range(start, start + length)])
        for f in range(start, start + length):
            indices, features = salient[f], x[f, salient[f]]
            count = min(wanted[f], rest[f].numel())
            if count > 0:
                candidates = x[f, rest[f]]
                order = ranked(dpc_knn(candidates, k)[2])[:count]
                pool = candidates if wanted[f] == context_num else segment_pool
                merged, _ = merge_into_anchors(candidates[order], pool, beta)
                indices, features = torch.cat([indices, rest[f][order]]), torch.cat([features, merged])
            order = torch.argsort(indices)
            out.append((indices[order], features[order]))
        start += length
    return out


# ---------------------------------------------------------------------------- budgets
def fastvid_token_count(segments: list[int], num_tokens: int, retain: int, d: float = 0.4, p: int = 4) -> int:
    """Tokens one stream sends: ``F S`` salient tokens plus each anchor frame's clamped anchors."""
    salient_num, context_num = stprune_split(retain, d)
    anchors = sum(min(n, num_tokens - salient_num) for n in anchor_counts(segments, context_num, p))
    return sum(segments) * salient_num + anchors


def fastvid_retention(segments: list[int], stream_tokens: tuple[int, ...], clip_budget: int, d: float = 0.4,
                      p: int = 4) -> tuple[int, ...]:
    """Per stream ``R_s = floor(N_s r)`` for the largest common ratio r (one of ``k / N_s``) whose summed
    ``fastvid_token_count`` fits ``clip_budget``."""
    ratios = sorted({Fraction(j, n) for n in stream_tokens for j in range(n + 1)}, reverse=True)
    for ratio in ratios:
        retain = tuple(math.floor(n * ratio) for n in stream_tokens)
        if sum(fastvid_token_count(segments, n, r, d, p) for n, r in zip(stream_tokens, retain)) <= clip_budget:
            return retain
    return tuple(0 for _ in stream_tokens)


# ---------------------------------------------------------------------------- the method
@register_method("fastvid")
class FastVIDSelector(ClipSelector):
    """FastVID on both VideoGLaMM streams: one dynamic segmentation, then density spatiotemporal pruning of each
    stream. See the module docstring for the released rule and every adaptation. ``released``: the release's
    retention ratio and settings whatever the budget."""

    def __init__(self, c: int = 8, tau: float = 0.9, d: float = 0.4, p: int = 4, beta: float = 0.6, k: int = 4,
                 global_feature: str = "cls", retention_ratio: float | None = None, released: bool = False):
        given = {"retention_ratio": retention_ratio, "c": c, "tau": tau, "d": d, "p": p, "beta": beta, "k": k}
        settings = released_settings("fastvid", released, given, RELEASED_SETTINGS)
        retention_ratio = settings["retention_ratio"]
        self.released = released
        if c < 1 or p < 1 or k < 1:
            raise ValueError(f"c, p and k must be >= 1, got c={c}, p={p}, k={k}")
        if not 0.0 <= d <= 1.0:
            raise ValueError(f"d must be in [0, 1], got {d}")
        if global_feature not in GLOBAL_FEATURES:
            raise ValueError(f"global_feature must be one of {GLOBAL_FEATURES}, got {global_feature!r}")
        if retention_ratio is not None and not 0.0 <= retention_ratio <= 1.0:
            raise ValueError(f"retention_ratio must be in [0, 1], got {retention_ratio}")
        self.c, self.tau, self.d, self.p, self.beta, self.k = c, tau, d, p, beta, k
        self.global_feature, self.retention_ratio = global_feature, retention_ratio

    def clip_budget_conflict(self) -> str | None:
        if self.released:
            return (f"released=True runs the release's retention ratio r = {RELEASED_SETTINGS['retention_ratio']} "
                    "whatever the budget (drop the clip budget, or released)")
        return None

    def global_features(self, tokens: ClipTokens) -> torch.Tensor:
        """(F, D) per-frame global features for the segmentation."""
        if self.global_feature == "cls":
            return tokens.frames.states[:, 0]
        return tokens.image_tokens.mean(dim=1)

    def segments(self, tokens: ClipTokens) -> list[int]:
        return dynamic_segments(self.global_features(tokens), self.c, self.tau)

    def salient_scores(self, tokens: ClipTokens) -> tuple[torch.Tensor, torch.Tensor]:
        """((F, Ni), (F, Nv)): the head-averaged CLS attention, averaged over each image cell, and over the CLIP
        patches covering each video token's pixels (overlap-weighted; -inf outside CLIP's crop)."""
        frames = tokens.frames
        attention = multihead_cls_attention(frames.query, frames.key, frames.num_heads).mean(dim=1)  # (F, 576)
        cells = tokens.cell_members().to(attention.device)
        return attention[:, cells].mean(-1), tokens.video_scores(attention, uncovered=-math.inf)

    def retention(self, tokens: ClipTokens, segments: list[int], budget: int | None,
                  clip_budget: int | None) -> tuple[int, int] | None:
        """(R_image, R_video) per frame, or None to send every token."""
        self.refuse_clip_budget(clip_budget)
        streams = (tokens.image_tokens.shape[1], tokens.video_tokens.shape[1])
        if clip_budget is None and self.retention_ratio is not None:
            return tuple(int(n * self.retention_ratio) for n in streams)
        target = clip_target(tokens, budget, clip_budget)
        if target >= tokens.num_frames * sum(streams):
            return None
        return fastvid_retention(segments, streams, target, self.d, self.p)

    def select_clip(self, tokens: ClipTokens, budget: int | None, clip_budget: int | None = None) -> list[FrameSelection]:
        segments = self.segments(tokens)
        retain = self.retention(tokens, segments, budget, clip_budget)
        if retain is None:
            return FrameSelection.everything(tokens)
        image_scores, video_scores = self.salient_scores(tokens)
        options = dict(d=self.d, p=self.p, beta=self.beta, k=self.k)
        image = fastvid_stream(tokens.image_tokens, image_scores, segments, retain[0], **options)
        video = fastvid_stream(tokens.video_tokens, video_scores, segments, retain[1], **options)
        return [FrameSelection.build(tokens, image_features, video_features, cells, blocks)
                for (cells, image_features), (blocks, video_features) in zip(image, video)]

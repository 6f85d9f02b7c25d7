"""PruneVid (Huang, Zhou and Han, 2024; ACL 2025), "Visual Token Pruning for Efficient Video Large Language Models", as
a clip-level method with an in-LLM part.

Source: github.com/Visual-AI/PruneVid (PLLaVA-7B). The pre-LLM part is ``PllavaForConditionalGeneration.
merge_frames_dynamic`` with ``cluster_dpc_knn``, ``refine_clusters``, ``segment_lengths`` and ``compute_cluster_vectors``
(``models/pllava/modeling_pllava.py``). The in-LLM part is ``LlamaModelVTP.forward`` (``models/pllava/llama.py``),
``LlamaAttention.forward`` (the attention it reads, same file) and ``VTPWindowCache`` (``models/pllava/elastic_cache.py``).
The defaults are those of ``scripts/eval.sh`` (README: "the default setting is used in our paper"): ``selected_layer`` K =
10, ``alpha`` = 0.4, ``tau`` = 0.8, ``temporal_segment_ratio`` = 0.25 and ``cluster_ratio`` = 0.5. The hard-coded values are
k = 7 neighbours for both clusterings and spatial clustering only above 14 tokens. VCG-Bench uses K = 5 instead.

The released rule, on PLLaVA's LLM input tokens: F = 16 frames of 12x12 tokens after the projector and 3D pooling.

1. Scenes (``merge_frames_dynamic``). Each frame's mean token goes through DPC-KNN (below) with ``int(F * 0.25)`` = 4
   clusters and k = 7. ``refine_clusters`` then makes the labels contiguous in time. For each label it finds the runs of
   consecutive frames. A label whose longest run has length 1 loses all its frames. Otherwise only its runs of maximal
   length stay, and ties all stay. Left to right, each run of freed frames joins the neighbour whose current run is
   longer. On a tie it joins the left one, and with no neighbour at all it takes label 0. The windows (scenes) are
   the runs of equal labels (``segment_lengths``).
2. Static tokens. In a window of W frames, position l is static when ``(sum_{w,t} cos(x_w[l], x_t[l]) - W) / (W (W-1))
   > tau``. That is the mean pairwise cosine over ordered pairs, with each self term counted as exactly 1. A static
   position becomes one token, its mean over the W frames, and static tokens keep raster order.
3. Spatial merging. If the window has more than 14 static tokens, they are clustered by DPC-KNN into
   ``int(n * cluster_ratio)`` clusters with k = 7, and each cluster becomes the mean of its members
   (``compute_cluster_vectors``). The dynamic tokens are handled the same way separately for each frame of the window.
   Every frame of a window has the same dynamic positions, so every frame keeps the same count.
4. Order. Each window contributes its static tokens, then frame by frame its dynamic tokens, and the windows follow
   each other in time.
5. DPC-KNN (``cluster_dpc_knn``). It uses ``d = cdist(x, x) / sqrt(C)`` in float32, and the density of token i is
   ``exp(-mean of d^2 over its k nearest)``, self included. The release adds ``torch.rand * 1e-6`` to the density. The
   parent distance is the smallest distance to a denser token; the densest token takes the matrix maximum instead.
   The centres are the ``topk`` of ``density * parent distance``, and the cluster ids follow that rank order. Each
   token joins its nearest centre (``argmin``, ties to the lower rank), and every centre joins itself.
6. In the LLM (``LlamaModelVTP.forward`` -> ``VTPWindowCache.prompt_prefill``). Layers 0..K run on the whole prompt.
   Layer K is called with ``output_attentions=True``. Its eager ``LlamaAttention.forward`` then returns
   ``attn_weights_wo_pos = softmax(q k^T / sqrt(d))``, computed from q and k *before* the rotary embedding and with *no
   mask*: every query sees every key of the prompt. ``obtain_language_attention`` takes the rows of the text after the
   video (``img_end + 1 :``, everything up to the end of the prompt) and the columns of the video tokens.
   ``process_attention`` reduces them by a max over heads, then a max over those queries. Each window keeps the top
   ``int(static_size * alpha)`` of its static tokens, and each of its frames keeps the top ``int(n * alpha)`` of that
   frame's dynamic tokens. The kept video tokens stay in order with their original position ids. The KV cache of
   layers 0..K is cut to the same positions, and layers K+1.. run on the short sequence (``cache_position`` restarts
   at 0). Decoding feeds one token at a time against that pruned cache in every layer. Its position id continues the
   *unpruned* numbering (``original_number``).

Adaptation to VideoGLaMM (``ClipTokens``, two visual streams):

- Both streams get the same rules, each on its own: the CLIP stream's (F, 144, H) tokens on a 12x12 grid, and the
  InternVideo2 stream's (F, 64, H) tokens on an 8x8 grid, with the same tau, ratios, k and 14-token threshold. Each
  stream has its own scene segmentation, computed from its own frame means. Like PLLaVA's, these are the LLM input
  tokens: projected and pooled.
- Frame records. A window's static tokens go at the front of the first frame of that window in its stream. The LLM
  sequence (every frame's image tokens, then every frame's video tokens) therefore has the release's order within each
  stream. A merged token stands for its DPC-KNN centre's cell. An unmerged static or dynamic token stands for its own
  cell. ``image_cells`` / ``video_cells`` list the cells in sequence order, not sorted. ``clip_indices`` holds the CLIP
  patches of the image cells that are sent.
- Question positions. The release rule is "every text position after the last visual token, up to the end of the
  prompt". For VideoGLaMM's Phi-3 prompt, these are the tokens of ``"\\n{question}<|end|>\\n<|assistant|>\\n"``. Their
  rows of the unmasked, un-rotated softmax over all of the prompt's keys rank the visual tokens. In generation the
  prompt is known: ``generation_forward`` scores only the prompt, both with and without the cache. In the no-cache loop
  every step therefore keeps the prompt's choice, while the generated tokens still pass layers 0..K on the whole
  sequence. A teacher-forced ``prefill`` scores each row up to ``prompt_lengths`` (the segmenter passes where each row's
  prompt ends, so the fixed answer's tokens are not scored, as in generation); without them, the whole row.
- Layer K. The default is the release's 10, which suits Phi-3-mini's 32 layers, as it does PLLaVA's 32. On an LLM with
  fewer than K + 2 layers (the tiny test models), K becomes ``num_layers - 2``, with a warning, so at least one layer runs pruned.
- Budget. The release has one in-LLM ratio, ``alpha``. Here the pre-LLM rules keep the release's values, and ``alpha``
  is set so that the visual tokens in layers K+1.. (and in the cache) meet the target: ``clip_budget``, or
  ``default_clip_budget(tokens, budget)`` when it is None (485 for budget 81 and 16 frames). The count after layer K is
  ``sum over groups of int(n_g * alpha)``. The groups are every window's static tokens and every frame's dynamic
  tokens, in both streams. That count is monotone in ``alpha``, and ``alpha`` is the largest ratio among
  {j / n_g} and 1 whose count does not exceed the target. With ``alpha`` set explicitly (0.4 is the release's), the
  budgets are not used. The counts are reported honestly. ``VideoSegmentationResult.llm_visual_tokens`` and the
  ``FrameSelection`` records hold what enters the LLM after the pre-LLM merging. What layers K+1.. process is
  ``PruneVidPlan.tokens_after_layer``, which ``PruneVidSelector.last_stats`` also records. Deriving ``alpha`` from
  the target can move PruneVid far from its paper: on the clip of issue #19 the merged clip already fitted the 485
  tokens of budget 81, so alpha = 1 and the question-guided selection kept everything.
- The paper's operating point: ``released=True`` (spec ``prunevid:released=True``) runs the release's values whatever
  the budget: alpha = 0.4, K = 10, tau = 0.8, ``int(0.25 F)`` scenes, cluster ratio 0.5, k = 7 and spatial merging
  above 14 tokens (``PRUNEVID_DEFAULTS``). Source (Visual-AI/PruneVid at b12600c): ``scripts/eval.sh:9-13``
  (``selected_layers=(10)``, ``alphas=(0.4)``, ``taus=(0.8)``, ``temporal_segment_ratios=(0.25)``,
  ``cluster_ratios=(0.5)``), ``models/pllava/modeling_pllava.py:768`` (the scene clustering), ``:796-797`` and
  ``:807-808`` (``> 14``, ``k=7``), ``:967`` (``threshold=self.config.tau, k=7``) and ``models/pllava/
  elastic_cache.py:136`` and ``:142`` (``int(size * alpha)`` per group). Layers K+1.. then see
  ``sum over groups of int(0.4 n_g)`` visual tokens (about 40% of the merged clip) at every budget. The per-frame
  budget is ignored and a clip budget is refused. The budget-driven alpha (above) stays the default.
- Determinism. The density noise ``rand * 1e-6`` is kept, drawn from a generator seeded with ``seed`` (default 0),
  fresh for each clustering. Scores, similarities and means are computed in float32 and cast back to the stream's
  dtype, where the release uses the model dtype.
- Guards the release lacks. k is capped at the number of tokens. A clustering gets at least one cluster, and a video
  gets at least one scene. A one-frame window has no static tokens; the release's formula is 0/0 there, which cannot
  happen for F >= 2 after ``refine_clusters``. A window whose positions are all static sends no dynamic tokens; the
  release's ``view(window_size, -1)`` of that empty tensor would fail. ``prefill`` also takes batches of right-padded
  rows, each scored on its own valid positions, where the release asserts a batch of one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Sequence

import torch
import torch.nn.functional as F

from ...lvlm import VISUAL_TOKEN_ID, SplicedBatch, generation_row
from ..clip_level import ClipSelector, ClipTokens, FrameSelection, clip_target
from ..methods import register_method
from .common import released_settings

if TYPE_CHECKING:
    from ...fastv import FastVPrefill, KeepGroup

__all__ = [
    "PRUNEVID_DEFAULTS",
    "density_noise",
    "dpc_knn",
    "cluster_means",
    "refine_segments",
    "run_lengths",
    "scene_windows",
    "static_positions",
    "MergedWindow",
    "MergedStream",
    "merge_stream",
    "retained",
    "tokens_after_layer",
    "alpha_for_budget",
    "question_visual_attention",
    "PruneVidPlan",
    "PruneVidStats",
    "PruneVidSelector",
]

# scripts/eval.sh (the paper's setting) and the constants hard-coded in merge_frames_dynamic
PRUNEVID_DEFAULTS = {"layer": 10, "alpha": 0.4, "tau": 0.8, "temporal_segment_ratio": 0.25, "cluster_ratio": 0.5, "k": 7,
                     "min_cluster_tokens": 14}
NOISE_SCALE = 1e-6  # cluster_dpc_knn: density + torch.rand(...) * 1e-6


def _llm_tools():
    """``litelvlm.fastv`` (the in-LLM machinery), imported on first use: it pulls in transformers."""
    from ... import fastv

    return fastv


# ----------------------------------------------------------------------------- pre-LLM: clustering


def density_noise(n: int, seed: int = 0) -> torch.Tensor:
    """(n,) float32 uniform [0, 1) draws of a generator seeded with ``seed``: the release's ``torch.rand`` density
    noise made reproducible (scaled by 1e-6 inside ``dpc_knn``)."""
    return torch.rand(n, generator=torch.Generator().manual_seed(seed))


def dpc_knn(x: torch.Tensor, cluster_num: int, k: int = 7, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """DPC-KNN of the release (``cluster_dpc_knn``, one batch row): ``x`` (N, C) -> (labels (N,), centres (cluster_num,)).

    ``labels[i]`` is the cluster of token i, numbered by the centres' rank (``centres[c]`` is the token that is centre
    c); ``noise`` (N,) uniform draws added to the density times 1e-6 (None: no noise). ``k`` is capped at N."""
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"dpc_knn clusters (N, C) tokens with N >= 1, got shape {tuple(x.shape)}")
    n, c = x.shape
    if not 1 <= cluster_num <= n:
        raise ValueError(f"cluster_num must be in [1, {n}] for {n} tokens, got {cluster_num}")
    x32 = x.float()
    dist = torch.cdist(x32[None], x32[None])[0] / (c**0.5)
    nearest = dist.topk(min(k, n), dim=-1, largest=False).values
    density = (-(nearest**2).mean(dim=-1)).exp()
    if noise is not None:
        density = density + noise.to(device=density.device, dtype=density.dtype) * NOISE_SCALE
    denser = density[None, :] > density[:, None]  # [i, j]: token j is denser than token i
    parent = torch.where(denser, dist, dist.max()).min(dim=-1).values
    centres = (parent * density).topk(cluster_num).indices
    labels = dist[centres].argmin(dim=0)
    labels[centres] = torch.arange(cluster_num, device=labels.device)
    return labels, centres


def cluster_means(x: torch.Tensor, labels: torch.Tensor, num: int) -> torch.Tensor:
    """(num, C) float32: the mean of each cluster's members (``compute_cluster_vectors``; an empty cluster: zeros)."""
    onehot = F.one_hot(labels, num_classes=num).float()  # (N, num)
    counts = onehot.sum(0)
    sums = onehot.t() @ x.float()
    return torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], torch.zeros_like(sums))


def refine_segments(labels: Sequence[int]) -> list[int]:
    """``refine_clusters`` of the release for one video: per label only its longest runs of consecutive frames stay
    (all of them when several tie; none when the longest is one frame); freed runs join, left to right, the neighbour
    whose current run is longer (left on ties; label 0 with no neighbour)."""
    labels = [int(v) for v in labels]
    n = len(labels)
    refined = list(labels)
    runs: dict[int, list[tuple[int, int]]] = {}
    start = 0
    for i in range(1, n + 1):
        if i == n or labels[i] != labels[start]:
            runs.setdefault(labels[start], []).append((start, i - 1))
            start = i
    for segments in runs.values():
        longest = max(end - s + 1 for s, end in segments)
        for s, end in segments:
            if longest == 1 or end - s + 1 != longest:
                refined[s : end + 1] = [-1] * (end - s + 1)
    i = 0
    while i < n:
        if refined[i] != -1:
            i += 1
            continue
        start = i
        while i < n and refined[i] == -1:
            i += 1
        end = i - 1
        left = right = None
        left_length = right_length = 0
        if start > 0:
            left = refined[start - 1]
            j = start - 1
            while j >= 0 and refined[j] == left:
                j -= 1
            left_length = start - 1 - j
        if end < n - 1:
            right = refined[end + 1]
            j = end + 1
            while j < n and refined[j] == right:
                j += 1
            right_length = j - end - 1
        if left_length > right_length:
            label = left
        elif right_length > left_length:
            label = right
        else:
            label = left if left is not None else right
        refined[start : end + 1] = [0 if label is None else label] * (end - start + 1)
    return refined


def run_lengths(labels: Sequence[int]) -> list[int]:
    """Lengths of the runs of equal consecutive labels (``segment_lengths``)."""
    lengths: list[int] = []
    for i, label in enumerate(labels):
        if i and label == labels[i - 1]:
            lengths[-1] += 1
        else:
            lengths.append(1)
    return lengths


def scene_windows(tokens: torch.Tensor, temporal_segment_ratio: float = 0.25, k: int = 7, seed: int = 0) -> tuple[list[int], list[int]]:
    """The scenes of one stream (F, N, H): (refined frame labels, window lengths). DPC-KNN over the frames' mean tokens
    into ``max(1, int(F * ratio))`` clusters, then ``refine_segments`` and ``run_lengths``."""
    frames = tokens.shape[0]
    means = tokens.float().mean(dim=1)
    labels, _ = dpc_knn(means, max(1, int(frames * temporal_segment_ratio)), k, density_noise(frames, seed))
    refined = refine_segments(labels.tolist())
    return refined, run_lengths(refined)


def static_positions(window: torch.Tensor, tau: float = 0.8) -> torch.Tensor:
    """(N,) bool: the positions of a window (W, N, H) whose mean pairwise cosine over the W frames exceeds ``tau``:
    ``(sum over all ordered pairs incl. self - W) / (W (W - 1)) > tau`` (none for W = 1)."""
    length = window.shape[0]
    if length < 2:
        return torch.zeros(window.shape[1], dtype=torch.bool, device=window.device)
    normed = F.normalize(window.float(), p=2, dim=-1)
    similarity = torch.einsum("wnc,tnc->wtn", normed, normed)
    return (similarity.sum(dim=(0, 1)) - length) / (length * (length - 1)) > tau


@dataclass
class MergedWindow:
    """One scene of one stream after merging: its frames ``start .. start + length - 1``; ``static`` (s, H) tokens
    standing for ``static_cells`` (a cluster: its centre's cell); per frame ``dynamic[i]`` (d, H) for ``dynamic_cells[i]``;
    ``static_mask`` (N,) the positions judged static."""

    start: int
    length: int
    static_mask: torch.Tensor
    static: torch.Tensor
    static_cells: torch.Tensor
    dynamic: list[torch.Tensor]
    dynamic_cells: list[torch.Tensor]

    @property
    def group_sizes(self) -> list[int]:
        """The in-LLM selection groups of this window: its static tokens, then each frame's dynamic tokens."""
        return [self.static.shape[0]] + [d.shape[0] for d in self.dynamic]


@dataclass
class MergedStream:
    labels: list[int]  # refined scene label of every frame
    windows: list[MergedWindow]

    @property
    def num_tokens(self) -> int:
        return sum(sum(w.group_sizes) for w in self.windows)


def _spatial_merge(x: torch.Tensor, cells: torch.Tensor, cluster_ratio: float, k: int, min_cluster_tokens: int,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, cells) of a set of tokens (n, H) at ``cells``: unchanged when n <= ``min_cluster_tokens``, else the
    DPC-KNN cluster means in centre-rank order and their centres' cells."""
    n = x.shape[0]
    if n <= min_cluster_tokens:
        return x.float(), cells
    num = max(1, int(n * cluster_ratio))
    labels, centres = dpc_knn(x, num, k, density_noise(n, seed))
    return cluster_means(x, labels, num), cells[centres]


def merge_stream(tokens: torch.Tensor, *, tau: float = 0.8, temporal_segment_ratio: float = 0.25, cluster_ratio: float = 0.5,
                 k: int = 7, min_cluster_tokens: int = 14, seed: int = 0) -> MergedStream:
    """``merge_frames_dynamic`` of the release on one stream's LLM tokens (F, N, H): scenes, static tokens averaged over
    their scene, static and per-frame dynamic tokens clustered spatially (merged tokens in float32)."""
    if tokens.dim() != 3 or tokens.shape[0] < 1:
        raise ValueError(f"a stream's tokens must be (F, N, H) with F >= 1, got shape {tuple(tokens.shape)}")
    labels, lengths = scene_windows(tokens, temporal_segment_ratio, k, seed)
    x = tokens.float()
    cells = torch.arange(tokens.shape[1], device=tokens.device)
    windows, start = [], 0
    for length in lengths:
        window = x[start : start + length]
        static = static_positions(window, tau)
        static_tokens, static_cells = _spatial_merge(window[:, static].mean(dim=0), cells[static], cluster_ratio, k,
                                                     min_cluster_tokens, seed)
        dynamic, dynamic_cells = [], []
        for frame in window:
            merged, merged_cells = _spatial_merge(frame[~static], cells[~static], cluster_ratio, k, min_cluster_tokens, seed)
            dynamic.append(merged)
            dynamic_cells.append(merged_cells)
        windows.append(MergedWindow(start, length, static, static_tokens, static_cells, dynamic, dynamic_cells))
        start += length
    return MergedStream(labels, windows)


# ----------------------------------------------------------------------------- budget


def retained(n: int, alpha: float) -> int:
    """Tokens a group of ``n`` keeps in the LLM: ``int(n * alpha)`` (``process_attention``)."""
    return int(n * alpha)


def tokens_after_layer(group_sizes: Sequence[int], alpha: float) -> int:
    """Visual tokens that layers K+1.. process: the sum of ``retained`` over the groups."""
    return sum(retained(n, alpha) for n in group_sizes)


def alpha_for_budget(group_sizes: Sequence[int], target: int) -> float:
    """The largest ``alpha`` among {j / n for each group size n} and 1 whose ``tokens_after_layer`` does not exceed
    ``target`` (monotone in alpha, so a bisection)."""
    sizes = [int(n) for n in group_sizes if n > 0]
    if tokens_after_layer(sizes, 1.0) <= target:
        return 1.0
    candidates = sorted({j / n for n in set(sizes) for j in range(n + 1)})
    low, high = 0, len(candidates) - 1  # candidates[0] = 0.0 always fits
    while low < high:
        mid = (low + high + 1) // 2
        if tokens_after_layer(sizes, candidates[mid]) <= target:
            low = mid
        else:
            high = mid - 1
    return candidates[low]


# ----------------------------------------------------------------------------- in the LLM


def question_visual_attention(decoder_layer, hidden: torch.Tensor, token_ids: torch.Tensor, ends: Sequence[int]) -> torch.Tensor:
    """(B, L) float32: the release's question-to-video score of every visual position (0 elsewhere).

    For row b, the keys are positions ``0 .. ends[b] - 1`` and the queries are the text positions after the row's last
    visual token (``token_ids == -1``) before ``ends[b]``. The attention is ``softmax(q k^T * d^-0.5)`` of layer
    ``decoder_layer`` on its input ``hidden`` (B, L, H): it uses the un-rotated q and k (``attn_weights_wo_pos``) and no
    mask at all. A visual token's score is the max over heads, then over queries."""
    attn = decoder_layer.self_attn
    (q_weight, q_bias), (k_weight, k_bias) = _llm_tools()._query_key_weights(attn)
    head_dim = attn.head_dim
    heads, kv_heads = q_weight.shape[0] // head_dim, k_weight.shape[0] // head_dim
    scaling = getattr(attn, "scaling", head_dim**-0.5)
    normed = decoder_layer.input_layernorm(hidden)
    scores = torch.zeros(hidden.shape[:2], dtype=torch.float32, device=hidden.device)
    for b, end in enumerate(ends):
        visual = (token_ids[b, :end] == VISUAL_TOKEN_ID).nonzero().flatten()
        if visual.numel() == 0:
            raise ValueError(f"row {b} has no visual tokens before position {end}")
        first = int(visual.max()) + 1
        if first >= end:
            raise ValueError(f"row {b} has no text after its visual tokens: PruneVid ranks them by the question's attention")
        query = F.linear(normed[b, first:end], q_weight, q_bias).view(end - first, heads, head_dim).transpose(0, 1)
        key = F.linear(normed[b, :end], k_weight, k_bias).view(end, kv_heads, head_dim).transpose(0, 1)
        key = key.repeat_interleave(heads // kv_heads, dim=0)  # repeat_kv: query head h reads kv head h // groups
        weights = (query.float() @ key.float().transpose(-1, -2) * scaling).softmax(dim=-1)  # (heads, Q, end)
        scores[b, visual] = weights[:, :, visual].amax(dim=0).amax(dim=0)
    return scores


@dataclass
class PruneVidPlan:
    """The in-LLM part for one visual sequence. ``groups`` holds the (start, size) of each selection group among the
    row's visual tokens: per stream and window, the static tokens, then each frame's dynamic tokens. Each group keeps
    ``int(size * alpha)``. ``layer`` is the release's ``selected_layer`` K, the 0-based layer whose attention ranks the
    tokens; layers K+1.. and the whole KV cache keep only the chosen tokens."""

    groups: list[tuple[int, int]]
    alpha: float
    layer: int = 10
    num_visual: int | None = None

    def keep_groups(self, device=None) -> list[KeepGroup]:
        group = _llm_tools().KeepGroup
        return [group(torch.arange(s, s + n, device=device), retained(n, self.alpha)) for s, n in self.groups if n > 0]

    @property
    def tokens_after_layer(self) -> int:
        return tokens_after_layer([n for _, n in self.groups], self.alpha)

    def scoring_layer(self, num_layers: int) -> int:
        """K for an LLM of ``num_layers`` layers: ``layer``, or ``num_layers - 2`` (with a warning that says so) when
        it is too shallow for it."""
        if self.layer <= num_layers - 2:
            return self.layer
        k = max(num_layers - 2, 0)
        warnings.warn(f"prunevid: layer K={self.layer} does not fit an LLM of {num_layers} layers (K + 2 needed); scoring "
                      f"at layer {k} instead (choose with get_method('prunevid', layer=...))", stacklevel=2)
        return k

    def prefill(self, llm, batch: SplicedBatch, use_cache: bool = False, prompt_lengths: Sequence[int] | None = None) -> FastVPrefill:
        """Run ``batch`` (right-padded rows) through the LLM. Layers 0..K see the whole rows, the visual tokens are chosen
        by ``question_visual_attention`` in layer K, and layers K+1.. see the shorter rows with the original position
        ids. ``prompt_lengths`` optionally limits each row's scoring (queries and keys) to its first positions.
        ``use_cache`` needs a batch of one row. It returns a cache where every layer holds only the staying positions."""
        from transformers.cache_utils import DynamicCache

        from ...hf_compat import cached_layer

        fv = _llm_tools()
        decoder = fv._decoder_of(llm)
        k = self.scoring_layer(len(decoder.layers))
        rows_count, length = batch.inputs_embeds.shape[:2]
        if use_cache and rows_count != 1:
            raise ValueError(f"use_cache needs a batch of one row (generation is per sequence), got {rows_count}")
        lengths = fv._row_lengths(batch.attention_mask).tolist()
        ends = lengths if prompt_lengths is None else [int(p) for p in prompt_lengths]
        if len(ends) != rows_count or any(not 1 <= e <= n for e, n in zip(ends, lengths)):
            raise ValueError(f"prompt_lengths {ends} must give one length in [1, row length] per row (row lengths {lengths})")
        if self.num_visual is not None:
            for b, n in enumerate(lengths):
                count = int((batch.token_ids[b, :n] == VISUAL_TOKEN_ID).sum())
                if count != self.num_visual:
                    raise ValueError(f"row {b} has {count} visual tokens; this plan was made for {self.num_visual}")
        positions = torch.arange(length, device=batch.inputs_embeds.device).unsqueeze(0)
        rows = fv._Rows(batch.inputs_embeds, batch.attention_mask, positions, batch.token_ids)
        causal_mask, rotary = fv._attention_inputs(decoder, rows)
        full_cache = DynamicCache() if use_cache else None
        hidden = fv._run_layers(decoder.layers[:k], rows.hidden, positions, causal_mask, rotary, full_cache)
        scores = question_visual_attention(decoder.layers[k], hidden, batch.token_ids, ends)
        hidden = fv._run_layers(decoder.layers[k : k + 1], hidden, positions, causal_mask, rotary, full_cache)
        groups = self.keep_groups(batch.inputs_embeds.device)
        stay, kept = fv._keep_plan(scores, rows, [groups] * rows_count)
        pruned = fv._gather_rows(rows, hidden, stay, keep_position_ids=True)
        cache = None
        if use_cache:
            cache = DynamicCache()
            for index in range(k + 1):
                keys, values = cached_layer(full_cache, index)
                cache.update(keys[:, :, stay[0]], values[:, :, stay[0]], index)
        causal_mask, rotary = fv._attention_inputs(decoder, pruned)
        hidden = fv._run_layers(decoder.layers[k + 1 :], pruned.hidden, pruned.positions, causal_mask, rotary, cache)
        return fv.FastVPrefill(decoder.norm(hidden), pruned.token_ids, pruned.positions, kept, cache, length)

    def generation_forward(self, llm, prompt_token_ids: torch.Tensor, use_cache: bool):
        """A ``litelvlm.decoding.generate`` ``forward``. The first call runs a PruneVid prefill that scores the prompt
        only. With the cache, each later call decodes one token against the pruned cache of every layer, at position
        ids that continue the unpruned numbering. Without the cache, every call runs a whole prefill, scored on the
        prompt again. ``forward.kept`` holds the first prefill's kept indices per group."""
        prompt_length = int(prompt_token_ids.shape[-1])

        def forward(inputs_embeds: torch.Tensor, state):
            if state is not None:
                fv = _llm_tools()
                num_layers = len(fv._decoder_of(llm).layers)
                hidden = fv.fastv_decode_step(llm, inputs_embeds, state["cache"], layer=num_layers,
                                              positions=(state["next"], state["next"]))
                state["next"] += 1
                return hidden, state
            out = self.prefill(llm, generation_row(inputs_embeds, prompt_token_ids), use_cache=use_cache,
                               prompt_lengths=[prompt_length])
            forward.kept = forward.kept if forward.kept is not None else out.kept[0]
            return out.hidden, ({"cache": out.cache, "next": out.length} if use_cache else None)

        forward.kept = None
        return forward


# ----------------------------------------------------------------------------- the method


@dataclass
class PruneVidStats:
    """The last clip's counts: visual tokens entering the LLM (after the pre-LLM merging) per stream, ``alpha``, the
    target it was chosen for (None: ``alpha`` given), and visual tokens in layers K+1.. and in the KV cache."""

    image_tokens: int
    video_tokens: int
    alpha: float
    target: int | None
    tokens_after_layer: int
    image_windows: list[int] = field(default_factory=list)
    video_windows: list[int] = field(default_factory=list)

    @property
    def pre_llm_tokens(self) -> int:
        return self.image_tokens + self.video_tokens


@register_method("prunevid")
class PruneVidSelector(ClipSelector):
    """PruneVid: scenes, static-token merging and DPC-KNN spatial merging before the LLM (both streams, same rules),
    then question-guided selection at layer K inside it (``llm_plan``). Module docstring: the release, the adaptation.

    ``alpha`` None (default) picks the in-LLM ratio that meets the clip budget; a float uses it as is (the release: 0.4).
    ``released``: every setting at the release's value (``PRUNEVID_DEFAULTS``), alpha included, whatever the budget.
    """

    uses_text: ClassVar[bool] = False

    def __init__(self, layer: int = 10, alpha: float | None = None, tau: float = 0.8, temporal_segment_ratio: float = 0.25,
                 cluster_ratio: float = 0.5, k: int = 7, min_cluster_tokens: int = 14, seed: int = 0, released: bool = False):
        given = {"layer": layer, "alpha": alpha, "tau": tau, "temporal_segment_ratio": temporal_segment_ratio,
                 "cluster_ratio": cluster_ratio, "k": k, "min_cluster_tokens": min_cluster_tokens}
        alpha = released_settings("prunevid", released, given, PRUNEVID_DEFAULTS)["alpha"]
        self.released = released
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise ValueError(f"layer must be an int >= 0 (the 0-based LLM layer whose attention ranks the tokens), got {layer!r}")
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1] or None (chosen from the budget), got {alpha!r}")
        for name, value in (("temporal_segment_ratio", temporal_segment_ratio), ("cluster_ratio", cluster_ratio)):
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        if k < 1 or min_cluster_tokens < 0:
            raise ValueError(f"k must be >= 1 and min_cluster_tokens >= 0, got k={k!r}, min_cluster_tokens={min_cluster_tokens!r}")
        self.layer, self.alpha, self.tau = layer, alpha, tau
        self.temporal_segment_ratio, self.cluster_ratio = temporal_segment_ratio, cluster_ratio
        self.k, self.min_cluster_tokens, self.seed = k, min_cluster_tokens, seed
        self._pending: dict | None = None
        self.last_stats: PruneVidStats | None = None

    def clip_budget_conflict(self) -> str | None:
        if self.alpha is None:
            return None
        fixed = "released=True runs the release's" if self.released else "alpha is"
        return f"{fixed} fixed in-LLM ratio alpha = {self.alpha}: give either alpha (or released) or a clip budget, not both"

    def merge(self, tokens: torch.Tensor) -> MergedStream:
        """``merge_stream`` of one stream's (F, N, H) tokens with this method's settings."""
        return merge_stream(tokens, tau=self.tau, temporal_segment_ratio=self.temporal_segment_ratio,
                            cluster_ratio=self.cluster_ratio, k=self.k, min_cluster_tokens=self.min_cluster_tokens, seed=self.seed)

    def select_clip(self, tokens: ClipTokens, budget: int | None, clip_budget: int | None = None) -> list[FrameSelection]:
        self.refuse_clip_budget(clip_budget)
        image, video = self.merge(tokens.image_tokens), self.merge(tokens.video_tokens)
        frames = tokens.num_frames
        image_rows, image_cells = _frame_rows(image, frames)
        video_rows, video_cells = _frame_rows(video, frames)
        out = [FrameSelection.build(tokens, image_rows[f], video_rows[f], image_cells[f], video_cells[f]) for f in range(frames)]
        groups, offset = [], 0
        for stream in (image, video):
            for window in stream.windows:
                for size in window.group_sizes:
                    groups.append((offset, size))
                    offset += size
        sizes = [n for _, n in groups]
        target = None
        if self.alpha is not None:
            alpha = self.alpha
        else:
            target = clip_target(tokens, budget, clip_budget)
            alpha = alpha_for_budget(sizes, target)
        image_counts = [s.image.shape[0] for s in out]
        video_count = sum(s.video.shape[0] for s in out)
        self._pending = {"image_counts": image_counts, "video_count": video_count, "groups": groups, "alpha": alpha}
        self.last_stats = PruneVidStats(image.num_tokens, video.num_tokens, alpha, target, tokens_after_layer(sizes, alpha),
                                        [w.length for w in image.windows], [w.length for w in video.windows])
        return out

    def llm_plan(self, image_counts: list[int], video_count: int) -> PruneVidPlan:
        pending = self._pending
        if pending is None or list(image_counts) != pending["image_counts"] or video_count != pending["video_count"]:
            raise ValueError("prunevid's llm_plan must follow its select_clip for the same visual sequence "
                             f"(got {list(image_counts)} + {video_count} visual tokens)")
        return PruneVidPlan(list(pending["groups"]), pending["alpha"], self.layer, sum(image_counts) + video_count)


def _frame_rows(stream: MergedStream, frames: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per frame, the tokens of one stream in sequence order and their cells. Each window's static tokens come first in
    its first frame, followed by that frame's dynamic tokens."""
    rows: list[list[torch.Tensor]] = [[] for _ in range(frames)]
    cells: list[list[torch.Tensor]] = [[] for _ in range(frames)]
    for window in stream.windows:
        rows[window.start].append(window.static)
        cells[window.start].append(window.static_cells)
        for i, (dynamic, dynamic_cells) in enumerate(zip(window.dynamic, window.dynamic_cells)):
            rows[window.start + i].append(dynamic)
            cells[window.start + i].append(dynamic_cells)
    return [torch.cat(r) for r in rows], [torch.cat(c).long() for c in cells]

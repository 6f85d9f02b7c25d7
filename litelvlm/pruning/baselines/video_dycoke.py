"""DyCoke (Tao et al., CVPR 2025): Dynamic Compression of Tokens for Fast Video LLMs, as a clip-level method.

Source: github.com/KD-TAO/DyCoke, built on LLaVA-NeXT / LLaVA-OneVision (Qwen2).
Stage 1 is ``dycole_ttm`` in ``llava/model/llava_arch.py``, called from ``prepare_inputs_labels_for_multimodal``.
Stage 2 is ``PrunableDynamicCache`` (``update``, ``dycoke_pruning``, ``update_cache``) and the layer loop of
``Qwen2Model.forward`` in ``llava/model/language_model/modeling_qwen2.py``. The configuration is
``DycokeConfigs`` in ``llava_qwen.py``. The defaults that ``eval.sh`` runs are the ``Llava_OneVision`` arguments in
``lmms_eval/models/llava_onevision.py``: ``dycoke_k = 0.7`` (merging ratio K), ``dycoke_l = 3`` (layer),
``dycoke_p = 0.8`` (KV pruning ratio), ``dycoke_num_tokens_per_frame = 196``, ``image_token_start_index = 14``
and ``max_frames_num = 32``. ``builder.py``'s own default ``dycoke_k = 0.3`` is always overridden by those
arguments. The README example uses ``dycoke_p = 0.7``.

Released rule, stage 1: temporal token merging (TTM), before the LLM. It runs on the projected, 2x2-pooled LLM
tokens of F frames, N = 196 per frame. Each pruned frame keeps ``int((1 - K) * N)`` tokens (K = 0.7: 58 of 196).

1. Pairs. For i = 0, 2, 4, ... (``range(0, F - 1, 2)``), frame i + 1 is compared with frame i. The comparison
   is the cosine similarity of the tokens at the same position, computed on L2-normalised tokens. Frame i + 1
   keeps its ``keep`` *least* similar tokens, in ``topk(largest=False)`` order (ascending similarity, not raster
   order). Frame i is sent whole.
2. Windows of 4. For i = 0, 4, 8, ... (``range(0, F - 4, 4)``), frame i + 2 is compared with frame i on the
   original features (plain cosine) and keeps its ``keep`` least similar tokens the same way.
3. Frames stay in order. Nothing is averaged: despite the name, "merging" drops the redundant tokens of the
   later frame.

For F = 16, frames 1, 3, ..., 15 and 2, 6, 10 are pruned, and frames 0, 4, 8, 12, 14 are sent whole. Frame 14 is
sent whole because the window loop stops at ``F - 4``, so the last window's third frame is never pruned. For F
odd, the last frame is dropped entirely, since the pair loop never appends it. For F < 5 the release fails
(``torch.stack`` of an empty list).

Released rule, stage 2: dynamic KV-cache pruning, in decoding only. Layer index l = ``dycoke_l`` (3) and ratio
p = ``dycoke_p`` (0.8). The cache keeps every entry, and each step chooses which entries layers >= l read.

1. Layers < l always read the whole cache. At layer l of a one-token step (``position_ids.shape[1] == 1``),
   take the attention of that token in layer l - 1 over all keys (softmax of ``q k^T / sqrt(d)``, mean over
   heads). Its visual part is ``a``.
2. ``s = cos(a, a_prev)`` against the previous step's ``a``, or 0 at the first step. ``a_prev = a`` is updated
   at every step.
3. If ``s < 0.9`` (hard-coded): layers >= l read the non-visual entries plus the ``int(V (1 - p))`` visual
   entries with the highest ``a`` (``topk``), through ``torch.gather`` on the full cache. Tokens pruned at one
   step can return at a later one.
4. Otherwise (``s >= 0.9``), the step is *not pruned* at all. ``kv_cache`` was reset to None in layers < l, and
   only ``update_cache`` sets it. The paper describes reusing the previous step's selection; the released code
   does not.
5. The prompt prefill (several positions per forward) is never pruned, including lmms-eval's log-likelihood
   passes. Positions and RoPE are unchanged, since cached keys already carry their rotation.

Adaptation to VideoGLaMM (``ClipTokens``: per frame 12x12 = 144 CLIP-stream and 8x8 = 64 InternVideo2 LLM
tokens; the LLM sees every frame's CLIP-stream tokens, then every frame's video tokens):

- TTM runs on each stream separately with the same rule and the same ratio. Per frame, the image stream keeps
  ``int((1 - K) * 144)`` tokens and the video stream ``int((1 - K) * 64)``. Pruned frames send their tokens in
  the released order (ascending similarity). ``image_cells`` / ``video_cells`` list the cells in that sent
  order. Nothing is merged, so ``reused_cells`` is empty.
- Budget: the merging ratio is chosen from the target. With ``clip_budget``, or ``default_clip_budget(tokens,
  budget)`` when it is None, DyCoke uses the *largest common keep fraction* r = 1 - K whose exact sent count fits
  the target. The candidates are every ``j / 144`` and ``j / 64``. Per stream the keep count is ``floor(N_s r)``,
  and the count is ``anchors * N_s + pruned * floor(N_s r)`` (``ttm_token_count``), which is monotone in r. A
  target that covers every token sends everything unpruned, in raster order.
- Unreachable budgets: TTM never prunes its anchor frames (5 of 16: 5 * 208 = 1,040 tokens). A lower target,
  such as the 485 of ``default_clip_budget`` at budget 81, cannot be met. DyCoke then sends its minimum (K = 1:
  anchor frames only, the other frames send nothing) and warns, or raises with ``strict_budget=True``.
  ``result.llm_visual_tokens`` reports what was sent.
- With ``merging_ratio`` set and no ``clip_budget``, that K is used as released (``int((1 - K) * N)``), and
  ``budget`` is ignored. With neither a budget nor a clip budget, the released K = 0.7 is used.
- The paper's operating point: ``released=True`` (spec ``dycoke:released=True``) runs the release's values whatever
  the budget: K = 0.7, l = 3, p = 0.8 and the 0.9 similarity threshold. Source (KD-TAO/DyCoke at dd74634):
  ``lmms_eval/models/llava_onevision.py:89-92`` (``dycoke_l = 3``, ``dycoke_p = 0.8``,
  ``dycoke_num_tokens_per_frame = 196``, ``dycoke_k = 0.7``), ``llava/model/llava_arch.py:38`` and ``:61``
  (``merging_ratio = 1 - merging_ratio``; ``int(merging_ratio * num_tokens_per_frame)`` kept),
  ``llava/model/language_model/modeling_qwen2.py:80`` (``int(img_len * (1 - dycoke_radio))`` visual entries read)
  and ``:113`` (``if config.similarity < 0.9``). On 16 frames each pruned frame keeps 43 of 144 CLIP-stream and 19
  of 64 video tokens: 5 x 208 + 11 x 62 = 1,722 of 3,328 tokens (52%) at every budget. The per-frame budget is
  ignored and a clip budget is refused. The budget-driven K (above) stays the default.
- KV pruning (``llm_plan`` -> ``DyCokeKVPlan``). The pruned entries are the visual tokens of both streams
  together (V = every visual position of the prompt). The release's ``image_token_length`` is one less than its
  TTM token count, so its last visual token is never pruned; that one-token offset is not reproduced. Restricting
  the keys of layers >= l to a subset equals the release's gather. In the KV-cache path it *is* a gather: a
  ``DynamicCache`` whose ``update`` hands those layers only the chosen entries, so any attention implementation
  works. The sliding window (Phi-3) is applied by index, as the model's masks do.
- Teacher-forced runs (``prefill``) are the unpruned forward, as the release's multi-token passes are. In
  teacher-forced mode only TTM acts.
- Without a KV cache, the release cannot run (``past_key_values.kv_cache`` on None). The equivalent here is one
  forward over the whole sequence per step. Layers < l run fully causal. Each generated position is one decoding
  step: its layer-(l-1) attention row replays the rule in order (the state ``a_prev`` runs over the positions),
  and in layers >= l that position's row masks its step's pruned visual keys. The prompt rows stay unpruned.
  This gives the KV-cache path's states (and tokens, up to float rounding in near-ties). It needs per-row 4D
  masks, so it runs with ``sdpa`` or ``eager`` attention; flash-attention is refused.
- Determinism and precision: similarities and attention are computed in float32; the release uses the model
  dtype. Ties go to the lower index (stable sorts) where ``topk`` leaves them unspecified. The previous-step
  attention is reset at every generation; the release keeps it across samples in the model's config object.
- The layer must satisfy 1 <= l < the LLM's layer count (the released l = 3 needs at least 4 decoder layers). On a
  shallower LLM (the tiny test models) decoding prunes from the last layer, l = layers - 1, with a warning that says
  so, as PruneVid does with its K; an LLM of one layer is refused. Teacher-forced runs do not use the layer.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import torch
import torch.nn.functional as F

from ..clip_level import ClipSelector, ClipTokens, FrameSelection, clip_target
from ..methods import register_method
from .common import released_settings, upcast

__all__ = [
    "DyCokeSelector",
    "RELEASED_SETTINGS",
    "ttm_pattern",
    "ttm_keep_count",
    "ttm_select",
    "ttm_token_count",
    "dycoke_keep_counts",
    "RELEASED_MERGING_RATIO",
    "RELEASED_LAYER",
    "RELEASED_PRUNE_RATIO",
    "RELEASED_SIMILARITY_THRESHOLD",
]

RELEASED_MERGING_RATIO = 0.7  # dycoke_k (lmms_eval llava_onevision.py)
RELEASED_LAYER = 3  # dycoke_l
RELEASED_PRUNE_RATIO = 0.8  # dycoke_p
RELEASED_SIMILARITY_THRESHOLD = 0.9  # PrunableDynamicCache.dycoke_pruning: ``if config.similarity < 0.9``
RELEASED_SETTINGS = {"merging_ratio": RELEASED_MERGING_RATIO, "layer": RELEASED_LAYER, "prune_ratio": RELEASED_PRUNE_RATIO,
                     "similarity_threshold": RELEASED_SIMILARITY_THRESHOLD}  # what released=True runs


# ---------------------------------------------------------------------------- stage 1: temporal token merging
def ttm_pattern(num_frames: int) -> tuple[dict[int, int], list[int]]:
    """The release's pairing for ``num_frames`` frames: ``{pruned frame: the frame it is compared with}`` and the
    frames dropped entirely (the last one when ``num_frames`` is odd and >= 3). Every other frame is sent whole."""
    references = {i + 1: i for i in range(0, num_frames - 1, 2)}  # pairs (0,1), (2,3), ...
    references.update({i + 2: i for i in range(0, num_frames - 4, 4)})  # windows of 4: frame i+2 against i
    dropped = [num_frames - 1] if num_frames % 2 and num_frames >= 3 else []
    return references, dropped


def ttm_keep_count(num_tokens: int, merging_ratio: float) -> int:
    """Tokens a pruned frame keeps: the release's ``int((1 - K) * N)`` (float arithmetic as released)."""
    return int((1 - merging_ratio) * num_tokens)


def _position_similarity(reference: torch.Tensor, frame: torch.Tensor, normalize_first: bool) -> torch.Tensor:
    """(N,) cosine similarity of the tokens at the same position (stage 1 normalises first, as released)."""
    reference, frame = upcast(reference), upcast(frame)
    if normalize_first:
        reference, frame = F.normalize(reference, p=2, dim=1), F.normalize(frame, p=2, dim=1)
    return F.cosine_similarity(reference, frame, dim=1)


def ttm_select(features: torch.Tensor, keep: int) -> list[torch.Tensor]:
    """Per frame of ``features`` (F, N, H), the indices of the tokens TTM sends, in the order sent: all N of a
    whole frame, the ``keep`` least similar to its reference frame (ascending similarity, lower index first on
    ties) of a pruned frame, none of a dropped frame."""
    frames, num_tokens = features.shape[:2]
    if not 0 <= keep <= num_tokens:
        raise ValueError(f"keep must be in [0, {num_tokens}], got {keep}")
    references, dropped = ttm_pattern(frames)
    out = []
    for f in range(frames):
        if f in dropped:
            out.append(torch.zeros(0, dtype=torch.long, device=features.device))
        elif f in references:
            similarity = _position_similarity(features[references[f]], features[f], normalize_first=f % 2 == 1)
            out.append(torch.sort(similarity, stable=True).indices[:keep])
        else:
            out.append(torch.arange(num_tokens, device=features.device))
    return out


def ttm_token_count(num_frames: int, num_tokens: int, keep: int) -> int:
    """Tokens one stream sends: whole frames ``num_tokens`` each, pruned frames ``keep`` each, dropped frames none."""
    references, dropped = ttm_pattern(num_frames)
    whole = num_frames - len(references) - len(dropped)
    return whole * num_tokens + len(references) * keep


def dycoke_keep_counts(num_frames: int, stream_tokens: tuple[int, ...], target: int) -> tuple[tuple[int, ...], bool]:
    """Per stream ``floor(N_s r)`` for the largest common keep fraction r (one of ``j / N_s``) whose summed
    ``ttm_token_count`` fits ``target``, and whether it fits (False: r = 0, the fewest tokens TTM can send)."""
    ratios = sorted({Fraction(j, n) for n in stream_tokens for j in range(n + 1)}, reverse=True)
    for ratio in ratios:
        keep = tuple(math.floor(n * ratio) for n in stream_tokens)
        if sum(ttm_token_count(num_frames, n, k) for n, k in zip(stream_tokens, keep)) <= target:
            return keep, True
    return tuple(0 for _ in stream_tokens), False


# ---------------------------------------------------------------------------- the method
@register_method("dycoke")
class DyCokeSelector(ClipSelector):
    """DyCoke on both VideoGLaMM streams: TTM of each stream before the LLM (``select_clip``), dynamic pruning of the
    visual KV entries while decoding (``llm_plan``). See the module docstring for the released rule and every
    adaptation.

    ``merging_ratio`` K (None: from the budget; 0.7 released), ``layer`` l (3), ``prune_ratio`` p (0.8),
    ``similarity_threshold`` (0.9), ``strict_budget``, which raises instead of warning when TTM cannot reach
    the target, and ``released``: the release's K, l, p and threshold whatever the budget."""

    uses_text = False
    llm_reads_question = False  # stage 2 prunes decoding steps only: the prompt pass is the unpruned model

    def __init__(self, merging_ratio: float | None = None, layer: int = RELEASED_LAYER, prune_ratio: float = RELEASED_PRUNE_RATIO,
                 similarity_threshold: float = RELEASED_SIMILARITY_THRESHOLD, strict_budget: bool = False, released: bool = False):
        given = {"merging_ratio": merging_ratio, "layer": layer, "prune_ratio": prune_ratio,
                 "similarity_threshold": similarity_threshold}
        settings = released_settings("dycoke", released, given, RELEASED_SETTINGS)
        merging_ratio, layer, prune_ratio = settings["merging_ratio"], settings["layer"], settings["prune_ratio"]
        self.released = released
        if merging_ratio is not None and not 0.0 <= merging_ratio <= 1.0:
            raise ValueError(f"merging_ratio must be in [0, 1], got {merging_ratio}")
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
            raise ValueError(f"layer must be an int >= 1 (layer l-1's attention decides), got {layer!r}")
        if not 0.0 <= prune_ratio <= 1.0:
            raise ValueError(f"prune_ratio must be in [0, 1], got {prune_ratio}")
        self.merging_ratio, self.layer, self.prune_ratio = merging_ratio, layer, prune_ratio
        self.similarity_threshold, self.strict_budget = float(similarity_threshold), bool(strict_budget)

    def clip_budget_conflict(self) -> str | None:
        if self.released:
            return (f"released=True runs the release's merging ratio K = {RELEASED_MERGING_RATIO} whatever the budget "
                    "(drop the clip budget, or released)")
        return None

    def keep_counts(self, tokens: ClipTokens, budget: int | None, clip_budget: int | None) -> tuple[int, int] | None:
        """(image, video) tokens each pruned frame keeps, or None to send every token unpruned."""
        self.refuse_clip_budget(clip_budget)
        streams = (tokens.image_tokens.shape[1], tokens.video_tokens.shape[1])
        if clip_budget is None and (self.merging_ratio is not None or budget is None):
            ratio = RELEASED_MERGING_RATIO if self.merging_ratio is None else self.merging_ratio
            return tuple(ttm_keep_count(n, ratio) for n in streams)
        target = clip_target(tokens, budget, clip_budget)
        if target >= tokens.num_frames * sum(streams):
            return None
        keep, fits = dycoke_keep_counts(tokens.num_frames, streams, target)
        if not fits:
            fewest = sum(ttm_token_count(tokens.num_frames, n, 0) for n in streams)
            message = (f"DyCoke's TTM cannot send {target} visual tokens for {tokens.num_frames} frames: it never prunes "
                       f"its anchor frames, so it sends at least {fewest} (merging ratio 1)")
            if self.strict_budget:
                raise ValueError(message)
            warnings.warn(message, stacklevel=2)
        return keep

    def select_clip(self, tokens: ClipTokens, budget: int | None, clip_budget: int | None = None) -> list[FrameSelection]:
        keep = self.keep_counts(tokens, budget, clip_budget)
        if keep is None:
            return FrameSelection.everything(tokens)
        image = ttm_select(tokens.image_tokens, keep[0])
        video = ttm_select(tokens.video_tokens, keep[1])
        return [FrameSelection.build(tokens, tokens.image_tokens[f, image[f]], tokens.video_tokens[f, video[f]], image[f],
                                     video[f]) for f in range(tokens.num_frames)]

    def llm_plan(self, image_counts: list[int], video_count: int):
        from .video_dycoke_kv import DyCokeKVPlan  # stage 2 needs transformers: imported when a clip runs

        return DyCokeKVPlan(list(image_counts), video_count, self.layer, self.prune_ratio, self.similarity_threshold)

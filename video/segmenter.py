"""``VideoSegmenter``: referring video segmentation with VideoGLaMM and per-frame CLIP token pruning.

Per clip (at most ``clip_length`` frames): 16 frames sampled evenly feed both encoders once (one
batched CLIP forward, one InternVideo2 forward); every expression's CLIP text embedding is computed
once per video and reused for every frame, clip and decoding step; each sampled frame keeps exactly
``budget`` CLIP tokens (the shared pruning core), which reach the LLM through ``layout``
(video/layout.py); each ``[SEG]`` prompts SAM2 on the clip's first frame and is propagated through
all its frames (or decoded frame by frame); ``memory_budget`` keeps that many spatial tokens of each SAM2
memory frame (video/sam2/memory_select.py), off by default.

``method="fastv"`` prunes inside the LLM instead (video/fastv.py): every frame's 576 CLIP tokens enter
the LLM through ``layout`` (``cells`` or ``unpooled``; ``regrid`` is rejected) and from decoder layer K
on each frame keeps its ``quota`` most-attended LLM tokens (ceil(budget / 4) cells, or ``budget``
tokens unpooled) in all decoding modes (teacher forced, KV-cache and no-cache generation). ``method="ivcprune"``
runs the same per-frame plan with IVC-Prune's ranking (``litelvlm.pruning.baselines.ivcprune``).

Shared prefix: the prompt puts the system text and every visual token before the question. When the method's
visual tokens and its processing inside the LLM do not depend on the expression (``TokenSelector.shares_prefix``:
none, random, grid, VisionZip-style, FastVID, DyCoke, STTM before the LLM, HoliTom without its in-LLM merge; not
LiteLVLM, FastV, IVC-Prune, PruneVid or HoliTom's default) and a clip has several
expressions, that prefix is prefilled once per clip and every expression's question (and teacher-forced answer,
or generation with the KV cache) continues from a copy of its KV cache (``litelvlm.shared_prefix``); the result
says whether it was (``shared_prefix``, ``prefix_passes``) and why not (``shared_prefix_reason``). The released
no-cache loop (``use_cache=False``) re-runs the whole prompt for every token, so nothing is shared there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from litelvlm.clip import ClipTowers, load_clip_towers
from litelvlm.decoding import Sampling, generate
from litelvlm.lvlm import IMAGE_TOKEN_INDEX, check_expressions, default_dtype, hidden_before, pick_attn_implementation, splice_and_pad
from litelvlm.precision_context import check_autocast, inference_autocast
from litelvlm.pruning import ClipTokenPruner, ClipTokens, FrameSelection, check_clip_budget, get_method, parse_method_spec
from litelvlm.pruning.methods import InLLMSelector
from litelvlm.pruning.stream_geometry import ClipView
from litelvlm.shared_prefix import SharedPrefix
from litelvlm.timing import StageTimer

from .fastv import VideoFastVPlan, fastv_quota
from .io import SHORT_CLIP_SAMPLING, sample_frame_indices, split_clips
from .layout import LAYOUTS, layout_frame_tokens
from .prompt import EXPRESSION_TEXTS, build_chat, expression_text, prompt_ids, video_question

__all__ = ["VideoSegmenterConfig", "VideoSegmentationResult", "VideoSegmenter", "load_segmenter_config", "DECODINGS", "SEG_OBJECTS",
           "CPU_ROWS_PER_FORWARD", "rows_per_forward"]

DECODINGS = ("greedy", "checkpoint")
SEG_OBJECTS = ("union", "first")
CPU_ROWS_PER_FORWARD = 4  # teacher-forced prompts per LLM forward on CPU (docs/benchmarks.md, multi-expression section)


def rows_per_forward(device, rows: int) -> int:
    """Teacher-forced prompts per LLM forward of a pre-LLM method: at most ``CPU_ROWS_PER_FORWARD`` on CPU, where
    per row a batch of 16 quick-scale prompts cost 1.4x a batch of 4 or a lone prompt (its activations no longer
    fit the caches); all of them on other devices (not measured there)."""
    return min(rows, CPU_ROWS_PER_FORWARD) if torch.device(device).type == "cpu" else rows


@dataclass
class VideoSegmenterConfig:
    """Choices that are not the model's: how pruned tokens reach the LLM, decoding, clips, masks.

    The presets in ``video/presets/`` set every field: ``default`` (litelvlm) and ``released`` (the
    released protocol); the README lists where they differ and why."""

    layout: str = "cells"  # cells | regrid | unpooled (video/layout.py)
    litelvlm_cell: int = 2  # with layout "cells", LiteLVLM selects at 2x2-cell granularity (0/1: per token)
    num_frames: int = 16
    clip_length: int | None = 64  # frames per clip; None: the whole video in one clip
    short_clip_sampling: str = "linspace"  # linspace | repeat_last: sampling of a clip shorter than num_frames
    answer: str | None = None  # None: generation; a string (e.g. "Sure, [SEG].") is teacher forced
    decoding: str = "greedy"  # greedy | checkpoint (the checkpoint's generation_config.json: sampling if do_sample)
    max_new_tokens: int = 32
    use_cache: bool = True  # False reproduces the released loop (encoders + full prefill per token)
    mask_mode: str = "propagate"  # propagate | framewise | none (no pixel decoding: LLM-side timing only)
    seg_objects: str = "union"  # union | first: an expression's mask from all its [SEG] objects, or object 0
    prune_text: str = "question"  # question | expression: what the CLIP text tower scores
    expression_text: str = "strip"  # strip | lower | collapse (video/prompt.py expression_text)
    seed: int | None = None  # sampling: a generator seeded per call; None uses torch's global generator
    memory_budget: int | None = None  # SAM2 spatial memory tokens kept per memory frame and object; None: all (released)
    memory_selector: str = "mask"  # which ones (video/sam2/memory_select.py): mask | grid
    share_prefix: bool = True  # prefill system text + visual tokens once per clip for all expressions (methods that allow it)

    def __post_init__(self):
        choices = {"layout": LAYOUTS, "mask_mode": ("propagate", "framewise", "none"), "prune_text": ("question", "expression"),
                   "short_clip_sampling": SHORT_CLIP_SAMPLING, "decoding": DECODINGS, "seg_objects": SEG_OBJECTS,
                   "expression_text": EXPRESSION_TEXTS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.num_frames < 1 or self.num_frames % 4:
            raise ValueError(f"num_frames must be a positive multiple of 4 (InternVideo2 chunks), got {self.num_frames}")
        if self.clip_length is not None and self.clip_length < 1:
            raise ValueError(f"clip_length must be a positive number of frames or null (whole video), got {self.clip_length}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        self._check_memory_pruning()

    def _check_memory_pruning(self) -> None:
        from .sam2.memory_select import get_memory_selector

        get_memory_selector(self.memory_selector)
        budget = self.memory_budget
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            raise ValueError(f"memory_budget must be a positive number of SAM2 memory tokens per frame or null (all), got {budget!r}")
        if budget is not None and self.mask_mode == "framewise":
            raise ValueError("memory_budget prunes SAM2's memory bank: it needs mask_mode propagate, not framewise")


def load_segmenter_config(path, benchmark: str | None = None) -> VideoSegmenterConfig:
    """The ``VideoSegmenterConfig`` of a preset (a name in video/presets/ or a YAML path)."""
    from .preset import load_preset

    return load_preset(path, benchmark).segmenter


@dataclass
class VideoSegmentationResult:
    """Masks (E, T, H, W) bool for every frame; ``kept[e]`` (clips * num_frames, budget) CLIP indices per
    sampled frame; ``visual_tokens_per_frame``: LLM visual tokens per sampled frame (CLIP + video).

    With FastV, ``kept[e]`` holds per frame the CLIP indices covered by the LLM tokens kept at layer K
    (``cells``: the 4 tokens of each kept cell, sorted, so 4 * ceil(budget / 4) indices, more than
    ``budget`` when it is not a multiple of 4; in generation, the prompt prefill's choice) and
    ``clip_tokens_per_frame`` is the per-frame quota of LLM tokens."""

    masks: np.ndarray
    kept: list[torch.Tensor]
    has_seg: list[bool]
    answers: list[list[str]]
    visual_tokens_per_frame: float
    clip_tokens_per_frame: float
    method: str
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage and "total" (nested stages once)
    forward_passes: int = 0
    text_tower_calls: int = 0
    wall_timings: dict[str, float] = field(default_factory=dict)  # wall-clock seconds per stage and "total"
    frame_tokens: list[list[FrameSelection]] | None = None  # clip-level methods: per expression, per sampled frame
    llm_visual_tokens: list[int] = field(default_factory=list)  # per expression: visual tokens the LLM saw, all clips
    sampled_frames: list[list[int]] = field(default_factory=list)  # per clip: the video frame index of each sampled frame
    shared_prefix: bool = False  # the expressions continued one prefill of system text + visual tokens per clip
    shared_prefix_reason: str = ""  # why they did not (empty when they did)
    prefix_passes: int = 0  # shared prefix prefills (one per clip when shared); not counted in forward_passes
    clip_has_seg: list[list[bool]] = field(default_factory=list)  # per expression, per clip: did that clip's answer hold [SEG]


@dataclass
class _Call:
    """One ``segment`` call: the method, budgets, the texts' CLIP embeddings, the timer and the counters."""

    selector: object
    budget: int | None
    clip_budget: int | None
    text_embeds: torch.Tensor | None
    timer: StageTimer
    generator: torch.Generator | None
    num_expressions: int
    share_reason: str = ""  # why the expressions cannot share the prompt prefix; empty: they share it
    clip_tokens: list = field(default_factory=list)  # LLM CLIP tokens of every sampled frame (all expressions)
    video_tokens: int = 0
    forward_passes: int = 0
    prefix_passes: int = 0
    seg_counts: list = field(default_factory=list)
    llm_tokens: list = field(default_factory=list)

    def __post_init__(self):
        self.seg_counts = [0] * self.num_expressions
        self.llm_tokens = [0] * self.num_expressions

    def text(self, e: int) -> torch.Tensor | None:
        """Expression ``e``'s CLIP text embedding (1, P), or None for methods that use no text."""
        if self.text_embeds is None or not self.selector.uses_text:
            return None
        return self.text_embeds[e : e + 1]


@dataclass
class _Visual:
    """One expression's visual tokens for the LLM, what they cover, and their counts."""

    sequence: torch.Tensor  # (V, H): every frame's CLIP-stream tokens, then every frame's video tokens
    kept: torch.Tensor | list  # per-frame methods: (F, budget) CLIP indices; clip-level: one tensor per frame
    image_counts: list[int]  # LLM CLIP-stream tokens per frame
    video_count: int
    frames: list | None = None  # clip-level methods: the FrameSelection records (features dropped)


@dataclass
class _ClipEncoding:
    frames: object  # ClipFrameFeatures of the sampled frames
    video_tokens: torch.Tensor  # (F, 64, H)
    frame_size: tuple[int, int] | None = None  # (H, W) of the sampled frames, for the streams' geometry


class VideoSegmenter:
    """Segment referring expressions in a video with VideoGLaMM, pruning CLIP tokens per frame."""

    def __init__(self, model, clip: ClipTowers, tokenizer, *, seg_token_id: int, eos_token_ids: set[int],
                 device="cpu", dtype=torch.float32, config: VideoSegmenterConfig | None = None,
                 generation_config: dict | None = None, autocast: torch.dtype | None = None):
        check_autocast(device, autocast)
        self.model = model
        self.generation_config = dict(generation_config or {})
        self.clip = clip
        self.tokenizer = tokenizer
        self.seg_token_id = seg_token_id
        self.eos_token_ids = set(eos_token_ids)
        self.device = torch.device(device)
        self.dtype = dtype
        self.autocast = autocast  # torch.autocast dtype around every segment call (the released fp16 path), or None
        self.config = config or VideoSegmenterConfig()
        self.pruner = ClipTokenPruner(clip.vision, clip.text, model.config.select_layer, tokenizer=clip.tokenizer,
                                      llm_projector=model.project_image_tokens)

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, vision_tower: str | Path | None = None, video_tower: str | Path | None = None,
                        device: str = "cpu", dtype: torch.dtype | None = None, attn_implementation: str | None = None,
                        clip_attn_implementation: str | None = None, autocast: torch.dtype | None = None,
                        **config) -> "VideoSegmenter":
        """Load from a VideoGLaMM folder, a CLIP folder and (optionally) the InternVideo2 ``.pt``; each may also be a
        Hugging Face Hub id (the ``.pt`` as ``owner/name/file.pt``, e.g. ``OpenGVLab/InternVideo2-Stage2_1B-224p-f4/
        InternVideo2-stage2_1b-224p-f4.pt``), resolved through the huggingface_hub cache.
        ``autocast``: a ``torch.autocast`` dtype around every ``segment`` call (``litelvlm.precision_context``).
        ``config``: ``VideoSegmenterConfig`` fields."""
        from litelvlm.clip import require_local_dir, resolve_clip_dir
        from litelvlm.hub import PATTERNS

        from .model import VideoGLaMM, VideoGLaMMConfig, load_generation_config, load_videoglamm_tokenizer

        dtype = dtype or default_dtype(device)
        checkpoint = require_local_dir(checkpoint, "VideoGLaMM checkpoint", patterns=PATTERNS["videoglamm"])  # Hub id -> cached folder
        segmenter_config = VideoSegmenterConfig(**config)  # bad options fail before any weight is read
        check_autocast(device, autocast)
        # the small files first (configs, the CLIP folder, the tokenizer): a bad one fails before the weights load
        clip_dir = resolve_clip_dir(vision_tower or VideoGLaMMConfig.from_dir(checkpoint).vision_tower)
        tokenizer, ids = load_videoglamm_tokenizer(checkpoint)
        generation_config = load_generation_config(checkpoint)
        model = VideoGLaMM.from_checkpoint(checkpoint, video_tower=video_tower, device=device, dtype=dtype,
                                           attn_implementation=pick_attn_implementation(device, attn_implementation))
        clip = load_clip_towers(clip_dir, device, dtype, attn_implementation=clip_attn_implementation)
        return cls(model, clip, tokenizer, seg_token_id=ids["seg"], eos_token_ids=set(ids["eos"]), device=device,
                   dtype=dtype, config=segmenter_config, generation_config=generation_config, autocast=autocast)

    def stream_geometry(self):
        """What CLIP and InternVideo2 see and their token grids (``video.kept_pictures.StreamGeometry``)."""
        from .kept_pictures import StreamGeometry

        vision = self.clip.vision.config
        return StreamGeometry(vision.image_size, vision.image_size // vision.patch_size, self.model.config.image_pool_side,
                              self.model.video_encoder.config.image_size, self.model.config.video_pool_side)

    # ------------------------------------------------------------------ per clip
    def _encode_clip(self, sampled: np.ndarray, timer: StageTimer) -> _ClipEncoding:
        with timer("clip_vision"):
            pixels = self.clip.image_processor(images=list(sampled), return_tensors="pt", input_data_format="channels_last").pixel_values
            frames = self.pruner.encode(pixels.to(self.device, self.dtype))
        with timer("video_encoder"):
            video_tokens = self.model.encode_video(sampled)
        return _ClipEncoding(frames, video_tokens, tuple(int(n) for n in sampled.shape[1:3]))

    def _selector(self, method: str):
        name, options = parse_method_spec(method) if isinstance(method, str) else (None, {})
        if name == "litelvlm" and self.config.layout == "cells" and self.config.litelvlm_cell > 1 and "cell" not in options:
            return get_method(method, cell=self.config.litelvlm_cell)
        selector = get_method(method)
        if isinstance(selector, InLLMSelector):
            fastv_quota(self.config.layout, 1, selector.name)  # raises for layouts it cannot prune per frame
            layers = len(self.model.llm.model.layers)
            if selector.layer > layers:
                raise ValueError(f"method {selector.name!r} prunes from LLM layer K={selector.layer}, but this LLM has {layers} "
                                 f"layers: choose 1 <= K <= {layers} (the method's layer option)")
        return selector

    def _visual_sequence(self, enc: _ClipEncoding, call: _Call, e: int) -> _Visual:
        """Expression ``e``'s visual tokens for the LLM from the clip's encoders' outputs."""
        if call.selector.stage == "clip":
            return self._clip_level_visual(enc, call, e)
        result = self.pruner.select(enc.frames, call.budget, call.text(e), call.selector)
        projected = self.model.project_image_tokens(result.features)
        per_frame = layout_frame_tokens(self.config.layout, result.indices, projected, enc.frames.grid,
                                        self.model.config.image_pool_side)
        video = enc.video_tokens.reshape(-1, enc.video_tokens.shape[-1])
        return _Visual(torch.cat([*per_frame, video]), result.indices, [t.shape[0] for t in per_frame], video.shape[0])

    def _clip_level_visual(self, enc: _ClipEncoding, call: _Call, e: int) -> _Visual:
        """A clip-level method sees every sampled frame's streams at once (``litelvlm.pruning.clip_level``)."""
        pool, video_side = self.model.config.image_pool_side, self.model.config.video_pool_side
        image = self.model.pool_image_tokens(self.model.project_image_tokens(enc.frames.patches))
        tokens = ClipTokens(enc.frames, call.text(e), image, (pool, pool), enc.video_tokens, (video_side, video_side),
                            self.model.project_image_tokens, enc.frame_size, ClipView.of(self.clip.image_processor))
        frames = call.selector.select_clip(tokens, call.budget, call.clip_budget)
        if len(frames) != tokens.num_frames:
            raise ValueError(f"method {call.selector.name!r} returned {len(frames)} frame selections for {tokens.num_frames} frames")
        sequence = torch.cat([f.image for f in frames] + [f.video for f in frames])
        records = [FrameSelection(f.image[:0], f.video[:0], f.image_cells, f.video_cells, f.clip_indices, f.reused_cells) for f in frames]
        return _Visual(sequence, [f.clip_indices for f in frames], [f.image.shape[0] for f in frames],
                       sum(f.video.shape[0] for f in frames), records)

    def _llm_plan(self, call: _Call, visual: _Visual, grid: tuple[int, int]):
        """The in-LLM part of the method for one expression's visual sequence, or None: the per-frame plan of FastV or
        IVC-Prune, or a clip-level method's ``llm_plan(visual_counts)`` (``litelvlm.pruning.clip_level.ClipSelector``)."""
        if call.selector.stage == "clip":
            return call.selector.llm_plan(visual.image_counts, visual.video_count)
        return self._fastv_plan(call.selector, call.budget, visual.image_counts, grid)

    def _fastv_plan(self, selector, budget: int, frame_tokens: list[int], grid: tuple[int, int]) -> VideoFastVPlan | None:
        """The per-frame plan of an in-LLM method (FastV, IVC-Prune) for one expression's visual sequence; None for
        pre-LLM methods."""
        if not isinstance(selector, InLLMSelector):
            return None
        cell = grid[0] // self.model.config.image_pool_side if self.config.layout == "cells" else 1
        return VideoFastVPlan(frame_tokens, fastv_quota(self.config.layout, budget, selector.name), grid, cell, selector.layer,
                              selector.keep_position_ids, selector.ranker())

    def _teacher_forced(self, visual: list[torch.Tensor], questions: list[str], plans: list, prefix: SharedPrefix | None = None):
        """The states before each [SEG] per expression, and with FastV the per-frame CLIP indices it kept (else
        None), for in-LLM methods or from a shared ``prefix`` (pre-LLM methods without one: ``_forced_in_chunks``):
        one batched forward of prompt + fixed answer, or one per expression when the method's in-LLM plans
        differ between expressions (a plan is made for one visual sequence). With a shared ``prefix`` the LLM runs
        each row's question and answer from a copy of the prefix's cache."""
        if any(p != plans[0] for p in plans[1:]):
            rows = [self._teacher_forced([v], [q], [p], prefix) for v, q, p in zip(visual, questions, plans)]
            kept = [k[0] for _, k in rows] if isinstance(plans[0], VideoFastVPlan) else None
            return [states for row, _ in rows for states in row], kept
        plan = plans[0]
        llm = self.model.llm if prefix is None else prefix.view(self.model.llm)
        prompts = [prompt_ids(build_chat(q, self.config.num_frames, self.config.answer), self.tokenizer) for q in questions]
        batch = splice_and_pad(prompts, [[v] for v in visual], self.model.embed_tokens, IMAGE_TOKEN_INDEX)
        if isinstance(plan, VideoFastVPlan):
            out = plan.prefill(llm, batch)
            return hidden_before(out.hidden, out.token_ids, self.seg_token_id), [plan.clip_indices(k) for k in out.kept]
        if plan is not None:  # a clip-level method's plan: told where each row's prompt ends and the answer begins
            out = plan.prefill(llm, batch, prompt_lengths=self._prompt_lengths(questions, prompts, visual))
            return hidden_before(out.hidden, out.token_ids, self.seg_token_id), None
        hidden = (self.model if prefix is None else llm).prefill_hidden(batch.inputs_embeds, batch.attention_mask)
        return hidden_before(hidden, batch.token_ids, self.seg_token_id), None

    def _forced_in_chunks(self, visual: list[torch.Tensor], questions: list[str], call: _Call) -> list[torch.Tensor]:
        """The states before each [SEG] of a pre-LLM method's expressions, each prompt + fixed answer prefilled whole:
        ``rows_per_forward`` rows per forward, each without a padding mask. The rows are right padded, so causal
        attention alone keeps every real position from the padding after it (the states a padding mask gives), and
        SDPA keeps its causal kernel instead of reading a materialised (rows, 1, L, L) mask over every key block."""
        prompts = [prompt_ids(build_chat(q, self.config.num_frames, self.config.answer), self.tokenizer) for q in questions]
        step, states = rows_per_forward(self.device, len(prompts)), []
        for start in range(0, len(prompts), step):
            rows = slice(start, start + step)
            batch = splice_and_pad(prompts[rows], [[v] for v in visual[rows]], self.model.embed_tokens, IMAGE_TOKEN_INDEX)
            hidden = self.model.prefill_hidden(batch.inputs_embeds, None)
            states += hidden_before(hidden, batch.token_ids, self.seg_token_id)
            call.forward_passes += 1
        return states

    def _prompt_lengths(self, questions, forced_prompts, visual) -> list[int]:
        """Per teacher-forced row, the positions of its generation prompt (visual tokens spliced in): what the
        model reads before the fixed answer."""
        lengths = []
        for question, forced, tokens in zip(questions, forced_prompts, visual):
            prompt = prompt_ids(build_chat(question, self.config.num_frames), self.tokenizer)
            if forced[: len(prompt)] != prompt:
                raise ValueError("the teacher-forced prompt does not start with the generation prompt: cannot tell "
                                 "where the answer begins")
            lengths.append(len(prompt) - 1 + tokens.shape[0])
        return lengths

    def _sampling(self) -> Sampling | None:
        """None (greedy) unless the config follows the checkpoint and its generation config samples."""
        return Sampling.from_generation_config(self.generation_config) if self.config.decoding == "checkpoint" else None

    def _generate(self, prompt_fn, question: str, plan: VideoFastVPlan | None, generator: torch.Generator | None, timer=None,
                  prefix: SharedPrefix | None = None):
        """Greedy generation for one expression, and with FastV the prompt prefill's kept CLIP indices. With a shared
        ``prefix`` the prompt pass runs the question from a copy of the prefix's cache."""
        llm = self.model.llm if prefix is None else prefix.view(self.model.llm)
        ids = prompt_ids(build_chat(question, self.config.num_frames), self.tokenizer)

        def embeds():
            return splice_and_pad([ids], [[prompt_fn()]], self.model.embed_tokens, IMAGE_TOKEN_INDEX).inputs_embeds

        forward = None
        if plan is not None:  # the prompt's token ids (-1 at visual positions) from the clip's visual tokens
            prompt_token_ids = splice_and_pad([ids], [[prompt_fn.first]], self.model.embed_tokens, IMAGE_TOKEN_INDEX).token_ids
            forward = plan.generation_forward(llm, prompt_token_ids, self.config.use_cache)
        gen = generate(llm, embeds, max_new_tokens=self.config.max_new_tokens, eos_token_ids=self.eos_token_ids,
                       seg_token_id=self.seg_token_id, use_cache=self.config.use_cache, forward=forward,
                       sampling=self._sampling(), generator=generator, timer=timer)
        return gen, (plan.clip_indices(forward.kept) if isinstance(plan, VideoFastVPlan) else None)

    def _visual_source(self, sampled, first, call: _Call, e: int):
        """Visual tokens for decoding: the first call gets the clip's; later calls (only the released
        no-cache loop makes them) re-run the encoders and the selection, as that loop does."""
        calls = {"n": 0}

        def visual():
            calls["n"] += 1
            if calls["n"] == 1:
                return first
            return self._visual_sequence(self._encode_clip(sampled, call.timer), call, e).sequence

        visual.first = first  # the clip's visual tokens, readable without counting a call
        return visual

    def _segment_clip(self, clip_frames, sample: np.ndarray, questions, call: _Call) -> tuple[np.ndarray, list, list, list]:
        sampled = clip_frames[sample]
        enc = self._encode_clip(sampled, call.timer)
        visual, plans = [], []
        with call.timer("selection"):
            for e in range(len(questions)):
                shared = not call.share_reason and e > 0  # the expressions share the first one's tokens and plan
                v = visual[0] if shared else self._visual_sequence(enc, call, e)
                visual.append(v)
                plan = plans[0] if shared else self._llm_plan(call, v, enc.frames.grid)
                plans.append(plan)
                fastv = isinstance(plan, VideoFastVPlan)
                call.clip_tokens.extend([plan.quota] * len(v.image_counts) if fastv else v.image_counts)
                call.video_tokens += v.video_count
                call.llm_tokens[e] += (plan.quota * len(v.image_counts) if fastv else sum(v.image_counts)) + v.video_count
        seg_states, answers, fastv_kept = self._run_llm(sampled, [v.sequence for v in visual], questions, plans, call)
        kept = fastv_kept if fastv_kept is not None else [v.kept for v in visual]
        for e, states in enumerate(seg_states):
            call.seg_counts[e] += states.shape[0]
        with call.timer("mask_decoder"):
            masks = self._clip_masks(clip_frames, seg_states, call.timer)
        return masks, kept, answers, [v.frames for v in visual]

    def _shared_prefix(self, visual: torch.Tensor, questions: list[str], call: _Call) -> SharedPrefix | None:
        """The clip's prompt prefix (system text and visual tokens, before the question) prefilled once, or None when
        the expressions cannot share it (``call.share_reason``)."""
        if call.share_reason:
            return None
        prefixes = {tuple(ids[: ids.index(IMAGE_TOKEN_INDEX) + 1])
                    for ids in (prompt_ids(build_chat(q, self.config.num_frames), self.tokenizer) for q in questions)}
        if len(prefixes) != 1:
            raise ValueError("the expressions' prompts differ before the question: they cannot share a prefix")
        embeds = splice_and_pad([list(prefixes.pop())], [[visual]], self.model.embed_tokens, IMAGE_TOKEN_INDEX).inputs_embeds
        with call.timer("llm_prefix"):
            prefix = SharedPrefix.prefill(self.model.llm, embeds)
        call.prefix_passes += 1
        return prefix

    def _run_llm(self, sampled, visual, questions, plans, call: _Call):
        """[SEG] states, answers and (FastV only, else None) kept CLIP indices per expression; ``plans``: each
        expression's in-LLM plan (None for pre-LLM methods)."""
        if self.config.answer is not None:
            with call.timer("llm_prefill"):
                prefix = self._shared_prefix(visual[0], questions, call)
                if prefix is None and all(p is None for p in plans):
                    return self._forced_in_chunks(visual, questions, call), [self.config.answer] * len(questions), None
                seg_states, fastv_kept = self._teacher_forced(visual, questions, plans, prefix)
            call.forward_passes += 1 if prefix is None else prefix.continuations
            return seg_states, [self.config.answer] * len(questions), fastv_kept
        seg_states, answers, fastv_kept = [], [], []
        with call.timer("llm_generate"):
            prefix = self._shared_prefix(visual[0], questions, call)
            for e, q in enumerate(questions):
                source = self._visual_source(sampled, visual[e], call, e)
                gen, frame_kept = self._generate(source, q, plans[e], call.generator, call.timer, prefix)
                seg_states.append(gen.seg_hidden)
                answers.append(self.tokenizer.decode(gen.token_ids))
                fastv_kept.append(frame_kept)
                call.forward_passes += gen.forward_passes
        return seg_states, answers, (fastv_kept if isinstance(plans[0], VideoFastVPlan) else None)

    def _clip_masks(self, clip_frames: np.ndarray, seg_states: list[torch.Tensor], timer: StageTimer | None = None) -> np.ndarray:
        """(E, T, H, W): each expression's mask, the union of its [SEG] objects (``seg_objects="first"``:
        object 0 only, every object still propagated as released); empty where it has none. ``timer`` gets
        SAM2's own stages (video.sam2.decoder.SAM2_STAGES)."""
        num, (t, h, w) = len(seg_states), clip_frames.shape[:3]
        masks = np.zeros((num, t, h, w), dtype=bool)
        counts = [s.shape[0] for s in seg_states]
        if sum(counts) == 0 or self.config.mask_mode == "none":
            return masks
        prompts = self.model.seg_prompts(torch.cat([s for s in seg_states if s.shape[0]]))
        objects = self.model.pixel_decoder.segment(clip_frames, prompts, (h, w), mode=self.config.mask_mode,
                                                   memory_budget=self.config.memory_budget,
                                                   memory_selector=self.config.memory_selector, timer=timer)
        objects = objects.cpu().numpy() if isinstance(objects, torch.Tensor) else np.asarray(objects)
        start = 0
        take = 1 if self.config.seg_objects == "first" else None  # released: object 0 of several [SEG]
        for e, n in enumerate(counts):
            if n:
                masks[e] = objects[start : start + (take or n)].any(axis=0)
            start += n
        return masks

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def segment(self, frames: np.ndarray, expressions: Sequence[str], budget: int | None = None, method: str = "litelvlm",
                clip_budget: int | None = None, timer: StageTimer | None = None, **overrides) -> VideoSegmentationResult:
        """Masks of each expression in ``frames`` (T, H, W, 3) uint8; ``budget`` CLIP tokens per sampled
        frame (None: all 576); ``clip_budget`` the total LLM visual tokens per clip (clip-level methods only);
        ``timer`` a fresh ``StageTimer`` (or ``litelvlm.bench.memory.MemoryProbe``) to time the stages with.
        ``overrides`` replace fields of the segmenter's config for this call. The whole call runs inside
        ``inference_autocast(device, self.autocast)`` (the release wraps its inference in fp16 autocast)."""
        frames, expressions = _check_video_inputs(frames, expressions)
        saved = self.config
        self.config = replace(self.config, **overrides) if overrides else self.config
        try:
            if self.config.mask_mode == "propagate":  # a budget above the decoder's memory tokens fails before any work
                self.model.pixel_decoder.check_memory_options(self.config.memory_budget, self.config.memory_selector)
            with inference_autocast(self.device, self.autocast):
                return self._segment(frames, expressions, budget, method, clip_budget, timer)
        finally:
            self.config = saved

    def _call(self, expressions, budget, method, clip_budget, timer=None) -> tuple[_Call, list[str]]:
        if budget is None and clip_budget is None:
            method = "none"
        selector = self._selector(method)
        check_clip_budget(selector, clip_budget)
        timer = timer if timer is not None else StageTimer(self.device)
        questions = [video_question(e, mode=self.config.expression_text) for e in expressions]
        with timer("clip_text"):  # once per expression for the whole video
            texts = questions if self.config.prune_text == "question" else [expression_text(e, self.config.expression_text) for e in expressions]
            text_embeds = self.pruner.text_embeds(texts) if selector.uses_text else None
        generator = None if self.config.seed is None else torch.Generator().manual_seed(self.config.seed)
        share_reason = self._share_reason(selector, len(expressions))
        return _Call(selector, budget, clip_budget, text_embeds, timer, generator, len(expressions), share_reason), questions

    def _share_reason(self, selector, num_expressions: int) -> str:
        """Why the expressions of a clip cannot share one prefill of the prompt prefix; empty when they can."""
        if not self.config.share_prefix:
            return "share_prefix is off"
        if num_expressions < 2:
            return "one expression: nothing to share"
        if selector.uses_text:
            return f"method {selector.name!r} selects the visual tokens by the expression's text"
        if not selector.shares_prefix:
            return f"method {selector.name!r} acts inside the LLM on the question's attention"
        if self.config.answer is None and not self.config.use_cache:
            return "use_cache=False: the released loop re-runs the encoders and the whole prompt for every token"
        return ""

    def _segment(self, frames, expressions, budget, method, clip_budget, timer) -> VideoSegmentationResult:
        calls_before = self.pruner.text_calls
        call, questions = self._call(expressions, budget, method, clip_budget, timer)
        masks, answers = [], [[] for _ in expressions]
        kept, frame_tokens, sampled_frames = [[] for _ in expressions], [[] for _ in expressions], []
        clip_has_seg = [[] for _ in expressions]
        for clip in split_clips(len(frames), self.config.clip_length):
            seg_before = list(call.seg_counts)
            sample = sample_frame_indices(clip.stop - clip.start, self.config.num_frames, self.config.short_clip_sampling)
            sampled_frames.append([clip.start + int(i) for i in sample])
            clip_masks, clip_kept, clip_answers, clip_frames = self._segment_clip(frames[clip.start : clip.stop], sample, questions, call)
            masks.append(clip_masks)
            for e in range(len(expressions)):
                kept[e].append(clip_kept[e])
                answers[e].append(clip_answers[e])
                clip_has_seg[e].append(call.seg_counts[e] > seg_before[e])
                frame_tokens[e].extend(clip_frames[e] or [])
        n_frame_rows = len(call.clip_tokens)
        clip_per_frame = float(np.mean(call.clip_tokens)) if n_frame_rows else 0.0
        clip_level = call.selector.stage == "clip"
        return VideoSegmentationResult(
            masks=np.concatenate(masks, axis=1),
            kept=[[f for part in k for f in part] if clip_level else torch.cat(k) for k in kept],
            has_seg=[n > 0 for n in call.seg_counts], answers=answers,
            visual_tokens_per_frame=clip_per_frame + call.video_tokens / max(n_frame_rows, 1),
            clip_tokens_per_frame=clip_per_frame, method=call.selector.name, timings=call.timer.as_dict(),
            forward_passes=call.forward_passes, text_tower_calls=self.pruner.text_calls - calls_before,
            wall_timings=call.timer.wall_dict(), frame_tokens=frame_tokens if clip_level else None,
            llm_visual_tokens=list(call.llm_tokens), sampled_frames=sampled_frames, clip_has_seg=clip_has_seg,
            shared_prefix=not call.share_reason, shared_prefix_reason=call.share_reason, prefix_passes=call.prefix_passes,
        )


def _check_video_inputs(frames, expressions):
    expressions = check_expressions(expressions)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 array with T >= 1, got shape {frames.shape} dtype {frames.dtype}")
    return frames, expressions

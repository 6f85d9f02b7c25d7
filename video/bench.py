"""The video section of ``litelvlm bench``: VideoGLaMM (random weights) on a 16-frame clip.

Per (method, CLIP budget per frame, clip budget): the LLM visual tokens of the clip, encoder, selection and
LLM prefill time (teacher-forced answer), the prefill's activation memory, and one clip end to end with an
8-token answer decoded with the KV cache (its prompt pass and its token passes timed apart), also with SAM2
propagation when asked (the SAM2 section, ``video.bench_sam2``: it does not depend on the tokens). Every case runs
in the same interleaved rounds, so the ratios against per-frame LiteLVLM at the same CLIP budget come from one run;
those rows send different token counts, so methods are compared at equal tokens (``--clip-budget``) and at their
papers' settings (``:released=True``) in the tables of ``litelvlm.bench.video_compare``.
For the unpruned model and per-frame LiteLVLM the released no-cache decoding loop (encoders and the whole prefill
re-run for every token) is timed too, once.
"""

from __future__ import annotations

import statistics
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from litelvlm.clip import random_clip_towers

__all__ = ["VideoCase", "video_cases", "is_released", "bench_selector", "build_random_video_segmenter", "sample_scene",
           "bench_frames", "measure_video_section", "measure_video_cases", "measure_clip_kinds", "measure_sam2_section",
           "sam2_case_list", "add_masks_time", "ANSWER_TOKENS", "CLIP_FRAMES", "REFERENCE_METHOD"]

ANSWER_TOKENS = 8  # the short answer decoded in the end-to-end run
CLIP_FRAMES = 16  # frames of the bench clip (VideoGLaMM samples 16)
REFERENCE_METHOD = "litelvlm"  # the ratios are against per-frame LiteLVLM at the same CLIP budget
FULL = 576
FULL_LLM_LAYERS = 32  # Phi-3-mini, VideoGLaMM's LLM


@dataclass(frozen=True)
class VideoCase:
    """One benchmarked setting: ``method`` at ``budget`` CLIP tokens per frame (576: the unpruned model, method
    ``none``), with an optional ``clip_budget`` (clip-level methods). ``released``: a ``:released=True`` spec, run
    once at its paper's setting (the budget is ignored: 576 is passed)."""

    method: str
    budget: int
    clip_budget: int | None = None
    released: bool = False

    @property
    def segment_budget(self) -> int | None:
        return self.budget if self.released else None if self.budget >= FULL else self.budget


def is_released(spec: str) -> bool:
    """Whether ``spec`` (a name or a ``parse_method_spec`` string) runs a baseline at its paper's released setting."""
    from litelvlm.pruning import method_from_spec

    return getattr(method_from_spec(spec), "released", False) is True


def video_cases(methods, budgets, clip_budgets=()) -> list[VideoCase]:
    """The cases of the video section (``litelvlm.bench.video_compare`` builds its tables):

    * per CLIP budget: the unpruned model once (at 576), every method (a name or a
      ``litelvlm.pruning.parse_method_spec`` string) at every pruned budget; per-frame LiteLVLM (the reference)
      always runs;
    * equal tokens, per clip budget N: every clip-level method at N (unless it refuses a clip budget,
      ``clip_budget_conflict``) and every per-frame method before the LLM at the CLIP budget whose tokens come
      closest to N from below (``per_frame_budget_for``; none when even one cell per frame is above N); the
      unpruned model runs as their common reference;
    * papers' settings: each ``:released=True`` spec once (never at a clip budget, never per CLIP budget)."""
    from litelvlm.bench.video_compare import per_frame_budget_for
    from litelvlm.pruning import method_from_spec

    methods = [REFERENCE_METHOD] + [m for m in dict.fromkeys(methods) if m not in (REFERENCE_METHOD, "none")]
    released = [m for m in methods if is_released(m)]
    budgeted = [m for m in methods if m not in released]
    unpruned = any(b >= FULL for b in budgets) or bool(clip_budgets) or bool(released)
    cases = [VideoCase("none", FULL)] if unpruned else []
    for budget in sorted({b for b in budgets if b < FULL}, reverse=True):
        cases += [VideoCase(method, budget) for method in budgeted]
    for clip_budget in clip_budgets:
        for method in budgeted:
            selector = method_from_spec(method)
            if selector.stage == "clip" and selector.clip_budget_conflict() is None:
                cases.append(VideoCase(method, FULL, clip_budget))
            elif selector.stage == "pre_llm":
                budget = per_frame_budget_for(clip_budget, CLIP_FRAMES)
                if budget is not None:
                    cases.append(VideoCase(method, budget))
    cases += [VideoCase(method, FULL, released=True) for method in released]
    return list(dict.fromkeys(cases))  # a per-frame case at a CLIP budget already listed runs once


def bench_selector(spec: str, llm_layers: int, full_layers: int = FULL_LLM_LAYERS):
    """``litelvlm.bench.methods.bench_selector`` against Phi-3-mini's depth (VideoGLaMM's LLM)."""
    from litelvlm.bench.methods import bench_selector as scaled

    return scaled(spec, llm_layers, full_layers)


def build_random_video_segmenter(scale: str, device="cpu", dtype=None, seed: int = 0, **config):
    """A ``VideoSegmenter`` over random weights of VideoGLaMM at ``scale`` (full / default / quick)."""
    import torch

    from litelvlm.bench.image import SCALES
    from litelvlm.tokenizer import ReleasedLlamaTokenizer

    from .model import VideoGLaMM, VideoGLaMMArchitecture
    from .segmenter import VideoSegmenter, VideoSegmenterConfig
    from .tokenizer_files import write_phi3_tokenizer

    dtype = dtype or torch.float32
    width, depth = SCALES[scale]
    arch = VideoGLaMMArchitecture.full() if scale == "full" else VideoGLaMMArchitecture.full().scaled(width, depth)
    model = VideoGLaMM.from_architecture(arch, device, dtype, seed=seed)
    clip = random_clip_towers(arch, device, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        ids = write_phi3_tokenizer(Path(tmp))
        tokenizer = ReleasedLlamaTokenizer.from_pretrained(tmp, rules="4.41")
    # no eos: decoding always runs the full answer length, so every case decodes the same number of tokens
    return VideoSegmenter(model, clip, tokenizer, seg_token_id=ids["[SEG]"], eos_token_ids=set(), device=device,
                          dtype=dtype, config=VideoSegmenterConfig(**config)), arch


def sample_scene(size: tuple[int, int] | None = None) -> np.ndarray:
    """The bundled sample scene as (H, W, 3) uint8, resized to ``size`` (H, W) when given."""
    from PIL import Image

    from litelvlm.demo import sample_image_path
    from litelvlm.viz import load_rgb

    scene = load_rgb(sample_image_path())
    return scene if size is None else np.asarray(Image.fromarray(scene).resize((size[1], size[0])))


def bench_frames(num_frames: int = 16, size: tuple[int, int] = (360, 480)) -> np.ndarray:
    """A synthetic clip: the bundled sample scene panning right, ``num_frames`` frames."""
    from PIL import Image

    scene = sample_scene()
    frames = []
    for t in range(num_frames):
        shifted = np.roll(scene, shift=3 * t, axis=1)
        frames.append(np.asarray(Image.fromarray(shifted).resize((size[1], size[0]))))
    return np.stack(frames)


def _ms(timings: list[dict], key: str) -> float:
    return 1000 * statistics.median(t.get(key, 0.0) for t in timings)


class _Runner:
    """The segment calls of one case: teacher-forced (prefill), generated (end to end), and the memory probe."""

    EXPRESSION = ["the red car on the left"]

    def __init__(self, segmenter, frames, cases, progress=None):
        self.segmenter, self.frames, self.progress = segmenter, frames, progress
        self.warnings: dict[VideoCase, list[str]] = {}
        layers = len(segmenter.model.llm.model.layers)
        self.selectors = {c.method: c.method if c.method == "none" else bench_selector(c.method, layers) for c in cases}

    def _segment(self, case: VideoCase, **kwargs):
        """One segment call; a method's warnings (e.g. a budget it cannot meet) are kept for the case's row."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = self.segmenter.segment(self.frames, self.EXPRESSION, budget=case.segment_budget,
                                            method=self.selectors[case.method], clip_budget=case.clip_budget,
                                            mask_mode="none", **kwargs)
        notes = self.warnings.setdefault(case, [])
        notes += [str(w.message) for w in caught if str(w.message) not in notes]
        return result

    def forced(self, case: VideoCase, **kwargs):
        return self._segment(case, answer="Sure, [SEG].", **kwargs)

    def generated(self, case: VideoCase, **kwargs):
        return self._segment(case, max_new_tokens=ANSWER_TOKENS, **kwargs)

    def round(self, case: VideoCase):
        pair = self.forced(case), self.generated(case)
        if self.progress is not None:
            self.progress.update(1)
        return pair


def measure_video_section(settings, progress=None, segmenter=None) -> dict:
    """``{"video": rows, "sam2": section or None, "equal_tokens": entries, "clip_kinds": rows}``: the video cases (their
    equal-token entries: ``litelvlm.bench.video_compare``; litelvlm-time's tokens per clip kind: ``measure_clip_kinds``),
    and with ``settings.video_masks`` the SAM2 section (``video.bench_sam2``), whose one-object unpruned propagation
    of the bench clip is added to every row's end-to-end time (SAM2 work does not depend on the tokens).
    ``segmenter`` None: a random one at ``settings.scale``."""
    from litelvlm.bench.video_compare import equal_token_entries

    if segmenter is None:
        segmenter, _ = build_random_video_segmenter(settings.scale, settings.device, settings.dtype, settings.seed)
    rows = measure_video_cases(settings, progress, segmenter=segmenter)
    section = {"video": rows, "sam2": None, "clip_kinds": measure_clip_kinds(segmenter, settings)}
    if settings.video_masks:
        section["sam2"] = sam2 = measure_sam2_section(segmenter, settings, progress)
        one_object = next(r for r in sam2["rows"] if r["objects"] == 1 and r["memory_budget"] is None
                          and r["frames"] == sam2["frames"] and r["clip"] == "bench")
        add_masks_time(rows, one_object["propagation_ms"])
    section["equal_tokens"] = equal_token_entries(rows, settings.video_methods, settings.clip_budgets, CLIP_FRAMES)
    return section


def measure_clip_kinds(segmenter, settings) -> list[dict]:
    """litelvlm-time's tokens per synthetic clip kind (``video.synthetic_clips``), reuse on and off, at the smallest
    pruned CLIP budget of ``settings.video_budgets``; empty unless litelvlm-time is among the video methods (token
    counts only: one teacher-forced pass per kind, untimed)."""
    from litelvlm.bench.video_compare import REUSE_OFF

    from .synthetic_clips import time_tokens_per_clip_kind

    pruned = [b for b in settings.video_budgets if b < FULL]
    if "litelvlm-time" not in settings.video_methods or not pruned:
        return []
    budget = min(pruned)
    rows = []
    for reuse, spec in ((True, "litelvlm-time"), (False, REUSE_OFF)):
        for counted in time_tokens_per_clip_kind(segmenter, budget, selector=spec, seed=settings.seed):
            rows.append({"kind": counted.kind, "budget": budget, "reuse": reuse, "cells_sent": counted.cells_sent,
                         "cells_reused": counted.cells_reused, "video_tokens": counted.video_tokens, "total": counted.total})
    return rows


def sam2_case_list(settings) -> list:
    """The SAM2 section's cases for the bench ``settings`` (``video.bench_sam2.sam2_cases``)."""
    from .bench_sam2 import sam2_cases

    return sam2_cases(settings.memory_budgets, CLIP_FRAMES, settings.sam2_objects, settings.sam2_long_frames)


def measure_sam2_section(segmenter, settings, progress=None) -> dict:
    """The SAM2 rows of ``segmenter``'s pixel decoder (``video.bench_sam2.measure_sam2_cases``) and what they ran on."""
    from litelvlm.timing import StageTimer

    from .bench_sam2 import MEMORY_SELECTOR, measure_sam2_cases, seg_prompt_embeddings

    cases = sam2_case_list(settings)
    prompts = seg_prompt_embeddings(segmenter.model, max(c.objects for c in cases), settings.seed)
    decoder = segmenter.model.pixel_decoder
    cost = StageTimer(settings.device)
    with cost("sam2_section"):
        rows = measure_sam2_cases(decoder, prompts, cases, settings, progress)
    side = decoder.image_size // 16
    return {"rows": rows, "frames": CLIP_FRAMES, "objects": settings.sam2_objects, "image_size": decoder.image_size,
            "memory_tokens_per_frame": side * side, "memory_selector": MEMORY_SELECTOR, "cost_s": cost.total,
            "wall_s": cost.wall_total}


def add_masks_time(rows: list[dict], masks_ms: float) -> None:
    """Add one object's SAM2 propagation to every row's end-to-end time (and its ratio)."""
    for row in rows:
        row["e2e_with_masks_ms"] = row["e2e_ms"] + masks_ms
        row["mask_decoder_ms_all_cases"] = masks_ms
    _add_ratios(rows)


def measure_video_cases(settings, progress=None, segmenter=None) -> list[dict]:
    """One row per case of ``video_cases(settings.video_methods, settings.video_budgets, settings.clip_budgets)``;
    ``settings`` is the bench's ``ImageBenchSettings``; ``segmenter`` None: a random one at ``settings.scale``.
    Rows carry ``ratios_vs_litelvlm`` (same CLIP budget)."""
    from litelvlm.bench.image import measure_rounds, spread
    from litelvlm.bench.memory import MemoryProbe

    if segmenter is None:
        segmenter, _ = build_random_video_segmenter(settings.scale, settings.device, settings.dtype, settings.seed)
    cases = video_cases(settings.video_methods, settings.video_budgets, settings.clip_budgets)
    runner = _Runner(segmenter, bench_frames(CLIP_FRAMES), cases, progress)
    for case in cases:
        for _ in range(settings.warmup):
            runner.round(case)
    runs = measure_rounds(runner.round, cases, settings, key=lambda pair: pair[0].timings["total"] + pair[1].timings["total"],
                          progress=progress)
    rows = []
    for case, pairs in zip(cases, runs):
        probe = MemoryProbe(settings.device)
        runner.forced(case, timer=probe)
        uncached = None
        if case.method in ("none", REFERENCE_METHOD):  # the released no-cache loop, once
            uncached = runner.generated(case, use_cache=False)
        rows.append(_row(case, pairs, probe, uncached, spread))
        rows[-1]["llm_layer"] = getattr(runner.selectors[case.method], "layer", None)  # None: a name, no LLM layer
        rows[-1]["llm_layers"] = len(segmenter.model.llm.model.layers)  # the benchmarked depth (32 at full scale)
        stats = getattr(runner.selectors[case.method], "last_stats", None)  # the probe's call: this case's clip
        rows[-1]["tokens_after_llm_layer"] = getattr(stats, "tokens_after_layer", None)  # PruneVid, HoliTom: from layer K
        rows[-1]["warnings"] = runner.warnings.get(case, [])
    _add_ratios(rows)
    return rows


def _row(case: VideoCase, pairs, probe, uncached, spread) -> dict:
    forced = [p[0].timings for p in pairs]
    generated = [p[1].timings for p in pairs]
    first = pairs[0][0]
    e2e = _ms(generated, "total")
    row = {
        "method": case.method, "budget": case.budget, "clip_budget": case.clip_budget, "released": case.released,
        "llm_visual_tokens": first.llm_visual_tokens[0], "visual_tokens_per_frame": first.visual_tokens_per_frame,
        "clip_tokens_per_frame": first.clip_tokens_per_frame,
        "clip_ms": _ms(forced, "clip_vision"), "video_encoder_ms": _ms(forced, "video_encoder"),
        "selection_ms": _ms(forced, "selection"), "llm_prefill_ms": _ms(forced, "llm_prefill"),
        "generate_prompt_ms": _ms(generated, "generate_prompt"), "decode_ms": _ms(generated, "generate_tokens"),
        "decode_cached_ms": _ms(generated, "llm_generate"), "e2e_ms": e2e,
        "e2e_with_masks_ms": None, "mask_decoder_ms_all_cases": None,  # SAM2: add_masks_time
        "answer_tokens": ANSWER_TOKENS,
        "activation_mib": probe.activation_bytes.get("llm_prefill", 0) / 2**20,
        "spread": spread([f["total"] + g["total"] for f, g in zip(forced, generated)]), "rounds": len(pairs),
        "decode_forward_passes": {"cached": pairs[0][1].forward_passes},
    }
    if uncached is not None:
        row["decode_uncached_ms"] = 1000 * uncached.timings["llm_generate"]
        row["e2e_uncached_ms"] = 1000 * uncached.timings["total"]
        row["decode_forward_passes"]["uncached"] = uncached.forward_passes
        row["kv_cache_decode_speedup"] = row["decode_uncached_ms"] / row["decode_cached_ms"]
    return row


def _add_ratios(rows: list[dict]) -> None:
    """Each pruned row of the per-CLIP-budget table against per-frame LiteLVLM at the same CLIP budget in the same
    run (rows at a clip budget and at papers' settings: ``litelvlm.bench.video_compare``)."""
    for row in rows:
        base = next((r for r in rows if r["method"] == REFERENCE_METHOD and r["budget"] == row["budget"]
                     and r["clip_budget"] is None), None)
        if base is None or row["method"] == "none" or row["clip_budget"] is not None or row.get("released"):
            continue
        row["ratios_vs_litelvlm"] = {
            "token_reduction": base["llm_visual_tokens"] / max(row["llm_visual_tokens"], 1),
            "prefill_speedup": base["llm_prefill_ms"] / row["llm_prefill_ms"],
            "decode_speedup": base["decode_ms"] / row["decode_ms"],
            "e2e_speedup": base["e2e_ms"] / row["e2e_ms"],
            "e2e_with_masks_speedup": None if row["e2e_with_masks_ms"] is None else base["e2e_with_masks_ms"] / row["e2e_with_masks_ms"],
            "activation_reduction": base["activation_mib"] / max(row["activation_mib"], 1e-9),
        }

"""The image section of ``litelvlm bench``: GLaMM at a scale, per budget and method."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np
import torch

from ..glamm.build import GLaMMArchitecture, build_random_segmenter
from ..glamm.prompt import DEFAULT_ANSWER, build_conversation, question_for, tokenize_with_image
from ..pruning import get_method
from ..viz import load_rgb
from .flops import flops_shares, glamm_stage_flops
from .memory import MemoryProbe
from .methods import bench_selector

__all__ = ["SCALES", "ImageBenchSettings", "architecture_for", "run_image_bench", "image_cases", "image_calls", "REFCOCO_LIKE_EXPRESSIONS",
           "spread", "measure_rounds", "max_rounds"]

# (width factor, depth factor) applied uniformly to every component; token counts never change.
SCALES = {"full": (1.0, 1.0), "default": (1 / 8, 1 / 4), "quick": (1 / 16, 1 / 8)}

REFCOCO_LIKE_EXPRESSIONS = (
    "red car on the left", "man in a blue shirt", "the brown dog", "sun in the top right corner",
    "grass below the car", "person standing on the right", "front wheel of the car", "sky above the man",
)

STAGES = ("clip_vision", "clip_text", "selection", "llm_prefill", "sam_image_encoder", "mask_decoder")


@dataclass
class ImageBenchSettings:
    scale: str = "default"
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    budgets: tuple[int, ...] = (576, 192, 128, 64)
    methods: tuple[str, ...] = ("litelvlm",)
    expressions: int = 7
    video_masks: bool = False  # also time SAM2 propagation (budget-independent; slow on CPU)
    video_methods: tuple[str, ...] = ("litelvlm", "litelvlm-time")  # litelvlm (the reference of the ratios) always runs
    video_budgets: tuple[int, ...] = (576, 196, 81)  # CLIP tokens per frame; 576 = the unpruned model
    clip_budgets: tuple[int, ...] = ()  # clip-level methods also run at each of these clip budgets
    memory_budgets: tuple[int | None, ...] = (None, 1024, 512, 256)  # SAM2 memory tokens per memory frame (None: all)
    sam2_objects: int = 4  # objects of the SAM2 multi-object and memory-budget rows
    sam2_long_frames: int | None = 64  # frames of the SAM2 long-clip row (None: no such row)
    multi_expression: tuple[int, ...] = ()  # expression counts of the multi-expression section (empty: off)
    sam2_max_repeats: int = 3  # SAM2 rounds: 2, a third where they differ by more than target_spread (minutes per case on a CPU)
    repeats: int = 3  # rounds at least; more (up to max_repeats) until every case's spread is within target_spread
    max_repeats: int = 9
    target_spread: float = 0.10  # interquartile range / median of a case's per-round times (see spread)
    warmup: int = 1
    seed: int = 0
    extra: dict = field(default_factory=dict)


def spread(values: list[float]) -> float:
    """Relative spread of repeated measurements: interquartile range / median from 4 values on (one outlier
    does not keep it high), (max - min) / median below that, 0 for fewer than two."""
    if len(values) < 2:
        return 0.0
    middle = statistics.median(values)
    if middle <= 0:
        return 0.0
    if len(values) < 4:
        return (max(values) - min(values)) / middle
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q3 - q1) / middle


def max_rounds(settings: ImageBenchSettings) -> int:
    """The most rounds ``measure_rounds`` runs with ``settings``: what a progress bar plans for."""
    return max(settings.repeats, settings.max_repeats)


def measure_rounds(run_case, cases, settings: ImageBenchSettings, key, progress=None) -> list[list]:
    """Results of ``run_case(case)`` for every case, round-robin (drift and other processes hit every case
    alike): at least ``repeats`` rounds, more until each case's ``key(result)`` spread is within
    ``target_spread`` or ``max_rounds`` rounds ran. ``run_case`` advances ``progress`` by one per call; the bar's
    total plans ``max_rounds``, so the rounds not needed are counted as done when the spread settles early."""
    runs: list[list] = [[] for _ in cases]
    rounds = 0
    while True:
        for i, case in enumerate(cases):
            runs[i].append(run_case(case))
        rounds += 1
        if rounds < settings.repeats:
            continue
        if rounds >= max_rounds(settings) or all(spread([key(r) for r in rs]) <= settings.target_spread for rs in runs):
            if progress is not None:
                progress.update(len(cases) * (max_rounds(settings) - rounds))
            return runs


def architecture_for(scale: str) -> GLaMMArchitecture:
    """The GLaMM architecture benchmarked at ``scale`` (full, default or quick)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    width, depth = SCALES[scale]
    full = GLaMMArchitecture.full()
    return full if scale == "full" else full.scaled(width, depth)


def _text_tokens(segmenter, expressions) -> float:
    lengths = [len(tokenize_with_image(build_conversation([question_for(e)], [DEFAULT_ANSWER]), segmenter.tokenizer)) - 1
               for e in expressions]
    return float(np.mean(lengths))


def bench_selectors(cases, arch: GLaMMArchitecture) -> dict:
    """Method spec -> what the segmenter runs (``litelvlm.bench.methods.bench_selector``: an in-LLM method's layer
    scaled from GLaMM's 32 LLM layers to ``arch``'s)."""
    full_layers = GLaMMArchitecture.full().llm_layers
    return {method: bench_selector(method, arch.llm_layers, full_layers) for method, _ in cases}


def _measure_all(segmenter, image, expressions, settings, cases, selectors, progress) -> list[dict]:
    """Warm every case up, then time the cases round-robin until their spread is bounded, then measure memory."""

    def run(case, **kwargs):
        method, budget = case
        result = segmenter.segment(image, expressions, budget=budget, method=selectors[method], **kwargs)
        if progress is not None:
            progress.update(1)
        return result

    for case in cases:
        for _ in range(settings.warmup):
            run(case)
    runs = measure_rounds(run, cases, settings, key=lambda r: r.timings["total"], progress=progress)
    measured = []
    for case, results in zip(cases, runs):
        probe = MemoryProbe(settings.device)
        run(case, timer=probe)
        timings = [r.timings for r in results]
        measured.append({
            "stage_ms": {s: 1000 * statistics.median(t.get(s, 0.0) for t in timings) for s in STAGES},
            "image_ms": 1000 * statistics.median(t["total"] for t in timings),
            "wall_image_ms": 1000 * statistics.median(r.wall_timings["total"] for r in results),
            "spread": spread([t["total"] for t in timings]), "rounds": len(results),
            "activation_bytes": probe.activation_bytes,
        })
    return measured


def _row(arch, selector, measured, budget, method, n_expr, text_tokens) -> dict:
    visual = 576 if budget is None else budget
    selector = get_method(selector)
    unpruned = selector.layer if selector.stage == "llm" else 0
    stage_flops = glamm_stage_flops(arch, visual_tokens=visual, text_tokens=round(text_tokens), num_expressions=n_expr,
                                    unpruned_llm_layers=unpruned)
    act = {k: v / 2**20 for k, v in measured["activation_bytes"].items()}
    return {
        "budget": visual, "method": method, "expressions": n_expr, "text_tokens": text_tokens,
        "llm_prune_layer": unpruned or None,  # an in-LLM method's layer K at this scale (bench_selector)
        "llm_prefill_ms": measured["stage_ms"]["llm_prefill"],
        "llm_prefill_ms_per_expression": measured["stage_ms"]["llm_prefill"] / n_expr,
        "per_expression_ms": measured["image_ms"] / n_expr, "image_ms": measured["image_ms"],
        "wall_image_ms": measured["wall_image_ms"], "spread": measured["spread"], "rounds": measured["rounds"],
        "stage_ms": measured["stage_ms"],
        "activation_mib": act.get("llm_prefill", 0.0), "activation_mib_per_stage": act,
        "peak_activation_mib": max(act.values()) if act else 0.0,
        "flops_g": sum(stage_flops.values()) / n_expr / 1e9,
        "flops_g_per_stage": {k: v / 1e9 for k, v in stage_flops.items()},
        "llm_flops_g_per_expression": stage_flops["llm_prefill"] / n_expr / 1e9,
    }


def _add_ratios(rows: list[dict]) -> None:
    """Speed-ups and reductions of each row against the 576-token row of the same method."""
    for row in rows:
        base = next((r for r in rows if r["method"] == row["method"] and r["budget"] == 576), None)
        if base is None:
            continue
        row["ratios_vs_576"] = {
            "llm_prefill_speedup": base["llm_prefill_ms"] / row["llm_prefill_ms"],
            "per_expression_speedup": base["per_expression_ms"] / row["per_expression_ms"],
            "activation_reduction": base["activation_mib"] / max(row["activation_mib"], 1e-9),
            "flops_reduction": base["flops_g"] / row["flops_g"],
        }


def image_cases(settings: ImageBenchSettings) -> list[tuple[str, int | None]]:
    """(method, budget) pairs measured; 'none' only at 576 (as budget None)."""
    return [(m, None if m == "none" else b) for m in settings.methods for b in settings.budgets if m != "none" or b == 576]


def image_calls(settings: ImageBenchSettings) -> int:
    """The progress bar's steps of the image section: segment calls with every round ``measure_rounds`` may run
    (warm-up, ``max_rounds``, the memory probe)."""
    return len(image_cases(settings)) * (settings.warmup + max_rounds(settings) + 1)


def run_image_bench(settings: ImageBenchSettings, progress=None) -> dict:
    """Measure every (method, budget); returns ``{"architecture", "flops_shares", "rows"}``."""
    from ..demo import sample_image_path

    arch = architecture_for(settings.scale)
    segmenter = build_random_segmenter(arch, settings.device, settings.dtype, seed=settings.seed)
    image = load_rgb(sample_image_path())
    expressions = [REFCOCO_LIKE_EXPRESSIONS[i % len(REFCOCO_LIKE_EXPRESSIONS)] for i in range(settings.expressions)]
    text_tokens = _text_tokens(segmenter, expressions)
    cases = image_cases(settings)
    selectors = bench_selectors(cases, arch)
    measured = _measure_all(segmenter, image, expressions, settings, cases, selectors, progress)
    rows = [_row(arch, selectors[method], m, budget, method, len(expressions), text_tokens)
            for (method, budget), m in zip(cases, measured)]
    _add_ratios(rows)
    shares = {name: flops_shares(glamm_stage_flops(a, visual_tokens=576, text_tokens=round(text_tokens)))
              for name, a in (("full", GLaMMArchitecture.full()), (settings.scale, arch))}
    weights_mib = sum(p.numel() * p.element_size() for m in (segmenter.model, segmenter.clip.vision, segmenter.clip.text)
                      for p in m.parameters()) / 2**20
    return {"architecture": arch.describe(), "flops_shares_at_576": shares, "weights_mib": weights_mib, "rows": rows}

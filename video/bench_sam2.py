"""The SAM2 section of ``litelvlm bench --video-masks``: VideoGLaMM's pixel decoder (random weights) per stage.

Per case (clip, frames, objects, memory budget): the propagation's CPU time split into the decoder's stages (image
encoder per frame; memory attention, memory encoder and mask decoder per frame and object), the analytic FLOPs of each
stage at full scale, and for pruned memories the masks' agreement (IoU) with the unpruned propagation of the same
clip and prompts. The [SEG] prompts are the model's own ``text_hidden_fcs`` applied to seeded random LLM states: with
random weights the masks mean nothing, so the agreement says how much memory pruning changes the output, not
whether it stays right.

Cost: one round is minutes per case at 1024 px, so the cases run the fewest rounds the spread rule can judge: two
(interleaved, as the other sections), a third only for cases whose two propagation times differ by more than the
target spread (``sam2_max_repeats`` caps them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from litelvlm.timing import StageTimer

from .sam2.decoder import SAM2_STAGES

__all__ = ["Sam2Case", "sam2_cases", "sam2_rounds", "small_object_frames", "seg_prompt_embeddings", "measure_sam2_cases",
           "mask_agreement", "propagation_flops"]

PROPAGATION = "sam2_propagation"  # the whole pixel_decoder.segment call (preprocessing and resizing included)
BENCH_CLIP, SMALL_OBJECT_CLIP = "bench", "small object"
MEMORY_SELECTOR = "mask"  # which memory tokens a budget keeps (video.sam2.memory_select; the decoder's default)


@dataclass(frozen=True)
class Sam2Case:
    """One propagation: ``objects`` [SEG] prompts on frame 0 of ``frames`` frames of ``clip``, tracked with
    ``memory_budget`` spatial memory tokens per memory frame (None: all)."""

    clip: str
    frames: int
    objects: int
    memory_budget: int | None = None

    @property
    def reference(self) -> "Sam2Case":
        """The unpruned propagation of the same clip and prompts."""
        return replace(self, memory_budget=None)


def sam2_cases(memory_budgets, frames: int = 16, objects: int = 4, long_frames: int | None = 64) -> list[Sam2Case]:
    """The profile (one object; ``objects`` objects; ``long_frames`` frames, all unpruned) and the memory budgets
    (``objects`` objects on the bench clip, one object on the small-object clip; each group with its unpruned
    reference)."""
    budgets = [None] + sorted({b for b in memory_budgets if b is not None}, reverse=True)
    cases = [Sam2Case(BENCH_CLIP, frames, 1)]
    cases += [Sam2Case(BENCH_CLIP, frames, objects, b) for b in budgets]
    if long_frames:
        cases.append(Sam2Case(BENCH_CLIP, long_frames, 1))
    cases += [Sam2Case(SMALL_OBJECT_CLIP, frames, 1, b) for b in budgets]
    return list(dict.fromkeys(cases))


def small_object_frames(num_frames: int = 16, size: tuple[int, int] = (360, 480), radius: int = 10) -> np.ndarray:
    """A synthetic clip: the bundled sample scene, still, with a small bright disc crossing it from left to right
    on a gentle wave (what pruning a memory to a few tokens could lose)."""
    from .bench import sample_scene

    scene = sample_scene(size)
    h, w = size
    yy, xx = np.ogrid[:h, :w]
    frames = []
    for t in range(num_frames):
        progress = t / max(num_frames - 1, 1)
        cx, cy = w * (0.1 + 0.8 * progress), h * (0.5 + 0.15 * np.sin(2 * np.pi * progress))
        frame = scene.copy()
        frame[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 255
        frames.append(frame)
    return np.stack(frames)


def seg_prompt_embeddings(model, objects: int, seed: int = 0) -> torch.Tensor:
    """(objects, C) SAM2 prompts: the model's [SEG] projection of seeded random last-layer LLM states."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(objects, model.hidden_size, generator=generator)
    with torch.no_grad():
        return model.seg_prompts(states)


def mask_agreement(masks: np.ndarray, reference: np.ndarray) -> float:
    """Mean IoU (DAVIS J: 1 when both are empty) of (E, T, H, W) masks against the reference's, over every object
    and the propagated frames 1..T-1 (frame 0 is decoded from the prompt alone: equal by construction)."""
    from eval.metrics.davis import jaccard_sequence

    if masks.shape != reference.shape:
        raise ValueError(f"masks {masks.shape} and reference {reference.shape} differ in shape")
    if masks.shape[1] < 2:
        return 1.0
    return float(np.mean([jaccard_sequence(r[1:], m[1:]).mean() for m, r in zip(masks, reference)]))


def propagation_flops(sam2, case: Sam2Case, memory_tokens: int, pointer_tokens_per_frame: int, max_pointers: int = 16) -> dict[str, float]:
    """Analytic FLOPs of each stage of ``case`` for the SAM2 architecture ``sam2`` (``memory_tokens``: spatial tokens
    per memory frame, the budget applied): totals over the clip, frame t attending to min(t, num_maskmem) memory frames
    and min(t, frames, max_pointers) object pointers."""
    from litelvlm.bench.flops import sam2_image_encoder_flops, sam2_mask_decoder_flops, sam2_memory_encoder_flops

    from .sam2.flops import memory_attention_flops

    config, queries = sam2.to_transformers(), (sam2.image_size // 16) ** 2
    kept = min(memory_tokens, queries)
    attention = 0.0
    for t in range(1, case.frames):
        pointers = min(t, case.frames, max_pointers) * pointer_tokens_per_frame
        attention += memory_attention_flops(queries, min(t, sam2.num_maskmem) * kept, pointers, config)["total"]
    decoder = sam2_mask_decoder_flops(sam2, 3) + (case.frames - 1) * sam2_mask_decoder_flops(sam2, 2)
    return {
        SAM2_STAGES[0]: case.frames * sam2_image_encoder_flops(sam2),
        SAM2_STAGES[1]: case.objects * attention,
        SAM2_STAGES[2]: case.objects * case.frames * sam2_memory_encoder_flops(sam2),
        SAM2_STAGES[3]: case.objects * decoder,
    }


def _per_unit(case: Sam2Case, stage: str, value: float) -> float:
    """A stage's total over the clip -> per frame (image encoder, shared by the objects) or per frame and object
    (memory attention: per propagated frame, frame 0 has none)."""
    if stage == SAM2_STAGES[0]:
        return value / case.frames
    frames = case.frames - 1 if stage == SAM2_STAGES[1] else case.frames
    return value / max(frames * case.objects, 1)


class _Sam2Runner:
    """Runs the cases' propagations with one decoder and one set of prompts; keeps the first masks of each case."""

    def __init__(self, decoder, prompts: torch.Tensor, clips: dict, progress=None):
        self.decoder, self.prompts, self.clips, self.progress = decoder, prompts, clips, progress
        self.masks: dict[Sam2Case, np.ndarray] = {}

    def propagate(self, case: Sam2Case, timer=None) -> np.ndarray:
        frames = self.clips[(case.clip, case.frames)]
        masks = self.decoder.segment(frames, self.prompts[: case.objects], memory_budget=case.memory_budget,
                                     memory_selector=MEMORY_SELECTOR, timer=timer)
        return masks.cpu().numpy()

    def __call__(self, case: Sam2Case) -> dict[str, float]:
        """Seconds per stage, and ``PROPAGATION`` for the whole call."""
        timer = StageTimer(self.decoder.device)
        with timer(PROPAGATION):
            masks = self.propagate(case, timer)
        if case not in self.masks:
            self.masks[case] = masks
        if self.progress is not None:
            self.progress.update(1)
        return dict(timer.seconds)


def sam2_rounds(settings):
    """The bench ``settings`` with the SAM2 section's rounds: two (or ``sam2_max_repeats`` if fewer), at most
    ``sam2_max_repeats``."""
    return replace(settings, repeats=min(2, settings.sam2_max_repeats), max_repeats=settings.sam2_max_repeats)


def measure_sam2_cases(decoder, prompts: torch.Tensor, cases: list[Sam2Case], settings, progress=None) -> list[dict]:
    """One row per case (see the module docstring); ``settings``: the bench's ``ImageBenchSettings`` (rounds:
    ``sam2_rounds``). The stage times are those of the round with the median propagation time."""
    from litelvlm.bench.image import measure_rounds

    from .bench import bench_frames

    makers = {BENCH_CLIP: bench_frames, SMALL_OBJECT_CLIP: small_object_frames}
    clips = {(c.clip, c.frames): makers[c.clip](c.frames) for c in cases}
    runner = _Sam2Runner(decoder, prompts, clips, progress)
    decoder.segment(clips[(cases[0].clip, cases[0].frames)][:2], prompts[:1])  # warm-up: allocations, cached tables
    if progress is not None:
        progress.update(1)
    runs = measure_rounds(runner, cases, sam2_rounds(settings), key=lambda seconds: seconds[PROPAGATION], progress=progress)
    rows = [_row(decoder, case, case_runs, runner.masks) for case, case_runs in zip(cases, runs)]
    _add_speedups(rows)
    return rows


def _row(decoder, case: Sam2Case, runs: list[dict], masks: dict) -> dict:
    from litelvlm.bench.image import spread
    from video.model import hiera_large_sam2

    median = sorted(runs, key=lambda r: r[PROPAGATION])[(len(runs) - 1) // 2]  # its stages add up to its total
    ms = {s: 1000 * median.get(s, 0.0) for s in (PROPAGATION, *SAM2_STAGES)}
    side = decoder.image_size // 16
    tokens = side * side if case.memory_budget is None else min(case.memory_budget, side * side)
    full = hiera_large_sam2()
    flops = propagation_flops(full, case, case.memory_budget or (full.image_size // 16) ** 2, full.hidden_size // full.memory_dim)
    reference = masks.get(case.reference)
    return {
        "clip": case.clip, "frames": case.frames, "objects": case.objects, "memory_budget": case.memory_budget,
        "memory_tokens_per_frame": tokens, "propagation_ms": ms[PROPAGATION],
        "stage_ms": {s: ms[s] for s in SAM2_STAGES},
        "stage_ms_per_unit": {s: _per_unit(case, s, ms[s]) for s in SAM2_STAGES},
        "stage_share": {s: ms[s] / ms[PROPAGATION] for s in SAM2_STAGES},
        "full_scale_gflops_per_unit": {s: _per_unit(case, s, flops[s]) / 1e9 for s in SAM2_STAGES},
        "agreement_iou": None if case.memory_budget is None or reference is None else mask_agreement(masks[case], reference),
        "spread": spread([r[PROPAGATION] for r in runs]), "rounds": len(runs),
        "round_ms": [1000 * r[PROPAGATION] for r in runs],
    }


def _add_speedups(rows: list[dict]) -> None:
    """Propagation and memory attention of each pruned row against the unpruned row of the same clip and prompts."""
    key = lambda r: (r["clip"], r["frames"], r["objects"])  # noqa: E731
    references = {key(r): r for r in rows if r["memory_budget"] is None}
    attention = SAM2_STAGES[1]
    for row in rows:
        base = references.get(key(row))
        if base is None:
            continue
        row["speedup_vs_all"] = {
            "propagation": base["propagation_ms"] / row["propagation_ms"],
            "memory_attention": base["stage_ms"][attention] / max(row["stage_ms"][attention], 1e-9),
        }

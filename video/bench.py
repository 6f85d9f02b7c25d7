"""The video section of ``litelvlm bench``: VideoGLaMM (random weights) on a 16-frame clip.

Per per-frame budget: encoder, selection, LLM prefill (teacher-forced answer) and mask-decoder time,
LLM visual tokens per frame, and greedy decoding of a fixed-length answer with the KV cache against
the released no-cache loop (encoders and the whole prefill re-run for every generated token).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np

from litelvlm.clip import quiet_transformers, random_clip_towers

__all__ = ["build_random_video_segmenter", "bench_frames", "measure_video_budgets", "ANSWER_TOKENS"]

ANSWER_TOKENS = 8  # the short answer whose decoding is compared with and without the KV cache


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
    # no eos: decoding always runs the full answer length, so both decoding modes do the same work
    return VideoSegmenter(model, clip, tokenizer, seg_token_id=ids["[SEG]"], eos_token_ids=set(), device=device,
                          dtype=dtype, config=VideoSegmenterConfig(**config)), arch


def bench_frames(num_frames: int = 16, size: tuple[int, int] = (360, 480)) -> np.ndarray:
    """A synthetic clip: the bundled sample scene panning right, ``num_frames`` frames."""
    from PIL import Image

    from litelvlm.demo import sample_image_path
    from litelvlm.viz import load_rgb

    scene = load_rgb(sample_image_path())
    frames = []
    for t in range(num_frames):
        shifted = np.roll(scene, shift=3 * t, axis=1)
        frames.append(np.asarray(Image.fromarray(shifted).resize((size[1], size[0]))))
    return np.stack(frames)


def _median(runs: list[dict], key: str) -> float:
    return 1000 * statistics.median(r.get(key, 0.0) for r in runs)


def measure_video_budgets(settings, budgets, progress=None) -> list[dict]:
    """One row per per-frame budget; ``settings`` is the image section's ``ImageBenchSettings``. The teacher-forced
    runs of all budgets are interleaved round by round until their spread is bounded; decoding with and without
    the KV cache is timed once per budget."""
    from litelvlm.bench.image import measure_rounds, spread

    segmenter, _ = build_random_video_segmenter(settings.scale, settings.device, settings.dtype, settings.seed)
    frames = bench_frames()
    expression = ["the red car on the left"]
    # SAM2 work does not depend on the budget: timed once when asked, the per-budget runs skip it
    masks_ms = None
    if settings.video_masks:
        masks_ms = 1000 * segmenter.segment(frames, expression, budget=None, answer="Sure, [SEG].").timings["mask_decoder"]
    llm_only = {"mask_mode": "none"}

    def forced(budget):
        return segmenter.segment(frames, expression, budget=None if budget == 576 else budget, answer="Sure, [SEG].", **llm_only)

    for budget in budgets:
        for _ in range(settings.warmup):
            forced(budget)
    runs = measure_rounds(forced, list(budgets), settings, key=lambda r: r.timings["total"])
    rows = []
    for budget, results in zip(budgets, runs):
        run_budget = None if budget == 576 else budget
        timed = [r.timings for r in results]
        cached = segmenter.segment(frames, expression, budget=run_budget, max_new_tokens=ANSWER_TOKENS, **llm_only)
        uncached = segmenter.segment(frames, expression, budget=run_budget, max_new_tokens=ANSWER_TOKENS, use_cache=False, **llm_only)
        row = {
            "budget": budget, "llm_visual_tokens": int(round(results[0].visual_tokens_per_frame * segmenter.config.num_frames)),
            "visual_tokens_per_frame": results[0].visual_tokens_per_frame, "clip_tokens_per_frame": results[0].clip_tokens_per_frame,
            "clip_ms": _median(timed, "clip_vision"), "video_encoder_ms": _median(timed, "video_encoder"),
            "selection_ms": _median(timed, "selection"), "llm_prefill_ms": _median(timed, "llm_prefill"),
            "spread": spread([t["total"] for t in timed]), "rounds": len(timed),
            "mask_decoder_ms_all_budgets": masks_ms, "answer_tokens": ANSWER_TOKENS,
            "decode_cached_ms": 1000 * cached.timings["llm_generate"], "decode_uncached_ms": 1000 * uncached.timings["llm_generate"],
            "decode_forward_passes": {"cached": cached.forward_passes, "uncached": uncached.forward_passes},
        }
        row["kv_cache_decode_speedup"] = row["decode_uncached_ms"] / row["decode_cached_ms"]
        rows.append(row)
        if progress is not None:
            progress.update(1)
    return rows

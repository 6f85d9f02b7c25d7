"""The video section of ``litelvlm bench``: VideoGLaMM on a 16-frame clip at per-frame budgets."""

from __future__ import annotations

import importlib.util

__all__ = ["video_available", "run_video_bench", "video_summary"]


def video_available() -> bool:
    """Whether the video path (``video.segmenter``) is importable in this installation."""
    return importlib.util.find_spec("video.segmenter") is not None


def run_video_bench(settings, budgets, progress=None) -> list[dict]:
    from video.bench import measure_video_budgets

    return measure_video_budgets(settings, budgets, progress=progress)


def video_summary(rows: list[dict]) -> dict:
    """Headline video ratios: KV-cache decoding against the released no-cache loop (the lowest over budgets)."""
    speedups = [r["kv_cache_decode_speedup"] for r in rows if r.get("kv_cache_decode_speedup")]
    return {"kv_cache_decode_speedup": min(speedups) if speedups else None}

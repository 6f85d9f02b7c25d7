"""The video section of ``litelvlm bench``: VideoGLaMM on a 16-frame clip, per method and budget (``video.bench``)."""

from __future__ import annotations

import importlib.util

from ..config_bounds import SAM2_MEMORY_TOKENS  # spatial memory tokens per SAM2 memory frame: 1024 px at every bench scale

__all__ = ["video_available", "run_video_bench", "video_summary", "video_case_count", "sam2_case_count", "video_calls",
           "split_methods", "SAM2_MEMORY_TOKENS"]


def video_available() -> bool:
    """Whether the video path (``video.segmenter``) is importable in this installation."""
    return importlib.util.find_spec("video.segmenter") is not None


def split_methods(methods) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """(image methods, video methods, notes) for the bench's ``--method`` list (names or ``name:key=value,...``
    specs): clip-level methods run only in the video section; per-image methods and the in-LLM ones (FastV,
    IVC-Prune) in both."""
    from ..pruning import method_from_spec

    image, video, notes = [], [], []
    for name in dict.fromkeys(methods):
        selector = method_from_spec(name)
        if selector.stage != "clip":
            image.append(name)
        video.append(name)
    only_video = [m for m in video if m not in image]
    if only_video:
        notes.append(f"note: {', '.join(only_video)} {'selects' if len(only_video) == 1 else 'select'} over whole video clips: "
                     "video section only")
    return tuple(image), tuple(video), notes


def video_case_count(settings) -> int:
    from video.bench import video_cases

    return len(video_cases(settings.video_methods, settings.video_budgets, settings.clip_budgets))


def sam2_case_count(settings) -> int:
    """Propagations of the SAM2 section (``--video-masks``) in the most rounds it may run, its warm-up included."""
    from video.bench import sam2_case_list
    from video.bench_sam2 import sam2_rounds

    from .image import max_rounds

    return len(sam2_case_list(settings)) * max_rounds(sam2_rounds(settings)) + 1 if settings.video_masks else 0


def video_calls(settings) -> int:
    """The progress bar's steps of the video section: each case's warm-up and most rounds, then the SAM2 section's."""
    from .image import max_rounds

    return video_case_count(settings) * (settings.warmup + max_rounds(settings)) + sam2_case_count(settings)


def run_video_bench(settings, progress=None) -> dict:
    """``{"video": rows, "sam2": SAM2 section or None}`` (``video.bench.measure_video_section``)."""
    from video.bench import measure_video_section

    return measure_video_section(settings, progress=progress)


def video_summary(rows: list[dict]) -> dict:
    """Headline video ratios: KV-cache decoding against the released no-cache loop (the lowest over budgets)."""
    speedups = [r["kv_cache_decode_speedup"] for r in rows if r.get("kv_cache_decode_speedup")]
    return {"kv_cache_decode_speedup": min(speedups) if speedups else None}

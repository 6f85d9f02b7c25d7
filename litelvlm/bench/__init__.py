"""``litelvlm bench``: latency, activation memory and FLOPs per stage and token budget, on random weights."""

from __future__ import annotations

import contextlib
import json
import os
import platform
from pathlib import Path

import torch

from .image import SCALES, ImageBenchSettings, architecture_for, image_calls, run_image_bench
from .report import (WHOLE_CLIP_NOTE, check_goals, goal_value, image_table, markdown_report, render, sam2_columns, sam2_cost_line,
                     sam2_table, video_case_label, video_compare_sections, video_table, whole_clip_rows, whole_clip_table,
                     write_chart)

__all__ = ["run_bench", "SCALES", "ImageBenchSettings", "architecture_for", "describe_device", "check_outputs", "measurement_setup"]


def describe_device(device: str) -> str:
    """A human name for the device results were measured on."""
    if torch.device(device).type == "cuda":
        return f"cuda: {torch.cuda.get_device_name()}"
    threads = torch.get_num_threads()
    return f"cpu: {platform.processor() or platform.machine()}, {threads} thread{'' if threads == 1 else 's'}"


def check_outputs(out_dir: str | Path | None, json_path: str | Path | None) -> None:
    """Refuse unusable output paths before any work: one line naming the path and the fix."""
    from ..outputs import prepare_output_dir

    if out_dir is not None:
        prepare_output_dir(out_dir, "--out")
    if json_path:
        if Path(json_path).is_dir():
            raise ValueError(f"--json {json_path} is a folder: pass a file path")
        prepare_output_dir(Path(json_path).parent, "--json folder")


@contextlib.contextmanager
def measurement_setup(device: str):
    """On CPU: one intra-op thread and process CPU time as the clock (another process competing for the cores
    barely changes it); on GPU: wall time after synchronising. Yields a description of the setup."""
    from ..timing import use_clock

    if torch.device(device).type == "cuda":
        with use_clock("wall"):
            yield {"clock": "wall (CUDA synchronised)", "threads": None}
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with use_clock("cpu"):
            yield {"clock": "process CPU time", "threads": 1}
    finally:
        torch.set_num_threads(threads)


def _load_note(load_before: float, load_after: float, rows: list[dict], sam2: dict | None = None) -> str | None:
    """A warning when other processes competed for the CPU during the run (None when the machine was quiet)."""
    cores = os.cpu_count() or 1
    inflation = [r["wall_image_ms"] / r["image_ms"] for r in rows if r.get("wall_image_ms") and r.get("image_ms")]
    inflation += [sam2["wall_s"] / sam2["cost_s"]] if sam2 and sam2["cost_s"] > 0 else []
    worst = max(inflation, default=1.0)
    busy = max(load_before, load_after) > cores - 0.5
    if not busy and worst < 1.3:
        return None
    return (f"note: the machine was loaded (load average {load_before:.1f} -> {load_after:.1f} on {cores} cores; wall time up "
            f"to {worst:.2f}x the CPU time): the ratios and goals use CPU time, which other processes barely inflate")


def run_bench(settings: ImageBenchSettings, *, video: bool = True, out_dir: str | Path | None = None,
              json_path: str | Path | None = None, echo=print) -> dict:
    """Run the benchmark sections, print tables, write JSON / Markdown / PNG where asked."""
    from ..progress import progress_bar
    from .prefix import prefix_case_count, run_prefix_bench
    from .video import run_video_bench, video_available, video_calls, video_summary

    check_outputs(out_dir, json_path)
    n_image = image_calls(settings) if settings.methods else 0
    n_video = n_prefix = 0
    if video and video_available():
        n_video = video_calls(settings)
        n_prefix = prefix_case_count(settings)
    result = {"device": describe_device(settings.device), "scale": settings.scale, "dtype": str(settings.dtype).replace("torch.", ""),
              "expressions": settings.expressions, "repeats": settings.repeats, "weights": "random", "image": [], "video": [],
              "sam2": None, "multi_expression": None}
    load_before = os.getloadavg()[0]
    with measurement_setup(settings.device) as setup, progress_bar(n_image + n_video + n_prefix, "litelvlm bench", "run") as bar:
        result.update(setup, device=describe_device(settings.device))  # after the thread count is set
        if settings.methods:
            image = run_image_bench(settings, progress=bar)
            result.update({"image": image["rows"], "architecture": image["architecture"],
                           "flops_shares_at_576": image["flops_shares_at_576"], "weights_mib": image["weights_mib"]})
        if n_video:
            section = run_video_bench(settings, progress=bar)
            result.update(video=section["video"], sam2=section["sam2"], video_summary=video_summary(section["video"]),
                          video_equal_tokens=section["equal_tokens"], video_clip_kinds=section["clip_kinds"])
        if n_prefix:
            result["multi_expression"] = run_prefix_bench(settings, progress=bar)
    result["load_average"] = [load_before, os.getloadavg()[0]]
    result["load_note"] = _load_note(load_before, result["load_average"][1], result["image"], result["sam2"])
    result["goals"] = check_goals(result)
    _print_results(result, echo)
    written = _write_outputs(result, out_dir, json_path)
    for path in written:
        echo(f"wrote {path}")
    return result


def _print_results(result: dict, echo) -> None:
    how = f"{result['clock']}" + (f", {result['threads']} thread" if result.get("threads") else "")
    if result["image"]:
        echo(f"Image (GLaMM, random weights, {result['scale']} scale, {result['device']}): medians in ms ({how}); "
             f"x = ratio against 576 tokens; spread = interquartile range / median over the rounds")
        echo(render(image_table(result["image"])))
    if result["video"]:
        echo("")
        echo(f"Video (VideoGLaMM, random weights, {result['scale']} scale, 16-frame clip): medians in ms ({how}); "
             f"x = ratio against per-frame litelvlm at the same CLIP budget (different token counts: methods compare at "
             f"equal tokens, --clip-budget); e2e = encoders + selection + "
             f"{result['video'][0]['answer_tokens']}-token answer with the KV cache"
             + ("; e2e+SAM2 adds mask propagation" if result["video"][0]["e2e_with_masks_ms"] is not None
                else " (SAM2 propagation: --video-masks)"))
        echo(render(video_table(result["video"])))
        for title, note, table in video_compare_sections(result):
            echo("")
            echo(f"{title}: {note}")
            echo(render(table))
        for row in result["video"]:
            for message in row.get("warnings", []):
                echo(f"note: {video_case_label(row)}: {message}")
    if result.get("sam2"):
        _print_sam2(result, echo)
    if result.get("multi_expression"):
        from .prefix import prefix_lines

        echo("")
        for line in prefix_lines(result["multi_expression"], how, render):
            echo(line)
    echo("")
    if result.get("load_note"):
        echo(result["load_note"])
    for goal in result["goals"]:
        echo(f"goal {goal['what']}: {goal['op']} {goal['bound']} -> {goal_value(goal['value'])} "
             f"[{'met' if goal['met'] else 'NOT met'}]")


def _print_sam2(result: dict, echo) -> None:
    sam2 = result["sam2"]
    echo("")
    echo(f"SAM2 (VideoGLaMM's pixel decoder, random weights, {result['scale']} scale, one propagation per case and round): "
         + sam2_columns(sam2))
    echo(render(sam2_table(sam2["rows"])))
    echo(sam2_cost_line(sam2))
    whole = whole_clip_rows(result)
    if whole:
        echo("")
        echo(f"Whole clip with SAM2 ({sam2['objects']} objects): " + WHOLE_CLIP_NOTE)
        echo(render(whole_clip_table(whole)))


def _write_outputs(result: dict, out_dir, json_path) -> list[Path]:
    written = []
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
        written.append(Path(json_path))
    if out_dir:
        out = Path(out_dir)
        (out / "report.md").write_text(markdown_report(result))
        written.append(out / "report.md")
        if write_chart(result, out / "bench.png"):
            written.append(out / "bench.png")
        (out / "bench.json").write_text(json.dumps(result, indent=2))
        written.append(out / "bench.json")
    return written

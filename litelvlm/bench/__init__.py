"""``litelvlm bench``: latency, activation memory and FLOPs per stage and token budget, on random weights."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from .image import SCALES, ImageBenchSettings, architecture_for, image_calls, run_image_bench
from .report import check_goals, image_table, markdown_report, render, video_table, write_chart

__all__ = ["run_bench", "SCALES", "ImageBenchSettings", "architecture_for", "describe_device"]


def describe_device(device: str) -> str:
    """A human name for the device results were measured on."""
    if torch.device(device).type == "cuda":
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def run_bench(settings: ImageBenchSettings, *, video: bool = True, out_dir: str | Path | None = None,
              json_path: str | Path | None = None, echo=print) -> dict:
    """Run the benchmark sections, print tables, write JSON / Markdown / PNG where asked."""
    from tqdm.auto import tqdm

    from .video import run_video_bench, video_available, video_summary

    n_image = image_calls(settings)
    video_budgets = (576, 196, 81) if video and video_available() else ()
    result = {"device": describe_device(settings.device), "scale": settings.scale, "dtype": str(settings.dtype).replace("torch.", ""),
              "expressions": settings.expressions, "repeats": settings.repeats, "image": [], "video": []}
    with tqdm(total=n_image + len(video_budgets), desc="litelvlm bench", unit="step") as bar:
        image = run_image_bench(settings, progress=bar)
        result.update({"image": image["rows"], "architecture": image["architecture"],
                       "flops_shares_at_576": image["flops_shares_at_576"], "weights_mib": image["weights_mib"]})
        if video_budgets:
            result["video"] = run_video_bench(settings, video_budgets, progress=bar)
            result["video_summary"] = video_summary(result["video"])
    result["goals"] = check_goals(result)
    echo(render(image_table(result["image"])))
    if result["video"]:
        echo("")
        echo(render(video_table(result["video"])))
    echo("")
    for goal in result["goals"]:
        value = "missing" if goal["value"] is None else f"{goal['value']:.2f}"
        echo(f"goal {goal['what']}: >= {goal['minimum']} -> {value} [{'met' if goal['met'] else 'NOT met'}]")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(markdown_report(result))
        write_chart(result, out / "bench.png")
        (out / "bench.json").write_text(json.dumps(result, indent=2))
    return result

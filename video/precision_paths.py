"""How far VideoGLaMM's outputs move between precision paths: ``python -m video.precision_paths``.

Same checkpoint, video, expressions, budget and the released preset's segmenter settings (with the teacher-forced
answer "Sure, [SEG]." so every path reads the same position), run on each path of ``PATHS``:

* ``fp32``: float32 weights, eager attention (the reference);
* ``fp16``: fp16 weights, eager, no autocast (what the ``released`` preset ran before it honoured autocast);
* ``fp16-autocast``: fp16 weights under fp16 ``torch.autocast``, eager (the release: chat.py's ``.half()`` and
  eval_*.py's ``torch.cuda.amp.autocast()``; the ``released`` preset on CUDA);
* ``bf16-sdpa``: bf16 weights, SDPA, no autocast (the ``default`` preset on CUDA without flash-attn).

Per path against ``fp32``: the largest |[SEG] state - fp32| (last LLM layer), the kept CLIP tokens that differ per
sampled frame (mean / max), and the masks' IoU with the fp32 masks (mean over expressions and frames; 1 when both
are empty). Meant for a GPU with real weights; on a CPU it runs (the CPU's autocast lists differ from CUDA's).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

__all__ = ["PATHS", "ANSWER", "compare_paths", "main"]

PATHS = {"fp32": ("float32", None, "eager"), "fp16": ("float16", None, "eager"),
         "fp16-autocast": ("float16", "float16", "eager"), "bf16-sdpa": ("bfloat16", None, "sdpa")}
ANSWER = "Sure, [SEG]."


def _run_path(name, model_kwargs, segmenter_fields, device, frames, texts, budget):
    """(masks, kept indices, [SEG] states) of one path; the model is freed before returning."""
    import torch

    from video.segmenter import VideoSegmenter

    dtype, autocast, attn = PATHS[name]
    segmenter = VideoSegmenter.from_pretrained(**model_kwargs, device=device, dtype=getattr(torch, dtype),
                                               autocast=getattr(torch, autocast) if autocast else None,
                                               attn_implementation=attn, clip_attn_implementation=attn, **segmenter_fields)
    states, original = [], segmenter.model.seg_prompts
    segmenter.model.seg_prompts = lambda hidden: (states.append(hidden.float().cpu()), original(hidden))[1]
    result = segmenter.segment(frames, texts, budget=budget)
    del segmenter
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result.masks, [k.cpu() for k in result.kept], torch.cat(states) if states else torch.zeros(0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum(axis=(-2, -1))
    inter = np.logical_and(a, b).sum(axis=(-2, -1))
    return float(np.where(union == 0, 1.0, inter / np.maximum(union, 1)).mean())


def compare_paths(model_kwargs: dict, frames: np.ndarray, texts: list[str], budget: int | None, device: str,
                  benchmark: str = "davis", paths=tuple(PATHS)) -> list[dict]:
    """One row per path: its differences from ``fp32`` (which runs first and is its own row, all zeros)."""
    from video.preset import load_preset

    fields = asdict(replace(load_preset("released", benchmark).segmenter, answer=ANSWER))
    names = ["fp32", *[p for p in paths if p != "fp32"]]
    runs = {name: _run_path(name, model_kwargs, fields, device, frames, texts, budget) for name in names}
    ref_masks, ref_kept, ref_states = runs["fp32"]
    rows = []
    for name in names:
        masks, kept, states = runs[name]
        changed = [len(set(a.tolist()) - set(b.tolist())) for ka, kb in zip(kept, ref_kept) for a, b in zip(ka, kb)]
        rows.append({"path": name, "weights / autocast / attention": " / ".join(str(v) for v in PATHS[name]),
                     "max |[SEG] state - fp32|": float((states - ref_states).abs().max()) if states.numel() else 0.0,
                     "kept tokens changed per frame (mean)": float(np.mean(changed)) if changed else 0.0,
                     "kept tokens changed per frame (max)": int(max(changed, default=0)),
                     "mask IoU with fp32": _iou(masks, ref_masks)})
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m video.precision_paths", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", required=True, help="VideoGLaMM checkpoint folder")
    p.add_argument("--vision-tower", default=None, help="CLIP folder (default: the one the checkpoint names)")
    p.add_argument("--video-tower", default=None, help="InternVideo2 .pt (default: the copy in the checkpoint)")
    p.add_argument("--video", required=True, help="an mp4 or a folder of frames")
    p.add_argument("--text", action="append", required=True, help="referring expression (repeatable)")
    p.add_argument("--budget", type=int, default=196, help="CLIP tokens per sampled frame, a square (default: %(default)s)")
    p.add_argument("--benchmark", default="davis", choices=["davis", "ytvos", "mevis"],
                   help="whose released segmenter settings (clip length, expression text) to use (default: %(default)s)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: %(default)s)")
    p.add_argument("--max-frames", type=int, default=64, help="refuse a longer video (default: %(default)s)")
    p.add_argument("--json", default=None, help="also write the rows here")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        from litelvlm.run_options import check_device
        from video.layout import check_layout_budget

        check_device(args.device)
        check_layout_budget("regrid", args.budget, "litelvlm")
        if not Path(args.video).exists():
            raise ValueError(f"video not found: {args.video}")
        from video.io import read_video

        frames = read_video(args.video, max_frames=args.max_frames)[0]
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from litelvlm.table import print_table

    kwargs = {"checkpoint": args.version, "vision_tower": args.vision_tower, "video_tower": args.video_tower}
    rows = compare_paths(kwargs, frames, args.text, None if args.budget >= 576 else args.budget, args.device, args.benchmark)
    print_table(rows, float_digits=4, title=f"VideoGLaMM precision paths on {args.device}: {len(frames)} frames, "
                                            f"{len(args.text)} expression(s), budget {args.budget}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

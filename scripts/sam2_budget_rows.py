"""SAM2 memory-budget rows of `litelvlm bench --video-masks` for one clip group, with a chosen number of rounds.

    .venv/bin/python scripts/sam2_budget_rows.py bench|disc|long --out ROWS.json [--scale default] [--rounds 1]
        [--memory-budget 1024 256]

``bench``: the 16-frame bench clip with 4 objects; ``disc``: the small-moving-disc clip with 1 object; ``long``: the
bench clip over 64 frames (Ref-DAVIS17's clip length) with 1 object; each with its unpruned reference, measured by the bench's own runner (``video.bench_sam2.measure_sam2_cases``: process CPU time,
one thread, RANDOM weights). The bench runs 2-3 rounds of every SAM2 case (about 37 minutes of CPU time per round at
the default scale); this runs one group, so the two groups can run as two processes, one per core.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group", choices=("bench", "disc", "long"))
    parser.add_argument("--out", required=True, help="JSON file for the rows (must not exist)")
    parser.add_argument("--scale", default="default", choices=("quick", "default", "full"))
    parser.add_argument("--rounds", type=int, default=1, help="timed rounds after the warm-up (default: 1)")
    parser.add_argument("--memory-budget", type=int, nargs="+", default=[1024, 256])
    args = parser.parse_args(argv)
    if os.path.exists(args.out):
        parser.error(f"--out {args.out} exists: choose a new file")
    if args.rounds < 1 or any(not 1 <= b <= 4096 for b in args.memory_budget):
        parser.error("--rounds must be >= 1 and each --memory-budget in 1..4096")

    from litelvlm.bench import measurement_setup
    from litelvlm.bench.image import ImageBenchSettings
    from video.bench import build_random_video_segmenter
    from video.bench_sam2 import BENCH_CLIP, SMALL_OBJECT_CLIP, Sam2Case, measure_sam2_cases, seg_prompt_embeddings

    settings = ImageBenchSettings(scale=args.scale, sam2_max_repeats=args.rounds)
    clip, frames, objects = {"bench": (BENCH_CLIP, 16, 4), "disc": (SMALL_OBJECT_CLIP, 16, 1), "long": (BENCH_CLIP, 64, 1)}[args.group]
    cases = [Sam2Case(clip, frames, objects, budget) for budget in (None, *sorted(set(args.memory_budget), reverse=True))]
    load, started = os.getloadavg()[0], time.time()
    with measurement_setup("cpu"):
        segmenter, _ = build_random_video_segmenter(args.scale, "cpu", None, settings.seed)
        prompts = seg_prompt_embeddings(segmenter.model, objects, settings.seed)
        rows = measure_sam2_cases(segmenter.model.pixel_decoder, prompts, cases, settings)
    result = {"group": args.group, "scale": args.scale, "rounds": args.rounds, "load": [load, os.getloadavg()[0]],
              "wall_s": time.time() - started, "rows": rows}
    with open(args.out, "x") as f:
        json.dump(result, f, indent=1, default=str)
    for row in rows:
        speed = row.get("speedup_vs_all", {})
        print(f"{row['clip']}, {row['frames']} frames, {row['objects']} objects, memory {row['memory_budget'] or 'all'}: "
              f"{row['propagation_ms'] / 1000:.1f} s, x {speed.get('propagation', 1):.2f}, IoU {row['agreement_iou']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

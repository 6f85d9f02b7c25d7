"""One-off measurement of the shared visual prefix (issue #19): LLM CPU seconds of a teacher-forced VideoSegmenter call
on the quick-scale random VideoGLaMM, 16 frames, one clip, several expressions.

    PYTHONPATH=$PWD python scripts/measure_shared_prefix.py

LLM time is the ``llm_prefill`` stage (it holds the nested ``llm_prefix`` prefill of the shared prefix), in process
CPU seconds with one thread; each setting runs ``REPEATS`` times and the fastest run is reported.
"""

from __future__ import annotations

import warnings

import torch

from litelvlm.bench.image import REFCOCO_LIKE_EXPRESSIONS
from litelvlm.timing import StageTimer
from video.bench import bench_frames, bench_selector, build_random_video_segmenter

REPEATS = 3
EXPRESSIONS = list(REFCOCO_LIKE_EXPRESSIONS) + [
    "the tree behind the house", "a white cloud", "the road in front", "the left window", "a small bird",
    "the shadow of the car", "the roof on the right", "a child holding a ball",
]


def llm_seconds(segmenter, frames, count: int, method, budget, share: bool) -> tuple[float, bool]:
    """Fastest LLM CPU seconds of ``REPEATS`` calls with ``count`` expressions, and whether the prefix was shared."""
    best, shared = float("inf"), False
    for _ in range(REPEATS):
        timer = StageTimer("cpu", clock="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DyCoke: the 485-token target it cannot meet at budget 81
            result = segmenter.segment(frames, EXPRESSIONS[:count], budget=budget, method=method, timer=timer,
                                       answer="Sure, [SEG].", mask_mode="none", share_prefix=share)
        best, shared = min(best, timer.seconds["llm_prefill"]), result.shared_prefix
    return best, shared


def main() -> None:
    torch.set_num_threads(1)
    segmenter, _ = build_random_video_segmenter("quick")
    frames = bench_frames(16)
    layers = len(segmenter.model.llm.model.layers)
    dycoke = bench_selector("dycoke", layers)

    print("unpruned (method none): LLM CPU seconds")
    one = llm_seconds(segmenter, frames, 1, "none", None, True)[0]
    for share in (False, True):
        eight, used = llm_seconds(segmenter, frames, 8, "none", None, share)
        print(f"  share_prefix={share!s:5}  1 expr {one:.3f}s  8 expr {eight:.3f}s  ratio {eight / one:.2f}x  (shared: {used})")

    print("\nLLM CPU seconds per expression")
    cases = [("none per expression", "none", None, False), ("none + shared", "none", None, True),
             ("dycoke per expression", dycoke, 81, False), ("dycoke + shared", dycoke, 81, True),
             ("litelvlm per expression", "litelvlm", 81, True)]
    print(f"  {'setting':26} {'E=1':>8} {'E=4':>8} {'E=16':>8}")
    for label, method, budget, share in cases:
        row = []
        for count in (1, 4, 16):
            seconds, used = llm_seconds(segmenter, frames, count, method, budget, share)
            row.append(f"{seconds / count:.4f}" + ("*" if used else " "))
        print(f"  {label:26} " + " ".join(f"{c:>8}" for c in row))
    print("  (* the expressions shared the prefix prefill)")


if __name__ == "__main__":
    main()

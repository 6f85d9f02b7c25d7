"""The multi-expression section of ``litelvlm bench --multi-expression``: one clip with E expressions, per method.

MeViS and Ref-YouTube-VOS give a video several expressions. A method whose visual tokens and in-LLM processing do
not read the expression (``TokenSelector.shares_prefix``) prefills system text + visual tokens once per clip and
runs each question from that KV cache (``litelvlm.shared_prefix``); a query-dependent method (LiteLVLM, PruneVid)
prefills the whole prompt for every expression. Per (method, E), on the bench clip with the teacher-forced answer:
the LLM time of the call (``llm_prefill``, the shared prefix prefill included) and the whole call's time, in total
and per expression, so a user sees which method is cheaper for the number of expressions of their data. Every case
runs in the same interleaved rounds (the bench's round rule), so the ratios come from one run.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass

__all__ = ["PrefixCase", "prefix_cases", "EXPRESSIONS", "PREFIX_METHODS", "measure_prefix_cases", "measure_prefix_section",
           "prefix_budget"]

# sixteen different referring expressions: the first E are a clip's expressions
EXPRESSIONS = (
    "red car on the left", "man in a blue shirt", "the brown dog", "sun in the top right corner",
    "grass below the car", "person standing on the right", "front wheel of the car", "sky above the man",
    "the tree behind the house", "a white cloud", "the road in front", "the left window", "a small bird",
    "the shadow of the car", "the roof on the right", "a child holding a ball",
)
# unpruned, the query-agnostic video methods, and the query-dependent ones (PruneVid ranks by the question's attention)
PREFIX_METHODS = ("none", "dycoke", "fastvid", "sttm", "holitom", "prunevid", "litelvlm")
FORCED_ANSWER = "Sure, [SEG]."
DEFAULT_BUDGET = 81  # CLIP tokens per frame of the pruned methods when the bench's video budgets name none below 576


@dataclass(frozen=True)
class PrefixCase:
    """``method`` (a name or ``name:key=value,...`` spec) on one clip with its first ``expressions`` expressions."""

    method: str
    expressions: int


def prefix_cases(methods, counts) -> list[PrefixCase]:
    """Every method at every expression count (counts in increasing order), method by method."""
    if not counts or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(EXPRESSIONS) for n in counts):
        raise ValueError(f"--multi-expression takes numbers of expressions from 1 to {len(EXPRESSIONS)}, got {list(counts)}")
    return [PrefixCase(m, n) for m in dict.fromkeys(methods) for n in sorted(set(counts))]


def prefix_budget(video_budgets) -> int:
    """The CLIP budget per frame of the pruned methods: the bench's smallest pruned video budget (81 by default)."""
    from .bench import FULL

    pruned = [b for b in video_budgets if b < FULL]
    return min(pruned) if pruned else DEFAULT_BUDGET


class _PrefixRunner:
    """Teacher-forced segment calls of the cases with ``share_prefix`` on (as the harness runs them): the segmenter
    shares the prefix where the method's flag allows it and says why not elsewhere."""

    def __init__(self, segmenter, frames, cases, budget: int, progress=None):
        from litelvlm.pruning import method_from_spec

        from .bench import bench_selector

        self.segmenter, self.frames, self.budget, self.progress = segmenter, frames, budget, progress
        layers = len(segmenter.model.llm.model.layers)
        self.selectors = {c.method: "none" if c.method == "none" else bench_selector(c.method, layers) for c in cases}
        self.shares = {c.method: method_from_spec(c.method).shares_prefix for c in cases}
        self.warnings: dict[str, list[str]] = {}

    def __call__(self, case: PrefixCase):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = self.segmenter.segment(self.frames, list(EXPRESSIONS[: case.expressions]),
                                            budget=None if case.method == "none" else self.budget,
                                            method=self.selectors[case.method], answer=FORCED_ANSWER, mask_mode="none",
                                            share_prefix=True)
        notes = self.warnings.setdefault(case.method, [])
        notes += [str(w.message) for w in caught if str(w.message) not in notes]
        if self.progress is not None:
            self.progress.update(1)
        return result


def measure_prefix_cases(segmenter, cases: list[PrefixCase], settings, budget: int, progress=None) -> list[dict]:
    """One row per case (module docstring); ``settings``: the bench's ``ImageBenchSettings`` (warm-up and rounds).
    Times are medians over the rounds; ``llm_x_vs_litelvlm``: per-expression LiteLVLM's LLM time at the same E over
    this row's (above 1: cheaper than LiteLVLM)."""
    from litelvlm.bench.image import measure_rounds

    from .bench import CLIP_FRAMES, bench_frames

    runner = _PrefixRunner(segmenter, bench_frames(CLIP_FRAMES), cases, budget, progress)
    for case in cases:
        for _ in range(settings.warmup):
            runner(case)
    runs = measure_rounds(runner, cases, settings, key=lambda r: r.timings["total"], progress=progress)
    rows = [_row(case, results, runner) for case, results in zip(cases, runs)]
    _add_ratios(rows)
    return rows


def _median_ms(results, stage: str) -> float:
    return 1000 * statistics.median(r.timings.get(stage, 0.0) for r in results)


def _row(case: PrefixCase, results, runner: _PrefixRunner) -> dict:
    from litelvlm.bench.image import spread

    first, count = results[0], case.expressions
    llm_ms, call_ms = _median_ms(results, "llm_prefill"), _median_ms(results, "total")
    return {
        "method": case.method, "expressions": count, "budget": None if case.method == "none" else runner.budget,
        "shares_prefix": runner.shares[case.method], "shared": first.shared_prefix, "shared_reason": first.shared_prefix_reason,
        "prefix_passes": first.prefix_passes, "forward_passes": first.forward_passes,
        "llm_visual_tokens": first.llm_visual_tokens[0],
        "llm_ms": llm_ms, "llm_ms_per_expression": llm_ms / count, "prefix_ms": _median_ms(results, "llm_prefix"),
        "call_ms": call_ms, "call_ms_per_expression": call_ms / count,
        "round_llm_ms": [1000 * r.timings["llm_prefill"] for r in results],
        "spread": spread([r.timings["total"] for r in results]), "rounds": len(results),
        "warnings": runner.warnings.get(case.method, []),
    }


def _add_ratios(rows: list[dict]) -> None:
    """Per-expression LiteLVLM's LLM time at the same E over each row's, where LiteLVLM ran."""
    reference = {r["expressions"]: r for r in rows if r["method"] == "litelvlm"}
    for row in rows:
        base = reference.get(row["expressions"])
        row["llm_x_vs_litelvlm"] = None if base is None else base["llm_ms_per_expression"] / row["llm_ms_per_expression"]


def measure_prefix_section(settings, progress=None, segmenter=None) -> dict:
    """The rows of ``settings.multi_expression`` (expression counts) for ``PREFIX_METHODS`` and what they ran on;
    ``segmenter`` None: a random one at ``settings.scale``."""
    from litelvlm.timing import StageTimer

    from .bench import CLIP_FRAMES, build_random_video_segmenter

    if segmenter is None:
        segmenter, _ = build_random_video_segmenter(settings.scale, settings.device, settings.dtype, settings.seed)
    budget = prefix_budget(settings.video_budgets)
    cost = StageTimer(settings.device)
    with cost("multi_expression_section"):
        rows = measure_prefix_cases(segmenter, prefix_cases(PREFIX_METHODS, settings.multi_expression), settings, budget,
                                    progress)
    return {"rows": rows, "frames": CLIP_FRAMES, "budget": budget, "counts": sorted(set(settings.multi_expression)),
            "answer": FORCED_ANSWER, "cost_s": cost.total, "wall_s": cost.wall_total}

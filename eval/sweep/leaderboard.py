"""The leaderboard of a sweep: one row per (method, budget), from each run's stats entry and records.

Accuracy is the harness's own score (cIoU / gIoU for images, J / F / J&F for video, in %). Visual tokens are what
the LLM was sent, as the runs recorded them (per image, or per frame for video). Times are means per image (video)
over the images (videos) of the run, from the stage timings the harnesses record with every item, so a resumed run
still has them: ``llm_prefill`` (the LLM's prefill) and ``total`` (end to end, masks included), in the sweep's clock
(``eval.sweep.clock``: CPU ms or wall ms, pinned in each run's records meta). FLOPs are the analytic count of
``litelvlm.bench.flops`` for one expression at the released GLaMM-7B shapes with the run's mean visual tokens and the
checkpoint tokenizer's prompt length (methods pruning inside the LLM count their K unpruned layers); the code has no
analytic count of VideoGLaMM's LLM, so video rows have none.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from eval.common.records import read_jsonl, run_record_paths

__all__ = ["ACCURACY", "leaderboard_rows", "pareto_front", "write_leaderboard"]

ACCURACY = {"image": ("cIoU", "gIoU"), "video": ("J&F", "J", "F")}  # the first one is the leaderboard's accuracy
_ENTRY_SCORES = {"cIoU": "ciou", "gIoU": "giou", "J&F": "J&F", "J": "J", "F": "F"}
_UNIT = {"image": "image_id", "video": "video"}


def run_records(config: Any) -> list[dict]:
    """The run's records from every rank's file, a retried item's latest attempt only."""
    latest: dict[tuple, dict] = {}
    for path in run_record_paths(config.results_path, config.run_id):
        for record in read_jsonl(path)[0]:
            key = (record.get("ref_id"), record.get("sent_id"), record.get("video"), record.get("exp_id"))
            if key not in latest or record.get("attempt", 0) > latest[key].get("attempt", 0):
                latest[key] = record
    return list(latest.values())


def prefill_seconds(timings: dict[str, float]) -> float | None:
    """The LLM prefill of one call: ``llm_prefill`` (the image path, a teacher-forced video answer), else a generated
    video answer's first pass over the prompt (``generate_prompt``) plus its shared prefix (``llm_prefix``), if any."""
    if "llm_prefill" in timings:
        return timings["llm_prefill"]
    parts = [timings[k] for k in ("generate_prompt", "llm_prefix") if k in timings]
    return math.fsum(parts) if parts else None


def mean_call_ms(records: list[dict], media: str) -> tuple[dict[str, float | None], int]:
    """Mean milliseconds per image (video) of the prefill and end to end, and how many were timed: each image's
    (video's) timings are those its records carry (one ``segment`` call)."""
    calls: dict[Any, dict] = {}
    for record in records:
        if record.get("timings") and record.get("status", "ok") != "failed":
            calls.setdefault(record[_UNIT[media]], record["timings"])
    means = {}
    for name, seconds in (("prefill_ms", prefill_seconds), ("e2e_ms", lambda t: t.get("total"))):
        values = [v for v in map(seconds, calls.values()) if v is not None]
        means[name] = 1000 * math.fsum(values) / len(values) if values else None
    return means, len(calls)


def _percent(value) -> float | None:
    return None if value is None else 100 * float(value)


def _flops_g(method: str, visual_tokens: float | None, text_tokens: float | None) -> float | None:
    """GFLOPs of one expression at the released GLaMM shapes (None without tokens)."""
    if visual_tokens is None or text_tokens is None:
        return None
    from litelvlm.bench.flops import glamm_stage_flops
    from litelvlm.glamm.build import GLaMMArchitecture
    from litelvlm.pruning import method_from_spec

    selector = method_from_spec(method)
    unpruned = getattr(selector, "layer", 0) if selector.stage == "llm" else 0
    stages = glamm_stage_flops(GLaMMArchitecture.full(), visual_tokens=round(visual_tokens), text_tokens=round(text_tokens),
                               unpruned_llm_layers=unpruned)
    return sum(stages.values()) / 1e9


@functools.lru_cache(maxsize=2)
def _tokenizer(checkpoint: str):
    from litelvlm.tokenizer import ReleasedLlamaTokenizer

    return ReleasedLlamaTokenizer.from_pretrained(checkpoint)


def prompt_tokens(checkpoint: str, questions: list[str]) -> float | None:
    """Mean text tokens of the single-turn prompts of ``questions`` with the checkpoint's tokenizer (as the bench
    counts them: the prompt without its image placeholder)."""
    if not questions:
        return None
    from litelvlm.glamm.prompt import DEFAULT_ANSWER, build_conversation, tokenize_with_image

    tokenizer = _tokenizer(checkpoint)
    counts = {q: len(tokenize_with_image(build_conversation([q], [DEFAULT_ANSWER]), tokenizer)) - 1 for q in set(questions)}
    return math.fsum(counts[q] for q in questions) / len(questions)


def _row(result: Any, media: str) -> dict:
    config, entry = result.config, result.entry or {}
    records = run_records(config)
    means, timed = mean_call_ms(records, media)
    tokens = entry.get("mean_visual_tokens" if media == "image" else "visual_tokens_per_frame")
    row = {"method": config.method, "budget": config.budget, "visual_tokens": tokens,
           **{name: _percent(entry.get(_ENTRY_SCORES[name])) for name in ACCURACY[media]},
           **means, "timed": timed, "expressions": entry.get("n_expressions"), "text_tokens": None, "gflops": None,
           "run_id": config.run_id, "error": result.error}
    if media == "image":
        row["text_tokens"] = prompt_tokens(config.checkpoint, [r["question"] for r in records if "question" in r])
        row["gflops"] = _flops_g(config.method, tokens, row["text_tokens"])
    return row


def leaderboard_rows(results: list, media: str) -> list[dict]:
    """One row per run, in run order."""
    return [_row(result, media) for result in results]


def pareto_front(rows: list[dict], x: str, accuracy: str) -> list[dict]:
    """The rows no other row beats: none has at most their ``x`` and at least their ``accuracy``, one of them
    strictly; sorted by ``x``. Rows without either value are left out."""
    points = [r for r in rows if r.get(x) is not None and r.get(accuracy) is not None]

    def beaten(r: dict) -> bool:
        return any(o[x] <= r[x] and o[accuracy] >= r[accuracy] and (o[x] < r[x] or o[accuracy] > r[accuracy])
                   for o in points)

    return sorted((r for r in points if not beaten(r)), key=lambda r: (r[x], -r[accuracy]))


def _cell(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(rows: list[dict], media: str, clock: str) -> list[list[str]]:
    from .clock import CLOCK_UNITS

    unit, ms = ("image" if media == "image" else "video"), CLOCK_UNITS[clock]
    tokens = "visual tokens" + ("" if media == "image" else " / frame")
    header = ["method", "budget", tokens, *[f"{name} %" for name in ACCURACY[media]],
              f"LLM prefill {ms} / {unit}", f"end to end {ms} / {unit}", "GFLOPs / expression"]
    body = [[r["method"], str(r["budget"]), _cell(r["visual_tokens"]), *[_cell(r[name], 2) for name in ACCURACY[media]],
             _cell(r["prefill_ms"]), _cell(r["e2e_ms"]), _cell(r["gflops"])] for r in rows]
    return [header, *body]


def write_leaderboard(rows: list[dict], header: dict, out: Path) -> list[Path]:
    """``leaderboard.md`` (title, notes, table, failed runs) and ``leaderboard.json`` ({header, rows}) in ``out``
    (``eval.common.writer``: whole new files, never written through a link)."""
    from litelvlm.bench.report import markdown_table

    media = header["media"]
    lines = [f"# Leaderboard: {header['model']} on {header['data']}", ""]
    if header["random_weights"]:
        lines += ["**RANDOM WEIGHTS** (the embedded tiny checkpoint): the scores mean nothing, the mechanics are real.", ""]
    lines += [f"Accuracy: {', '.join(ACCURACY[media])} (%); times: mean per {'image' if media == 'image' else 'video'} "
              f"(on {header['device']}: {header['timing']}, --clock {header['clock']}; after one untimed warm-up call), end "
              f"to end with the masks; GFLOPs: analytic, one expression at the "
              f"released GLaMM-7B shapes (none for video). Per-run records and logs: `runs/`, `logs/`.", "",
              markdown_table(_table(rows, media, header["clock"]))]
    failed = [r for r in rows if r["error"]]
    if failed:
        lines += ["", "Failed runs (rerun the sweep to retry them):", ""] + [f"- {r['run_id']}: {r['error']}" for r in failed]
    from eval.common.writer import write_results_file

    return [write_results_file(out, out / "leaderboard.md", "\n".join(lines) + "\n"),
            write_results_file(out, out / "leaderboard.json", json.dumps({**header, "rows": rows}, indent=1) + "\n")]

"""The multi-expression section of ``litelvlm bench`` (``--multi-expression E ...``): its case count, run, table and
conclusion. The measurement is ``video.bench_prefix`` (imported when the section runs)."""

from __future__ import annotations

__all__ = ["prefix_case_count", "run_prefix_bench", "prefix_columns", "prefix_table", "cheapest_lines", "prefix_lines",
           "prefix_markdown"]


def prefix_case_count(settings) -> int:
    """Segment calls of the section (warm-up and the most rounds it may run), 0 when it is off."""
    if not settings.multi_expression:
        return 0
    from video.bench_prefix import PREFIX_METHODS, prefix_cases

    from .image import max_rounds

    return len(prefix_cases(PREFIX_METHODS, settings.multi_expression)) * (settings.warmup + max_rounds(settings))


def run_prefix_bench(settings, progress=None) -> dict:
    """The section (``video.bench_prefix.measure_prefix_section``) on a random VideoGLaMM at ``settings.scale``."""
    from video.bench_prefix import measure_prefix_section

    return measure_prefix_section(settings, progress=progress)


def prefix_columns(section: dict) -> str:
    """What the section's columns mean."""
    return (f"one {section['frames']}-frame clip, E expressions, teacher-forced '{section['answer']}'; pruned methods at "
            f"{section['budget']} CLIP tokens per frame; shared: the method's visual tokens and LLM states ignore the "
            "expression, so system text + visual tokens are prefilled once per clip and every question continues from "
            "that KV cache (no: each expression prefills its whole prompt); LLM ms: the call's LLM time (prefix prefill "
            "included), total and per expression; call ms/expr: the whole call (encoders once per clip, selection, LLM) "
            "per expression; x vs litelvlm: per-expression litelvlm's LLM ms/expr at the same E / this row's (higher is "
            "cheaper). The methods send different numbers of visual tokens at this budget (column LLM visual tokens): "
            "the rows compare what each costs, not methods at equal tokens or accuracy.")


def _fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def prefix_table(rows: list[dict]) -> list[list[str]]:
    table = [["method", "E", "shared", "LLM visual tokens", "LLM ms", "LLM ms/expr", "x vs litelvlm", "call ms/expr",
              "spread", "rounds"]]
    for r in rows:
        table.append([r["method"], str(r["expressions"]), "yes" if r["shared"] else "no", str(r["llm_visual_tokens"]),
                      _fmt(r["llm_ms"]), _fmt(r["llm_ms_per_expression"]), _fmt(r["llm_x_vs_litelvlm"], 2),
                      _fmt(r["call_ms_per_expression"]), f"{100 * r['spread']:.0f}%", str(r["rounds"])])
    return table


def cheapest_lines(rows: list[dict]) -> list[str]:
    """Per expression count: the method with the least LLM time per expression, and the unpruned model shared
    against per-expression litelvlm."""
    lines = []
    for count in sorted({r["expressions"] for r in rows}):
        at = {r["method"]: r for r in rows if r["expressions"] == count}
        best = min(at.values(), key=lambda r: r["llm_ms_per_expression"])
        line = (f"E={count}: cheapest LLM per expression {best['method']}{' + shared' if best['shared'] else ''} "
                f"({best['llm_ms_per_expression']:.1f} ms)")
        if "none" in at and "litelvlm" in at:
            none, lite = at["none"], at["litelvlm"]
            line += (f"; unpruned{' + shared' if none['shared'] else ''} {none['llm_ms_per_expression']:.1f} ms vs "
                     f"per-expression litelvlm {lite['llm_ms_per_expression']:.1f} ms")
        lines.append(line)
    return lines


def _notes(rows: list[dict]) -> list[str]:
    seen = {}
    for r in rows:
        for message in r.get("warnings", []):
            seen.setdefault((r["method"], message), None)
    return [f"note: {method}: {message}" for method, message in seen]


def _cost_line(section: dict) -> str:
    return (f"Multi-expression section: {len(section['rows'])} cases, {section['cost_s'] / 60:.1f} min of CPU time "
            f"({section['wall_s'] / 60:.1f} min wall), warm-up included.")


def prefix_lines(section: dict, how: str, render) -> list[str]:
    """The section as printed: heading, table (``render``), conclusion, notes, cost."""
    return [f"Multi-expression (VideoGLaMM, random weights): medians ({how}); " + prefix_columns(section),
            render(prefix_table(section["rows"])), *cheapest_lines(section["rows"]), *_notes(section["rows"]),
            _cost_line(section)]


def prefix_markdown(section: dict, md_table) -> list[str]:
    """The section's Markdown lines (``md_table`` renders a table)."""
    bullets = [f"- {line}" for line in cheapest_lines(section["rows"]) + _notes(section["rows"])]
    return ["## Multi-expression: one clip, E expressions (shared visual prefix)", "", prefix_columns(section), "",
            md_table(prefix_table(section["rows"])), "", *bullets, "", _cost_line(section)]

"""Tables, goals, Markdown and a PNG chart for ``litelvlm bench`` results."""

from __future__ import annotations

from pathlib import Path

__all__ = ["IMAGE_GOALS", "VIDEO_GOALS", "VIDEO_ROW_GOALS", "goal_value", "video_columns", "check_goals", "image_table",
           "video_table", "markdown_report", "write_chart"]

# (method, budget, ratio name, minimum): the targets, measured as ratios within one run.
IMAGE_GOALS = (
    ("litelvlm", 192, "llm_prefill_speedup", 2.2),
    ("litelvlm", 64, "llm_prefill_speedup", 3.5),
    ("litelvlm", 192, "per_expression_speedup", 1.5),
    ("litelvlm", 192, "activation_reduction", 2.3),
)
VIDEO_GOALS = (("kv_cache_decode_speedup", 5.0),)
# (method, CLIP budget per frame, row key or ratio name, ">=" or "<=", bound): per-row video targets (no clip budget)
VIDEO_ROW_GOALS = (
    ("litelvlm-time", 81, "llm_visual_tokens", "<=", 500),
    ("litelvlm-time", 81, "prefill_speedup", ">=", 2.5),
)


def _goal(section: str, what: str, op: str, bound: float, value: float) -> dict:
    met = value >= bound if op == ">=" else value <= bound
    return {"section": section, "what": what, "op": op, "bound": bound, "value": value, "met": met}


def check_goals(result: dict) -> list[dict]:
    """Each goal that this run measured, with its value and whether it is met (goals whose rows or sections
    were not run are left out, not reported as failed)."""
    goals = []
    for method, budget, name, minimum in IMAGE_GOALS:
        row = next((r for r in result.get("image", []) if r["method"] == method and r["budget"] == budget), None)
        value = row.get("ratios_vs_576", {}).get(name) if row else None
        if value is not None:
            goals.append(_goal("image", f"{name} at {budget} ({method})", ">=", minimum, value))
    for name, minimum in VIDEO_GOALS:
        value = (result.get("video_summary") or {}).get(name)
        if value is not None:
            goals.append(_goal("video", name, ">=", minimum, value))
    for method, budget, name, op, bound in VIDEO_ROW_GOALS:
        row = next((r for r in result.get("video", []) if r["method"] == method and r["budget"] == budget
                    and r.get("clip_budget") is None), None)
        value = None if row is None else row.get(name, row.get("ratios_vs_litelvlm", {}).get(name))
        if value is not None:
            what = f"video {name} at {budget} CLIP tokens/frame ({method}" + (" vs per-frame litelvlm)" if name in
                                                                              row.get("ratios_vs_litelvlm", {}) else ")")
            goals.append(_goal("video", what, op, bound, value))
    return goals


def video_columns(answer_tokens: int) -> str:
    """What the video table's columns mean."""
    return (f"CLIP/frame: CLIP tokens kept per frame (576: unpruned); LLM visual tokens: both streams, whole clip; decode: "
            f"the {answer_tokens - 1} token passes after the prompt pass of an {answer_tokens}-token answer (KV cache); e2e: one "
            f"clip end to end (encoders, selection, the {answer_tokens}-token answer); e2e+SAM2: plus SAM2 propagation over the "
            "16 frames (with --video-masks; timed once, it does not depend on the tokens); act: LLM prefill activation "
            "memory; x: per-frame litelvlm at the same CLIP budget / this row (higher is better); no-cache decode x: the "
            "released no-cache loop / KV-cache decoding.")


def goal_value(value) -> str:
    """A goal's measured value: a count as it is, a ratio to two decimals."""
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def _fmt(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def image_table(rows: list[dict]) -> list[list[str]]:
    header = ["method", "budget", "prefill ms", "x", "per-expr ms", "x", "spread", "wall/expr ms", "act MiB", "x", "GFLOPs/expr", "x"]
    table = [header]
    for r in rows:
        ratio = r.get("ratios_vs_576", {})
        wall = r.get("wall_image_ms")
        table.append([r["method"], str(r["budget"]), _fmt(r["llm_prefill_ms"]), _fmt(ratio.get("llm_prefill_speedup"), 2),
                      _fmt(r["per_expression_ms"]), _fmt(ratio.get("per_expression_speedup"), 2), _pct(r.get("spread")),
                      _fmt(None if wall is None else wall / r["expressions"]), _fmt(r["activation_mib"]),
                      _fmt(ratio.get("activation_reduction"), 2), _fmt(r["flops_g"]), _fmt(ratio.get("flops_reduction"), 2)])
    return table


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def video_table(rows: list[dict]) -> list[list[str]]:
    masks = any(r.get("e2e_with_masks_ms") is not None for r in rows)
    header = ["method", "CLIP/frame", "clip budget", "LLM visual tokens", "x", "CLIP ms", "video enc ms", "select ms",
              "prefill ms", "x", "decode ms", "e2e ms", "x", *(["e2e+SAM2 ms", "x"] if masks else []), "act MiB", "x",
              "spread", "no-cache decode x"]
    table = [header]
    for r in rows:
        ratio = r.get("ratios_vs_litelvlm", {})
        with_masks = [_fmt(r.get("e2e_with_masks_ms")), _fmt(ratio.get("e2e_with_masks_speedup"), 2)] if masks else []
        table.append([r["method"], str(r["budget"]), "-" if r.get("clip_budget") is None else str(r["clip_budget"]),
                      str(r["llm_visual_tokens"]), _fmt(ratio.get("token_reduction"), 2), _fmt(r["clip_ms"]),
                      _fmt(r["video_encoder_ms"]), _fmt(r["selection_ms"]), _fmt(r["llm_prefill_ms"]),
                      _fmt(ratio.get("prefill_speedup"), 2), _fmt(r["decode_ms"]), _fmt(r["e2e_ms"]),
                      _fmt(ratio.get("e2e_speedup"), 2), *with_masks, _fmt(r["activation_mib"]),
                      _fmt(ratio.get("activation_reduction"), 2), _pct(r.get("spread")), _fmt(r.get("kv_cache_decode_speedup"), 2)])
    return table


def render(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    return "\n".join(lines)


def markdown_report(result: dict) -> str:
    """A self-contained Markdown summary of one benchmark run."""
    parts = [f"# litelvlm bench — scale `{result['scale']}` on {result['device']}", ""]
    how = result.get("clock", "wall") + (f", {result['threads']} thread" if result.get("threads") else "")
    parts.append(f"Random weights (speed does not depend on weight values); dtype {result['dtype']}; "
                 f"{result.get('expressions', '?')} expressions per image; times are medians ({how}) over at least "
                 f"{result.get('repeats', '?')} interleaved rounds after warm-up, more until each case's spread "
                 f"(interquartile range / median) is within 10%.")
    if result.get("load_note"):
        parts += ["", result["load_note"]]
    if result.get("image"):
        parts += ["", "## Image (GLaMM)", "", _md_table(image_table(result["image"]))]
        shares = result.get("flops_shares_at_576", {})
        if shares:
            parts += ["", "FLOPs share per stage at 576 tokens (full vs this scale):", ""]
            names = list(next(iter(shares.values())))
            parts.append(_md_table([["scale", *names]] + [[k, *[f"{v[n]:.3f}" for n in names]] for k, v in shares.items()]))
    if result.get("video"):
        parts += ["", "## Video (VideoGLaMM, 16-frame clip)", "", video_columns(result["video"][0]["answer_tokens"]), "",
                  _md_table(video_table(result["video"]))]
        notes = [f"- {row['method']} at {row['budget']}: {message}" for row in result["video"] for message in row.get("warnings", [])]
        parts += ["", *notes] if notes else []
    parts += ["", "## Goals", ""]
    parts.append(_md_table([["goal", "target", "measured", "met"]] + [
        [g["what"], f"{g['op']} {g['bound']}", goal_value(g["value"]), "yes" if g["met"] else "no"] for g in result.get("goals", [])]))
    return "\n".join(parts) + "\n"


def write_chart(result: dict, path: str | Path) -> Path | None:
    """PNG: LLM prefill time, per-expression time and activation memory against the budget."""
    rows = result.get("image") or []
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clock = result.get("clock", "wall time")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    for method in sorted({r["method"] for r in rows}):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["budget"])
        budgets = [r["budget"] for r in mine]
        for ax, key, label, unit in zip(axes, ("llm_prefill_ms", "per_expression_ms", "activation_mib"),
                                        ("LLM prefill, all expressions", "per expression, end to end", "LLM activation memory"),
                                        (f"ms ({clock})", f"ms ({clock})", "MiB")):
            ax.plot(budgets, [r[key] for r in mine], marker="o", label=method)
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("visual tokens kept per image")
            ax.set_ylabel(unit)
    for ax in axes:
        ax.legend(title="method", fontsize=8)
    fig.suptitle(f"litelvlm bench on RANDOM WEIGHTS (speed and memory only) — GLaMM at the {result['scale']} scale, "
                 f"{result['device']}", fontsize=11)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

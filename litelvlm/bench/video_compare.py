"""The video comparison tables of ``litelvlm bench``: methods at equal LLM visual tokens, and at their papers' settings.

* Equal tokens (``--clip-budget N``): every method at N LLM visual tokens per clip (both streams): clip-level
  methods through their clip budget, per-frame methods before the LLM through the CLIP budget per frame whose
  tokens come closest to N from below (``per_frame_budget_for``). Each entry reports the tokens it actually sent; it
  is at N when it sent N or up to ``EQUAL_TOKEN_TOLERANCE`` (5%) fewer. One that sends more is reported as "cannot
  reach N: sends M", one that sends fewer (its merging or reuse leaves fewer tokens than it may spend) as "sends
  only M", both with no ratio. Ratios are only between entries at N: against per-frame litelvlm at N (when it is
  at N), and against the unpruned model, the one reference common to every row.
* Papers' settings: each ``:released=True`` spec at its release's values, with its tokens and times and the LLM
  layer it prunes at; no ratios between methods (they send different numbers of tokens).
* Tokens per clip kind: what litelvlm-time sends on each synthetic clip of ``video.synthetic_clips``, with
  cross-frame reuse on and off.
"""

from __future__ import annotations

__all__ = ["EQUAL_TOKEN_TOLERANCE", "FRAME_CELLS", "VIDEO_TOKENS_PER_FRAME", "PATCHES_PER_CELL", "per_frame_budget_for", "per_frame_fewest_tokens",
           "equal_token_entries", "equal_token_table", "EQUAL_TOKEN_NOTE", "released_rows", "released_table",
           "RELEASED_NOTE", "clip_kind_table", "CLIP_KIND_NOTE", "REUSE_OFF"]

FRAME_CELLS = 144  # VideoGLaMM's pooled CLIP tokens per frame (12x12), at every bench scale
VIDEO_TOKENS_PER_FRAME = 64  # InternVideo2 tokens per frame (8x8): a per-frame method sends them all
PATCHES_PER_CELL = 4  # the ``cells`` layout: one LLM token per 2x2 cell of kept CLIP patches (litelvlm: cell=2)
FULL = 576
EQUAL_TOKEN_TOLERANCE = 0.05  # "at N": at most N tokens and at least (1 - this) N (per-frame litelvlm: steps of 16)
REUSE_OFF = "litelvlm-time:reuse_threshold=2"  # cosine similarity never reaches 2: nothing is reused


def per_frame_fewest_tokens(frames: int) -> int:
    """The fewest LLM visual tokens a per-frame method sends for a clip: one cell and every video token per frame."""
    return frames * (1 + VIDEO_TOKENS_PER_FRAME)


def per_frame_budget_for(clip_budget: int, frames: int) -> int | None:
    """The CLIP budget per frame at which per-frame litelvlm (``cells`` layout, 2x2 cells) sends the most LLM visual
    tokens not above ``clip_budget`` for a clip of ``frames`` frames: ``ceil(B / 4)`` cells and 64 video tokens per
    frame; None when even one cell per frame is above it."""
    cells = min(clip_budget // frames - VIDEO_TOKENS_PER_FRAME, FRAME_CELLS)
    return None if cells < 1 else min(FULL, PATCHES_PER_CELL * cells)


def _ratios(base: dict, row: dict) -> dict:
    return {"prefill_speedup": base["llm_prefill_ms"] / row["llm_prefill_ms"], "e2e_speedup": base["e2e_ms"] / row["e2e_ms"],
            "activation_reduction": base["activation_mib"] / max(row["activation_mib"], 1e-9)}


def _measured(row: dict) -> dict:
    keys = ("budget", "llm_visual_tokens", "tokens_after_llm_layer", "llm_prefill_ms", "decode_ms", "e2e_ms", "activation_mib",
            "spread", "warnings")
    return {k: row.get(k) for k in keys}


def _entry_row(rows: list[dict], method: str, stage: str, clip_budget: int, frames: int) -> dict | None:
    if stage == "clip":
        return next((r for r in rows if r["method"] == method and r["clip_budget"] == clip_budget), None)
    budget = per_frame_budget_for(clip_budget, frames)
    return next((r for r in rows if r["method"] == method and r["budget"] == budget and r["clip_budget"] is None
                 and not r.get("released")), None)


def _entry(rows: list[dict], method: str, clip_budget: int, frames: int) -> dict | None:
    """One method at ``clip_budget``: its measured row and status, or why it has none; None for a released spec."""
    from ..pruning import method_from_spec

    selector = method_from_spec(method)
    if getattr(selector, "released", False) is True:
        return None  # papers' settings table
    entry = {"method": method, "clip_budget": clip_budget, "at_budget": False, "measured": False}
    if selector.stage == "clip" and selector.clip_budget_conflict() is not None:
        return {**entry, "status": f"takes no clip budget: {selector.clip_budget_conflict()}"}
    if selector.stage not in ("clip", "pre_llm"):
        return {**entry, "status": "prunes inside the LLM: its LLM input tokens are not what it prunes to"}
    row = _entry_row(rows, method, selector.stage, clip_budget, frames)
    if row is None and selector.stage == "pre_llm":
        fewest = per_frame_fewest_tokens(frames)
        return {**entry, "llm_visual_tokens": fewest,
                "status": f"cannot reach {clip_budget}: sends {fewest} at the least (one cell and "
                          f"{VIDEO_TOKENS_PER_FRAME} video tokens per frame)"}
    if row is None:
        return {**entry, "status": "not measured in this run"}
    return {**entry, **_measured(row), **_budget_status(row["llm_visual_tokens"], clip_budget), "measured": True,
            "budget": None if selector.stage == "clip" else row["budget"]}


def _budget_status(tokens: int, clip_budget: int) -> dict:
    """``at_budget`` and ``status`` of an entry that sent ``tokens`` at ``clip_budget``."""
    if tokens > clip_budget:
        return {"at_budget": False, "status": f"cannot reach {clip_budget}: sends {tokens}"}
    if tokens < (1 - EQUAL_TOKEN_TOLERANCE) * clip_budget:
        return {"at_budget": False, "status": f"sends only {tokens}: more than {EQUAL_TOKEN_TOLERANCE:.0%} below {clip_budget}"}
    return {"at_budget": True, "status": f"at {clip_budget}"}


def equal_token_entries(rows: list[dict], methods, clip_budgets, frames: int = 16) -> list[dict]:
    """Per clip budget, per-frame litelvlm then every other method of ``methods`` (released specs aside), each with
    its measured numbers or why it has none; ``ratios_vs_unpruned`` and ``ratios_vs_litelvlm`` (per-frame litelvlm
    at the same clip budget) only for entries at the budget (``_budget_status``)."""
    unpruned = next((r for r in rows if r["method"] == "none" and r["clip_budget"] is None), None)
    names = ["litelvlm"] + [m for m in dict.fromkeys(methods) if m not in ("litelvlm", "none")]
    entries = []
    for clip_budget in clip_budgets:
        group = [e for e in (_entry(rows, m, clip_budget, frames) for m in names) if e is not None]
        reference = next((e for e in group if e["method"] == "litelvlm" and e["at_budget"]), None)
        for entry in group:
            if entry["at_budget"]:
                entry["ratios_vs_unpruned"] = None if unpruned is None else _ratios(unpruned, entry)
                entry["ratios_vs_litelvlm"] = None if reference is None else _ratios(reference, entry)
        entries += group
    return entries


def _fmt(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _count(value) -> str:
    return "-" if value is None else str(value)


def _ratio(entry: dict, key: str, name: str) -> str:
    return _fmt((entry.get(key) or {}).get(name), 2)


EQUAL_TOKEN_NOTE = ("Every method at the same clip budget N of LLM visual tokens per clip (both streams): clip-level methods "
                    "through their clip budget, per-frame ones through the CLIP budget per frame whose tokens come closest to "
                    "N from below (CLIP/frame). tokens: what each actually sent into the LLM (from layer K: what PruneVid and "
                    "HoliTom keep after their in-LLM step, whose first K layers see all the tokens sent). A method is at N when it "
                    f"sent N or up to {EQUAL_TOKEN_TOLERANCE:.0%} fewer; one that sends more (cannot reach N) or fewer (sends "
                    "only M) has no ratio; the rows are not ranked. x unpruned: the unpruned model / this row; x "
                    "litelvlm: per-frame litelvlm at the same N / this row (only where it is at N).")


def equal_token_table(entries: list[dict]) -> list[list[str]]:
    header = ["clip budget", "method", "CLIP/frame", "tokens", "from layer K", "prefill ms", "x unpruned", "x litelvlm", "decode ms",
              "e2e ms", "x unpruned", "act MiB", "x unpruned", "spread", "status"]
    table = [header]
    for e in entries:
        tokens = "-" if e.get("llm_visual_tokens") is None else str(e["llm_visual_tokens"])
        table.append([str(e["clip_budget"]), e["method"], "-" if e.get("budget") is None else str(e["budget"]), tokens,
                      _count(e.get("tokens_after_llm_layer")),
                      _fmt(e.get("llm_prefill_ms")), _ratio(e, "ratios_vs_unpruned", "prefill_speedup"),
                      _ratio(e, "ratios_vs_litelvlm", "prefill_speedup"), _fmt(e.get("decode_ms")), _fmt(e.get("e2e_ms")),
                      _ratio(e, "ratios_vs_unpruned", "e2e_speedup"), _fmt(e.get("activation_mib")),
                      _ratio(e, "ratios_vs_unpruned", "activation_reduction"),
                      "-" if e.get("spread") is None else f"{100 * e['spread']:.0f}%", e["status"]])
    return table


def released_rows(rows: list[dict]) -> list[dict]:
    """The unpruned row (context) and the rows of ``:released=True`` specs."""
    return [r for r in rows if r.get("released") or (r["method"] == "none" and r["clip_budget"] is None)]


RELEASED_NOTE = ("Each baseline at its release's values (``:released=True``; the values and their "
                 "source lines are in each module's docstring), whatever the budget. The methods send different numbers "
                 "of tokens here, so the table has no ratios between them: compare methods in the equal-token table. "
                 "layer: the LLM layer the release prunes or merges at (in its own 28- or 32-layer LLM) / the benchmarked "
                 "LLM's depth; a layer beyond it falls back as the note under the table says. tokens: sent into the LLM; from "
                 "layer K: what PruneVid and HoliTom keep after their in-LLM step (STTM's released setting merges inside "
                 "the LLM from layer 2: all tokens enter it).")


def released_table(rows: list[dict]) -> list[list[str]]:
    header = ["paper's setting", "layer / depth", "tokens", "from layer K", "CLIP ms", "video enc ms", "select ms", "prefill ms", "decode ms",
              "e2e ms", "act MiB", "spread"]
    table = [header]
    for r in released_rows(rows):
        layer = "-" if r.get("llm_layer") is None else f"{r['llm_layer']} / {r.get('llm_layers', '?')}"
        table.append([r["method"] if r["method"] != "none" else "none (unpruned)", layer, str(r["llm_visual_tokens"]),
                      _count(r.get("tokens_after_llm_layer")),
                      _fmt(r["clip_ms"]), _fmt(r["video_encoder_ms"]), _fmt(r["selection_ms"]), _fmt(r["llm_prefill_ms"]),
                      _fmt(r["decode_ms"]), _fmt(r["e2e_ms"]), _fmt(r["activation_mib"]),
                      "-" if r.get("spread") is None else f"{100 * r['spread']:.0f}%"])
    return table


CLIP_KIND_NOTE = ("litelvlm-time's LLM visual tokens per synthetic 16-frame clip (video.synthetic_clips: the sample scene "
                  "static, panning 1% or 10% of the width per frame, a small square crossing it, uniform noise), at one CLIP "
                  "budget per frame, no clip budget: CLIP-stream cells sent and reused (kept, but the LLM already holds a "
                  "close enough copy), InternVideo2 tokens sent, and the total; reuse off: reuse_threshold=2. RANDOM "
                  "weights: random CLIP states of similar frames are more alike than a trained CLIP's would be.")


def clip_kind_table(rows: list[dict]) -> list[list[str]]:
    """One line per clip kind: reuse on (cells sent, reused, video tokens, total) and reuse off (total)."""
    table = [["clip kind", "CLIP/frame", "cells sent", "cells reused", "video tokens", "total", "total, reuse off",
              "saved by reuse"]]
    for kind in dict.fromkeys(r["kind"] for r in rows):
        on = next(r for r in rows if r["kind"] == kind and r["reuse"])
        off = next(r for r in rows if r["kind"] == kind and not r["reuse"])
        table.append([kind, str(on["budget"]), str(on["cells_sent"]), str(on["cells_reused"]), str(on["video_tokens"]),
                      str(on["total"]), str(off["total"]), str(off["total"] - on["total"])])
    return table

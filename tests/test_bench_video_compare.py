"""The video comparison tables of ``litelvlm bench``: equal tokens, papers' settings, tokens per clip kind."""

import pytest

from litelvlm.bench.video_compare import (clip_kind_table, equal_token_entries, equal_token_table, per_frame_budget_for,
                                          per_frame_fewest_tokens, released_table)


def test_per_frame_budget_is_the_largest_whose_tokens_fit_the_clip_budget():
    assert per_frame_budget_for(16 * (21 + 64), 16) == 84  # 21 cells per frame: ceil(84 / 4) = 21
    assert per_frame_budget_for(16 * (21 + 64) + 15, 16) == 84  # never above the clip budget
    assert per_frame_budget_for(16 * 65, 16) == 4 and per_frame_budget_for(16 * 65 - 1, 16) is None  # one cell, or none
    assert per_frame_budget_for(210, 16) is None and per_frame_fewest_tokens(16) == 1040
    assert per_frame_budget_for(10**6, 16) == 576


def test_released_specs_keep_their_layer_at_the_shrunk_depth_and_others_scale():
    from video.bench import bench_selector

    for spec, layer in (("dycoke:released=True", 3), ("prunevid:released=True", 10), ("sttm:released=True", 2),
                        ("holitom:released=True", 18)):
        selector = bench_selector(spec, llm_layers=8)  # raised "released=True runs the release's layer=..." before
        assert selector.layer == layer and selector.released
    assert bench_selector("dycoke", llm_layers=8).layer == 1 and bench_selector("prunevid", llm_layers=8).layer == 2
    assert bench_selector("dycoke:layer=2", llm_layers=8).layer == 2


def test_released_specs_run_once_and_never_at_a_clip_budget():
    from video.bench import VideoCase, video_cases

    cases = video_cases(["litelvlm-time", "dycoke", "dycoke:released=True", "fastvid",
                         "prunevid:alpha=0.4"], (576, 196, 81), (210,))
    released = [c for c in cases if c.method == "dycoke:released=True"]
    assert released == [VideoCase("dycoke:released=True", 576, None, released=True)]
    assert released[0].segment_budget == 576  # a budget, so the segmenter runs the method (None would mean unpruned)
    at_210 = [c.method for c in cases if c.clip_budget == 210]
    assert at_210 == ["litelvlm-time", "dycoke", "fastvid"]  # a fixed alpha takes no clip budget either
    assert [c for c in cases if c.method == "litelvlm"] == [VideoCase("litelvlm", 196), VideoCase("litelvlm", 81)]
    # a clip budget a per-frame method reaches adds its CLIP budget, once
    assert [c.budget for c in video_cases(["litelvlm"], (576, 84), (1360,)) if c.method == "litelvlm"] == [84]
    assert VideoCase("none", 576) in video_cases(["litelvlm-time"], (81,), (210,))  # the common reference


def _row(method, tokens, prefill, budget=576, clip_budget=None, released=False):
    return {"method": method, "budget": budget, "clip_budget": clip_budget, "released": released,
            "llm_visual_tokens": tokens, "llm_prefill_ms": prefill, "decode_ms": 10.0, "e2e_ms": 100.0 + prefill,
            "activation_mib": tokens / 100, "spread": 0.05, "warnings": [], "clip_ms": 5.0, "video_encoder_ms": 6.0,
            "selection_ms": 1.0, "llm_layer": 3 if released else None, "llm_layers": 8}


def test_equal_token_entries_rank_nothing_and_give_ratios_only_at_the_budget():
    rows = [_row("none", 3328, 1000.0), _row("litelvlm", 1360, 400.0, budget=81),
            _row("litelvlm-time", 208, 60.0, clip_budget=210), _row("fastvid", 210, 50.0, clip_budget=210),
            _row("dycoke", 1040, 300.0, clip_budget=210), _row("dycoke:released=True", 1500, 350.0, released=True),
            _row("prunevid", 176, 40.0, clip_budget=210)]
    entries = equal_token_entries(rows, ["litelvlm-time", "fastvid", "dycoke", "dycoke:released=True", "fastv", "prunevid"],
                                  [210])
    by_method = {e["method"]: e for e in entries}
    assert list(by_method) == ["litelvlm", "litelvlm-time", "fastvid", "dycoke", "fastv", "prunevid"]  # released: own table
    assert by_method["prunevid"]["status"] == "sends only 176: more than 5% below 210"  # fewer tokens: not comparable
    assert not by_method["prunevid"]["at_budget"] and "ratios_vs_unpruned" not in by_method["prunevid"]
    assert by_method["litelvlm"]["status"].startswith("cannot reach 210: sends 1040 at the least")
    assert by_method["dycoke"]["status"] == "cannot reach 210: sends 1040" and "ratios_vs_unpruned" not in by_method["dycoke"]
    assert "inside the LLM" in by_method["fastv"]["status"]
    time, fastvid = by_method["litelvlm-time"], by_method["fastvid"]
    assert time["at_budget"] and time["status"] == "at 210" and time["llm_visual_tokens"] == 208 and time["ratios_vs_litelvlm"] is None
    assert time["ratios_vs_unpruned"]["prefill_speedup"] == pytest.approx(1000 / 60)
    assert fastvid["ratios_vs_unpruned"]["prefill_speedup"] == pytest.approx(1000 / 50)
    table = equal_token_table(entries)
    assert [r[1] for r in table[1:]] == list(by_method) and table[4][6] == "-"  # dycoke: no ratio
    # per-frame litelvlm reaches 1360 at 84 CLIP tokens per frame: the others' x litelvlm are against it
    rows += [_row("litelvlm-time", 1300, 380.0, clip_budget=1360), _row("fastvid", 1290, 370.0, clip_budget=1360)]
    rows[1]["budget"] = 84
    big = {e["method"]: e for e in equal_token_entries(rows, ["litelvlm-time", "fastvid"], [1360])}
    assert big["litelvlm"]["budget"] == 84 and big["litelvlm-time"]["ratios_vs_litelvlm"]["prefill_speedup"] == pytest.approx(400 / 380)
    assert big["fastvid"]["status"].startswith("sends only 1290") and "ratios_vs_litelvlm" not in big["fastvid"]  # 1292: 95%


def test_released_table_has_no_ratios_and_names_layer_and_depth():
    table = released_table([_row("none", 3328, 1000.0), _row("litelvlm", 1360, 400.0, budget=81),
                            _row("dycoke:released=True", 1500, 350.0, released=True)])
    assert [r[0] for r in table[1:]] == ["none (unpruned)", "dycoke:released=True"]
    assert table[2][1] == "3 / 8" and table[2][2] == "1500" and not any("x" == c for c in table[0])


def test_clip_kinds_count_litelvlm_time_tokens_with_reuse_on_and_off(tiny_video_segmenter):
    from litelvlm.bench import ImageBenchSettings
    from video.bench import measure_clip_kinds

    settings = ImageBenchSettings(video_budgets=(576, 64), video_methods=("litelvlm", "litelvlm-time"))
    rows = measure_clip_kinds(tiny_video_segmenter, settings)
    assert {(r["kind"], r["reuse"]) for r in rows} == {(k, on) for k in ("static", "slow_pan", "fast_pan", "moving_object",
                                                                          "noise") for on in (True, False)}
    off = {r["kind"]: r for r in rows if not r["reuse"]}
    on = {r["kind"]: r for r in rows if r["reuse"]}
    assert all(r["cells_reused"] == 0 and r["budget"] == 64 for r in off.values())
    assert on["static"]["cells_reused"] > 0 and on["static"]["total"] < off["static"]["total"]
    assert all(on[k]["total"] + on[k]["cells_reused"] == off[k]["total"] for k in on)  # reuse only drops kept cells
    table = clip_kind_table(rows)
    assert table[1][0] == "static" and table[1][7] == str(off["static"]["total"] - on["static"]["total"])
    assert measure_clip_kinds(tiny_video_segmenter, ImageBenchSettings(video_methods=("litelvlm",))) == []


def test_report_prints_the_three_tables_under_their_own_titles():
    from litelvlm.bench.report import markdown_report, video_case_label, video_table

    rows = [_row("none", 3328, 1000.0), _row("litelvlm", 1360, 400.0, budget=81),
            _row("fastvid", 210, 50.0, clip_budget=210), _row("dycoke:released=True", 1500, 350.0, released=True)]
    for row in rows:
        row.update(clip_ms=5.0, e2e_with_masks_ms=None, answer_tokens=8)
    kinds = [{"kind": "static", "budget": 81, "reuse": on, "cells_sent": 51 if on else 336, "cells_reused": 285 if on else 0,
              "video_tokens": 128, "total": 179 if on else 464} for on in (True, False)]
    result = {"scale": "quick", "device": "cpu", "dtype": "float32", "video": rows, "goals": [], "video_clip_kinds": kinds,
              "video_equal_tokens": equal_token_entries(rows, ["fastvid", "dycoke:released=True"], [210])}
    report = markdown_report(result)
    for title in ("## Video at equal LLM visual tokens per clip", "## Video baselines at their papers' operating points",
                  "## litelvlm-time tokens per clip kind"):
        assert report.count(title) == 1
    assert "| static | 81 | 51 | 285 | 128 | 179 | 464 | 285 |" in report
    assert [r[0] for r in video_table(rows)[1:]] == ["none", "litelvlm"]  # the per-CLIP-budget table keeps its rows only
    assert video_case_label(rows[2]) == "fastvid at a clip budget of 210"
    assert video_case_label(rows[3]) == "dycoke:released=True (paper's setting)"

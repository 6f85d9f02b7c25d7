"""``litelvlm bench --multi-expression``: one clip with E expressions per method, on the tiny VideoGLaMM (the times
mean nothing at this size: never a timed assertion, only how the rows are made and that they ran what they say)."""

import json
import warnings

import pytest
import torch

from litelvlm.bench import ImageBenchSettings, measurement_setup
from video.bench_prefix import EXPRESSIONS, FORCED_ANSWER, PREFIX_METHODS, measure_prefix_section

SHARING = ("none", "dycoke", "fastvid", "sttm")  # selection and LLM states ignore the expression (HoliTom's in-LLM merge
# ranks by the question's attention)


@pytest.fixture(scope="module")
def measured(tiny_video_segmenter):
    """The section at E = 1 and 4 on the tiny model, and every call's [SEG] states (per expression) in call order."""
    seg, calls = tiny_video_segmenter, []
    clip_masks = seg._clip_masks

    def spy(clip_frames, seg_states, *args, **kwargs):
        calls.append([s.clone() for s in seg_states])
        return clip_masks(clip_frames, seg_states, *args, **kwargs)

    seg._clip_masks = spy
    settings = ImageBenchSettings(scale="quick", repeats=1, max_repeats=1, warmup=0, multi_expression=(4, 1))
    try:
        with measurement_setup("cpu"):
            section = measure_prefix_section(settings, segmenter=seg)
    finally:
        del seg._clip_masks
    return section, calls


def test_rows_per_method_and_expression_count_with_per_expression_costs(measured):
    section, _ = measured
    rows = section["rows"]
    assert PREFIX_METHODS == ("none", "dycoke", "fastvid", "sttm", "holitom", "prunevid", "litelvlm")
    assert [(r["method"], r["expressions"]) for r in rows] == [(m, n) for m in PREFIX_METHODS for n in (1, 4)]
    assert section["counts"] == [1, 4] and section["budget"] == 81 and section["cost_s"] > 0
    lite = {r["expressions"]: r for r in rows if r["method"] == "litelvlm"}
    for r in rows:
        count = r["expressions"]
        assert r["llm_ms"] > 0 and r["llm_ms_per_expression"] == r["llm_ms"] / count
        assert r["call_ms"] > r["llm_ms"] and r["call_ms_per_expression"] == r["call_ms"] / count
        assert r["round_llm_ms"] == [r["llm_ms"]] and r["rounds"] == 1
        assert r["llm_x_vs_litelvlm"] == lite[count]["llm_ms_per_expression"] / r["llm_ms_per_expression"]
        assert r["budget"] == (None if r["method"] == "none" else 81)
        assert r["shares_prefix"] == (r["method"] in SHARING)
        if r["method"] in SHARING and count > 1:  # one prefill of the prefix, every question continues it
            assert r["shared"] and r["prefix_passes"] == 1 and r["forward_passes"] == count and r["prefix_ms"] > 0
        else:
            assert not r["shared"] and r["prefix_passes"] == 0 and r["prefix_ms"] == 0
            assert r["shared_reason"] == ("one expression: nothing to share" if count == 1 else
                                          f"method {r['method']!r} " + ("selects the visual tokens by the expression's text"
                                                                        if r["method"] == "litelvlm" else
                                                                        "acts inside the LLM on the question's attention"))
    assert rows[0]["llm_visual_tokens"] == 16 * (144 + 64)  # unpruned, tiny CLIP grid 12 x 12 per frame


def _per_expression_run(seg, row):
    """The row's call with the prefix not shared: the result and every expression's [SEG] states."""
    from video.bench import CLIP_FRAMES, bench_frames, bench_selector

    method = "none" if row["method"] == "none" else bench_selector(row["method"], len(seg.model.llm.model.layers))
    states, clip_masks = [], seg._clip_masks
    seg._clip_masks = lambda frames, seg_states, *a, **k: (states.extend(seg_states), clip_masks(frames, seg_states, *a, **k))[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DyCoke: the budget it cannot meet
            result = seg.segment(bench_frames(CLIP_FRAMES), list(EXPRESSIONS[: row["expressions"]]), budget=row["budget"],
                                 method=method, answer=FORCED_ANSWER, mask_mode="none", share_prefix=False)
    finally:
        del seg._clip_masks
    return result, states


def test_shared_rows_equal_the_per_expression_run(measured, tiny_video_segmenter):
    """Each shared row's [SEG] states and tokens are those of the same call with the prefix not shared."""
    section, calls = measured
    assert len(calls) == len(section["rows"])  # one call per case (one round, no warm-up)
    shared = [(row, states) for row, states in zip(section["rows"], calls) if row["shared"]]
    assert [row["method"] for row, _ in shared] == list(SHARING)  # every sharing method at E = 4
    for row, states in shared:
        alone, per_expression = _per_expression_run(tiny_video_segmenter, row)
        assert not alone.shared_prefix and alone.llm_visual_tokens == [row["llm_visual_tokens"]] * row["expressions"]
        assert len(per_expression) == len(states) == row["expressions"]
        for ours, theirs in zip(states, per_expression):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_sttm_and_holitom_share_the_prefix_exactly_when_they_make_no_in_llm_plan():
    from litelvlm.pruning import get_method

    assert get_method("sttm").shares_prefix and get_method("holitom:llm_merge=False").shares_prefix
    assert not get_method("sttm:layer=2,spatial_threshold=0.85").shares_prefix and not get_method("holitom").shares_prefix
    assert get_method("sttm").llm_plan([4], 2) is None and get_method("holitom:llm_merge=False").llm_plan([4], 2) is None


def test_the_section_is_printed_and_written_by_the_bench(measured, tmp_path, monkeypatch):
    from litelvlm.bench import prefix, run_bench

    section, _ = measured
    monkeypatch.setattr("litelvlm.bench.video.run_video_bench", lambda settings, progress=None: {"video": [], "sam2": None, "equal_tokens": [], "clip_kinds": []})
    monkeypatch.setattr(prefix, "run_prefix_bench", lambda settings, progress=None: section)
    settings = ImageBenchSettings(scale="quick", methods=(), video_methods=(), video_budgets=(81,), repeats=1, warmup=0,
                                  multi_expression=(1, 4))
    lines = []
    result = run_bench(settings, out_dir=tmp_path / "out", echo=lines.append)
    assert result["multi_expression"] is section
    stored = json.loads((tmp_path / "out" / "bench.json").read_text())["multi_expression"]
    assert [(r["method"], r["expressions"]) for r in stored["rows"]] == [(r["method"], r["expressions"]) for r in section["rows"]]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Multi-expression: one clip, E expressions (shared visual prefix)" in report
    assert report.count("| holitom | ") == 2 and "E=4: cheapest LLM per expression" in report
    start = next(i for i, line in enumerate(lines) if line.startswith("Multi-expression (VideoGLaMM"))
    header = lines[start + 1].splitlines()[0].split()
    assert header[:3] == ["method", "E", "shared"] and len(lines[start + 1].splitlines()) == 2 + len(section["rows"])
    assert [line.split(":")[0] for line in lines[start + 2 : start + 4]] == ["E=1", "E=4"]


@pytest.mark.parametrize("argv, message", [
    (["--multi-expression", "0"], "numbers of expressions from 1 to 16, got [0]"),
    (["--multi-expression", "4", "17"], "from 1 to 16, got [4, 17]"),
    (["--multi-expression", "4", "--no-video"], "--multi-expression runs VideoGLaMM on a clip: drop --no-video"),
])
def test_bad_expression_counts_are_refused_before_any_work(argv, message, capsys, monkeypatch):
    from litelvlm.cli import main

    monkeypatch.setattr("litelvlm.bench.run_bench", lambda *a, **k: pytest.fail("the bench ran"))
    assert main(["bench", "--quick", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err

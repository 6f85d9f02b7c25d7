"""The benchmark: memory probe, analytic FLOPs, and a short run producing JSON, Markdown and a chart."""

import json

import torch

from litelvlm.bench import ImageBenchSettings, run_bench
from litelvlm.bench.flops import glamm_stage_flops, transformer_layer_flops
from litelvlm.bench.image import architecture_for
from litelvlm.bench.memory import LiveTensorBytes, activation_peak
from litelvlm.glamm.build import GLaMMArchitecture


def test_live_tensor_bytes_counts_new_storages_not_views_of_inputs():
    weight = torch.randn(256, 256)
    with activation_peak("cpu") as peak:
        x = torch.randn(100, 256)  # 100 KiB
        y = x @ weight.t()  # weight.t() is a view of an input: not new memory; y is 100 KiB
        del x
        z = y.relu()  # 100 KiB while y is alive
    assert peak["bytes"] == 2 * 100 * 256 * 4  # at most two of x, y, z are alive at once
    assert z.shape == (100, 256)
    mode = LiveTensorBytes()
    with mode:
        a = torch.zeros(1000)
        b = a.view(10, 100)  # a view: same storage
        del a, b
    assert mode.peak == 4000 and mode.live == 0


class FakeCudaMemory:
    """``torch.cuda``'s allocator counters as one global peak that ``reset_peak_memory_stats`` sets to what is live."""

    def __init__(self, allocated=0):
        self.allocated, self.peak = allocated, allocated

    def alloc(self, nbytes):
        self.allocated += nbytes
        self.peak = max(self.peak, self.allocated)

    def free(self, nbytes):
        self.allocated -= nbytes

    def synchronize(self):
        pass

    def memory_allocated(self):
        return self.allocated

    def max_memory_allocated(self):
        return self.peak

    def reset_peak_memory_stats(self):
        self.peak = self.allocated


def test_nested_cuda_peaks_keep_the_enclosing_blocks_peak():
    """An inner block resets the allocator's single peak: the outer block still reports its own peak from before
    the inner block, and includes an inner block's peak after a later inner block; each inner block reports its own."""
    cuda = FakeCudaMemory(allocated=1000)  # weights: live before every block, never counted
    with activation_peak("cuda", cuda) as outer:
        cuda.alloc(300)
        cuda.free(300)  # the outer peak, reached before the inner blocks start
        cuda.alloc(20)
        with activation_peak("cuda", cuda) as middle:
            cuda.alloc(50)
            cuda.free(50)
            with activation_peak("cuda", cuda) as inner:
                cuda.alloc(10)
                cuda.free(10)
        cuda.free(20)
    assert (outer["bytes"], middle["bytes"], inner["bytes"]) == (300, 50, 10)
    with activation_peak("cuda", cuda) as outer:
        cuda.alloc(20)
        with activation_peak("cuda", cuda) as first:
            cuda.alloc(400)  # the outer peak, inside an inner block: 20 + 400
            cuda.free(400)
        with activation_peak("cuda", cuda) as second:
            cuda.alloc(10)
            cuda.free(10)
        cuda.free(20)
    assert (outer["bytes"], first["bytes"], second["bytes"]) == (420, 400, 10)


def test_layer_flops_match_a_manual_count_and_fastv_counts_unpruned_layers():
    # q, k, v, o: 4 * t*w*w MACs; scores and mixing: 2 * t*t*w; gated MLP: 3 * t*w*m
    t, w, m = 10, 8, 16
    assert transformer_layer_flops(t, w, m, gated=True) == 2 * (4 * t * w * w + 2 * t * t * w + 3 * t * w * m)
    arch = GLaMMArchitecture.full()
    pruned = glamm_stage_flops(arch, visual_tokens=192, text_tokens=70)["llm_prefill"]
    fastv = glamm_stage_flops(arch, visual_tokens=192, text_tokens=70, unpruned_llm_layers=2)["llm_prefill"]
    full = glamm_stage_flops(arch, visual_tokens=576, text_tokens=70)["llm_prefill"]
    assert pruned < fastv < full
    # LLaMA-7B at 646 tokens: ~2 * 6.5e9 params * 646 tokens plus attention
    assert 8.0e12 < full < 9.5e12


class RecordingBar:
    """A progress bar that records every total it was given and how often it reached it."""

    def __init__(self, total: int):
        self._total, self.totals, self.n, self.times_full = total, [total], 0, 0

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = value
        self.totals.append(value)

    def update(self, n: int = 1) -> None:
        before, self.n = self.n, self.n + n
        assert self.n <= self.total, f"{self.n} steps of {self.total}"
        self.times_full += before < self.total <= self.n

    def refresh(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def assert_filled_once(bar: RecordingBar) -> None:
    assert bar.totals == [bar.total] and bar.n == bar.total and bar.times_full == 1, (bar.totals, bar.n, bar.times_full)


def test_short_run_writes_json_report_chart_and_goal_ratios(tmp_path, monkeypatch):
    import litelvlm.progress

    bars = []
    monkeypatch.setattr(litelvlm.progress, "progress_bar", lambda total, desc, unit: bars.append(RecordingBar(total)) or bars[-1])
    settings = ImageBenchSettings(scale="quick", budgets=(576, 192, 64), repeats=1, warmup=0, expressions=2)
    lines = []
    result = run_bench(settings, video=False, out_dir=tmp_path / "out", json_path=tmp_path / "b.json", echo=lines.append)
    assert len(bars) == 1 and bars[0].total == 3 * (9 + 1)  # planned: up to max_repeats rounds and the memory probe
    assert_filled_once(bars[0])  # the rounds one round did not need are counted at its end
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["scale"] == "quick" and data["device"].startswith("cpu") and data["video"] == []
    rows = {r["budget"]: r for r in data["image"]}
    assert set(rows) == {576, 192, 64}
    for key in ("llm_prefill_ms", "per_expression_ms", "activation_mib", "flops_g", "stage_ms", "method"):
        assert key in rows[192]
    assert rows[576]["ratios_vs_576"]["llm_prefill_speedup"] == 1.0
    assert rows[64]["activation_mib"] < rows[192]["activation_mib"] < rows[576]["activation_mib"]
    assert rows[64]["flops_g"] < rows[576]["flops_g"]
    assert set(data["flops_shares_at_576"]) == {"full", "quick"}
    assert any("goal llm_prefill_speedup at 192" in line for line in lines)
    assert not any("kv_cache" in line for line in lines)  # the video section did not run: its goal is not printed
    assert data["clock"] == "process CPU time" and data["threads"] == 1 and data["weights"] == "random"
    assert all(r["rounds"] >= 1 and r["spread"] >= 0 and r["wall_image_ms"] > 0 for r in data["image"])
    assert any(line.startswith("wrote ") and line.endswith("bench.png") for line in lines)
    assert "random weights" in lines[0] and "process CPU time" in lines[0]
    assert (tmp_path / "out" / "report.md").read_text().startswith("# litelvlm bench")
    assert (tmp_path / "out" / "bench.png").stat().st_size > 1000
    assert result["goals"][0]["value"] == rows[192]["ratios_vs_576"]["llm_prefill_speedup"]


def test_video_section_measures_every_method_against_per_frame_litelvlm_in_one_run():
    from litelvlm.bench.report import check_goals, video_table
    from litelvlm.bench.video_compare import equal_token_entries, released_table
    from video.bench import measure_video_cases

    methods = ("litelvlm-time", "dycoke", "fastvid", "prunevid", "dycoke:released=True")
    settings = ImageBenchSettings(scale="quick", repeats=1, warmup=0, video_budgets=(576, 81), clip_budgets=(300,),
                                  video_methods=methods)
    rows = measure_video_cases(settings)
    assert [(r["method"], r["budget"], r["clip_budget"]) for r in rows] == [
        ("none", 576, None), ("litelvlm", 81, None), ("litelvlm-time", 81, None), ("dycoke", 81, None),
        ("fastvid", 81, None), ("prunevid", 81, None), ("litelvlm-time", 576, 300), ("dycoke", 576, 300),
        ("fastvid", 576, 300), ("prunevid", 576, 300), ("dycoke:released=True", 576, None)]
    none, per_frame, timed = rows[:3]
    baselines = {(r["method"], r["clip_budget"]): r for r in rows[3:]}
    budgeted = baselines[("litelvlm-time", 300)]
    assert baselines[("dycoke", 300)]["llm_visual_tokens"] == 1040 and "cannot send 300" in baselines[("dycoke", 300)]["warnings"][0]
    assert baselines[("fastvid", 300)]["llm_visual_tokens"] <= 300 and baselines[("fastvid", None)]["llm_visual_tokens"] <= 485
    assert baselines[("dycoke", None)]["llm_layer"] == 1 and baselines[("prunevid", None)]["llm_layer"] == 1  # 3, 10 of 32 -> of 4
    released = baselines[("dycoke:released=True", None)]  # the release's layer 3, kept at the shrunk depth
    assert released["released"] and released["llm_layer"] == 3 and released["llm_layers"] == 4
    assert released["llm_visual_tokens"] > baselines[("dycoke", None)]["llm_visual_tokens"]  # K = 0.7 > K = 1's share
    assert baselines[("prunevid", 300)]["tokens_after_llm_layer"] <= 300
    assert all(r["llm_prefill_ms"] > 0 and "prefill_speedup" in r["ratios_vs_litelvlm"] for k, r in baselines.items()
               if k[1] is None and not r["released"])
    assert not any("ratios_vs_litelvlm" in r for r in rows if r["clip_budget"] is not None or r["released"])
    assert none["llm_visual_tokens"] == 16 * (144 + 64) and per_frame["llm_visual_tokens"] == 16 * (21 + 64)
    assert timed["llm_visual_tokens"] <= 16 * (21 + 8) and budgeted["llm_visual_tokens"] <= 300
    for row in rows:
        assert row["decode_forward_passes"]["cached"] == 8 and row["e2e_ms"] > row["llm_prefill_ms"] > 0
        assert row["decode_ms"] > 0 and row["activation_mib"] > 0 and row["e2e_with_masks_ms"] is None
    for row in (none, per_frame):  # the released no-cache loop is timed for the reference rows only
        assert row["decode_forward_passes"]["uncached"] == 8 and row["kv_cache_decode_speedup"] > 1.0
    assert "kv_cache_decode_speedup" not in timed and "ratios_vs_litelvlm" not in none
    ratio = timed["ratios_vs_litelvlm"]
    assert ratio["token_reduction"] == per_frame["llm_visual_tokens"] / timed["llm_visual_tokens"]
    assert ratio["prefill_speedup"] == per_frame["llm_prefill_ms"] / timed["llm_prefill_ms"]
    assert per_frame["ratios_vs_litelvlm"]["prefill_speedup"] == 1.0
    assert ratio["activation_reduction"] > 1.5  # several times fewer tokens: the prefill's activations shrink
    goals = {g["what"]: g for g in check_goals({"video": rows, "video_summary": {"kv_cache_decode_speedup": 6.0}})}
    tokens = goals["video llm_visual_tokens at 81 CLIP tokens/frame (litelvlm-time)"]
    assert tokens["value"] == timed["llm_visual_tokens"] and tokens["op"] == "<=" and tokens["met"]
    assert not any("prefill_speedup" in what for what in goals)  # no goal ranks prefill times of unequal token counts
    assert [row[:2] for row in video_table(rows)[1:]] == [["none", "576"], ["litelvlm", "81"], ["litelvlm-time", "81"],
                                                         ["dycoke", "81"], ["fastvid", "81"], ["prunevid", "81"]]
    equal = {e["method"]: e for e in equal_token_entries(rows, methods, (300,))}
    assert list(equal) == ["litelvlm", "litelvlm-time", "dycoke", "fastvid", "prunevid"]
    assert equal["litelvlm"]["status"].startswith("cannot reach 300") and not equal["dycoke"]["at_budget"]
    assert equal["fastvid"]["ratios_vs_unpruned"]["prefill_speedup"] == none["llm_prefill_ms"] / baselines[("fastvid", 300)]["llm_prefill_ms"]
    assert [r[0] for r in released_table(rows)[1:]] == ["none (unpruned)", "dycoke:released=True"]


def test_chart_has_a_video_panel_per_measure_with_a_line_per_method():
    from litelvlm.bench.report import bench_figure

    def row(method, tokens, prefill):
        return {"method": method, "llm_visual_tokens": tokens, "llm_prefill_ms": prefill, "e2e_ms": 2 * prefill,
                "answer_tokens": 8}

    image = [{"method": "litelvlm", "budget": b, "llm_prefill_ms": b / 10, "per_expression_ms": b / 5, "activation_mib": b / 20}
             for b in (576, 64)]
    video = [row("none", 3328, 90.0), row("litelvlm", 1360, 40.0), row("litelvlm-time", 464, 20.0), row("litelvlm-time", 300, 15.0)]
    result = {"image": image, "video": video, "scale": "quick", "device": "cpu", "clock": "process CPU time"}
    fig = bench_figure(result)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown][3:] == ["VideoGLaMM: LLM prefill, 16-frame clip",
                                                    "VideoGLaMM: clip end to end (8-token answer)"]
    for ax, key in zip(shown[3:], ("llm_prefill_ms", "e2e_ms")):
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["none (unpruned)", "litelvlm", "litelvlm-time"]
        assert list(ax.get_lines()[2].get_xydata()[:, 1]) == [r[key] for r in video[:1:-1]]  # by tokens, per method
        assert ax.get_xlabel().startswith("LLM visual tokens")
    assert "RANDOM WEIGHTS" in fig._suptitle.get_text()
    assert len(fig.axes) == 6 and not fig.axes[5].get_visible()  # two rows of three panels, the last one unused
    assert bench_figure({"image": [], "video": [], "scale": "quick", "device": "cpu"}) is None


def test_bench_methods_go_to_the_sections_that_run_them(capsys):
    from litelvlm.bench.video import split_methods
    from litelvlm.cli import main

    image, video, notes = split_methods(["litelvlm", "litelvlm-time", "fastv", "ivcprune", "litelvlm"])
    assert image == ("litelvlm", "fastv", "ivcprune") and video == ("litelvlm", "litelvlm-time", "fastv", "ivcprune")
    assert notes == ["note: litelvlm-time selects over whole video clips: video section only"]
    for argv, message in [(["--method", "nope"], "unknown pruning method 'nope'"),
                          (["--method", "litelvlm-time", "--no-video"], "runs only in the video section"),
                          (["--clip-budget", "300", "--method", "litelvlm"], "--clip-budget needs a clip-level --method"),
                          (["--video-budget", "0"], "budgets must be positive")]:
        assert main(["bench", "--quick", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_in_llm_methods_prune_at_their_layer_scaled_to_the_bench_depth():
    from litelvlm.bench.image import bench_selectors, run_image_bench
    from video.bench import bench_selector as video_selector

    cases = [("ivcprune", 64), ("fastv", 64), ("ivcprune:layer=3", 64), ("litelvlm", 64), ("none", None)]
    default = bench_selectors(cases, architecture_for("default"))  # GLaMM's 32 LLM layers -> 8
    assert (default["ivcprune"].layer, default["fastv"].layer, default["ivcprune:layer=3"].layer) == (4, 1, 3)
    assert default["litelvlm"] == "litelvlm" and default["none"] == "none"  # nothing to scale: the segmenter's choice
    assert video_selector("ivcprune", 8).layer == 4 and video_selector("fastv", 8).layer == 1  # Phi-3-mini's 32 -> 8
    settings = ImageBenchSettings(scale="quick", budgets=(64,), methods=("ivcprune", "fastv"), repeats=1, warmup=0, expressions=1)
    rows = {r["method"]: r for r in run_image_bench(settings)["rows"]}  # quick: 4 LLM layers
    assert rows["ivcprune"]["llm_prune_layer"] == 2 and rows["fastv"]["llm_prune_layer"] == 1
    assert rows["fastv"]["flops_g"] < rows["ivcprune"]["flops_g"]  # IVC-Prune runs more layers on all 576 tokens


def test_stage_timer_counts_nested_stages_once_and_cpu_time_ignores_waiting():
    import time

    from litelvlm.timing import StageTimer, use_clock

    with use_clock("cpu"):
        timer = StageTimer("cpu")
    with timer("outer"):
        time.sleep(0.2)  # waiting, as when another process holds the core: wall time, no CPU time
        with timer("inner"):
            sum(i * i for i in range(200_000))
    assert timer.clock == "cpu" and timer.wall_seconds["outer"] >= 0.2 and timer.seconds["outer"] < 0.15
    assert timer.total == timer.seconds["outer"] < timer.seconds["outer"] + timer.seconds["inner"]
    assert timer.wall_dict()["total"] == timer.wall_seconds["outer"]


def test_rounds_continue_until_the_spread_is_bounded_on_a_progress_total_fixed_up_front():
    from litelvlm.bench.image import max_rounds, measure_rounds

    noisy = iter([1.0, 1.0, 1.5, 1.0, 1.0, 1.02, 1.01, 1.0, 0.99, 1.0, 1.0, 1.0])
    settings = ImageBenchSettings(repeats=3, max_repeats=9, target_spread=0.1)
    bar = RecordingBar(max_rounds(settings))

    def timed(case):
        bar.update(1)
        return next(noisy)

    runs = measure_rounds(timed, ["a"], settings, key=lambda v: v, progress=bar)
    assert runs == [[1.0, 1.0, 1.5, 1.0, 1.0]]  # 3 and 4 rounds: spread over 10%; the 5th steadies the quartiles
    assert_filled_once(bar)  # planned for 9 rounds from the start, the 4 not run counted at the end
    alternating = iter([1.0, 2.0] * 10)
    capped = measure_rounds(lambda case: next(alternating), ["a"], ImageBenchSettings(repeats=2, max_repeats=4), key=lambda v: v)
    assert capped == [[1.0, 2.0, 1.0, 2.0]]  # never steadies: stops at max_repeats


def test_unusable_outputs_are_refused_before_any_work(tmp_path):
    import pytest

    from litelvlm.bench import check_outputs

    afile = tmp_path / "f"
    afile.write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        check_outputs(afile, None)
    with pytest.raises(ValueError, match="is a folder"):
        check_outputs(None, tmp_path)


def test_video_total_counts_the_released_loops_nested_encoders_once(tiny_video_segmenter):
    import numpy as np

    frames = np.random.default_rng(0).integers(0, 256, size=(6, 40, 48, 3), dtype=np.uint8)
    result = tiny_video_segmenter.segment(frames, ["a dog"], budget=64, use_cache=False, max_new_tokens=3, mask_mode="none")
    top = result.timings["total"]
    stages = {k: v for k, v in result.timings.items() if k != "total"}
    assert result.forward_passes == 3 and top < sum(stages.values())  # encoders re-ran inside llm_generate
    assert top >= stages["llm_generate"] and result.wall_timings["total"] >= result.wall_timings["llm_generate"]


def _counted_flops(fn):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_sam_mask_decoder_flops_match_the_operations_it_runs():
    from litelvlm.bench.image import architecture_for
    from litelvlm.sam.encoder import GroundingEncoder

    arch = architecture_for("quick")
    sam = GroundingEncoder(arch.sam.to_sam_config()).eval()
    sam.sam.set_attn_implementation("eager")  # attention as matmuls, which the counter sees
    g, d = sam.embedding_size, sam.embed_dim
    image, pe, dense = torch.randn(1, d, g, g), sam.dense_positional_embedding(), sam.no_mask_dense_embedding()
    with torch.no_grad():
        counted = _counted_flops(lambda: sam.sam.mask_decoder(image_embeddings=image, image_positional_embeddings=pe,
                                                              sparse_prompt_embeddings=torch.randn(1, 1, 1, d),
                                                              dense_prompt_embeddings=dense, multimask_output=False))
    # transposed convs with kernel = stride = 2 touch one input pixel per output pixel (counted 4x before)
    assert glamm_stage_flops(arch, visual_tokens=64, text_tokens=10)["mask_decoder"] == counted


def test_sam2_stage_flops_match_the_operations_each_stage_runs():
    from dataclasses import replace

    from litelvlm.bench.flops import sam2_image_encoder_flops, sam2_mask_decoder_flops, sam2_memory_encoder_flops
    from video.sam2 import Sam2PixelDecoder, tiny_sam2_architecture
    from video.sam2.decoder import HeadOutput

    arch = replace(tiny_sam2_architecture(hidden_size=256), image_size=128)  # 14-wide windows on an 8x8 stage: padded
    decoder = Sam2PixelDecoder(arch.to_transformers())
    decoder.model.set_attn_implementation("eager")
    side = arch.image_size // 4
    x = torch.randn(1, 3, arch.image_size, arch.image_size)
    with torch.no_grad():
        assert _counted_flops(lambda: decoder.encode_frame(x)) == sam2_image_encoder_flops(arch)
        frame = decoder.encode_frame(x)
        head = HeadOutput(torch.randn(1, side, side), torch.randn(1, 256), torch.ones(1, 1))
        assert _counted_flops(lambda: decoder._encode_memory(frame, head, binarize=True)) == sam2_memory_encoder_flops(arch)
        tokens, pixels = decoder.empty_prompt_tokens(1), decoder._top_map(frame.top)
        table = _counted_flops(decoder.model.get_image_wide_positional_embeddings)  # the prompt encoder's, not the decoder's
        counted = _counted_flops(lambda: decoder.decode_heads(pixels, frame.high_res, tokens, True)) - table
        assert counted == sam2_mask_decoder_flops(arch, prompt_tokens=2)
    from video.model import hiera_large_sam2

    assert 1.7e12 < sam2_image_encoder_flops(hiera_large_sam2()) < 1.9e12  # ~0.9 T multiply-adds for Hiera-L at 1024 px


def test_sam2_cases_clips_and_agreement():
    import numpy as np

    from video.bench_sam2 import Sam2Case, mask_agreement, sam2_cases, sam2_rounds, small_object_frames

    cases = sam2_cases((256, None, 1024, 512), frames=16, objects=4, long_frames=64)
    assert cases[:6] == [Sam2Case("bench", 16, 1), Sam2Case("bench", 16, 4), Sam2Case("bench", 16, 4, 1024),
                         Sam2Case("bench", 16, 4, 512), Sam2Case("bench", 16, 4, 256), Sam2Case("bench", 64, 1)]
    assert [c.memory_budget for c in cases[6:]] == [None, 1024, 512, 256] and {c.clip for c in cases[6:]} == {"small object"}
    assert cases[4].reference == cases[1] and len(sam2_cases((None,), long_frames=None)) == 3
    from litelvlm.bench.image import SCALES
    from litelvlm.bench.video import SAM2_MEMORY_TOKENS
    from video.model import VideoGLaMMArchitecture

    for width, depth in SCALES.values():  # the CLI's bound on --memory-budget holds at every scale
        assert (VideoGLaMMArchitecture.full().scaled(width, depth).sam2.image_size // 16) ** 2 == SAM2_MEMORY_TOKENS
    frames = small_object_frames(6, size=(90, 120), radius=4)
    assert frames.shape == (6, 90, 120, 3) and frames.dtype == np.uint8
    white = [np.argwhere((f == 255).all(-1)) for f in frames]
    assert all(20 <= len(w) <= 60 for w in white)  # the disc (sample scene pixels are never pure white there)
    assert white[-1][:, 1].mean() - white[0][:, 1].mean() > 80  # it crosses the scene
    masks = np.zeros((2, 3, 4, 4), dtype=bool)
    masks[:, :, :2] = True
    other = masks.copy()
    other[0, 0] = False  # frame 0 is not compared
    other[1, 1:, :1] = False  # object 1: half the pixels on frames 1 and 2
    assert mask_agreement(masks, masks) == 1.0 and mask_agreement(other, masks) == 0.75
    rounds = sam2_rounds(ImageBenchSettings(repeats=3, max_repeats=9))  # two rounds, a third when they disagree
    assert (rounds.repeats, rounds.max_repeats, rounds.target_spread) == (2, 3, 0.10)
    assert sam2_rounds(ImageBenchSettings(sam2_max_repeats=1)).repeats == 1


def _sam2_row(objects, budget, ms, reference_ms, clip="bench"):
    return {"clip": clip, "frames": 16, "objects": objects, "memory_budget": budget, "propagation_ms": ms,
            "speedup_vs_all": {"propagation": reference_ms / ms}}


def test_whole_clip_rows_and_sam2_goals_come_from_the_measured_parts():
    from litelvlm.bench.report import check_goals, whole_clip_rows, whole_clip_table

    video = [{"method": "none", "budget": 576, "clip_budget": None, "e2e_ms": 500.0, "e2e_uncached_ms": 4000.0},
             {"method": "litelvlm", "budget": 81, "clip_budget": None, "e2e_ms": 200.0},
             {"method": "litelvlm-time", "budget": 81, "clip_budget": None, "e2e_ms": 150.0}]
    sam2 = {"frames": 16, "objects": 4, "rows": [_sam2_row(1, None, 300.0, 300.0), _sam2_row(4, None, 900.0, 900.0),
                                                  _sam2_row(4, 512, 250.0, 900.0), _sam2_row(1, 512, 100.0, 200.0, "small object")]}
    rows = whole_clip_rows({"video": video, "sam2": sam2})
    assert [(r["method"], r["cache"], r["memory_budget"], r["ms"]) for r in rows] == [
        ("none", False, None, 4900.0), ("none", True, None, 1400.0), ("litelvlm", True, None, 1100.0),
        ("litelvlm", True, 512, 450.0)]
    assert rows[-1]["speedup"] == 4900.0 / 450.0 and whole_clip_table(rows)[1][2] == "released no-cache loop"
    goals = {g["what"]: g for g in check_goals({"video": video, "sam2": sam2})}
    propagation = goals["SAM2 propagation x with memory budget 512 (16 frames, 4 objects, vs all memory tokens)"]
    assert propagation["value"] == 900.0 / 250.0 and propagation["met"] and propagation["bound"] == 3.0
    whole = goals["whole clip x: litelvlm 81 + memory budget 512 vs the unpruned model with the released no-cache loop (4 objects)"]
    assert whole["value"] == 4900.0 / 450.0 and whole["met"] and whole["bound"] == 2.5
    assert check_goals({"video": video}) == [] and whole_clip_rows({"video": video, "sam2": None}) == []


def test_memory_budget_option_is_checked_before_any_work(capsys):
    import pytest

    from litelvlm.cli import main

    for argv, message in [(["--memory-budget", "512"], "--memory-budget sets SAM2 rows of --video-masks"),
                          (["--sam2-long-clip", "0"], "--sam2-long-clip sets SAM2 rows of --video-masks"),
                          (["--video-masks", "--sam2-long-clip", "-1"], "--sam2-long-clip must be a number of frames"),
                          (["--video-masks", "--memory-budget", "all", "5000"], "--memory-budget goes up to 4096")]:
        assert main(["bench", "--quick", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    with pytest.raises(SystemExit):
        main(["bench", "--quick", "--video-masks", "--memory-budget", "0"])
    assert "expected a positive number of tokens or 'all', got '0'" in capsys.readouterr().err


def test_sam2_section_profiles_stages_budgets_and_goals_on_a_tiny_model(tiny_video_segmenter, monkeypatch, tmp_path):
    from litelvlm.bench import _print_sam2, measurement_setup, report
    from litelvlm.bench.report import bench_figure, check_goals, markdown_report, write_chart
    from litelvlm.bench.video import video_calls
    from video.bench import measure_video_section

    # the tiny SAM2 has 4 x 4 memory tokens per frame: budget 8 stands in for 512 (goal rows exist and are computed,
    # their values mean nothing at this size: never a timed assertion)
    monkeypatch.setattr(report, "SAM2_GOALS", ((8, 3.0),))
    monkeypatch.setattr(report, "WHOLE_CLIP_GOALS", ((81, 8, 2.5),))
    settings = ImageBenchSettings(scale="quick", repeats=1, warmup=0, video_budgets=(576, 81), video_methods=("litelvlm",),
                                  video_masks=True, memory_budgets=(None, 8, 4), sam2_objects=2, sam2_long_frames=20,
                                  sam2_max_repeats=1)
    bar = RecordingBar(video_calls(settings))
    with measurement_setup("cpu"):
        section = measure_video_section(settings, segmenter=tiny_video_segmenter, progress=bar)
    assert_filled_once(bar)  # the video and SAM2 sections' steps, planned before they ran
    rows = section["sam2"]["rows"]
    assert [(r["clip"], r["frames"], r["objects"], r["memory_budget"]) for r in rows] == [
        ("bench", 16, 1, None), ("bench", 16, 2, None), ("bench", 16, 2, 8), ("bench", 16, 2, 4), ("bench", 20, 1, None),
        ("small object", 16, 1, None), ("small object", 16, 1, 8), ("small object", 16, 1, 4)]
    for row in rows:
        assert row["propagation_ms"] >= sum(row["stage_ms"].values()) > 0 and row["round_ms"] == [row["propagation_ms"]]
        assert all(row["stage_ms"][s] > 0 and row["full_scale_gflops_per_unit"][s] > 0 for s in row["stage_ms"])
        assert (row["agreement_iou"] is None) == (row["memory_budget"] is None)
        assert row["agreement_iou"] is None or 0.0 <= row["agreement_iou"] <= 1.0
    flops = {r["memory_budget"]: r["full_scale_gflops_per_unit"]["sam2_memory_attention"] for r in rows[1:4]}
    assert flops[None] > flops[8] > flops[4]  # full-scale FLOPs of the rows' budgets (8 and 4 of 4096 tokens)
    assert rows[2]["speedup_vs_all"]["propagation"] == rows[1]["propagation_ms"] / rows[2]["propagation_ms"]
    video = section["video"]
    assert all(r["e2e_with_masks_ms"] == r["e2e_ms"] + rows[0]["propagation_ms"] for r in video)
    assert video[0]["method"] == "none" and video[0]["e2e_uncached_ms"] > video[0]["e2e_ms"]
    result = {"video": video, "sam2": section["sam2"], "scale": "quick", "device": "cpu", "clock": "process CPU time",
              "dtype": "float32"}
    goals = [g for g in check_goals(result) if g["section"] == "sam2"]
    assert [g["what"].split(":")[0].split(" (")[0] for g in goals] == ["SAM2 propagation x with memory budget 8", "whole clip x"]
    assert all(g["value"] > 0 for g in goals)
    lines = []
    _print_sam2(result, lines.append)
    assert any("RANDOM weights" in line for line in lines) and any(line.startswith("SAM2 section: 8 cases") for line in lines)
    assert "## Whole clip with SAM2 (2 objects)" in markdown_report(result)
    titles = [ax.get_title() for ax in bench_figure(result).axes if ax.get_visible()]
    assert titles == ["VideoGLaMM: LLM prefill, 16-frame clip", "VideoGLaMM: clip end to end (8-token answer)",
                      "VideoGLaMM SAM2: 16 frames, 2 objects"]
    assert write_chart(result, tmp_path / "bench.png") == tmp_path / "bench.png"

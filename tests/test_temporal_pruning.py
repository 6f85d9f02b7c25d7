"""Clip-level pruning: the interface in the video segmenter and litelvlm's time-aware LiteLVLM extension."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from litelvlm.pruning import get_method, litelvlm_select
from litelvlm.pruning.clip_level import ClipTokens, allocate_budget, block_members
from litelvlm.timing import StageTimer
from video.io import sample_frame_indices
from video.segmenter import _Call

FRAMES = np.random.default_rng(3).integers(0, 256, size=(8, 40, 48, 3), dtype=np.uint8)
CUT = int(np.argmax(sample_frame_indices(8, 16) >= 4))  # the first sampled position showing source frame 4


def _encoding(seg, frames=FRAMES):
    sampled = frames[sample_frame_indices(len(frames), seg.config.num_frames)]
    return seg._encode_clip(sampled, StageTimer())


def _call(seg, method, budget, clip_budget=None, text="the dog on the left"):
    selector = seg._selector(method) if isinstance(method, str) else method
    embeds = seg.pruner.text_embeds([text]) if selector.uses_text else None
    return _Call(selector, budget, clip_budget, embeds, StageTimer(), None, 1)


def test_without_reuse_and_with_all_video_tokens_it_is_per_frame_litelvlm(tiny_video_segmenter):
    """litelvlm-time (reuse off, all 64 video tokens) sends exactly per-frame LiteLVLM's cells-layout sequence."""
    seg = tiny_video_segmenter
    enc = _encoding(seg)
    time_aware = get_method("litelvlm-time", reuse_threshold=1.5, video_tokens=64)
    for budget in (84, 196):
        ours = seg._visual_sequence(enc, _call(seg, time_aware, budget), 0)
        per_frame = seg._visual_sequence(enc, _call(seg, "litelvlm", budget), 0)
        torch.testing.assert_close(ours.sequence, per_frame.sequence, rtol=1e-5, atol=1e-6)
        assert ours.image_counts == per_frame.image_counts == [budget // 4] * 16
        for f in range(16):
            assert torch.equal(ours.kept[f], per_frame.kept[f].sort().values)


def _video_selection_restated(seg, frames, video_tokens, pooled_scores):
    """litelvlm-time's video tokens per frame restated from ``pooled_scores(sim, ctx) -> (video_sim, video_ctx)``."""
    enc = _encoding(seg, frames)
    call = _call(seg, get_method("litelvlm-time", video_tokens=video_tokens), 84)
    visual = seg._visual_sequence(enc, call, 0)
    from litelvlm.pruning import context_scores, text_similarity

    sim = text_similarity(enc.frames.projected(), call.text_embeds)
    ctx = context_scores(enc.frames.query, enc.frames.key, enc.frames.value)
    video_start = sum(visual.image_counts)
    for f, record in enumerate(visual.frames):
        video_sim, video_ctx = pooled_scores(sim[f], ctx[f])
        expected = litelvlm_select(video_sim, video_ctx, video_tokens).sort().values
        assert torch.equal(record.video_cells, expected)
        torch.testing.assert_close(visual.sequence[video_start + video_tokens * f: video_start + video_tokens * (f + 1)],
                                   enc.video_tokens[f, expected])
    assert visual.video_count == 16 * video_tokens
    return visual


def test_on_square_frames_video_tokens_are_ranked_by_their_3x3_clip_blocks(tiny_video_segmenter):
    """A square frame: each 8x8 video token covers a 3x3 CLIP block; the block-averaged scores rank it (restated)."""
    blocks = block_members((24, 24), (8, 8))
    assert blocks.shape == (64, 9) and blocks[1].tolist() == [3, 4, 5, 27, 28, 29, 51, 52, 53]
    square = np.ascontiguousarray(FRAMES[:, :, :40])
    _video_selection_restated(tiny_video_segmenter, square, 5, lambda sim, ctx: (sim[:, blocks].mean(-1), ctx[blocks].mean(-1)))


def test_on_4_3_frames_video_tokens_are_ranked_by_the_clip_patches_covering_their_pixels(tiny_video_segmenter):
    """30 x 40 frames: CLIP crops frame columns 5..35, so video columns 0 and 7 are outside the crop (ranked last) and
    video token (i, j), j in 1..6, covers CLIP rows 3i..3i+2 and columns 4(j-1)..4(j-1)+3 (restated by hand)."""
    frames = np.random.default_rng(5).integers(0, 256, size=(8, 30, 40, 3), dtype=np.uint8)

    def by_hand(sim, ctx):
        sim_grid, ctx_grid = sim.view(-1, 24, 24), ctx.view(24, 24)
        video_sim = torch.full((sim.shape[0], 8, 8), math.inf)
        video_ctx = torch.full((8, 8), -math.inf)
        for i in range(8):
            for j in range(1, 7):
                rows, cols = slice(3 * i, 3 * i + 3), slice(4 * (j - 1), 4 * j)
                video_sim[:, i, j] = sim_grid[:, rows, cols].mean(dim=(1, 2))
                video_ctx[i, j] = ctx_grid[rows, cols].mean()
        return video_sim.view(-1, 64), video_ctx.view(64)

    visual = _video_selection_restated(tiny_video_segmenter, frames, 5, by_hand)
    assert not any(set(r.video_cells.tolist()) & {8 * i + j for i in range(8) for j in (0, 7)} for r in visual.frames)


def test_unchanged_frames_send_only_what_changed(tiny_video_segmenter):
    """A static clip: after frame 0 every kept cell is reused, but each frame still sends min_cells; a frame that
    changes sends its changed cells again."""
    seg = tiny_video_segmenter
    static = np.repeat(FRAMES[:1], 8, axis=0)
    enc = _encoding(seg, static)
    visual = seg._visual_sequence(enc, _call(seg, get_method("litelvlm-time", min_cells=2), 84), 0)
    assert visual.image_counts == [21] + [2] * 15
    for record in visual.frames[1:]:
        assert len(record.reused_cells) == 19 and not set(record.reused_cells.tolist()) & set(record.image_cells.tolist())
    changing = static.copy()
    changing[4:] = FRAMES[4]  # a cut: source frame 4 is first sampled at position CUT
    counts = seg._visual_sequence(_encoding(seg, changing), _call(seg, get_method("litelvlm-time", min_cells=2), 84), 0).image_counts
    assert counts[0] == 21 and counts[CUT] > 2 and counts[1] == counts[CUT + 1] == 2


def _cells_clip(cell_states: torch.Tensor, low_cells: list[tuple[int, ...]]) -> ClipTokens:
    """ClipTokens whose 144 cells have the mean states ``cell_states`` (F, 144, D), every patch of a cell alike; per
    frame f the text similarity is lowest (-1) on ``low_cells[f]`` (the cells LiteLVLM keeps), 0 elsewhere."""
    frames, _, dim = cell_states.shape
    members = block_members((24, 24), (12, 12))  # (144, 4): the patches of each 2x2 cell
    patches = torch.zeros(frames, 576, dim)
    patches[:, members] = cell_states[:, :, None, :]
    similarity = torch.zeros(frames, 1, 576)
    for f, cells in enumerate(low_cells):
        similarity[f, 0, members[list(cells)].reshape(-1)] = -1
    tokens = ClipTokens(SimpleNamespace(grid=(24, 24), patches=patches), torch.zeros(1, 4), torch.zeros(frames, 144, 4),
                        (12, 12), torch.zeros(frames, 64, 4), (8, 8))
    tokens._scores.update(similarity=similarity, context=torch.zeros(frames, 576))
    return tokens


def _sent_frames(selections, cell: int) -> list[int]:
    return [f for f, s in enumerate(selections) if cell in s.image_cells.tolist()]


def test_reuse_compares_with_the_copy_the_llm_received_not_with_the_previous_frame():
    """Cell 0 drifts 18.2 degrees a frame: cosine 0.95 (>= 0.9) between neighbours, 0.805 over two frames. Compared
    with frame f-1 it would be reused forever after frame 0 (its copy drifting away); compared with the copy the
    LLM last received it is resent every other frame. Cell 1 changes completely every frame (the min_cells send)."""
    frames, theta = 16, math.acos(0.95)
    states = torch.zeros(frames, 144, 6)
    states[:, :, 5] = 1  # every other cell: static
    for f in range(frames):
        states[f, 0] = torch.tensor([math.cos(f * theta), math.sin(f * theta), 0, 0, 0, 0])
        states[f, 1] = torch.eye(6)[2 + f % 2]
    selections = get_method("litelvlm-time", min_cells=1, video_tokens=1).select_clip(_cells_clip(states, [(0, 1)] * frames), 8)
    assert _sent_frames(selections, 1) == list(range(frames))
    assert _sent_frames(selections, 0) == list(range(0, frames, 2))
    last = 0
    for f, selection in enumerate(selections):  # what the LLM holds for a reused cell stays within the threshold
        if 0 in selection.reused_cells.tolist():
            assert float(torch.cosine_similarity(states[f, 0], states[last, 0], dim=0)) >= 0.9
        else:
            last = f


def test_a_cell_is_reused_from_its_last_sent_copy_even_when_the_previous_frame_dropped_it():
    """Cell 0 is kept at frame 0, dropped at frames 1 and 2, kept again at frame 3 unchanged: the LLM still holds its
    frame-0 token, so frame 3 reuses it."""
    states = torch.zeros(4, 144, 6)
    states[:, :, 5] = 1
    for f in range(4):
        states[f, 1] = torch.eye(6)[2 + f % 2]  # cell 1 changes every frame: the min_cells send
    low = [(0, 1), (1, 2), (1, 2), (0, 1)]
    selections = get_method("litelvlm-time", min_cells=1, video_tokens=1).select_clip(_cells_clip(states, low), 8)
    assert _sent_frames(selections, 0) == [0] and selections[3].reused_cells.tolist() == [0]
    assert _sent_frames(selections, 2) == [1] and selections[2].reused_cells.tolist() == [2]


def test_at_81_tokens_per_frame_the_llm_sees_at_most_464_visual_tokens(tiny_video_segmenter):
    """16 frames x (21 cells + 8 video tokens) at most: the time-aware extension's bound (per-frame LiteLVLM: 1,360)."""
    seg = tiny_video_segmenter
    result = seg.segment(FRAMES, ["the dog"], budget=81, method="litelvlm-time", answer="Sure, [SEG].", mask_mode="none")
    per_frame = seg.segment(FRAMES, ["the dog"], budget=81, answer="Sure, [SEG].", mask_mode="none")
    assert per_frame.llm_visual_tokens == [16 * (21 + 64)] and result.llm_visual_tokens[0] <= 16 * (21 + 8)
    assert len(result.frame_tokens[0]) == 16 and len(result.kept[0]) == 16 and result.method == "litelvlm-time"


def test_a_clip_budget_is_spent_where_frames_change(tiny_video_segmenter):
    seg = tiny_video_segmenter
    changing = np.repeat(FRAMES[:1], 8, axis=0)
    changing[4:] = FRAMES[4]
    no_reuse = get_method("litelvlm-time", reuse_threshold=1.5, video_tokens=4, min_cells=2)
    visual = seg._visual_sequence(_encoding(seg, changing), _call(seg, no_reuse, 81, clip_budget=300), 0)
    assert sum(visual.image_counts) + visual.video_count == 300
    assert visual.image_counts[0] > visual.image_counts[CUT] > visual.image_counts[CUT + 1] == visual.image_counts[1] == 2


def test_budget_allocation():
    assert allocate_budget(10, torch.tensor([1.0, 1.0]), 1, 144) == [5, 5]
    assert allocate_budget(12, torch.tensor([3.0, 1.0, 0.0]), 2, 144) == [7, 3, 2]  # 2 each, then 6 in proportion 3:1:0
    assert allocate_budget(300, torch.tensor([1.0, 0.0, 0.0]), 2, 144) == [144, 78, 78]  # capped, the rest spread evenly
    with pytest.raises(ValueError, match="cannot give each of 3 frames its minimum"):
        allocate_budget(5, torch.ones(3), 2, 144)


def test_clip_level_methods_are_refused_where_they_cannot_run(tiny_video_segmenter, tiny_segmenter):
    with pytest.raises(ValueError, match=r"a clip budget needs a clip-level method \(.*litelvlm-time.*\); 'litelvlm' prunes each"):
        tiny_video_segmenter.segment(FRAMES, ["a dog"], budget=81, clip_budget=400, answer="Sure, [SEG].")
    with pytest.raises(ValueError, match="positive number of LLM visual tokens per clip, got 0"):
        tiny_video_segmenter.segment(FRAMES, ["a dog"], budget=81, clip_budget=0, method="litelvlm-time")
    with pytest.raises(ValueError, match="selects over a whole video clip"):
        tiny_segmenter.segment(FRAMES[0], ["a dog"], budget=64, method="litelvlm-time")
    with pytest.raises(ValueError, match="video_tokens must be >= 1"):
        get_method("litelvlm-time", video_tokens=0)


def test_the_readme_example_of_a_new_temporal_method_runs(tiny_video_segmenter):
    """The README's example (also in litelvlm.pruning.clip_level's docstring): every other frame sends its CLIP stream."""
    import re
    from pathlib import Path

    from litelvlm.pruning import clip_level
    from litelvlm.pruning.methods import _REGISTRY

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (example,) = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "every-other-frame" in block]
    assert example.split("import torch\n", 1)[1].strip() in clip_level.__doc__.replace("\n    ", "\n")
    try:
        exec(example, {})
        result = tiny_video_segmenter.segment(FRAMES, ["a dog"], budget=576, method="every-other-frame",
                                              answer="Sure, [SEG].", mask_mode="none")
    finally:
        _REGISTRY.pop("every-other-frame", None)
    assert result.llm_visual_tokens == [8 * 144 + 16 * 64] and result.clip_tokens_per_frame == 72
    assert [len(f.image_cells) for f in result.frame_tokens[0]] == [144, 0] * 8


def test_the_video_harness_runs_a_clip_level_method_with_a_clip_budget(tmp_path, tiny_videoglamm_kwargs):
    from eval.common import load_stats
    from eval.rvos.cli import main
    from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_mevis

    write_synthetic_mevis(tmp_path / "data", SyntheticRVOSConfig(num_videos=1, num_frames=4, num_objects=1))
    argv = ["--benchmark", "mevis", "--dataset_dir", str(tmp_path / "data"), "--results_path", str(tmp_path / "res"),
            "--version", str(tiny_videoglamm_kwargs["checkpoint"]), "--vision-tower", str(tiny_videoglamm_kwargs["vision_tower"]),
            "--video-tower", str(tiny_videoglamm_kwargs["video_tower"]), "--num_retain_tokens", "81", "--preset", "default",
            "--method", "litelvlm-time", "--clip-budget", "300"]
    assert main(argv) == 0
    entry = load_stats(tmp_path / "res")[-1]
    assert entry["method"] == "litelvlm-time" and entry["clip_budget"] == 300 and entry["run_id"].endswith("_cb300_default")
    assert entry["visual_tokens_per_frame"] <= 300 / 16 + 1e-6


def test_the_video_harness_refuses_a_clip_budget_for_a_per_frame_method_before_loading(tmp_path, capsys):
    from eval.rvos.cli import main

    argv = ["--benchmark", "mevis", "--dataset_dir", str(tmp_path / "no-data"), "--results_path", str(tmp_path / "res"),
            "--version", str(tmp_path / "no-checkpoint"), "--num_retain_tokens", "81", "--method", "litelvlm", "--clip-budget", "300"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "a clip budget needs a clip-level method" in err and "Traceback" not in err and not (tmp_path / "res").exists()


@pytest.mark.parametrize("method, clip_budget", [("dycoke", 1200), ("fastvid", 300), ("prunevid", 300)])
def test_the_video_harness_runs_every_video_baseline_end_to_end(tmp_path, tiny_videoglamm_kwargs, method, clip_budget):
    """Generation (the default preset), scoring and records for each clip-level baseline on the tiny VideoGLaMM."""
    import warnings

    from eval.common import load_stats
    from eval.common.records import read_jsonl
    from eval.rvos.cli import main
    from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_mevis

    write_synthetic_mevis(tmp_path / "data", SyntheticRVOSConfig(num_videos=1, num_frames=4, num_objects=2))
    argv = ["--benchmark", "mevis", "--dataset_dir", str(tmp_path / "data"), "--results_path", str(tmp_path / "res"),
            "--version", str(tiny_videoglamm_kwargs["checkpoint"]), "--vision-tower", str(tiny_videoglamm_kwargs["vision_tower"]),
            "--video-tower", str(tiny_videoglamm_kwargs["video_tower"]), "--num_retain_tokens", "81", "--preset", "default",
            "--method", method, "--clip-budget", str(clip_budget)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 2-layer tiny LLM is too shallow for the released layers
        assert main(argv) == 0
    records = [r for p in (tmp_path / "res" / "records").glob("*.jsonl") for r in read_jsonl(p)[0]]
    assert len(records) == 3 and all(r["status"] in ("ok", "no_seg") for r in records)  # 2 objects + their union
    entry = load_stats(tmp_path / "res")[-1]
    assert entry["method"] == method and entry["clip_budget"] == clip_budget and entry["run_id"].endswith(f"_cb{clip_budget}_default")


def test_each_expression_gets_the_in_llm_plan_made_for_its_own_visual_tokens(tiny_video_segmenter):
    """A clip-level method whose selection (so whose plan) differs between expressions: every prefill and every
    generation runs with the plan of the visual sequence it was made for."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from litelvlm.pruning import ClipSelector, FrameSelection
    from litelvlm.pruning.methods import _REGISTRY, register_method

    seen = []

    @dataclass
    class CountingPlan:
        num_visual: int

        def prefill(self, llm, batch, prompt_lengths=None):
            for row, mask in zip(batch.token_ids, batch.attention_mask):
                seen.append((self.num_visual, int((row[mask.bool()] == -1).sum())))
            hidden = llm.model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask).last_hidden_state
            return SimpleNamespace(hidden=hidden, token_ids=batch.token_ids)

        def generation_forward(self, llm, prompt_token_ids, use_cache):
            seen.append((self.num_visual, int((prompt_token_ids == -1).sum())))
            return None  # the plain forward

    @register_method("test-alternating-cells")
    class AlternatingCells(ClipSelector):
        calls = 0

        def select_clip(self, tokens, budget, clip_budget=None):
            AlternatingCells.calls += 1
            cells = torch.arange(144 if AlternatingCells.calls % 2 else 36)
            return [FrameSelection.gather(tokens, f, cells, torch.arange(64)) for f in range(tokens.num_frames)]

        def llm_plan(self, image_counts, video_count):
            return CountingPlan(sum(image_counts) + video_count)

    try:
        forced = tiny_video_segmenter.segment(FRAMES, ["a dog", "a cat"], budget=81, method="test-alternating-cells",
                                              answer="Sure, [SEG].", mask_mode="none")
        generated = tiny_video_segmenter.segment(FRAMES, ["a dog", "a cat"], budget=81, method="test-alternating-cells",
                                                 max_new_tokens=2, mask_mode="none")
    finally:
        _REGISTRY.pop("test-alternating-cells", None)
    assert forced.llm_visual_tokens == generated.llm_visual_tokens == [16 * (144 + 64), 16 * (36 + 64)]
    assert seen == [(16 * (144 + 64),) * 2, (16 * (36 + 64),) * 2] * 2  # one prefill per expression, then one generation each

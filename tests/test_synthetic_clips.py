"""Synthetic clips from the sample scene, and litelvlm-time's token counts on them."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from litelvlm.pruning import ClipTokens, FrameSelection
from video.synthetic_clips import (
    CLIP_KINDS,
    PAN_STEPS,
    TimeTokens,
    count_time_tokens,
    synthetic_clip,
    synthetic_clips,
    time_tokens,
    time_tokens_per_clip_kind,
)

SIZE = (48, 64)


def test_every_kind_has_the_asked_shape():
    clips = synthetic_clips(num_frames=6, size=SIZE)
    assert tuple(clips) == CLIP_KINDS
    for kind, frames in clips.items():
        assert frames.shape == (6, 48, 64, 3) and frames.dtype == np.uint8, kind
        assert frames.std() > 10, kind  # a picture, not a flat fill


def test_static_is_static_and_noise_is_not():
    static = synthetic_clip("static", 5, SIZE)
    assert all(np.array_equal(static[0], frame) for frame in static)
    noise = synthetic_clip("noise", 5, SIZE, seed=1)
    assert not np.array_equal(noise[0], noise[1]) and np.array_equal(noise, synthetic_clip("noise", 5, SIZE, seed=1))


@pytest.mark.parametrize("kind", ["slow_pan", "fast_pan"])
def test_a_pan_slides_the_scene_left_by_its_step(kind):
    frames = synthetic_clip(kind, 5, SIZE)
    shift = max(1, round(PAN_STEPS[kind] * SIZE[1]))
    for a, b in zip(frames[:-1], frames[1:]):
        assert np.array_equal(b[:, : SIZE[1] - shift], a[:, shift:]) and not np.array_equal(a, b)
    assert round(PAN_STEPS["fast_pan"] * SIZE[1]) > round(PAN_STEPS["slow_pan"] * SIZE[1]) >= 0


def test_the_moving_object_moves_and_nothing_else_changes():
    frames = synthetic_clip("moving_object", 8, SIZE)
    background = synthetic_clip("static", 1, SIZE)[0]
    side = min(SIZE) // 8
    lefts = []
    for frame in frames:
        changed = np.any(frame != background, axis=-1)
        rows, cols = np.nonzero(changed)
        assert rows.min() >= (SIZE[0] - side) // 2 and rows.max() < (SIZE[0] - side) // 2 + side
        assert cols.max() - cols.min() < side
        lefts.append(cols.min())
    assert lefts == sorted(lefts) and lefts[0] < side and lefts[-1] > SIZE[1] - 2 * side  # left to right across


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="unknown clip kind 'zoom'"):
        synthetic_clip("zoom")
    with pytest.raises(ValueError, match="size must be"):
        synthetic_clip("static", 4, (8, 64))
    with pytest.raises(ValueError, match="num_frames must be"):
        synthetic_clip("static", 0)


def test_litelvlm_time_tokens_per_clip_kind(tiny_video_segmenter):
    """Per kind: cells sent + reused = 16 x 21 at budget 81 and 8 video tokens a frame; the static clip reuses all but
    min_cells from frame 1 on, the noise clip reuses less."""
    rows = {r.kind: r for r in time_tokens_per_clip_kind(tiny_video_segmenter, budget=81, size=SIZE, kinds=("static", "noise"))}
    assert set(rows) == {"static", "noise"}
    for row in rows.values():
        assert row.frames == 16 and row.cells_sent + row.cells_reused == 16 * 21 and row.video_tokens == 16 * 8
        assert row.total == row.cells_sent + row.video_tokens
    assert rows["static"].cells_sent == 21 + 15 * 2
    assert rows["noise"].cells_reused < rows["static"].cells_reused
    with pytest.raises(ValueError, match="prunes each frame on its own"):
        time_tokens_per_clip_kind(tiny_video_segmenter, selector="litelvlm", kinds=("static",))


def test_counting_frame_records_and_a_clip_tokens_run():
    empty = torch.zeros(0, dtype=torch.long)
    records = [FrameSelection(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor([1, 2, 3]), torch.tensor([0, 5]), empty),
               FrameSelection(torch.zeros(1, 4), torch.zeros(2, 4), torch.tensor([7]), torch.tensor([0, 5]), empty, torch.tensor([1, 2]))]
    assert count_time_tokens(records, "two") == TimeTokens("two", 2, 4, 2, 4)
    frames = 4  # a static clip of ClipTokens: every kept cell after frame 0 is reused but min_cells
    patches = torch.randn(1, 576, 8).expand(frames, -1, -1)
    tokens = ClipTokens(SimpleNamespace(grid=(24, 24), patches=patches), torch.zeros(1, 4), torch.zeros(frames, 144, 4), (12, 12),
                        torch.zeros(frames, 64, 4), (8, 8))
    tokens._scores.update(similarity=torch.randn(1, 1, 576).expand(frames, -1, -1), context=torch.zeros(frames, 576))
    assert time_tokens(tokens, 40, "litelvlm-time:min_cells=3", kind="static") == TimeTokens("static", 4, 10 + 3 * 3, 3 * 7, 4 * 8)

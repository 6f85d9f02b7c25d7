"""The VideoGLaMM path on a tiny random checkpoint: budgets, text reuse, masks, decoding, inputs."""

import math

import numpy as np
import pytest
import torch

from litelvlm.testing.llm import scripted_head
from video.io import read_video, write_mp4

TEACHER = {"answer": "Sure, [SEG]."}


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, size=(6, 40, 56, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "budget, layout, clip_tokens",
    [(576, "cells", 144), (196, "cells", 49), (81, "cells", 21), (81, "unpooled", 81), (196, "regrid", 144), (None, "cells", 144)],
)
def test_every_frame_keeps_exactly_budget_clip_tokens(tiny_video_segmenter, frames, budget, layout, clip_tokens):
    result = tiny_video_segmenter.segment(frames, ["the dog"], budget=budget, layout=layout, **TEACHER)
    kept = result.kept[0]
    assert kept.shape == (16, budget or 576)
    assert all(len(set(row.tolist())) == kept.shape[1] for row in kept)
    assert result.clip_tokens_per_frame == clip_tokens
    assert result.visual_tokens_per_frame == clip_tokens + 64
    assert result.masks.shape == (1, 6, 40, 56) and result.masks.dtype == bool and result.has_seg == [True]


def test_text_tower_runs_once_per_video_across_clips(tiny_video_segmenter, frames):
    before = tiny_video_segmenter.pruner.text_calls
    result = tiny_video_segmenter.segment(frames, ["the dog", "a red car"], budget=196, clip_length=4, **TEACHER)
    assert tiny_video_segmenter.pruner.text_calls - before == 1 == result.text_tower_calls
    assert result.kept[0].shape == (32, 196)  # two clips of 16 sampled frames
    assert result.masks.shape == (2, 6, 40, 56)


def test_teacher_forced_is_deterministic_and_framewise_mode_runs(tiny_video_segmenter, frames):
    a = tiny_video_segmenter.segment(frames, ["the cat"], budget=81, **TEACHER)
    b = tiny_video_segmenter.segment(frames, ["the cat"], budget=81, **TEACHER)
    assert np.array_equal(a.masks, b.masks) and torch.equal(a.kept[0], b.kept[0])
    framewise = tiny_video_segmenter.segment(frames, ["the cat"], budget=81, mask_mode="framewise", **TEACHER)
    assert framewise.masks.shape == a.masks.shape


def _generate(segmenter, frames, script, **options):
    with scripted_head(segmenter.model.llm, script):
        return segmenter.segment(frames, ["the dog"], budget=81, max_new_tokens=6, **options)


def test_kv_cache_decoding_equals_released_no_cache_loop(tiny_video_segmenter, frames):
    seg = tiny_video_segmenter
    eos = min(seg.eos_token_ids)
    script = [5, 9, seg.seg_token_id, 7, eos]
    cached = _generate(seg, frames, script)
    uncached = _generate(seg, frames, script, use_cache=False)
    assert cached.has_seg == uncached.has_seg == [True]
    assert cached.answers == uncached.answers and cached.forward_passes == uncached.forward_passes == 5
    assert np.array_equal(cached.masks, uncached.masks)
    assert "llm_generate" in cached.timings and cached.timings["clip_vision"] < uncached.timings["clip_vision"]


def test_no_seg_means_empty_masks_and_says_so(tiny_video_segmenter, frames):
    seg = tiny_video_segmenter
    result = _generate(seg, frames, [5, 9, min(seg.eos_token_ids)])
    assert result.has_seg == [False] and not result.masks.any() and result.masks.shape == (1, 6, 40, 56)


def test_mp4_and_jpeg_folder_inputs(tiny_video_segmenter, frames, tmp_path):
    from PIL import Image

    mp4 = write_mp4(frames, tmp_path / "clip.mp4", fps=5)
    video, names, fps = read_video(mp4)
    assert video.shape == frames.shape and fps == 5 and names[0] == "00000"
    folder = tmp_path / "jpegs"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg")
    from_folder, names, _ = read_video(folder)
    assert from_folder.shape == frames.shape and names == [f"{i:05d}" for i in range(6)]
    for clip in (video, from_folder):
        assert tiny_video_segmenter.segment(clip, ["the dog"], budget=81, **TEACHER).masks.shape == (1, 6, 40, 56)


def test_bad_inputs_are_named(tiny_video_segmenter, frames, tmp_path):
    seg = tiny_video_segmenter
    with pytest.raises(ValueError, match="no expressions"):
        seg.segment(frames, [])
    with pytest.raises(ValueError, match="uint8"):
        seg.segment(frames.astype(np.float32), ["x"])
    with pytest.raises(ValueError, match="square budget"):
        seg.segment(frames, ["x"], budget=99, layout="regrid", **TEACHER)
    with pytest.raises(ValueError, match="layout must be"):
        seg.segment(frames, ["x"], budget=81, layout="diagonal")
    with pytest.raises(FileNotFoundError, match="video not found"):
        read_video(tmp_path / "missing.mp4")
    assert math.ceil(81 / 4) == 21

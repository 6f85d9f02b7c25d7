"""Which CLIP patches cover each video token: exact overlaps against hand-computed numbers, and the real processor."""

from fractions import Fraction
from types import SimpleNamespace

import math

import numpy as np
import pytest
import torch

from litelvlm.pruning.clip_level import ClipTokens, block_members
from litelvlm.pruning.stream_geometry import ClipView, stream_overlap


def _patch(row: int, col: int) -> int:
    return row * 24 + col


def _weights(overlap, token: int) -> dict[int, float]:
    indices, weights = overlap.patches(token)
    return dict(zip(indices.tolist(), weights.tolist()))


def test_square_frames_reduce_exactly_to_the_3x3_blocks():
    blocks = block_members((24, 24), (8, 8))
    for size in ((336, 336), (500, 500), (48, 48)):
        weights = stream_overlap(size).weights
        for token in range(64):
            assert weights[token].nonzero().flatten().tolist() == blocks[token].tolist()
        assert torch.equal(weights[weights > 0], torch.full((64 * 9,), 1 / 9, dtype=torch.float64))


def test_a_4_3_frame_by_hand():
    """480 x 640: CLIP resizes to 336 x 448 and crops columns 56..392, i.e. pixels 80..560 of the frame; a CLIP
    patch is 20 x 20 frame pixels, a video token 60 rows x 80 columns."""
    overlap = stream_overlap((480, 640))
    assert _weights(overlap, 0) == {} and _weights(overlap, 7) == {}  # corner tokens: columns 0..80 and 560..640
    assert _weights(overlap, 8 * 5 + 7) == {}  # any token of the last column
    # token (0, 1): rows 0..60 = CLIP rows 0..2, columns 80..160 = CLIP columns 0..3; each patch 400 / 4800 of it
    assert _weights(overlap, 1) == pytest.approx({_patch(r, c): 1 / 12 for r in range(3) for c in range(4)}, abs=1e-15)
    # centre token (3, 3): rows 180..240 = CLIP rows 9..11, columns 240..320 = CLIP columns 8..11
    assert _weights(overlap, 3 * 8 + 3) == pytest.approx({_patch(r, c): 1 / 12 for r in range(9, 12) for c in range(8, 12)}, abs=1e-15)
    coverage = overlap.coverage.view(8, 8)
    assert torch.equal(coverage[:, [0, 7]], torch.zeros(8, 2, dtype=torch.float64))
    torch.testing.assert_close(coverage[:, 1:7], torch.ones(8, 6, dtype=torch.float64))


def test_a_16_9_frame_by_hand():
    """336 x 597 (about 16:9, no resize): CLIP crops columns 130..466; a video token is 42 rows x 74.625 columns."""
    overlap = stream_overlap((336, 597))
    assert _weights(overlap, 0) == {}
    # token (0, 1): columns 74.625..149.25 -> inside the crop 130..149.25: CLIP column 0 (130..144) fully, column 1
    # (144..158) for 5.25 pixels; rows 0..42 = CLIP rows 0..2 (a third each)
    expected = {}
    for r in range(3):
        expected[_patch(r, 0)] = 14 / 74.625 / 3
        expected[_patch(r, 1)] = 5.25 / 74.625 / 3
    assert _weights(overlap, 1) == pytest.approx(expected, rel=1e-12)
    assert float(overlap.coverage[1]) == pytest.approx(19.25 / 74.625, rel=1e-12)  # a quarter: the crop cuts it
    # token (0, 6): columns 447.75..522.375 -> 447.75..466: CLIP column 22 (438..452) for 4.25, column 23 for 14
    expected = {_patch(r, c): w / 74.625 / 3 for r in range(3) for c, w in ((22, 4.25), (23, 14.0))}
    assert _weights(overlap, 6) == pytest.approx(expected, rel=1e-12)
    # centre token (4, 4): rows 168..210 = CLIP rows 12..14; columns 298.5..373.125 = CLIP columns 12..17
    columns = {12: 13.5, 13: 14.0, 14: 14.0, 15: 14.0, 16: 14.0, 17: 5.125}
    expected = {_patch(r, c): w / 74.625 / 3 for r in range(12, 15) for c, w in columns.items()}
    assert _weights(overlap, 4 * 8 + 4) == pytest.approx(expected, rel=1e-12)
    assert float(overlap.coverage[4 * 8 + 4]) == pytest.approx(1.0, abs=1e-12)


def test_a_portrait_frame_by_hand():
    """640 x 480 (3:4): CLIP resizes to 448 x 336 and crops rows 56..392, i.e. rows 80..560 of the frame."""
    overlap = stream_overlap((640, 480))
    assert all(_weights(overlap, t) == {} for t in (*range(8), *range(56, 64)))  # first and last rows of tokens
    # token (1, 0): rows 80..160 = CLIP rows 0..3, columns 0..60 = CLIP columns 0..2
    assert _weights(overlap, 8) == pytest.approx({_patch(r, c): 1 / 12 for r in range(4) for c in range(3)}, abs=1e-15)
    torch.testing.assert_close(overlap.coverage.view(8, 8)[1:7], torch.ones(6, 8, dtype=torch.float64))


def test_the_processor_rounding():
    """The long side is truncated (int(336 * 640 / 360) = 597) and the crop offset floored ((597 - 336) // 2)."""
    view = ClipView()
    assert view.resized((360, 640)) == (336, 597) and view.crop_origin((360, 640)) == (0, 130)
    assert view.resized((640, 360)) == (597, 336) and view.crop_origin((640, 360)) == (130, 0)
    overlap = stream_overlap((360, 640))
    left = Fraction(130 * 640, 597)  # the crop's first column in frame pixels
    assert float(overlap.coverage[1]) == pytest.approx(float((160 - left) / 80), rel=1e-12)


def test_the_geometry_matches_what_the_clip_processor_does():
    """Paint one video token white on a 16:9 frame, run CLIP's processor: each patch's white share is its overlap."""
    from transformers import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                      image_mean=[0.0] * 3, image_std=[1.0] * 3)
    view = ClipView.of(processor)
    assert view == ClipView(336, 336)
    height, width = 360, 640
    overlap = stream_overlap((height, width), view=view)
    for token in (1, 4 * 8 + 4, 6):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        i, j = divmod(token, 8)
        frame[i * height // 8:(i + 1) * height // 8, j * width // 8:(j + 1) * width // 8] = 255
        pixels = processor(images=[frame], return_tensors="pt").pixel_values[0, 0].double()  # (336, 336) in [0, 1]
        white = pixels.view(24, 14, 24, 14).mean(dim=(1, 3)).reshape(-1)  # per CLIP patch
        token_area = (height / 8) * (width / 8)
        patch_area = (14 * height / 336) * (14 * width / 597)  # a patch in frame pixels
        expected = overlap.weights[token] * token_area / patch_area
        torch.testing.assert_close(white, expected, atol=0.02, rtol=0)  # bicubic blur at the edges


def test_pooling_is_the_overlap_weighted_mean_and_uncovered_tokens_get_the_fill():
    overlap = stream_overlap((480, 640))
    scores = torch.arange(576, dtype=torch.float32).view(1, 576)
    pooled = overlap.pool(scores, uncovered=-math.inf)
    assert pooled.dtype == torch.float32 and pooled.shape == (1, 64)
    grid = scores.view(24, 24)
    assert float(pooled[0, 3 * 8 + 3]) == pytest.approx(float(grid[9:12, 8:12].mean()))
    assert float(pooled[0, 0]) == -math.inf and float(pooled[0, 7]) == -math.inf
    partial = stream_overlap((336, 597)).pool(scores, uncovered=0.0)  # the covered part's weighted mean
    assert float(partial[0, 1]) == pytest.approx((14 * (0 + 24 + 48) + 5.25 * (1 + 25 + 49)) / (3 * 19.25), rel=1e-6)


def test_clip_tokens_use_the_frame_size_and_default_to_square():
    frames = SimpleNamespace(grid=(24, 24))
    streams = (torch.zeros(2, 144, 4), (12, 12), torch.zeros(2, 64, 4), (8, 8))
    square = ClipTokens(frames, None, streams[0], streams[1], streams[2], streams[3])
    wide = ClipTokens(frames, None, *streams, frame_size=(480, 640))
    assert torch.equal(square.video_overlap().weights, stream_overlap((336, 336)).weights)
    assert torch.equal(wide.video_overlap().weights, stream_overlap((480, 640)).weights)
    scores = torch.rand(2, 576)
    assert torch.isinf(wide.video_scores(scores, uncovered=math.inf)[:, 0]).all()


@pytest.mark.parametrize("size", [(0, 10), (10,), "480x640", (480.0, 640), (True, 3)])
def test_bad_frame_sizes_are_refused(size):
    with pytest.raises(ValueError, match="frame_size must be"):
        stream_overlap(size)


def test_bad_clip_views_are_refused():
    with pytest.raises(ValueError, match="pads the frame"):
        ClipView(224, 336)
    with pytest.raises(ValueError, match="positive int"):
        ClipView(0, 0)
    with pytest.raises(ValueError, match="crop a square"):
        ClipView.of(SimpleNamespace(size={"height": 336, "width": 336}, crop_size={"height": 336, "width": 336}))

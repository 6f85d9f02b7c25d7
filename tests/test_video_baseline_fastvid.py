"""FastVID (clip-level baseline): the released rules restated independently (numpy, explicit loops) and checked on
random tensors, then end to end on the tiny VideoGLaMM."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from litelvlm.pruning import check_clip_budget, get_method, method_from_spec
from litelvlm.pruning.baselines import video_fastvid as fv  # importing registers "fastvid"
from litelvlm.pruning.clip_level import ClipTokens, default_clip_budget
from litelvlm.pruning.stream_geometry import ClipView
from litelvlm.timing import StageTimer
from video.io import sample_frame_indices

FRAMES = np.random.default_rng(3).integers(0, 256, size=(8, 40, 48, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------- restatement (numpy, loops)
def ref_segments(features, c, tau):
    g = features / np.linalg.norm(features, axis=1, keepdims=True)
    sims = [float(np.dot(g[t], g[t + 1])) for t in range(len(g) - 1)]
    by_similarity = sorted(range(len(sims)), key=lambda t: (sims[t], t))
    cuts = set(by_similarity[: c - 1]) | {t for t, s in enumerate(sims) if s < tau}
    sizes, length = [], 0
    for t in range(len(g)):
        length += 1
        if t in cuts or t == len(g) - 1:
            sizes.append(length)
            length = 0
    return sizes


def ref_dpc(x, k=4):
    m, dim = x.shape
    dist = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            dist[i, j] = math.sqrt(float(np.sum((x[i] - x[j]) ** 2))) / math.sqrt(dim)
    density = np.array([math.exp(-float(np.mean(np.sort(dist[i])[:k] ** 2))) for i in range(m)])
    delta = np.zeros(m)
    for i in range(m):
        higher = [dist[i, j] for j in range(m) if density[j] > density[i] or (density[j] == density[i] and j < i)]
        delta[i] = min(higher) if higher else dist.max()
    return density, delta, density * delta


def ref_merge(anchors, pool, beta):
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    assign = []
    for token in pool:
        sims = [float(np.dot(unit(token), unit(a))) for a in anchors]
        assign.append(int(np.argmax(sims)))
    merged = []
    for a, anchor in enumerate(anchors):
        members = [pool[i] for i in range(len(pool)) if assign[i] == a]
        if not members:
            merged.append(anchor)
            continue
        w = max(1.0 / (len(members) + 1), beta)
        merged.append(w * anchor + (1 - w) * np.mean(members, axis=0))
    return np.array(merged), assign


def ref_stream(tokens, scores, segments, retain, d=0.4, p=4, beta=0.6, k=4):
    frames, num, _ = tokens.shape
    context = int(retain * d)
    salient_num = retain - context
    out, first = [], 0
    for length in segments:
        anchor_frames = [first + length - 1 - j * p for j in range(math.ceil(length / p))]
        per_anchor_frame = context * length // len(anchor_frames)
        salient = {f: sorted(range(num), key=lambda i: (-scores[f, i], i))[:salient_num] for f in range(first, first + length)}
        rest = {f: [i for i in range(num) if i not in salient[f]] for f in salient}
        segment_pool = np.concatenate([tokens[f, rest[f]] for f in range(first, first + length)])
        for f in range(first, first + length):
            kept = {i: tokens[f, i] for i in salient[f]}
            wanted = per_anchor_frame if f in anchor_frames else 0
            count = min(wanted, len(rest[f]))
            if count:
                candidates = tokens[f, rest[f]]
                score = ref_dpc(candidates, k)[2]
                top = sorted(range(len(candidates)), key=lambda i: (-score[i], i))[:count]
                pool = candidates if wanted == context else segment_pool
                merged, _ = ref_merge(candidates[top], pool, beta)
                for t, feature in zip(top, merged):
                    kept[rest[f][t]] = feature
            order = sorted(kept)
            out.append((order, np.array([kept[i] for i in order]).reshape(len(order), tokens.shape[2])))
        first += length
    return out


def _assert_stream(tokens, scores, segments, retain, **options):
    ours = fv.fastvid_stream(torch.from_numpy(tokens), torch.from_numpy(scores), segments, retain, **options)
    ref = ref_stream(tokens, scores, segments, retain, **options)
    assert len(ours) == len(ref) == tokens.shape[0]
    for (indices, features), (ref_indices, ref_features) in zip(ours, ref):
        assert indices.tolist() == ref_indices
        np.testing.assert_allclose(features.numpy(), ref_features, rtol=0, atol=1e-6)
    count = fv.fastvid_token_count(segments, tokens.shape[1], retain, options.get("d", 0.4), options.get("p", 4))
    assert sum(len(i) for i, _ in ours) == count
    return ours


# ---------------------------------------------------------------------------- rules vs restatement
def test_dynamic_segmentation_matches_the_restatement():
    rng = np.random.default_rng(0)
    for trial in range(20):
        frames = int(rng.integers(2, 20))
        base = rng.normal(size=(1, 16))
        features = base + rng.normal(size=(frames, 16)) * rng.uniform(0.05, 1.0)
        c, tau = int(rng.integers(1, 10)), float(rng.uniform(0.5, 1.0))
        ours = fv.dynamic_segments(torch.from_numpy(features), c, tau)
        assert ours == ref_segments(features, c, tau) and sum(ours) == frames
    features = rng.normal(size=(16, 8))
    assert len(fv.dynamic_segments(torch.from_numpy(features), 8, -2.0)) == 8  # c - 1 = 7 cuts at least
    assert fv.dynamic_segments(torch.from_numpy(features), 1, -2.0) == [16]  # no cut: a single segment
    assert fv.dynamic_segments(torch.from_numpy(features), 1, 2.0) == [1] * 16  # every similarity below tau
    assert fv.dynamic_segments(torch.from_numpy(features), 40, -2.0) == [1] * 16  # c - 1 > F - 1: every boundary


def test_identical_frames_cut_at_the_first_boundaries():
    """All similarities tie (1): the c - 1 lowest are the first boundaries; nothing is below tau."""
    features = np.repeat(np.random.default_rng(1).normal(size=(1, 12)), 16, axis=0)
    assert fv.dynamic_segments(torch.from_numpy(features), 8, 0.9) == ref_segments(features, 8, 0.9) == [1] * 7 + [9]
    assert fv.dynamic_segments(torch.from_numpy(features), 1, 0.9) == [16]


def test_anchor_distribution_and_split():
    assert fv.stprune_split(19, 0.4) == (12, 7)  # LLaVA-OneVision: 196 tokens x 0.10 -> 19 = 12 salient + 7 context
    assert fv.stprune_split(2, 0.4) == (2, 0)
    assert fv.anchor_counts([1, 2, 4, 5, 9], 7, 4) == (
        [7] + [0, 14] + [0, 0, 0, 28] + [17, 0, 0, 0, 17] + [21, 0, 0, 0, 21, 0, 0, 0, 21])
    assert fv.anchor_counts([3], 5, 1) == [5, 5, 5]


def test_dpc_knn_density_peaks_match_the_restatement():
    rng = np.random.default_rng(2)
    for m, dim, k in ((30, 8, 4), (12, 5, 4), (3, 4, 4), (25, 16, 2)):
        x = rng.normal(size=(m, dim))
        x[: m // 3] = x[0] + rng.normal(size=(m // 3, dim)) * 0.1  # a dense cluster
        density, delta, score = fv.dpc_knn(torch.from_numpy(x), k)
        ref = ref_dpc(x, k)
        for ours, expected in zip((density, delta, score), ref):
            np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-9)
        expected_peaks = sorted(range(m), key=lambda i: (-ref[2][i], i))[: max(1, m // 4)]
        assert torch.sort(score, descending=True, stable=True).indices[: max(1, m // 4)].tolist() == expected_peaks
        # the densest token's delta is the largest distance
        densest = int(np.argmax(ref[0]))
        assert delta[densest] == pytest.approx(ref[1].max())


def test_merge_assignment_and_weights_match_the_restatement():
    rng = np.random.default_rng(4)
    for anchors_n, pool_n, beta in ((3, 20, 0.6), (5, 9, 0.2), (1, 4, 0.6), (4, 4, 0.9)):
        anchors = rng.normal(size=(anchors_n, 6))
        pool = np.concatenate([anchors, rng.normal(size=(pool_n, 6))])  # the release's pool holds the anchors too
        merged, assign = fv.merge_into_anchors(torch.from_numpy(anchors), torch.from_numpy(pool), beta)
        ref_merged, ref_assign = ref_merge(anchors, pool, beta)
        assert assign.tolist() == ref_assign
        np.testing.assert_allclose(merged.numpy(), ref_merged, rtol=0, atol=1e-6)
    # an anchor nothing joins stays as it is
    merged, _ = fv.merge_into_anchors(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64),
                                      torch.tensor([[1.0, 0.1]], dtype=torch.float64), 0.6)
    assert merged[1].tolist() == [0.0, 1.0]
    assert merged[0].tolist() == pytest.approx([0.6 + 0.4 * 1.0, 0.4 * 0.1])


@pytest.mark.parametrize("segments, retain, options", [
    ([3, 1, 5, 1], 12, {}),                       # defaults: d 0.4, p 4, beta 0.6, k 4
    ([1, 6, 3], 12, {"p": 2, "beta": 0.3}),       # segments with several anchor frames
    ([10], 9, {}),                                # a single-segment clip
    ([1] * 10, 7, {}),                            # every frame its own segment
    ([2, 8], 36, {"d": 0.5}),                     # R = N: anchors clamped to the non-salient tokens
    ([4, 6], 2, {}),                              # C = 0: salient tokens only
    ([5, 5], 10, {"p": 1}),                       # p = 1: anchor count == C, merges within the frame (release)
])
def test_stream_pruning_matches_the_restatement(segments, retain, options):
    rng = np.random.default_rng(sum(segments) * 100 + retain)
    tokens = rng.normal(size=(10, 36, 8))
    scores = rng.random(size=(10, 36))
    _assert_stream(tokens, scores, segments, retain, **options)


def test_stream_pruning_on_identical_frames():
    """A static clip (every frame the same tokens and scores): same salient tokens each frame; an anchor frame
    merges every copy of the segment's non-salient tokens."""
    rng = np.random.default_rng(5)
    frame = rng.normal(size=(1, 36, 8))
    tokens, scores = np.repeat(frame, 16, axis=0), np.repeat(rng.random(size=(1, 36)), 16, axis=0)
    segments = fv.dynamic_segments(torch.from_numpy(tokens.mean(1)), 8, 0.9)
    assert segments == [1] * 7 + [9]
    ours = _assert_stream(tokens, scores, segments, 15)
    assert all(torch.equal(ours[f][0], ours[0][0]) for f in range(7))
    # R 15 = 9 salient + 6 context; the 9-frame segment (frames 7-15) has anchor frames 15, 11, 7 of 6 * 9 // 3 each
    assert [len(i) for i, _ in ours[7:]] == [9 + 18 if f in (7, 11, 15) else 9 for f in range(7, 16)]
    single = _assert_stream(tokens, scores, [16], 15)
    assert [len(i) for i, _ in single] == [9 + 6 * 16 // 4 if f in (3, 7, 11, 15) else 9 for f in range(16)]


def test_the_retention_ratio_is_the_largest_that_fits():
    rng = np.random.default_rng(6)
    for _ in range(15):
        segments = []
        while sum(segments) < 16:
            segments.append(int(min(rng.integers(1, 8), 16 - sum(segments))))
        budget = int(rng.integers(20, 16 * 208))
        retain = fv.fastvid_retention(segments, (144, 64), budget)
        total = lambda r: sum(fv.fastvid_token_count(segments, n, x) for n, x in zip((144, 64), r))  # noqa: E731
        assert total(retain) <= budget
        for q in {Fraction(j, n) for n in (144, 64) for j in range(n + 1)}:
            candidate = (math.floor(144 * q), math.floor(64 * q))
            if candidate[0] >= retain[0] and candidate[1] >= retain[1] and candidate != retain:
                assert total(candidate) > budget
    assert fv.fastvid_retention([16], (144, 64), 1) == (0, 0)


# ---------------------------------------------------------------------------- the method on the tiny VideoGLaMM
def _tokens(seg, frames=FRAMES, geometry=False):
    """The clip's ``ClipTokens``; ``geometry``: with the frames' size and CLIP's view, as the segmenter builds them
    (else the square convention: video token (i, j) under CLIP block (i, j))."""
    sampled = frames[sample_frame_indices(len(frames), seg.config.num_frames)]
    enc = seg._encode_clip(sampled, StageTimer())
    pool, video_side = seg.model.config.image_pool_side, seg.model.config.video_pool_side
    image = seg.model.pool_image_tokens(seg.model.project_image_tokens(enc.frames.patches))
    where = (enc.frame_size, ClipView.of(seg.clip.image_processor)) if geometry else ()
    return ClipTokens(enc.frames, None, image, (pool, pool), enc.video_tokens, (video_side, video_side), seg.model.project_image_tokens,
                      *where)


def _cls_attention(tokens, f) -> np.ndarray:
    """(24, 24) head-mean CLS attention of the last CLIP layer for frame ``f``, restated in float64 numpy."""
    q, key = tokens.frames.query.double().numpy(), tokens.frames.key.double().numpy()
    heads = tokens.frames.num_heads
    width = q.shape[-1] // heads
    attention = np.zeros(576)
    for h in range(heads):
        logits = key[f, :, h * width:(h + 1) * width] @ q[f, 0, h * width:(h + 1) * width] / math.sqrt(width)
        weights = np.exp(logits - logits.max())
        attention += (weights / weights.sum())[1:] / heads
    return attention.reshape(24, 24)


def test_adapted_inputs(tiny_video_segmenter):
    """Segments from the CLS states; salient scores = head-mean CLS attention of the last layer, cell / block means."""
    tokens = _tokens(tiny_video_segmenter)
    method = get_method("fastvid")
    cls = tokens.frames.states[:, 0].double().numpy()
    assert method.segments(tokens) == ref_segments(cls, 8, 0.9)
    assert get_method("fastvid", global_feature="mean").segments(tokens) == ref_segments(tokens.image_tokens.mean(1).double().numpy(), 8, 0.9)
    image_scores, video_scores = method.salient_scores(tokens)
    for f in (0, 9):
        grid = _cls_attention(tokens, f)
        cells = [grid[2 * r:2 * r + 2, 2 * c:2 * c + 2].mean() for r in range(12) for c in range(12)]
        blocks = [grid[3 * r:3 * r + 3, 3 * c:3 * c + 3].mean() for r in range(8) for c in range(8)]
        np.testing.assert_allclose(image_scores[f].double().numpy(), cells, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(video_scores[f].double().numpy(), blocks, rtol=1e-4, atol=1e-7)


def test_video_salience_follows_the_stream_geometry(tiny_video_segmenter):
    """30 x 40 (4:3) frames: CLIP crops frame columns 5..35. A video token (i, j), j in 1..6, is scored by the CLIP
    patches covering its pixels, rows 3i..3i+2 and columns 4(j-1)..4j-1 (restated by hand); the tokens of columns
    0 and 7 lie outside the crop and are never salient (-inf)."""
    frames = np.random.default_rng(5).integers(0, 256, size=(8, 30, 40, 3), dtype=np.uint8)
    tokens = _tokens(tiny_video_segmenter, frames, geometry=True)
    assert tokens.frame_size == (30, 40)
    _, video_scores = get_method("fastvid").salient_scores(tokens)
    for f in (0, 9):
        grid = _cls_attention(tokens, f)
        scores = video_scores[f].double().view(8, 8).numpy()
        expected = [[grid[3 * i:3 * i + 3, 4 * (j - 1):4 * j].mean() for j in range(1, 7)] for i in range(8)]
        np.testing.assert_allclose(scores[:, 1:7], expected, rtol=1e-4, atol=1e-7)
        assert np.isneginf(scores[:, [0, 7]]).all()


def test_selection_is_the_stream_rule_on_both_streams(tiny_video_segmenter):
    tokens = _tokens(tiny_video_segmenter)
    method = get_method("fastvid")
    budget = default_clip_budget(tokens, 81)
    assert budget == 16 * 21 + round(16 * 64 * 21 / 144) == 485
    frames = method.select_clip(tokens, 81)
    segments = method.segments(tokens)
    retain = fv.fastvid_retention(segments, (144, 64), budget)
    image_scores, video_scores = method.salient_scores(tokens)
    image = fv.fastvid_stream(tokens.image_tokens, image_scores, segments, retain[0])
    video = fv.fastvid_stream(tokens.video_tokens, video_scores, segments, retain[1])
    members = tokens.cell_members()
    for f, selection in enumerate(frames):
        assert torch.equal(selection.image_cells, image[f][0]) and torch.equal(selection.video_cells, video[f][0])
        torch.testing.assert_close(selection.image, image[f][1].to(selection.image.dtype))
        torch.testing.assert_close(selection.video, video[f][1].to(selection.video.dtype))
        assert torch.equal(selection.clip_indices, members[image[f][0]].reshape(-1).sort().values)
    assert sum(s.num_tokens for s in frames) <= budget
    again = method.select_clip(tokens, 81)
    assert all(torch.equal(a.image, b.image) and torch.equal(a.video, b.video) for a, b in zip(frames, again))
    # the release's own ratio, and a budget that covers every token
    ratio = get_method("fastvid", retention_ratio=0.10).select_clip(tokens, 81)
    assert sum(s.num_tokens for s in ratio) == (fv.fastvid_token_count(segments, 144, 14) + fv.fastvid_token_count(segments, 64, 6))
    full = method.select_clip(tokens, None, 16 * 208)
    assert all(torch.equal(s.image, tokens.image_tokens[f]) and torch.equal(s.video, tokens.video_tokens[f]) for f, s in enumerate(full))


def test_the_released_setting_sends_the_released_ratios_whatever_the_budget(tiny_video_segmenter):
    """fastvid:released=True: r = 0.10 (R = 14 of 144: 9 salient + 5 anchors; 6 of 64: 4 + 2), c = 8, tau = 0.9,
    d = 0.4, p = 4, beta = 0.6, k = 4, at every budget; the budget-driven ratio stays the default."""
    tokens = _tokens(tiny_video_segmenter)
    released = method_from_spec("fastvid:released=True")
    settings = (released.retention_ratio, released.c, released.tau, released.d, released.p, released.beta, released.k)
    assert settings == (0.10, 8, 0.9, 0.4, 4, 0.6, 4)
    segments = released.segments(tokens)
    assert released.retention(tokens, segments, 81, None) == (14, 6)
    expected = fv.fastvid_token_count(segments, 144, 14) + fv.fastvid_token_count(segments, 64, 6)
    assert 16 * 20 - 2 * len(segments) * 4 <= expected <= 16 * 20
    runs = [released.select_clip(tokens, budget) for budget in (81, 196, None)]
    for frames in runs:
        assert sum(s.num_tokens for s in frames) == expected
        assert all(len(s.image_cells) >= 9 and len(s.video_cells) >= 4 for s in frames)  # S salient tokens every frame
        assert all(torch.equal(a.image, b.image) for a, b in zip(frames, runs[0]))
    budget_driven = sum(s.num_tokens for s in get_method("fastvid").select_clip(tokens, 81))
    assert expected < 0.9 * 485 <= budget_driven <= 485
    with pytest.raises(ValueError, match="takes no clip budget: released=True runs the release's retention ratio r = 0.1"):
        released.select_clip(tokens, 81, clip_budget=400)
    with pytest.raises(ValueError, match="takes no clip budget"):
        check_clip_budget("fastvid:released=True", 400)
    with pytest.raises(ValueError, match="released=True runs the release's tau=0.9; got tau=0.8"):
        get_method("fastvid", released=True, tau=0.8)


def test_end_to_end_meets_the_clip_budget(tiny_video_segmenter):
    seg = tiny_video_segmenter
    runs = [seg.segment(FRAMES, ["a dog"], budget=81, method="fastvid", answer="Sure, [SEG].", mask_mode="none") for _ in range(2)]
    result = runs[0]
    assert result.method == "fastvid" and len(result.frame_tokens[0]) == 16
    count = sum(len(s.image_cells) + len(s.video_cells) for s in result.frame_tokens[0])
    assert result.llm_visual_tokens == [count] and 0.9 * 485 <= count <= 485
    assert result.llm_visual_tokens == runs[1].llm_visual_tokens and result.has_seg == runs[1].has_seg
    for a, b in zip(result.frame_tokens[0], runs[1].frame_tokens[0]):
        assert torch.equal(a.image_cells, b.image_cells) and torch.equal(a.video_cells, b.video_cells)
    tight = seg.segment(FRAMES, ["a dog"], budget=81, clip_budget=300, method="fastvid", answer="Sure, [SEG].", mask_mode="none")
    assert 0 < tight.llm_visual_tokens[0] <= 300


def test_end_to_end_in_generation(tiny_video_segmenter):
    seg = tiny_video_segmenter
    runs = [seg.segment(FRAMES, ["a dog"], budget=81, method="fastvid", mask_mode="none", max_new_tokens=4) for _ in range(2)]
    assert runs[0].answers == runs[1].answers and runs[0].llm_visual_tokens == runs[1].llm_visual_tokens
    assert runs[0].llm_visual_tokens[0] <= 485


def test_bad_options_are_refused():
    for options in ({"c": 0}, {"p": 0}, {"d": 1.5}, {"global_feature": "pooled"}, {"retention_ratio": 2.0}):
        with pytest.raises(ValueError):
            get_method("fastvid", **options)

"""STTM (clip-level; before the LLM, or at layer K inside it): the released quadtree and temporal merging restated
with numpy and recursion, the in-LLM placement against an eager restatement on a tiny Phi-3, and end to end in the
tiny VideoGLaMM."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import video.segmenter
from litelvlm.lvlm import splice_and_pad
from litelvlm.pruning import ClipTokens, check_clip_budget, get_method, method_from_spec
from litelvlm.pruning.baselines.video_sttm import (
    Pyramid,
    STTMPlan,
    STTMSelector,
    merge_destinations,
    pyramid_sides,
    spatial_threshold_candidates,
    sttm_stream,
    sttm_threshold_for_budget,
)
from litelvlm.testing.llm import eager_layers, scripted_head, tiny_phi3_pair
from litelvlm.testing.videoglamm import record_seg_states
from video.prompt import build_chat, prompt_ids, video_question

WINDOW = 9  # a Phi-3 sliding window shorter than the tiny sequences, so it matters


# ----------------------------------------------------------------------------- the release restated (numpy, recursion)


def np_sides(side, root_level):
    sizes = [side]
    while sizes[0] != 2:
        sizes.insert(0, math.ceil(sizes[0] / 2))
    return sizes[root_level:]


def np_pool(level):
    """avgpool_to_even_side_feature on (T, s, s, C): 2x2 means; an odd side keeps [0, 0], pairs row 0 from column 1
    and column 0 from row 1, and 2x2 blocks from (1, 1)."""
    frames, side, _, width = level.shape
    p = math.ceil(side / 2)
    out = np.zeros((frames, p, p, width))
    for i in range(p):
        for j in range(p):
            if side % 2 == 0:
                out[:, i, j] = level[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(axis=(1, 2))
            elif i == 0 and j == 0:
                out[:, 0, 0] = level[:, 0, 0]
            elif i == 0:
                out[:, 0, j] = level[:, 0, 2 * j - 1 : 2 * j + 1].mean(axis=1)
            elif j == 0:
                out[:, i, 0] = level[:, 2 * i - 1 : 2 * i + 1, 0].mean(axis=1)
            else:
                out[:, i, j] = level[:, 2 * i - 1 : 2 * i + 1, 2 * j - 1 : 2 * j + 1].mean(axis=(1, 2))
    return out


def np_slots(i, j, child_side):
    """pool_to_even_side_index_video: four (y, x, valid) child slots; an unset slot stays at (0, 0)."""
    if child_side % 2 == 0:
        return [(2 * i, 2 * j, True), (2 * i, 2 * j + 1, True), (2 * i + 1, 2 * j, True), (2 * i + 1, 2 * j + 1, True)]
    if i == 0 and j == 0:
        return [(0, 0, True), (0, 0, False), (0, 0, False), (0, 0, False)]
    if i == 0:
        return [(0, 2 * j - 1, True), (0, 2 * j, True), (0, 0, False), (0, 0, False)]
    if j == 0:
        return [(2 * i - 1, 0, True), (0, 0, False), (2 * i, 0, True), (0, 0, False)]
    return [(2 * i - 1, 2 * j - 1, True), (2 * i - 1, 2 * j, True), (2 * i, 2 * j - 1, True), (2 * i, 2 * j, True)]


def cos(a, b):
    return float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))


def np_quadtree(tokens, side, threshold, root_level=1):
    """[(frame, (y0, x0, y1, x1), feature)] sorted by top-left leaf cell, by depth-first recursion."""
    x = np.asarray(tokens, dtype=np.float64)
    frames = x.shape[0]
    sides = np_sides(side, root_level)
    levels = [x.reshape(frames, side, side, -1)]
    for _ in sides[:-1]:
        levels.insert(0, np_pool(levels[0]))
    last = len(sides) - 1

    def leaves(level, i, j):
        if level == last:
            return [(i, j)]
        return [leaf for y, c, ok in np_slots(i, j, sides[level + 1]) if ok for leaf in leaves(level + 1, y, c)]

    out = []

    def visit(level, t, i, j):
        if level < last:
            slots = np_slots(i, j, sides[level + 1])
            if not all(cos(levels[level][t, i, j], levels[level + 1][t, y, c]) >= threshold for y, c, _ in slots):
                for y, c, ok in slots:
                    if ok:
                        visit(level + 1, t, y, c)
                return
        cells = leaves(level, i, j)
        box = (min(y for y, _ in cells), min(c for _, c in cells), max(y for y, _ in cells) + 1, max(c for _, c in cells) + 1)
        out.append((t, box, levels[level][t, i, j]))

    for t in range(frames):
        for i in range(sides[0]):
            for j in range(sides[0]):
                visit(0, t, i, j)
    return sorted(out, key=lambda n: n[0] * side * side + n[1][0] * side + n[1][1])


def np_representatives(edges, count):
    """get_merge_dst_idx_safe with lists: every node takes the smallest pair minimum touching it, then one hop."""
    rep = list(range(count))
    while True:
        smallest = [min(rep[d], rep[s]) for d, s in edges]
        new = list(rep)
        for (d, s), m in zip(edges, smallest):
            new[d] = min(new[d], m)
            new[s] = min(new[s], m)
        rep = [new[new[i]] for i in range(count)]
        if rep == [rep[rep[i]] for i in range(count)]:
            return rep


def np_sttm(tokens, side, spatial, temporal, root_level=1):
    """[(frame, box, feature)] of the surviving tokens, and the representatives."""
    nodes = np_quadtree(tokens, side, spatial, root_level)
    edges = []
    if temporal > 0:
        for a, (ta, box_a, fa) in enumerate(nodes):
            for b, (tb, box_b, fb) in enumerate(nodes):
                nest = (box_a[0] <= box_b[0] and box_a[1] <= box_b[1] and box_a[2] >= box_b[2] and box_a[3] >= box_b[3]) or \
                       (box_b[0] <= box_a[0] and box_b[1] <= box_a[1] and box_b[2] >= box_a[2] and box_b[3] >= box_a[3])
                if tb == ta + 1 and nest:
                    ua, ub = fa / (np.linalg.norm(fa) + 1e-8), fb / (np.linalg.norm(fb) + 1e-8)
                    if float(ua @ ub) >= temporal:
                        edges.append((a, b))
    rep = np_representatives(edges, len(nodes))
    out = []
    for r in sorted(set(rep)):
        members = [nodes[i][2] for i in range(len(nodes)) if rep[i] == r]
        out.append((nodes[r][0], nodes[r][1], np.mean(members, axis=0)))
    return out, rep, nodes


def _video(seed, frames=6, side=12, width=16):
    """(frames, side*side, width) tokens: a coarse pattern with block-wise noise of varied strength (some blocks are
    uniform enough to stop early), changing slowly over time with a cut in the middle."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(2, width, 4, 4, generator=gen)
    pattern = torch.nn.functional.interpolate(coarse, size=(side, side), mode="nearest")  # (2, width, side, side)
    strength = torch.nn.functional.interpolate(torch.rand(1, 1, 4, 4, generator=gen) ** 3, size=(side, side), mode="nearest")
    out = []
    for t in range(frames):
        base = pattern[0 if t < frames // 2 else 1]
        noise = torch.randn(width, side, side, generator=gen) * strength[0] * 1.5
        drift = 0.05 * t * torch.randn(width, 1, 1, generator=gen)
        out.append((base + noise + drift).permute(1, 2, 0).reshape(side * side, width))
    return torch.stack(out)


def _assert_stream_equal(ours, ref):
    nodes = ours.nodes
    assert len(ref) == ours.num_tokens
    for i, (frame, box, feature) in zip(ours.survivors.tolist(), ref):
        assert int(nodes.frames[i]) == frame and tuple(nodes.boxes[i].tolist()) == box
    np.testing.assert_allclose(ours.features.numpy(), np.stack([f for _, _, f in ref]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side, seed, spatial, temporal", [(12, 0, 0.8, 0.8), (12, 1, 0.6, 0.9), (8, 2, 0.7, 0.85),
                                                           (14, 3, 0.75, 0.8), (7, 4, 0.7, 0.8)])
def test_sttm_stream_equals_a_restatement(side, seed, spatial, temporal):
    tokens = _video(seed, side=side)
    ours = sttm_stream(tokens, side, spatial, temporal)
    ref, rep, nodes = np_sttm(tokens.numpy(), side, spatial, temporal)
    assert [(t, box) for t, box, _ in nodes] == list(zip(ours.nodes.frames.tolist(), map(tuple, ours.nodes.boxes.tolist())))
    assert ours.rep.tolist() == rep
    _assert_stream_equal(ours, ref)
    sizes = {(b[2] - b[0]) * (b[3] - b[1]) for _, b, _ in nodes}
    assert len(sizes) >= len(pyramid_sides(side))  # nodes stopped at every level
    assert len(set(rep)) < len(rep)  # and some merged over time
    assert any(nodes[r][0] < nodes[i][0] for i, r in enumerate(rep))  # into an earlier frame


def test_without_temporal_merging_the_quadtree_alone_is_sent():
    tokens = _video(5)
    ours = sttm_stream(tokens, 12, 0.8, -1.0)
    ref, rep, _ = np_sttm(tokens.numpy(), 12, 0.8, -1.0)
    assert rep == list(range(len(rep))) and ours.num_tokens == len(rep)
    _assert_stream_equal(ours, ref)
    assert sttm_stream(tokens, 12, -math.inf, -1.0).num_tokens == 6 * 9  # every 3x3 root stops
    assert sttm_stream(tokens, 12, math.inf, -1.0).num_tokens == 6 * 144  # only leaves


def test_the_released_iteration_can_keep_two_representatives_in_one_group():
    """get_merge_dst_idx_safe is not a union-find: 0-5-10-1 is one group, yet 10 stops at 1 after one round."""
    edges = torch.tensor([[0, 5], [5, 10], [1, 10]])
    rep = merge_destinations(edges, 12)
    assert rep.tolist() == np_representatives(edges.tolist(), 12)
    assert rep[5] == 0 and rep[10] == 1 and rep[1] == 1
    chain = torch.tensor([[0, 3], [3, 6], [6, 9]])
    assert merge_destinations(chain, 10).tolist() == [0, 1, 2, 0, 4, 5, 0, 7, 8, 0]


def test_pyramids_follow_the_release_and_refuse_what_it_cannot_run():
    assert pyramid_sides(12) == [3, 6, 12] and pyramid_sides(8) == [4, 8] and pyramid_sides(14) == [4, 7, 14]
    assert pyramid_sides(12, 0) == [2, 3, 6, 12] and pyramid_sides(2, 0) == [2]
    with pytest.raises(ValueError, match="root_level must be in"):
        pyramid_sides(2, 1)  # the release: IndexError
    with pytest.raises(ValueError, match="side >= 2"):
        pyramid_sides(1)  # the release: an endless loop


# ----------------------------------------------------------------------------- the budget


def _clip_tokens(seed=3, frames=16):
    return ClipTokens(SimpleNamespace(grid=(24, 24)), None, _video(seed, frames, 12, 32), (12, 12),
                      _video(seed + 10, frames, 8, 32), (8, 8))


def test_the_threshold_is_a_candidate_that_fits_where_the_next_one_does_not():
    """Bisection over the candidates: the count at the threshold fits, at the next candidate up it does not. The count
    is not monotone everywhere (temporal merging of other node sets), so this is not always the largest that fits."""
    tokens = _clip_tokens(frames=6)
    pyramids = [Pyramid.of(tokens.image_tokens, 12), Pyramid.of(tokens.video_tokens, 8)]
    candidates = spatial_threshold_candidates(pyramids)
    minima = []
    for tokens_, side in ((tokens.image_tokens, 12), (tokens.video_tokens, 8)):  # each node's smallest child similarity
        x = tokens_.double().numpy().reshape(6, side, side, -1)
        levels = [x]
        for _ in np_sides(side, 1)[:-1]:
            levels.insert(0, np_pool(levels[0]))
        for level in range(len(levels) - 1):
            for t, i, j in np.ndindex(*levels[level].shape[:3]):
                minima.append(min(cos(levels[level][t, i, j], levels[level + 1][t, y, c])
                                  for y, c, _ in np_slots(i, j, levels[level + 1].shape[1])))
    assert candidates[0] == -math.inf and candidates[-1] == math.inf and candidates == sorted(candidates)
    inner, minima = np.array(candidates[1:-1]), np.array(minima)
    assert np.abs(inner[:, None] - minima[None]).min(axis=1).max() < 1e-5  # the same values (float32 vs float64)
    assert np.abs(minima[:, None] - inner[None]).min(axis=1).max() < 1e-5

    def count(threshold):
        return sum(sttm_stream(p, p.sides[-1], threshold, 0.65).num_tokens for p in pyramids)

    for target in (count(-math.inf), 200, 400, count(math.inf) - 1):
        threshold, sent, fits = sttm_threshold_for_budget(pyramids, target, 0.65)
        index = candidates.index(threshold)
        assert fits and sent == count(threshold) <= target < count(candidates[index + 1])
    assert sttm_threshold_for_budget(pyramids, count(math.inf), 0.65)[0] == math.inf
    threshold, sent, fits = sttm_threshold_for_budget(pyramids, count(-math.inf) - 1, 0.65)
    assert not fits and threshold == -math.inf and sent == count(-math.inf)


def test_select_clip_sends_the_merged_streams_and_meets_the_budget():
    tokens = _clip_tokens()
    selector = get_method("sttm")
    assert isinstance(selector, STTMSelector) and selector.uses_text is False and selector.stage == "clip"
    frames = selector.select_clip(tokens, 81)
    stats = selector.last_stats
    assert stats.target == 485 and stats.image_tokens + stats.video_tokens == sum(f.num_tokens for f in frames) <= 485
    image = sttm_stream(tokens.image_tokens, 12, stats.spatial_threshold, 0.65)
    video = sttm_stream(tokens.video_tokens, 8, stats.spatial_threshold, 0.65)
    torch.testing.assert_close(torch.cat([f.image for f in frames]), image.features)
    torch.testing.assert_close(torch.cat([f.video for f in frames]), video.features)
    for f, record in enumerate(frames):
        nodes = image.nodes
        mine = [i for i in image.survivors.tolist() if nodes.frames[i] == f]
        assert record.image_cells.tolist() == [int(nodes.boxes[i, 0] * 12 + nodes.boxes[i, 1]) for i in mine]
        covered, reused = set(), set()
        for i in range(nodes.frames.numel()):
            if nodes.frames[i] == f:
                y0, x0, y1, x1 = nodes.boxes[i].tolist()
                cells = {y * 12 + x for y in range(y0, y1) for x in range(x0, x1)}
                (covered if nodes.frames[image.rep[i]] == f else reused).update(cells)
        assert record.reused_cells.tolist() == sorted(reused)
        patches = sorted((c // 12) * 48 + (c % 12) * 2 + d for c in covered for d in (0, 1, 24, 25))
        assert record.clip_indices.tolist() == patches
    assert any(f.reused_cells.numel() for f in frames[1:])
    assert selector.llm_plan([f.image.shape[0] for f in frames], sum(f.video.shape[0] for f in frames)) is None
    tight = selector.select_clip(tokens, 81, clip_budget=300)
    assert sum(f.num_tokens for f in tight) <= 300 and selector.last_stats.target == 300
    everything = selector.select_clip(tokens, None)
    assert all(torch.equal(f.image, tokens.image_tokens[i]) for i, f in enumerate(everything))


def test_an_unreachable_budget_sends_the_roots_and_warns():
    tokens = _clip_tokens()
    roots = sum(sttm_stream(t, s, -math.inf, 0.65).num_tokens for t, s in ((tokens.image_tokens, 12), (tokens.video_tokens, 8)))
    with pytest.warns(UserWarning, match=f"STTM cannot send 10 visual tokens for 16 frames.*it sends {roots}"):
        frames = get_method("sttm").select_clip(tokens, 81, clip_budget=10)
    assert sum(f.num_tokens for f in frames) == roots
    with pytest.raises(ValueError, match="STTM cannot send 10"):
        get_method("sttm", strict_budget=True).select_clip(tokens, 81, clip_budget=10)


def test_the_released_setting_merges_at_layer_2_with_the_released_thresholds():
    """sttm:released=True: layer 2, root level 1, spatial 0.85 and temporal 0.65 (run_vidqa.sh:54, :62) whatever the
    budget: every token enters the LLM and the plan merges at layer 2; a clip budget is refused."""
    tokens = _clip_tokens()
    released = method_from_spec("sttm:released=True")
    assert (released.layer, released.root_level, released.spatial_threshold, released.temporal_threshold) == (2, 1, 0.85, 0.65)
    for budget in (81, None):
        frames = released.select_clip(tokens, budget)
        assert sum(f.num_tokens for f in frames) == 16 * (144 + 64)
        plan = released.llm_plan([144] * 16, 16 * 64)
        assert isinstance(plan, STTMPlan) and (plan.layer, plan.spatial_threshold, plan.temporal_threshold) == (2, 0.85, 0.65)
    with pytest.raises(ValueError, match="must follow its select_clip"):
        released.llm_plan([144] * 15, 16 * 64)
    with pytest.raises(ValueError, match="takes no clip budget: .*spatial threshold 0.85"):
        released.select_clip(tokens, 81, clip_budget=300)
    with pytest.raises(ValueError, match="takes no clip budget"):
        check_clip_budget("sttm:released=True", 300)
    with pytest.raises(ValueError, match="released=True runs the release's temporal_threshold=0.65; got temporal_threshold=0.5"):
        get_method("sttm", released=True, temporal_threshold=0.5)
    fixed = get_method("sttm", spatial_threshold=0.85)  # before the LLM at the released thresholds (the 72B placement)
    frames = fixed.select_clip(tokens, 81)
    assert sum(f.num_tokens for f in frames) == sum(sttm_stream(t, s, 0.85, 0.65).num_tokens
                                                    for t, s in ((tokens.image_tokens, 12), (tokens.video_tokens, 8)))
    assert get_method("sttm", layer=0).layer is None


def test_bad_options_are_refused():
    for options in ({"layer": -1}, {"root_level": -1}, {"spatial_threshold": "high"}, {"temporal_threshold": float("nan")}):
        with pytest.raises(ValueError):
            get_method("sttm", **options)
    with pytest.raises(ValueError, match="sttm at layer 2 merges states the selection cannot see: give spatial_threshold"):
        get_method("sttm", layer=2)
    with pytest.raises(ValueError, match="square token grids"):
        get_method("sttm").select_clip(ClipTokens(SimpleNamespace(grid=(24, 24)), None, torch.zeros(2, 12, 4), (3, 4),
                                                  torch.zeros(2, 4, 4), (2, 2)), 81)


# ----------------------------------------------------------------------------- in the LLM: tiny Phi-3


@pytest.fixture(scope="module")
def phi3s():
    return tiny_phi3_pair(WINDOW)


PLAN = dict(frames=2, image_side=4, video_side=2, layer=1, spatial_threshold=0.9, temporal_threshold=0.9, root_level=0)


def _visual(seed=1):
    """2 frames of 4x4 + 2 frames of 2x2 tokens: near-copies inside blocks and across frames, so the layer-1 states
    merge both ways."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(2, 2, 32, generator=gen).repeat_interleave(2, 0).repeat_interleave(2, 1)  # (4, 4, 32) 2x2 blocks
    image[0, 0] = torch.randn(32, generator=gen)  # one block that splits
    frames = torch.stack([image, image + 0.02 * torch.randn(4, 4, 32, generator=gen)]).reshape(2, 16, 32)
    video = torch.randn(1, 4, 32, generator=gen).repeat(2, 1, 1) + 0.02 * torch.randn(2, 4, 32, generator=gen)
    return torch.cat([frames.reshape(32, 32), video.reshape(8, 32)]) * 4


def _batch(model, before, after, seed=1):
    prompts = [[1] + list(range(3, 3 + a)) + [-200] + list(range(10, 10 + b)) for a, b in zip(before, after)]
    return splice_and_pad(prompts, [[_visual(seed)] for _ in prompts], model.get_input_embeddings(), -200)


def _layer_inputs(model, embeds, upto):
    positions = torch.arange(embeds.shape[0])[None]
    inputs = [embeds[None]]
    for layer in model.layers[:upto]:
        inputs.append(eager_layers(model, inputs[-1], positions, [layer], WINDOW))
    return inputs


def _restated_merge(layer_input, ids, prompt_end):
    """The merged row at layer K's input (numpy STTM of each stream) and its renumbered positions (the text after the
    prompt's end keeps its original ids)."""
    visual = [i for i, t in enumerate(ids) if t == -1]
    start, count = visual[0], len(visual)
    states = layer_input[0, visual].numpy()
    parts = []
    for stream, side in ((states[:32], 4), (states[32:], 2)):
        merged, _, _ = np_sttm(stream.reshape(2, side * side, 32), side, 0.9, 0.9, root_level=0)
        parts.extend(f for _, _, f in merged)
    merged = torch.tensor(np.stack(parts), dtype=torch.float32)
    row = torch.cat([layer_input[0, :start], merged, layer_input[0, start + count :]])
    m, length = merged.shape[0], layer_input.shape[1]
    after = torch.arange(start + count, length)
    positions = torch.cat([torch.arange(start + m), torch.where(after < prompt_end, after - (count - m), after)])
    return row, positions, m


@torch.no_grad()
def test_the_prefill_equals_an_eager_restatement(phi3s):
    sdpa, eager = phi3s
    batch = _batch(sdpa, [3, 1], [6, 4])
    plan = STTMPlan(**PLAN)
    out = plan.prefill(sdpa, batch)
    for b, length in enumerate(batch.lengths):
        embeds, ids = batch.inputs_embeds[b, :length], batch.token_ids[b, :length].tolist()
        row, positions, m = _restated_merge(_layer_inputs(eager.model, embeds, 1)[-1], ids, length)
        assert 6 < m < 40 and plan.last_counts[b] == m
        n = row.shape[0]
        assert torch.equal(out.positions[b, :n], positions) and torch.equal(positions, torch.arange(n))  # renumbered
        expected = eager.model.norm(eager_layers(eager.model, row[None], positions[None], eager.model.layers[1:], WINDOW))[0]
        torch.testing.assert_close(out.hidden[b, :n], expected, rtol=1e-4, atol=1e-4)


def _restated_decode(model, embeds, ids, new):
    """The last of ``new`` (m, H) decoded tokens: layer 0 sees the whole prompt, layers 1.. the merged one, at ids that
    continue the unmerged numbering."""
    full = _layer_inputs(model, embeds, 1)
    row, positions, _ = _restated_merge(full[-1], ids, embeds.shape[0])
    m, length = new.shape[0], embeds.shape[0]
    x = eager_layers(model, torch.cat([full[0], new[None]], dim=1), torch.arange(length + m)[None], model.layers[:1], WINDOW)[:, -m:]
    out = eager_layers(model, torch.cat([row[None], x], dim=1), torch.cat([positions, length + torch.arange(m)])[None],
                       model.layers[1:], WINDOW)
    return model.norm(out)[0, -1]


@torch.no_grad()
def test_cached_and_uncached_generation_equal_an_eager_restatement(phi3s):
    sdpa, eager = phi3s
    batch = _batch(sdpa, [3], [4])
    length, ids = batch.lengths[0], batch.token_ids[0].tolist()
    plan = STTMPlan(**PLAN)
    cached = plan.generation_forward(sdpa, batch.token_ids, use_cache=True)
    hidden, state = cached(batch.inputs_embeds, None)
    merged = cached.visual_after
    assert all(state["cache"].get_seq_length(i) == length - 40 + merged for i in (1, 2)) and state["cache"].get_seq_length(0) == length
    new = torch.zeros(0, 32)
    for step in range(WINDOW + 2):  # past the sliding window
        token = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(step))
        hidden, state = cached(token, state)
        new = torch.cat([new, token[0]])
        torch.testing.assert_close(hidden[0, 0], _restated_decode(eager.model, batch.inputs_embeds[0], ids, new), rtol=1e-4, atol=1e-4)
    plain = plan.generation_forward(sdpa, batch.token_ids, use_cache=False)
    again, none = plain(torch.cat([batch.inputs_embeds, new[None]], dim=1), None)
    assert none is None
    torch.testing.assert_close(again[0, -1], hidden[0, 0], rtol=1e-4, atol=1e-4)  # the answer keeps the decoded ids


# ----------------------------------------------------------------------------- end to end: tiny VideoGLaMM


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, size=(6, 40, 56, 3), dtype=np.uint8)


@torch.no_grad()
def test_end_to_end_before_the_llm_meets_the_budget_and_ignores_the_text(tiny_video_segmenter, frames):
    seg = tiny_video_segmenter
    runs = [seg.segment(frames, ["a dog", "the red car"], budget=81, method="sttm", answer="Sure, [SEG].", mask_mode="none")
            for _ in range(2)]
    a, b = runs
    assert a.method == "sttm" and len(a.frame_tokens[0]) == 16 and a.llm_visual_tokens == b.llm_visual_tokens
    for e in range(2):
        count = sum(f.image_cells.numel() + f.video_cells.numel() for f in a.frame_tokens[e])
        assert a.llm_visual_tokens[e] == count <= 485
    for x, y in zip(a.frame_tokens[0], a.frame_tokens[1]):  # query-agnostic: both expressions send the same tokens
        assert torch.equal(x.image_cells, y.image_cells) and torch.equal(x.video_cells, y.video_cells)
    tight = seg.segment(frames, ["a dog"], budget=81, clip_budget=300, method="sttm", answer="Sure, [SEG].", mask_mode="none")
    assert tight.llm_visual_tokens[0] <= 300


def _generate(segmenter, frames, method, script, **options):
    with scripted_head(segmenter.model.llm, script):
        return segmenter.segment(frames, ["a dog"], budget=81, method=method, max_new_tokens=6, mask_mode="none", **options)


def _answer_script(seg, expression, answer):
    """The token ids of ``answer`` after the generation prompt: generating them reproduces the teacher-forced row."""
    question = video_question(expression, mode=seg.config.expression_text)
    prompt = prompt_ids(build_chat(question, seg.config.num_frames), seg.tokenizer)
    forced = prompt_ids(build_chat(question, seg.config.num_frames, answer), seg.tokenizer)
    return forced[len(prompt) :]


def record_generations(monkeypatch) -> list:
    """The [SEG] states of every generation (no pixel decoding in these runs), in call order."""
    states, original = [], video.segmenter.generate

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        states.append(out.seg_hidden.clone())
        return out

    monkeypatch.setattr(video.segmenter, "generate", recording)
    return states


@torch.no_grad()
def test_end_to_end_inside_the_llm_in_every_mode(tiny_video_segmenter, frames, monkeypatch):
    """sttm:released=True on a 2-layer LLM merges at layer 1 (with a warning); teacher-forced, cached and uncached runs
    of the same answer give the same [SEG] state, and every token enters the LLM."""
    seg = tiny_video_segmenter
    generated, forced = record_generations(monkeypatch), record_seg_states(seg, monkeypatch)
    method = method_from_spec("sttm:released=True")
    script = _answer_script(seg, "a dog", "Sure, [SEG].")
    assert seg.seg_token_id in script
    with pytest.warns(UserWarning, match="sttm: layer K=2 does not fit an LLM of 2 layers; merging at layer 1"):
        cached = _generate(seg, frames, method, script)
        plain = _generate(seg, frames, method, script, use_cache=False)
        taught = seg.segment(frames, ["a dog"], budget=81, method=method, answer="Sure, [SEG].")
    assert cached.answers == plain.answers and cached.has_seg == [True] and cached.llm_visual_tokens == [16 * 208]
    assert taught.llm_visual_tokens == [16 * 208] and len(forced) == 1
    torch.testing.assert_close(generated[0], generated[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(forced[0], generated[0], rtol=1e-4, atol=1e-5)

"""PruneVid (clip-level, with an in-LLM part): the released pre-LLM rules restated with numpy and loops, the
question-guided selection against an eager restatement on a tiny Phi-3, and end to end in the tiny VideoGLaMM."""

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import litelvlm.pruning.baselines.video_prunevid as prunevid  # registers "prunevid"
import video.segmenter
from litelvlm.lvlm import splice_and_pad
from litelvlm.pruning import ClipTokens, check_clip_budget, get_method, method_from_spec
from litelvlm.pruning.baselines.video_prunevid import (
    PruneVidPlan,
    PruneVidSelector,
    alpha_for_budget,
    density_noise,
    dpc_knn,
    merge_stream,
    refine_segments,
    run_lengths,
    tokens_after_layer,
)
from litelvlm.testing.llm import eager_layers, scripted_head, tiny_phi3_pair
from litelvlm.testing.videoglamm import record_seg_states

WINDOW = 9  # a Phi-3 sliding window shorter than the tiny sequences, so it matters


# ----------------------------------------------------------------------------- pre-LLM restatement (numpy, loops)


def np_dpc_knn(x, cluster_num, k, noise):
    """cluster_dpc_knn restated: explicit pairwise distances, density, parent distance, centres, nearest centre."""
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            dist[i, j] = math.sqrt(float(((x[i] - x[j]) ** 2).sum())) / math.sqrt(c)
    k = min(k, n)
    density = np.array([math.exp(-float((np.sort(dist[i])[:k] ** 2).mean())) + float(noise[i]) * 1e-6 for i in range(n)])
    biggest = dist.max()
    parent = np.array([min([dist[i, j] for j in range(n) if density[j] > density[i]], default=biggest) for i in range(n)])
    centres = list(np.argsort(-(parent * density), kind="stable")[:cluster_num])
    labels = [min(range(cluster_num), key=lambda r: (dist[centres[r], i], r)) for i in range(n)]
    for rank, centre in enumerate(centres):
        labels[centre] = rank
    return labels, centres


def np_refine(labels):
    """refine_clusters restated with itertools.groupby runs and None for freed frames."""
    runs, start = [], 0
    for label, group in itertools.groupby(labels):
        length = len(list(group))
        runs.append((label, start, length))
        start += length
    longest = {}
    for label, _, length in runs:
        longest[label] = max(longest.get(label, 0), length)
    out = list(labels)
    for label, s, length in runs:
        if longest[label] == 1 or length < longest[label]:
            out[s : s + length] = [None] * length
    n, i = len(out), 0

    def run_from(pos, step):
        label, count = out[pos], 0
        while 0 <= pos < n and out[pos] == label:
            count, pos = count + 1, pos + step
        return count

    while i < n:
        if out[i] is not None:
            i += 1
            continue
        j = i
        while j < n and out[j] is None:
            j += 1
        left = run_from(i - 1, -1) if i > 0 else 0
        right = run_from(j, 1) if j < n else 0
        if i == 0 and j == n:
            label = 0
        elif right > left or i == 0:
            label = out[j]
        else:
            label = out[i - 1]
        out[i:j] = [label] * (j - i)
        i = j
    return out


def np_merge_stream(tokens, tau=0.8, ratio=0.25, cluster_ratio=0.5, k=7, threshold=14, seed=0):
    """merge_frames_dynamic restated: [(start, length, static positions, static (tokens, cells), [(tokens, cells)] per frame)]."""
    x = np.asarray(tokens, dtype=np.float64)
    frames, n, _ = x.shape
    labels, _ = np_dpc_knn(x.mean(axis=1), max(1, int(frames * ratio)), k, density_noise(frames, seed).numpy())
    refined = np_refine(labels)
    out, start = [], 0
    for _, group in itertools.groupby(refined):
        length = len(list(group))
        static = []
        for pos in range(n):
            if length < 2:
                continue
            total = 0.0
            for a in range(length):
                for b in range(length):
                    if a != b:
                        u, v = x[start + a, pos], x[start + b, pos]
                        total += float(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))
            if total / (length * (length - 1)) > tau:
                static.append(pos)
        dynamic = [p for p in range(n) if p not in static]

        def merged(features, cells):
            if len(cells) <= threshold:
                return features, list(cells)
            num = int(len(cells) * cluster_ratio)
            member, centres = np_dpc_knn(features, num, k, density_noise(len(cells), seed).numpy())
            means = np.stack([features[[i for i in range(len(cells)) if member[i] == r]].mean(axis=0) for r in range(num)])
            return means, [cells[c] for c in centres]

        static_tokens = x[start : start + length][:, static].mean(axis=0) if static else np.zeros((0, x.shape[2]))
        per_frame = [merged(x[start + a][dynamic], dynamic) for a in range(length)]
        out.append((start, length, static, merged(static_tokens, static), per_frame))
        start += length
    return out


def _scene_stream(seed, frames=16, side=12, width=16, scenes=((0, 5, 40), (5, 11, 10), (11, 16, 70))):
    """(F, side*side, width) tokens in scenes (first frame, end, static positions): static positions vary little
    inside a scene, the others are new every frame; each scene adds its own offset."""
    gen = torch.Generator().manual_seed(seed)
    n = side * side
    tokens = torch.randn(frames, n, width, generator=gen)
    for first, end, num_static in scenes:
        positions = torch.randperm(n, generator=gen)[:num_static]
        base = torch.randn(num_static, width, generator=gen)
        tokens[first:end, positions] = base + 0.05 * torch.randn(end - first, num_static, width, generator=gen)
        tokens[first:end] += 1.5 * torch.randn(width, generator=gen)
    return tokens


def test_dpc_knn_equals_a_restatement():
    gen = torch.Generator().manual_seed(5)
    for n, c, num in [(40, 8, 20), (144, 16, 72), (16, 16, 4), (15, 4, 7)]:
        x = torch.randn(n, c, generator=gen) * torch.rand(n, 1, generator=gen) * 3
        noise = density_noise(n, 7)
        labels, centres = dpc_knn(x, num, 7, noise)
        ref_labels, ref_centres = np_dpc_knn(x.numpy(), num, 7, noise.numpy())
        assert centres.tolist() == [int(c) for c in ref_centres] and labels.tolist() == ref_labels
        assert sorted(set(labels.tolist())) == list(range(num))


def test_refine_segments_equals_a_restatement_and_worked_examples():
    assert refine_segments([0, 0, 1, 0, 0, 0, 2, 2, 1, 1, 1, 3]) == [0, 0, 0, 0, 0, 0, 2, 2, 1, 1, 1, 1]
    assert refine_segments([0, 0, 5, 1, 1]) == [0, 0, 0, 1, 1]  # a tie goes left
    assert refine_segments([3, 1, 2, 0]) == [0, 0, 0, 0]  # nothing survives: label 0
    assert refine_segments([1, 0, 0, 1, 1, 1]) == [0, 0, 0, 1, 1, 1]
    assert refine_segments([2, 2, 0, 0, 1, 2, 2]) == [2, 2, 0, 0, 0, 2, 2]  # tied longest runs of label 2 both stay
    assert run_lengths([0, 0, 0, 0, 0, 0, 2, 2, 1, 1, 1, 1]) == [6, 2, 4]
    rng = np.random.default_rng(0)
    for _ in range(300):
        labels = rng.integers(0, 4, size=int(rng.integers(1, 17))).tolist()
        assert refine_segments(labels) == np_refine(labels)


@pytest.mark.parametrize("side, seed", [(12, 0), (8, 1), (12, 2)])
def test_merge_stream_equals_a_restatement(side, seed):
    scenes = ((0, 5, 40), (5, 11, 10), (11, 16, 70)) if side == 12 else ((0, 7, 20), (7, 16, 9))
    tokens = _scene_stream(seed, side=side, scenes=scenes)
    ours = merge_stream(tokens, seed=seed)
    ref = np_merge_stream(tokens.numpy(), seed=seed)
    assert [(w.start, w.length) for w in ours.windows] == [(s, n) for s, n, *_ in ref]
    assert len(ours.windows) > 1 and any(w.static_mask.sum() > 14 for w in ours.windows)
    assert any(0 < w.static_mask.sum() <= 14 for w in ours.windows) or side == 8
    for window, (_, _, static, (static_tokens, static_cells), per_frame) in zip(ours.windows, ref):
        assert window.static_mask.nonzero().flatten().tolist() == static
        assert window.static_cells.tolist() == [int(c) for c in static_cells]
        np.testing.assert_allclose(window.static.numpy(), static_tokens, rtol=0, atol=1e-6)
        for dynamic, dynamic_cells, (ref_tokens, ref_cells) in zip(window.dynamic, window.dynamic_cells, per_frame):
            assert dynamic_cells.tolist() == [int(c) for c in ref_cells]
            np.testing.assert_allclose(dynamic.numpy(), ref_tokens, rtol=0, atol=1e-6)
        assert len({d.shape[0] for d in window.dynamic}) == 1  # every frame of a window keeps the same count


def test_alpha_is_the_largest_candidate_that_meets_the_budget():
    sizes = [37, 35, 35, 0, 8, 64, 3]
    for target in [0, 1, 17, 50, 100, 181, 182, 500]:
        alpha = alpha_for_budget(sizes, target)
        brute = max([a for a in {j / n for n in sizes if n for j in range(n + 1)} | {1.0}
                     if sum(int(n * a) for n in sizes) <= target])
        assert alpha == brute and tokens_after_layer(sizes, alpha) <= target


def _clip_tokens(seed=3):
    image = _scene_stream(seed, width=32)
    video = _scene_stream(seed + 10, side=8, width=32, scenes=((0, 8, 20), (8, 16, 5)))
    return ClipTokens(SimpleNamespace(grid=(24, 24)), None, image, (12, 12), video, (8, 8))


def test_select_clip_sends_each_window_in_the_release_order_and_meets_the_budget():
    tokens = _clip_tokens()
    selector = get_method("prunevid")
    assert isinstance(selector, PruneVidSelector) and not selector.uses_text and selector.stage == "clip"
    frames = selector.select_clip(tokens, 81)
    image, video = merge_stream(tokens.image_tokens), merge_stream(tokens.video_tokens)
    for stream, attr in ((image, "image"), (video, "video")):
        sequence = torch.cat([getattr(f, attr) for f in frames])
        cells = torch.cat([getattr(f, attr + "_cells") for f in frames])
        expected = torch.cat([torch.cat([w.static, *w.dynamic]) for w in stream.windows])
        torch.testing.assert_close(sequence, expected)
        assert torch.equal(cells, torch.cat([torch.cat([w.static_cells, *w.dynamic_cells]) for w in stream.windows]))
        for window in stream.windows:  # the static tokens open the window's first frame
            first = getattr(frames[window.start], attr)
            torch.testing.assert_close(first[: window.static.shape[0]], window.static)
    for f, record in enumerate(frames):  # the CLIP patches of the sent cells
        cell = record.image_cells
        corner = (cell // 12) * 48 + (cell % 12) * 2
        assert torch.equal(record.clip_indices, torch.cat([corner, corner + 1, corner + 24, corner + 25]).sort().values)
    stats = selector.last_stats
    target = 16 * 21 + round(16 * 64 * 21 / 144)
    assert target == 485 and stats.target == target and stats.tokens_after_layer <= target
    assert stats.pre_llm_tokens == sum(f.num_tokens for f in frames) == image.num_tokens + video.num_tokens > target
    sizes = [n for s in (image, video) for w in s.windows for n in w.group_sizes]
    assert stats.alpha == alpha_for_budget(sizes, target)
    plan = selector.llm_plan([f.image.shape[0] for f in frames], sum(f.video.shape[0] for f in frames))
    assert plan.tokens_after_layer == stats.tokens_after_layer and plan.layer == 10
    assert [n for _, n in plan.groups] == sizes and plan.groups[0][0] == 0
    assert all(s + n == t for (s, n), (t, _) in zip(plan.groups, plan.groups[1:]))
    fixed = get_method("prunevid", alpha=0.4)
    fixed.select_clip(tokens, 81)
    assert fixed.last_stats.tokens_after_layer == tokens_after_layer(sizes, 0.4) and fixed.last_stats.target is None
    with pytest.raises(ValueError, match="either alpha"):
        fixed.select_clip(tokens, 81, clip_budget=300)
    with pytest.raises(ValueError, match="must follow its select_clip"):
        selector.llm_plan([1] * 16, 3)
    selector.select_clip(tokens, None, clip_budget=200)
    assert selector.last_stats.tokens_after_layer <= 200 < tokens_after_layer(sizes, 1.0)


# ----------------------------------------------------------------------------- in the LLM: tiny Phi-3


@pytest.fixture(scope="module")
def phi3s():
    return tiny_phi3_pair(WINDOW)


def _batch(model, before, after, num_visual=12, seed=1):
    gen = torch.Generator().manual_seed(seed)
    prompts = [[1] + list(range(3, 3 + a)) + [-200] + list(range(10, 10 + b)) for a, b in zip(before, after)]
    visual = [[torch.randn(num_visual, 32, generator=gen)] for _ in prompts]
    return splice_and_pad(prompts, visual, model.get_input_embeddings(), -200)


def _layer_inputs(model, embeds, upto):
    """Inputs of eager layers 0..upto on the whole row (explicit sliding-window masks)."""
    positions = torch.arange(embeds.shape[0])[None]
    inputs = [embeds[None]]
    for layer in model.layers[:upto]:
        inputs.append(eager_layers(model, inputs[-1], positions, [layer], WINDOW))
    return inputs


def _restated_scores(model, layer_input, token_ids, k, end):
    """The release's score, by loops: per head and question position, the softmax over keys 0..end-1 of the un-rotated
    q.k / sqrt(d) with no mask; a visual token keeps its largest weight."""
    layer = model.layers[k]
    normed = layer.input_layernorm(layer_input[0, :end])
    weight, d, heads, kv_heads = layer.self_attn.qkv_proj.weight, 8, 4, 2
    visual = [j for j in range(end) if token_ids[j] == -1]
    scores = torch.zeros(end, dtype=torch.float64)
    for h in range(heads):
        g = h // (heads // kv_heads)
        wq, wk = weight[h * d : (h + 1) * d].double(), weight[heads * d + g * d : heads * d + (g + 1) * d].double()
        keys = normed.double() @ wk.T
        for q in range(max(visual) + 1, end):
            probs = torch.softmax((keys @ (wq @ normed[q].double())) / math.sqrt(d), dim=0)
            for j in visual:
                scores[j] = max(scores[j], probs[j])
    return scores, torch.tensor(visual)


def _restated_kept(scores, visual, plan):
    kept = []
    for start, size in plan.groups:
        if size:
            group = scores[visual[start : start + size]]
            kept.append(sorted(torch.argsort(group, descending=True)[: int(size * plan.alpha)].tolist()))
    return kept


def _restated_prefill(model, embeds, stay, k):
    """Layers 0..K on the whole row, K+1.. on ``stay`` at their original positions (eager)."""
    hidden = _layer_inputs(model, embeds, k + 1)[-1]
    return model.norm(eager_layers(model, hidden[:, stay], stay[None], model.layers[k + 1 :], WINDOW))[0]


def _restated_decode(model, embeds, stay, k, new):
    """The last of ``new`` (m, H) decoded tokens: in every layer they see only the staying positions' keys and values
    (layers 0..K: those of the whole-row pass) and each other, at positions continuing the unpruned numbering."""
    inputs = _layer_inputs(model, embeds, k + 1)
    m, length = new.shape[0], embeds.shape[0]
    positions = torch.cat([stay, length + torch.arange(m)])[None]
    x = new[None]
    for i in range(k + 1):
        x = eager_layers(model, torch.cat([inputs[i][:, stay], x], dim=1), positions, [model.layers[i]], WINDOW)[:, -m:]
    out = eager_layers(model, torch.cat([inputs[k + 1][:, stay], x], dim=1), positions, model.layers[k + 1 :], WINDOW)
    return model.norm(out)[0, -1]


PLAN = PruneVidPlan([(0, 5), (5, 4), (9, 0), (9, 3)], alpha=0.5, layer=1, num_visual=12)  # keeps 2 + 2 + 1


@torch.no_grad()

def test_the_released_setting_runs_the_released_ratio_whatever_the_budget():
    """prunevid:released=True: alpha = 0.4 at layer K = 10 (every group keeps int(0.4 n)), tau = 0.8, 0.25 F scenes,
    cluster ratio 0.5, k = 7, 14-token threshold, at every budget; alpha chosen from the budget stays the default."""
    tokens = _clip_tokens()
    released = method_from_spec("prunevid:released=True")
    settings = (released.alpha, released.layer, released.tau, released.temporal_segment_ratio, released.cluster_ratio,
                released.k, released.min_cluster_tokens)
    assert settings == (0.4, 10, 0.8, 0.25, 0.5, 7, 14)
    image, video = merge_stream(tokens.image_tokens), merge_stream(tokens.video_tokens)
    sizes = [n for s in (image, video) for w in s.windows for n in w.group_sizes]
    for budget in (81, 196, None):
        frames = released.select_clip(tokens, budget)
        stats = released.last_stats
        assert stats.alpha == 0.4 and stats.target is None and stats.tokens_after_layer == tokens_after_layer(sizes, 0.4)
        assert stats.pre_llm_tokens == sum(f.num_tokens for f in frames)
        plan = released.llm_plan([f.image.shape[0] for f in frames], sum(f.video.shape[0] for f in frames))
        assert plan.alpha == 0.4 and plan.layer == 10
    default = get_method("prunevid")
    default.select_clip(tokens, 81)
    assert default.last_stats.alpha == alpha_for_budget(sizes, 485) != 0.4 and default.last_stats.target == 485
    with pytest.raises(ValueError, match="takes no clip budget: released=True runs the release's fixed in-LLM ratio alpha = 0.4"):
        released.select_clip(tokens, 81, clip_budget=300)
    with pytest.raises(ValueError, match="either alpha"):
        check_clip_budget("prunevid:released=True", 300)
    with pytest.raises(ValueError, match="released=True runs the release's alpha=0.4; got alpha=0.5"):
        get_method("prunevid", released=True, alpha=0.5)


def test_teacher_forced_prefill_equals_an_eager_restatement(phi3s):
    sdpa, eager = phi3s
    batch = _batch(sdpa, [3, 1], [6, 4])
    out = PLAN.prefill(sdpa, batch)
    assert PLAN.tokens_after_layer == 5 and PLAN.scoring_layer(3) == 1 and PLAN.scoring_layer(2) == 0
    for b, length in enumerate(batch.lengths):
        embeds, ids = batch.inputs_embeds[b, :length], batch.token_ids[b, :length]
        layer_input = _layer_inputs(eager.model, embeds, 1)[-1]
        scores, visual = _restated_scores(eager.model, layer_input, ids.tolist(), 1, length)
        kept = _restated_kept(scores, visual, PLAN)
        assert [k.tolist() for k in out.kept[b]] == kept
        dropped = set(visual.tolist()) - {int(visual[s + i]) for (s, n), k in zip([g for g in PLAN.groups if g[1]], kept) for i in k}
        stay = torch.tensor([i for i in range(length) if i not in dropped])
        assert len(dropped) == 7 and torch.equal(out.token_ids[b, : stay.numel()], ids[stay])
        assert torch.equal(out.positions[b, : stay.numel()], stay)  # original position ids
        torch.testing.assert_close(out.hidden[b, : stay.numel()], _restated_prefill(eager.model, embeds, stay, 1), rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_the_prompt_alone_is_scored_when_its_length_is_given(phi3s):
    """A teacher-forced row scored on its prompt keeps what generation's prefill of that prompt keeps."""
    sdpa, _ = phi3s
    full = _batch(sdpa, [2], [9])
    prompt = _batch(sdpa, [2], [5])
    assert torch.equal(full.inputs_embeds[0, : prompt.lengths[0]], prompt.inputs_embeds[0])
    limited = PLAN.prefill(sdpa, full, prompt_lengths=prompt.lengths)
    alone = PLAN.prefill(sdpa, prompt)
    whole = PLAN.prefill(sdpa, full)
    assert [k.tolist() for k in limited.kept[0]] == [k.tolist() for k in alone.kept[0]]
    assert [k.tolist() for k in whole.kept[0]] != [k.tolist() for k in alone.kept[0]]  # the answer's queries count
    n = alone.hidden.shape[1]
    torch.testing.assert_close(limited.hidden[0, :n], alone.hidden[0], rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_cached_generation_equals_an_eager_restatement(phi3s):
    sdpa, eager = phi3s
    batch = _batch(sdpa, [3], [4])
    length = batch.lengths[0]
    forward = PLAN.generation_forward(sdpa, batch.token_ids, use_cache=True)
    hidden, state = forward(batch.inputs_embeds, None)
    ids = batch.token_ids[0]
    visual = (ids == -1).nonzero().flatten()
    kept = [visual[s + k] for (s, n), k in zip([g for g in PLAN.groups if g[1]], forward.kept)]
    stay = torch.tensor(sorted(set(range(length)) - set(visual.tolist()) | {int(i) for k in kept for i in k}))
    torch.testing.assert_close(hidden[0], _restated_prefill(eager.model, batch.inputs_embeds[0], stay, 1), rtol=1e-4, atol=1e-5)
    assert all(state["cache"].get_seq_length(i) == stay.numel() for i in range(3))  # every layer's cache is pruned
    new = torch.zeros(0, 32)
    for step in range(WINDOW + 2):  # past the sliding window
        token = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(step))
        hidden, state = forward(token, state)
        new = torch.cat([new, token[0]])
        torch.testing.assert_close(hidden[0, 0], _restated_decode(eager.model, batch.inputs_embeds[0], stay, 1, new),
                                   rtol=1e-4, atol=1e-5)
    # without the cache every step re-runs the prefill, scored on the prompt: the same choice
    no_cache = PLAN.generation_forward(sdpa, batch.token_ids, use_cache=False)
    sequence = torch.cat([batch.inputs_embeds, new[None, :3]], dim=1)
    again, none = no_cache(sequence, None)
    assert none is None and [k.tolist() for k in no_cache.kept] == [k.tolist() for k in forward.kept]
    assert again.shape[1] == stay.numel() + 3


# ----------------------------------------------------------------------------- end to end: tiny VideoGLaMM


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, size=(6, 40, 56, 3), dtype=np.uint8)


def _capture(monkeypatch):
    calls, original = [], PruneVidPlan.prefill

    def capturing(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append((self, out))
        return out

    monkeypatch.setattr(PruneVidPlan, "prefill", capturing)
    return calls


@torch.no_grad()
def test_teacher_forced_end_to_end_is_deterministic_and_meets_the_budget(tiny_video_segmenter, frames, monkeypatch):
    seg = tiny_video_segmenter
    calls = _capture(monkeypatch)
    states = record_seg_states(seg, monkeypatch)
    texts = ["a dog", "the red car on the left"]  # one batched teacher-forced prefill of two rows
    runs = [seg.segment(frames, texts, budget=81, method="prunevid", answer="Sure, [SEG].") for _ in range(2)]
    a, b = runs
    assert a.method == "prunevid" and len(a.frame_tokens[0]) == 16 and len(a.kept[0]) == 16
    assert np.array_equal(a.masks, b.masks) and a.llm_visual_tokens == b.llm_visual_tokens
    torch.testing.assert_close(states[0], states[1], rtol=0, atol=0)
    assert states[0].shape[0] == 2
    plan, out = calls[0]
    assert plan.scoring_layer(len(seg.model.llm.model.layers)) == 0  # 2 layers: K = 10 becomes 0
    assert [[k.tolist() for k in row] for row in out.kept] == [[k.tolist() for k in row] for row in calls[1][1].kept]
    for e in range(2):  # the pre-LLM part uses no text: both expressions send the same visual tokens
        pre_llm = sum(f.image_cells.numel() + f.video_cells.numel() for f in a.frame_tokens[e])
        assert a.llm_visual_tokens[e] == pre_llm == plan.num_visual  # what enters the LLM, after the pre-LLM merging
        valid = int((out.token_ids[e] != -1).nonzero().max()) + 1  # rows end in text; -1 beyond is padding
        after = int((out.token_ids[e, :valid] == -1).sum())
        assert after == plan.tokens_after_layer <= 485 < plan.num_visual
    assert 485 - plan.tokens_after_layer < len(plan.groups)  # the largest common ratio: at most one token short per group
    full = seg.segment(frames, texts, budget=None, answer="Sure, [SEG].")
    assert full.llm_visual_tokens == [16 * (144 + 64)] * 2 and not torch.allclose(states[0], states[2], atol=1e-4)




def _generate(segmenter, frames, script, **options):
    with scripted_head(segmenter.model.llm, script):
        return segmenter.segment(frames, ["a dog"], budget=81, method="prunevid", max_new_tokens=6, mask_mode="none", **options)


@torch.no_grad()
def test_generation_with_and_without_the_cache(tiny_video_segmenter, frames, monkeypatch):
    seg = tiny_video_segmenter
    calls = _capture(monkeypatch)
    states, original = [], video.segmenter.generate

    def recording(*args, **kwargs):  # the [SEG] states of every generation (no pixel decoding in these runs)
        out = original(*args, **kwargs)
        states.append(out.seg_hidden.clone())
        return out

    monkeypatch.setattr(video.segmenter, "generate", recording)
    script = [seg.seg_token_id, 5, min(seg.eos_token_ids)]
    cached = [_generate(seg, frames, script) for _ in range(2)]
    plain = _generate(seg, frames, script, use_cache=False)
    for run in cached + [plain]:
        assert run.answers == cached[0].answers and run.has_seg == [True] and run.forward_passes == 3
    assert len(calls) == 2 + 3  # one prefill per cached run; every no-cache step re-runs it (encoders included)
    kept = [[k.tolist() for k in out.kept[0]] for _, out in calls]
    assert all(k == kept[0] for k in kept)  # the prompt's choice, in every mode and step
    assert calls[0][1].cache is not None and calls[2][1].cache is None
    assert calls[0][0].tokens_after_layer == int((calls[0][1].token_ids[0] == -1).sum()) <= 485
    # the [SEG] is the first token: its state comes from the prompt's prefill, the same in both modes
    torch.testing.assert_close(states[0], states[1], rtol=0, atol=0)
    torch.testing.assert_close(states[0], states[2], rtol=1e-5, atol=1e-6)
    assert prunevid.PruneVidSelector is type(get_method("prunevid"))


@torch.no_grad()
def test_teacher_forced_runs_score_the_prompt_as_generation_does(tiny_video_segmenter, frames, monkeypatch):
    """The segmenter tells the plan where each teacher-forced row's prompt ends: the fixed answer is not scored, so
    the kept tokens are the generation prompt's (causal layers: the prompt's states do not see the answer)."""
    seg = tiny_video_segmenter
    calls = _capture(monkeypatch)
    seg.segment(frames, ["a dog"], budget=81, method="prunevid", answer="Sure, [SEG].", mask_mode="none")
    _generate(seg, frames, [seg.seg_token_id, min(seg.eos_token_ids)])
    (_, forced), (_, generated) = calls
    assert [k.tolist() for k in forced.kept[0]] == [k.tolist() for k in generated.kept[0]]

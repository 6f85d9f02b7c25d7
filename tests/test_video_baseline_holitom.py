"""HoliTom (clip-level, with an in-LLM part): the released pre-LLM merging restated with numpy and loops, the inner
merge against the release's sequential loop and an eager restatement on a tiny Phi-3, and end to end in the tiny
VideoGLaMM."""

import math

import numpy as np
import pytest
import torch

import video.segmenter
from litelvlm.lvlm import splice_and_pad
from litelvlm.pruning import ClipTokens, check_clip_budget, get_method, method_from_spec
from litelvlm.pruning.baselines.video_holitom import (
    HoliTomSelector,
    holitom_count,
    holitom_stream,
    retain_ratio_for_budget,
    select_static_windows,
    static_mask,
    frame_similarity,
)
from litelvlm.pruning.baselines.video_holitom_llm import HoliTomPlan, inner_merge
from litelvlm.pruning.baselines.video_prunevid import density_noise
from litelvlm.testing.llm import eager_layers, scripted_head, tiny_phi3_pair
from litelvlm.testing.videoglamm import record_seg_states
from litelvlm.timing import StageTimer
from video.io import sample_frame_indices
from video.prompt import build_chat, prompt_ids, video_question

WINDOW = 9  # a Phi-3 sliding window shorter than the tiny sequences, so it matters


# ----------------------------------------------------------------------------- the release restated (numpy, loops)


def cos(a, b):
    return float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))


def np_windows(x, tau, max_window=1024):
    """select_static_windows with loops: savings c[s][e], the dynamic programme, the backtrack."""
    frames, num = x.shape[:2]
    sim = np.array([[cos(x[t, n], x[t + 1, n]) for n in range(num)] for t in range(frames - 1)])
    c = [[0.0] * frames for _ in range(frames)]
    for s in range(frames):
        for e in range(s + 1, frames):
            c[s][e] = sum(all(sim[t, n] > tau for t in range(s, e)) for n in range(num)) * (e - s)
    dp, prev = [0.0] * frames, [0] * frames
    for i in range(frames):
        best, start = (dp[i - 1] if i else 0.0), i
        for size in range(2, min(i + 1, max_window) + 1):
            j = i - size
            value = (dp[j] if j >= 0 else 0.0) + c[j + 1][i]
            if value > best:
                best, start = value, j + 1
        dp[i], prev[i] = best, start
    windows, i = [], frames - 1
    while i >= 0:
        windows.append((prev[i], i))
        i = prev[i] - 1
    return windows[::-1], dp[-1], sim


def np_cluster(static, clusters, beta, k, noise):
    """merge_tokens_by_density: DPC-KNN centres (sorted), nearest-centre members, beta-weighted means."""
    n, width = static.shape
    dist = np.array([[np.linalg.norm(static[i] - static[j]) for j in range(n)] for i in range(n)]) / math.sqrt(width)
    kk = min(k, clusters)
    density = np.array([math.exp(-float((np.sort(dist[i])[:kk] ** 2).mean())) + float(noise[i]) * 1e-6 for i in range(n)])
    parent = np.array([min([dist[i, j] for j in range(n) if density[j] > density[i]], default=dist.max()) for i in range(n)])
    centres = sorted(np.argsort(-(parent * density), kind="stable")[:clusters].tolist())
    members = {c: [] for c in centres}
    for i in range(n):
        if i not in centres:
            members[centres[int(np.argmin([dist[i, c] for c in centres]))]].append(static[i])
    return [beta * static[c] + (1 - beta) * np.mean(members[c], axis=0) if members[c] else static[c] for c in centres], centres


def np_holitom(tokens, attention, r, tau=0.8, beta=0.6, k=7, seed=0):
    """[(first, last, static positions, static (tokens, cells), [(tokens, cells)] per frame)]."""
    x = np.asarray(tokens, dtype=np.float64)
    frames, num = x.shape[:2]
    windows, reduced, sim = np_windows(x, tau)
    ratio = min(r / ((frames * num - reduced) / (frames * num)), 1)
    out = []
    for first, last in windows:
        static = [] if first == last else [n for n in range(num) if all(sim[t, n] > tau for t in range(first, last))]
        dynamic = [n for n in range(num) if n not in static]
        merged, cells = [], []
        clusters = round(len(static) * ratio) if last > first else 0
        if clusters:
            means = x[first : last + 1][:, static].mean(axis=0)
            merged, centres = np_cluster(means, clusters, beta, k, density_noise(len(static), seed).numpy())
            cells = [static[c] for c in centres]
        keep = math.ceil(len(dynamic) * ratio)
        per_frame = []
        for f in range(first, last + 1):
            top = sorted(sorted(dynamic, key=lambda n: (-attention[f, n], n))[:keep])
            per_frame.append((x[f, top], top))
        out.append((first, last, static, (merged, cells), per_frame))
    return out, ratio


def _scenes(seed, frames=8, side=12, width=16, scenes=((0, 4, 60), (4, 5, 0), (5, 8, 30))):
    """(frames, side*side, width) tokens in scenes (first, end, static positions): static positions barely change
    inside a scene, the rest are new every frame."""
    gen = torch.Generator().manual_seed(seed)
    n = side * side
    tokens = torch.randn(frames, n, width, generator=gen)
    for first, end, num_static in scenes:
        positions = torch.randperm(n, generator=gen)[:num_static]
        tokens[first:end, positions] = torch.randn(num_static, width, generator=gen) + 0.05 * torch.randn(end - first, num_static, width, generator=gen)
    return tokens


@pytest.mark.parametrize("side, seed, ratio", [(12, 0, 0.3), (8, 1, 0.15), (12, 2, 0.6)])
def test_holitom_stream_equals_a_restatement(side, seed, ratio):
    tokens = _scenes(seed, side=side, scenes=((0, 4, 60), (4, 5, 0), (5, 8, 30)) if side == 12 else ((0, 5, 20), (5, 8, 12)))
    attention = torch.rand(8, side * side, generator=torch.Generator().manual_seed(seed + 100))
    ours = holitom_stream(tokens, attention, ratio, seed=seed)
    ref, ref_ratio = np_holitom(tokens.numpy(), attention.numpy(), ratio, seed=seed)
    assert ours.ratio == pytest.approx(ref_ratio, rel=1e-12)
    assert [(w.start, w.start + w.length - 1) for w in ours.windows] == [(a, b) for a, b, *_ in ref]
    assert len(ours.windows) > 1 and any(w.static.shape[0] > 0 for w in ours.windows)
    for window, (_, _, static, (static_tokens, static_cells), per_frame) in zip(ours.windows, ref):
        assert window.static_mask.nonzero().flatten().tolist() == static
        assert window.static_cells.tolist() == static_cells
        if static_cells:
            np.testing.assert_allclose(window.static.numpy(), np.stack(static_tokens), rtol=1e-5, atol=1e-5)
        for dynamic, cells, (ref_tokens, ref_cells) in zip(window.dynamic, window.dynamic_cells, per_frame):
            assert cells.tolist() == ref_cells
            np.testing.assert_allclose(dynamic.numpy(), ref_tokens, rtol=1e-6, atol=1e-6)
    assert any(len(s) > len(c) > 0 for _, _, s, (_, c), _ in ref)  # static tokens clustered, with members


def test_the_segmentation_keeps_the_shorter_window_on_ties():
    """c(0,1) = 2, c(1,2) = 1, c(0,2) = 2: frames 0-2 as one window only ties [0-1] + [2], so the release keeps that."""
    assert select_static_windows(torch.tensor([[0.9, 0.9], [0.1, 0.9]]), 0.8) == ([(0, 1), (2, 2)], 2.0)
    assert select_static_windows(torch.tensor([[0.9, 0.1], [0.9, 0.1]]), 0.8) == ([(0, 2)], 2.0)
    assert select_static_windows(torch.tensor([[0.9, 0.1], [0.9, 0.1]]), 0.8, max_window_size=2) == ([(0, 1), (2, 2)], 1.0)
    x = _scenes(4).numpy()
    similarity = frame_similarity(torch.tensor(x))
    assert select_static_windows(similarity, 0.8) == np_windows(x, 0.8)[:2]
    assert static_mask(similarity, 2, 2, 0.8).sum() == 0


def test_the_count_and_the_budget_ratio():
    streams = [_scenes(0), _scenes(1, side=8, scenes=((0, 5, 20), (5, 8, 12)))]
    attention = [torch.rand(8, t.shape[1], generator=torch.Generator().manual_seed(i)) for i, t in enumerate(streams)]
    for ratio in (0.05, 0.15, 0.3337, 0.8, 1.0):
        for tokens, scores in zip(streams, attention):
            stream = holitom_stream(tokens, scores, ratio)
            similarity = frame_similarity(tokens)
            windows = [(w.start, w.start + w.length - 1) for w in stream.windows]
            statics = [int(static_mask(similarity, a, b, 0.8).sum()) for a, b in windows]
            assert holitom_count(windows, statics, tokens.shape[1], stream.ratio) == stream.num_tokens

    def count(r):
        return sum(holitom_stream(t, s, r).num_tokens for t, s in zip(streams, attention))

    for target in (40, 300, 700):
        r = retain_ratio_for_budget(streams, target)
        assert count(r) <= target < count(min(1.0, r + 1e-8))
    assert retain_ratio_for_budget(streams, 10**6) == 1.0


def np_inner_merge(states, scores, merge_ratio):
    """modeling_qwen2.py:158-181 with a loop: the top round(V (1 - r)), every other token averaged in turn into the
    staying token of highest cosine similarity (similarities of the unmerged states)."""
    x = np.asarray(states, dtype=np.float64)
    count = x.shape[0]
    top = sorted(range(count), key=lambda i: (-float(scores[i]), i))[: max(1, round(count * (1 - merge_ratio)))]
    h = x.copy()
    for i in (i for i in range(count) if i not in top):
        similarity = [cos(x[i], x[t]) for t in top]
        dst = top[int(np.argmax(similarity))]
        h[dst] = (h[dst] + h[i]) / 2
    kept = sorted(top)
    return kept, h[kept]


def test_inner_merge_equals_the_sequential_loop():
    gen = torch.Generator().manual_seed(0)
    for count, ratio in ((40, 0.5), (41, 0.5), (97, 0.75), (10, 0.0), (7, 0.9)):
        states = torch.randn(count, 8, generator=gen) + torch.randn(1, 8, generator=gen)
        scores = torch.rand(count, generator=gen)
        kept, merged = inner_merge(states, scores, ratio)
        ref_kept, ref_merged = np_inner_merge(states.numpy(), scores.numpy(), ratio)
        assert kept.tolist() == ref_kept and len(ref_kept) == max(1, round(count * (1 - ratio)))
        np.testing.assert_allclose(merged.numpy(), ref_merged, rtol=1e-5, atol=1e-6)
    assert len(inner_merge(torch.randn(41, 4), torch.rand(41), 0.5)[0]) == 20  # round(20.5): halves to even


# ----------------------------------------------------------------------------- the method on the tiny VideoGLaMM's clip

FRAMES = np.random.default_rng(3).integers(0, 256, size=(8, 40, 48, 3), dtype=np.uint8)


def _tokens(seg):
    sampled = FRAMES[sample_frame_indices(len(FRAMES), seg.config.num_frames)]
    enc = seg._encode_clip(sampled, StageTimer())
    pool, video_side = seg.model.config.image_pool_side, seg.model.config.video_pool_side
    image = seg.model.pool_image_tokens(seg.model.project_image_tokens(enc.frames.patches))
    return ClipTokens(enc.frames, None, image, (pool, pool), enc.video_tokens, (video_side, video_side), seg.model.project_image_tokens)


def _received(q, k, heads, f):
    """(1+N,) float64: the attention each key of frame ``f`` receives, averaged over heads and all queries."""
    width = q.shape[-1] // heads
    received = np.zeros(q.shape[1])
    for h in range(heads):
        logits = q[f, :, h * width : (h + 1) * width] @ k[f, :, h * width : (h + 1) * width].T / math.sqrt(width)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        received += (weights / weights.sum(axis=1, keepdims=True)).mean(axis=0) / heads
    return received


def test_the_attention_score_is_what_each_patch_receives(tiny_video_segmenter):
    """CLIP's producing layer: softmax(q k^T / sqrt(d)) averaged over heads and all queries, patch columns, then each
    cell's 2x2 patches (the video stream: the CLIP patches under each token)."""
    tokens = _tokens(tiny_video_segmenter)
    frames = tokens.frames
    q, k, heads = frames.select_query.double().numpy(), frames.select_key.double().numpy(), frames.num_heads
    image, video = get_method("holitom").salient_scores(tokens)
    for f in (0, 7):
        grid = _received(q, k, heads, f)[1:].reshape(24, 24)
        np.testing.assert_allclose(image[f].numpy(), grid.reshape(12, 2, 12, 2).mean(axis=(1, 3)).reshape(-1), rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(video[f].numpy(), grid.reshape(8, 3, 8, 3).mean(axis=(1, 3)).reshape(-1), rtol=1e-4, atol=1e-9)


def test_select_clip_sends_each_window_in_the_release_order_and_meets_the_budget(tiny_video_segmenter):
    tokens = _tokens(tiny_video_segmenter)
    selector = get_method("holitom")
    assert isinstance(selector, HoliTomSelector) and selector.uses_text is False and selector.stage == "clip"
    frames = selector.select_clip(tokens, 81)
    stats = selector.last_stats
    r = retain_ratio_for_budget([tokens.image_tokens, tokens.video_tokens], 485)
    assert stats.retain_ratio == r and stats.target == 485 and stats.pre_llm_tokens == sum(f.num_tokens for f in frames) <= 485
    image_scores, video_scores = selector.salient_scores(tokens)
    for attr, stream_tokens, scores in (("image", tokens.image_tokens, image_scores), ("video", tokens.video_tokens, video_scores)):
        stream = holitom_stream(stream_tokens, scores, r)
        expected = torch.cat([torch.cat([w.static, *w.dynamic]) for w in stream.windows])
        torch.testing.assert_close(torch.cat([getattr(f, attr) for f in frames]).float(), expected)
        for window in stream.windows:  # the static tokens open the window's first frame; later frames reuse them
            first = getattr(frames[window.start], attr)
            torch.testing.assert_close(first[: window.static.shape[0]].float(), window.static)
            if attr == "image":
                for f in range(window.start + 1, window.start + window.length):
                    assert frames[f].reused_cells.tolist() == window.static_mask.nonzero().flatten().tolist()
    assert stats.tokens_after_layer == round(stats.pre_llm_tokens * 0.5)
    plan = selector.llm_plan([f.image.shape[0] for f in frames], sum(f.video.shape[0] for f in frames))
    assert isinstance(plan, HoliTomPlan) and (plan.layer, plan.merge_ratio, plan.num_visual) == (18, 0.5, stats.pre_llm_tokens)
    with pytest.raises(ValueError, match="must follow its select_clip"):
        selector.llm_plan([1] * 16, 3)
    tight = selector.select_clip(tokens, 81, clip_budget=200)
    assert sum(f.num_tokens for f in tight) <= 200
    everything = selector.select_clip(tokens, None)
    assert sum(f.num_tokens for f in everything) == 16 * 208
    without = get_method("holitom", llm_merge=False)
    without.select_clip(tokens, 81)
    assert without.llm_plan([f.image.shape[0] for f in frames], sum(f.video.shape[0] for f in frames)) is None
    assert without.last_stats.tokens_after_layer == without.last_stats.pre_llm_tokens


def test_the_released_setting_runs_the_released_ratio_whatever_the_budget(tiny_video_segmenter):
    """holitom:released=True: r = 0.15, tau = 0.8, K = 18, inner ratio 0.5, beta 0.6, k 7 (eval_vid-7b_holitom.sh:2,
    llava_arch.py:352-355) at every budget; the budget-driven r stays the default."""
    tokens = _tokens(tiny_video_segmenter)
    released = method_from_spec("holitom:released=True")
    settings = (released.retain_ratio, released.tau, released.layer, released.merge_ratio, released.beta, released.k,
                released.max_window_size, released.llm_merge)
    assert settings == (0.15, 0.8, 18, 0.5, 0.6, 7, 1024, True)
    image_scores, video_scores = released.salient_scores(tokens)
    expected = holitom_stream(tokens.image_tokens, image_scores, 0.15).num_tokens + holitom_stream(tokens.video_tokens, video_scores, 0.15).num_tokens
    for budget in (81, 196, None):
        frames = released.select_clip(tokens, budget)
        assert sum(f.num_tokens for f in frames) == expected and released.last_stats.target is None
    assert 0.1 * 16 * 208 < expected < 0.2 * 16 * 208
    with pytest.raises(ValueError, match="takes no clip budget: released=True runs the release's retain ratio r = 0.15"):
        released.select_clip(tokens, 81, clip_budget=300)
    with pytest.raises(ValueError, match="takes no clip budget"):
        check_clip_budget("holitom:released=True", 300)
    with pytest.raises(ValueError, match="released=True runs the release's merge_ratio=0.5; got merge_ratio=0.3"):
        get_method("holitom", released=True, merge_ratio=0.3)


def test_bad_options_are_refused():
    for options in ({"retain_ratio": 0.0}, {"retain_ratio": 1.5}, {"layer": 0}, {"merge_ratio": 1.0}, {"beta": 2.0},
                    {"k": 0}, {"max_window_size": 0}, {"llm_merge": "yes"}):
        with pytest.raises(ValueError):
            get_method("holitom", **options)


# ----------------------------------------------------------------------------- in the LLM: tiny Phi-3


@pytest.fixture(scope="module")
def phi3s():
    return tiny_phi3_pair(WINDOW)


NUM_VISUAL = 13


def _batch(model, before, after, seed=1):
    gen = torch.Generator().manual_seed(seed)
    prompts = [[1] + list(range(3, 3 + a)) + [-200] + list(range(10, 10 + b)) for a, b in zip(before, after)]
    visual = [[torch.randn(NUM_VISUAL, 32, generator=gen) * 3] for _ in prompts]
    return splice_and_pad(prompts, visual, model.get_input_embeddings(), -200)


def _restated_merge(eager, embeds, ids, k, end):
    """Layer K-1's eager attention of the prompt's last position ranks the visual tokens; the row at layer K's input
    with the staying visual tokens merged, at their original positions."""
    out = eager.model(inputs_embeds=embeds[None], output_attentions=True, output_hidden_states=True, use_cache=False)
    attention = out.attentions[k - 1][0, :, end - 1].double().mean(0)
    visual = [i for i, t in enumerate(ids) if t == -1]
    layer_input = out.hidden_states[k][0]
    kept, merged = np_inner_merge(layer_input[visual].numpy(), attention[visual].numpy(), 0.5)
    row = layer_input.clone()
    for j, m in zip(kept, merged):
        row[visual[j]] = torch.tensor(m, dtype=row.dtype)
    stay = torch.tensor(sorted(set(range(len(ids))) - set(visual) | {visual[j] for j in kept}))
    return row[stay], stay, kept, out.hidden_states


@torch.no_grad()
def test_the_prefill_equals_an_eager_restatement(phi3s):
    sdpa, eager = phi3s
    batch = _batch(sdpa, [3, 1], [6, 4])
    plan = HoliTomPlan(NUM_VISUAL, layer=2, merge_ratio=0.5)
    assert plan.tokens_after_layer == 6  # round(6.5): halves to even
    out = plan.prefill(sdpa, batch)
    for b, length in enumerate(batch.lengths):
        embeds, ids = batch.inputs_embeds[b, :length], batch.token_ids[b, :length].tolist()
        row, stay, kept, _ = _restated_merge(eager, embeds, ids, 2, length)
        assert plan.last_kept[b].tolist() == kept
        n = stay.numel()
        assert torch.equal(out.positions[b, :n], stay)  # original position ids
        expected = eager.model.norm(eager_layers(eager.model, row[None], stay[None], eager.model.layers[2:], WINDOW))[0]
        torch.testing.assert_close(out.hidden[b, :n], expected, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_the_prompt_end_ranks_the_tokens_and_the_answer_keeps_its_decoded_ids(phi3s):
    sdpa, _ = phi3s
    full, prompt = _batch(sdpa, [2], [9]), _batch(sdpa, [2], [5])
    plan = HoliTomPlan(NUM_VISUAL, layer=1, merge_ratio=0.5)
    limited = plan.prefill(sdpa, full, prompt_lengths=prompt.lengths)
    limited_kept = plan.last_kept[0].tolist()
    alone = plan.prefill(sdpa, prompt)
    assert plan.last_kept[0].tolist() == limited_kept
    plan.prefill(sdpa, full)
    assert plan.last_kept[0].tolist() != limited_kept  # the last answer token would rank otherwise
    n = alone.hidden.shape[1]
    torch.testing.assert_close(limited.hidden[0, :n], alone.hidden[0], rtol=1e-5, atol=1e-6)


def _restated_decode(eager, embeds, ids, k, new):
    """The last of ``new`` decoded tokens: layers < K see the whole prompt, layers K.. the merged one, at ids that
    continue the unmerged numbering."""
    row, stay, _, hidden_states = _restated_merge(eager, embeds, ids, k, embeds.shape[0])
    model, m, length = eager.model, new.shape[0], embeds.shape[0]
    x = new[None]
    for i in range(k):
        x = eager_layers(model, torch.cat([hidden_states[i], x], dim=1), torch.arange(length + m)[None], [model.layers[i]], WINDOW)[:, -m:]
    out = eager_layers(model, torch.cat([row[None], x], dim=1), torch.cat([stay, length + torch.arange(m)])[None], model.layers[k:], WINDOW)
    return model.norm(out)[0, -1]


@torch.no_grad()
def test_cached_and_uncached_generation_equal_an_eager_restatement(phi3s):
    sdpa, eager = phi3s
    batch = _batch(sdpa, [3], [4])
    length, ids = batch.lengths[0], batch.token_ids[0].tolist()
    plan = HoliTomPlan(NUM_VISUAL, layer=2, merge_ratio=0.5)
    cached = plan.generation_forward(sdpa, batch.token_ids, use_cache=True)
    hidden, state = cached(batch.inputs_embeds, None)
    assert [state["cache"].get_seq_length(i) for i in range(3)] == [length, length, length - NUM_VISUAL + 6]
    new = torch.zeros(0, 32)
    for step in range(WINDOW + 2):  # past the sliding window
        token = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(step))
        hidden, state = cached(token, state)
        new = torch.cat([new, token[0]])
        torch.testing.assert_close(hidden[0, 0], _restated_decode(eager, batch.inputs_embeds[0], ids, 2, new), rtol=1e-4, atol=1e-4)
    plain = plan.generation_forward(sdpa, batch.token_ids, use_cache=False)
    again, none = plain(torch.cat([batch.inputs_embeds, new[None]], dim=1), None)
    assert none is None
    torch.testing.assert_close(again[0, -1], hidden[0, 0], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- end to end: tiny VideoGLaMM


def _generate(segmenter, frames, method, script, **options):
    with scripted_head(segmenter.model.llm, script):
        return segmenter.segment(frames, ["a dog"], budget=81, method=method, max_new_tokens=6, mask_mode="none", **options)


def _capture(monkeypatch):
    calls, original = [], HoliTomPlan.prefill

    def capturing(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append((self, out, [k.clone() for k in self.last_kept]))
        return out

    monkeypatch.setattr(HoliTomPlan, "prefill", capturing)
    return calls


@torch.no_grad()
def test_end_to_end_teacher_forced_and_generated_runs_agree(tiny_video_segmenter, monkeypatch):
    """The prompt's last token ranks the visual tokens in every mode; teacher-forced, cached and uncached runs of the
    same answer give the same [SEG] state. On the 2-layer LLM, K = 18 becomes 1 with a warning."""
    seg = tiny_video_segmenter
    calls = _capture(monkeypatch)
    generated, original = [], video.segmenter.generate

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        generated.append(out.seg_hidden.clone())
        return out

    monkeypatch.setattr(video.segmenter, "generate", recording)
    forced = record_seg_states(seg, monkeypatch)
    question = video_question("a dog", mode=seg.config.expression_text)
    prompt = prompt_ids(build_chat(question, seg.config.num_frames), seg.tokenizer)
    script = prompt_ids(build_chat(question, seg.config.num_frames, "Sure, [SEG]."), seg.tokenizer)[len(prompt) :]
    with pytest.warns(UserWarning, match="holitom: layer K=18 does not fit an LLM of 2 layers; merging at layer 1"):
        cached = _generate(seg, FRAMES, "holitom", script)
        plain = _generate(seg, FRAMES, "holitom", script, use_cache=False)
        taught = seg.segment(FRAMES, ["a dog"], budget=81, method="holitom", answer="Sure, [SEG].")
    assert cached.answers == plain.answers and cached.has_seg == [True] and taught.has_seg == [True]
    assert cached.llm_visual_tokens == taught.llm_visual_tokens and cached.llm_visual_tokens[0] <= 485
    kept = [k[0].tolist() for _, _, k in calls]
    assert all(k == kept[0] for k in kept) and len(kept[0]) == round(cached.llm_visual_tokens[0] * 0.5)
    assert calls[0][1].cache is not None and calls[-2][1].cache is None
    torch.testing.assert_close(generated[0], generated[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(forced[-1], generated[0], rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_end_to_end_without_the_inner_merge_is_query_agnostic(tiny_video_segmenter):
    seg = tiny_video_segmenter
    a = seg.segment(FRAMES, ["a dog", "the red car"], budget=81, method=get_method("holitom", llm_merge=False),
                    answer="Sure, [SEG].", mask_mode="none")
    assert a.llm_visual_tokens[0] == a.llm_visual_tokens[1] <= 485
    for x, y in zip(a.frame_tokens[0], a.frame_tokens[1]):
        assert torch.equal(x.image_cells, y.image_cells) and torch.equal(x.video_cells, y.video_cells)

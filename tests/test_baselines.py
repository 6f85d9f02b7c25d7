"""Pre-LLM baselines (VisionZip, VisPruner, PruMerge(+), TRIM) against independent numpy restatements
of their released rules, with this project's fixed-budget adaptations restated as documented."""

import math

import numpy as np
import pytest
import torch

from litelvlm.pruning import ClipFrameFeatures, ClipTokenPruner, get_method

BASELINES = ["visionzip", "vispruner", "prumerge", "prumerge+", "trim"]


# ---------------------------------------------------------------- random features
def random_features(frames=3, n=576, width=32, heads=4, seed=0, query_scale=1.0, proj=24, dtype=torch.float64):
    """ClipFrameFeatures built directly from random tensors (no model; ``projected()`` preset). float64 by
    default: the baselines then score in float64, so rankings match the float64 references exactly."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)  # noqa: E731
    side = math.isqrt(n)
    grid = (side, side) if side * side == n else (1, n)
    return ClipFrameFeatures(
        states=rand(frames, 1 + n, width), query=rand(frames, 1 + n, width) * query_scale,
        key=rand(frames, 1 + n, width), value=rand(frames, 1 + n, width), num_heads=heads, grid=grid,
        vision_model=None, _projected=rand(frames, n, proj),
        select_query=rand(frames, 1 + n, width) * query_scale, select_key=rand(frames, 1 + n, width),
    )


def frame_of(features, f):
    """The single-frame ClipFrameFeatures of frame ``f``."""
    cut = lambda t: t[f : f + 1]  # noqa: E731
    return ClipFrameFeatures(
        cut(features.states), cut(features.query), cut(features.key), cut(features.value), features.num_heads,
        features.grid, features.vision_model, None if features._projected is None else cut(features._projected),
        cut(features.select_query), cut(features.select_key),
    )


def texts(num, proj=24, seed=0):
    return torch.randn(num, proj, generator=torch.Generator().manual_seed(seed + 99), dtype=torch.float64)


def as_np(features, f):
    """Frame ``f`` as float64 numpy: last-layer q, k (1+N, D) and patch states (N, D)."""
    return (features.query[f].double().numpy(), features.key[f].double().numpy(), features.patches[f].double().numpy())


def as_np_producing_layer(features, f):
    """Frame ``f`` with the q, k of the layer that produces the select-layer states (VisionZip, VisPruner)."""
    return (features.select_query[f].double().numpy(), features.select_key[f].double().numpy(),
            features.patches[f].double().numpy())


# ---------------------------------------------------------------- independent restatements
def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def head_attention_and_keys(q, k, heads):
    """Per-head CLS attention over all 1+N keys (patch columns) (H, N) and the head-mean keys (1+N, d)."""
    d = q.shape[1] // heads
    attn = [softmax(k[:, h * d : (h + 1) * d] @ q[0, h * d : (h + 1) * d] / math.sqrt(d))[1:] for h in range(heads)]
    return np.array(attn), np.mean([k[:, h * d : (h + 1) * d] for h in range(heads)], axis=0)


def top_by(scores, count):
    return [int(i) for i in np.argsort(-scores, kind="stable")[:count]]


def unit(rows):
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def visionzip_reference(q, k, x, heads, budget):
    """VisionZip: head-summed CLS attention picks dominant tokens; the rest merge into strided targets."""
    attn, metric = head_attention_and_keys(q, k, heads)
    contextual = int(round(budget * 10 / 64))
    dominant = sorted(top_by(attn.sum(0), budget - contextual))
    rest = [i for i in range(len(x)) if i not in set(dominant)]
    out_idx, out_feat = list(dominant), [x[i] for i in dominant]
    if contextual:
        step = max(1, len(rest) // contextual)
        target_pos = list(range(0, len(rest), step))[:contextual]
        targets = [rest[p] for p in target_pos]
        groups = {t: [] for t in targets}
        m = unit(metric[1:])
        for p, token in enumerate(rest):
            if p not in target_pos:
                groups[targets[int(np.argmax([m[token] @ m[t] for t in targets]))]].append(token)
        for t in targets:
            out_idx.append(t)
            out_feat.append(x[t] + (x[groups[t]].mean(0) if groups[t] else 0))
    return out_idx, np.array(out_feat)


def vispruner_reference(q, k, x, heads, budget, ratio=0.5):
    """VisPruner: head-mean CLS attention; then drop the most duplicated of alternating halves, 8 a time."""
    attn, _ = head_attention_and_keys(q, k, heads)
    important = int(budget * ratio)
    order = top_by(attn.mean(0), len(x))
    kept, rest = order[:important], order[important:]
    diverse = budget - important
    xn = unit(x)
    while diverse > 0 and min(8, len(rest) - diverse) > 0:
        r = min(8, len(rest) - diverse)
        a, b = rest[0::2], rest[1::2]
        score = (xn[a] @ xn[b].T).max(axis=1)
        a_sorted = [a[i] for i in np.argsort(-score, kind="stable")]
        rest = a_sorted[r:] + b
    return sorted(kept + (rest if diverse > 0 else []))


def prumerge_reference(q, k, x, budget, plus=True, aggregate=True, neighbours=32):
    """PruMerge(+): single-head CLS attention; IQR outliers, then strided extras (+) or attention rank;
    each kept token adds the attention-weighted sum of its 32 key-nearest others; aggregate of the rest."""
    n = len(x)
    attn = softmax(k @ q[0] / math.sqrt(q.shape[1]))[1:]
    q1, q3 = np.percentile(attn, 25), np.percentile(attn, 75)
    outliers = [i for i in top_by(attn, n) if attn[i] > q3 + 1.5 * (q3 - q1)]
    count = budget - int(aggregate)
    if len(outliers) >= count:
        kept = outliers[:count]
    elif plus:
        others = [i for i in range(n) if i not in set(outliers)]
        missing = count - len(outliers)
        kept = outliers + [others[(i * len(others)) // missing] for i in range(missing)]
    else:
        kept = top_by(attn, count)
    kn = unit(k[1:])
    feats = []
    for i in kept:
        candidates = [j for j in range(n) if j != i]
        sims = kn[candidates] @ kn[i]
        near = [candidates[c] for c in np.argsort(-sims, kind="stable")[:neighbours]]
        feats.append(x[i] + attn[near] @ x[near])
    if aggregate:
        unkept = [j for j in range(n) if j not in set(kept)]
        kept = kept + [max(unkept, key=lambda j: (attn[j], -j))]
        feats.append(attn[unkept] @ x[unkept])
    return kept, np.array(feats), outliers


def trim_reference(proj, text, x, budget, negate=True, aggregate=True):
    """TRIM: per text softmax(-sim) (released sign), round robin over the texts' rankings; mean of the rest."""
    rankings = [top_by(softmax(-(proj @ t) if negate else proj @ t), len(x)) for t in text]
    order, seen = [], set()
    for rank in range(len(x)):
        for ranking in rankings:
            if ranking[rank] not in seen:
                seen.add(ranking[rank])
                order.append(ranking[rank])
    count = budget - int(aggregate)
    kept = sorted(order[:count])
    if not aggregate:
        return kept, None
    rest = [j for j in range(len(x)) if j not in set(kept)]
    return kept + [order[count]], np.concatenate([x[kept], x[rest].mean(0, keepdims=True)])


def assert_features(actual, expected):
    np.testing.assert_allclose(actual.double().numpy(), expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- against the restatements
# One frame each: batched frames are checked against single-frame calls below.
BUDGETS = [1, 2, 7, 81, 192, 576]


@pytest.mark.parametrize("budget", BUDGETS)
def test_visionzip_matches_reference(budget):
    feats = random_features(frames=1, seed=budget)
    sel = get_method("visionzip").select(feats, budget)
    idx, expected = visionzip_reference(*as_np_producing_layer(feats, 0), feats.num_heads, budget)
    assert sel.indices[0].tolist() == idx
    assert_features(sel.features[0], expected)


@pytest.mark.parametrize("budget, ratio", [(b, 0.5) for b in BUDGETS] + [(64, 0.75), (63, 0.3), (100, 0.0), (50, 1.0)])
def test_vispruner_matches_reference(budget, ratio):
    feats = random_features(frames=1, seed=budget + 1)
    sel = get_method("vispruner", important_ratio=ratio).select(feats, budget)
    assert sel.features is None
    assert sel.indices[0].tolist() == vispruner_reference(*as_np_producing_layer(feats, 0), feats.num_heads, budget, ratio)


@pytest.mark.parametrize("method", ["prumerge+", "prumerge"])
@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("aggregate", [True, False])
def test_prumerge_matches_reference(method, budget, aggregate):
    feats = random_features(frames=1, seed=budget + 2)  # lognormal-tailed attention: ~45 IQR outliers of 576
    sel = get_method(method, aggregate_token=aggregate).select(feats, budget)
    plus = method == "prumerge+"
    idx, expected, _ = prumerge_reference(*as_np(feats, 0), budget, plus=plus, aggregate=aggregate)
    assert sel.indices[0].tolist() == idx
    assert_features(sel.features[0], expected)


def test_prumerge_fill_and_trim_branches_are_both_exercised():
    q, k, x = as_np(random_features(frames=1, seed=4), 0)
    outliers = prumerge_reference(q, k, x, 2)[2]
    assert 2 < len(outliers) < 64  # budget 2 trims the outliers, budget 64 fills past them


def test_prumerge_at_its_adaptive_count_is_the_released_selection():
    """With budget = (#IQR outliers + 1), PruMerge keeps exactly the released outliers (by descending
    attention) and appends the released aggregate token."""
    feats = random_features(frames=1, seed=11)
    q, k, x = as_np(feats, 0)
    attn = softmax(k @ q[0] / math.sqrt(q.shape[1]))[1:]
    q1, q3 = np.percentile(attn, 25), np.percentile(attn, 75)
    released = [int(i) for i in np.argsort(-attn) if attn[i] > q3 + 1.5 * (q3 - q1)]
    sel = get_method("prumerge").select(feats, len(released) + 1)
    assert sel.indices[0, :-1].tolist() == released
    pruned = [j for j in range(len(x)) if j not in set(released)]
    assert_features(sel.features[0, -1], sum(attn[j] * x[j] for j in pruned))


@pytest.mark.parametrize("num_texts", [1, 3])
@pytest.mark.parametrize("budget", [3, 64, 576])
@pytest.mark.parametrize("negate, aggregate", [(True, True), (True, False), (False, True)])
def test_trim_matches_reference(num_texts, budget, negate, aggregate):
    feats = random_features(frames=1, seed=budget + num_texts)
    text = texts(num_texts, seed=budget)
    sel = get_method("trim", negate_similarity=negate, aggregate_token=aggregate).select(feats, budget, text)
    proj, x = feats.projected()[0].numpy(), feats.patches[0].numpy()
    idx, expected = trim_reference(proj, text.numpy(), x, budget, negate, aggregate)
    assert sel.indices[0].tolist() == idx
    if aggregate:
        assert_features(sel.features[0], expected)
    else:
        assert sel.features is None


def test_trim_released_sign_keeps_least_similar_and_its_adaptive_count_is_the_iqr_outliers():
    feats = random_features(frames=1, seed=5)
    text = texts(1)
    sim = (feats.projected()[0].double() @ text[0].double()).numpy()
    scores = softmax(-sim)
    q1, q3 = np.percentile(scores, 25), np.percentile(scores, 75)
    released = sorted(int(i) for i in np.nonzero(scores > q3 + 1.5 * (q3 - q1))[0])
    assert len(released) > 0
    kept = get_method("trim").select(feats, len(released) + 1, text).indices[0, :-1].tolist()
    assert kept == released
    assert max(sim[kept]) < np.median(sim)  # the release keeps the least text-similar tokens
    paper = get_method("trim", negate_similarity=False, aggregate_token=False).select(feats, 10, text).indices[0]
    assert sorted(paper.tolist()) == sorted(np.argsort(-sim)[:10].tolist())


# ---------------------------------------------------------------- properties of every baseline
def run(method, feats, budget, seed=0):
    text = texts(2, seed=seed).to(feats.states.dtype) if get_method(method).uses_text else None
    return get_method(method).select(feats, budget, text)


@pytest.mark.parametrize("method", BASELINES)
@pytest.mark.parametrize(
    "n, budget, dtype",
    [
        (576, 2, torch.float32),
        (576, 64, torch.bfloat16),
        (576, 575, torch.float32),
        (50, 13, torch.float32),
        (50, 50, torch.float32),
    ],
)
def test_budget_valid_unique_and_deterministic(method, n, budget, dtype):
    feats = random_features(frames=3, n=n, seed=n + budget, dtype=dtype)
    sel = run(method, feats, budget)
    assert sel.indices.shape == (3, budget) and sel.indices.dtype == torch.long
    for row in sel.indices.tolist():
        assert len(set(row)) == budget and all(0 <= i < n for i in row)
    if sel.features is not None:
        assert sel.features.shape == (3, budget, 32) and sel.features.dtype == feats.states.dtype
    again = run(method, feats, budget)
    assert torch.equal(sel.indices, again.indices)
    assert (sel.features is None) == (again.features is None)
    if sel.features is not None:
        assert torch.equal(sel.features, again.features)


@pytest.mark.parametrize("method", BASELINES)
def test_per_frame_equals_single_frame(method):
    feats = random_features(frames=3, seed=21, query_scale=4.0)
    batched = run(method, feats, 96)
    for f in range(3):
        single = run(method, frame_of(feats, f), 96)
        assert torch.equal(single.indices[0], batched.indices[f])
        if batched.features is not None:
            torch.testing.assert_close(single.features[0], batched.features[f], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", BASELINES)
def test_rejects_bad_budgets_and_inputs(method):
    feats = random_features(frames=1, n=50)
    for budget, match in [(0, "out of range"), (51, "out of range"), (2.0, "must be an int")]:
        with pytest.raises(ValueError, match=match):
            run(method, feats, budget)
    if get_method(method).uses_text:
        with pytest.raises(ValueError, match="text guided"):
            get_method(method).select(feats, 10)
        with pytest.raises(ValueError, match="smaller than the number of texts"):
            get_method(method).select(feats, 2, texts(3))
        with pytest.raises(ValueError, match="width"):
            get_method(method).select(feats, 10, torch.randn(2, 7))
    else:
        bad_heads = frame_of(feats, 0)
        bad_heads.num_heads = 5
        with pytest.raises(ValueError, match="num_heads"):
            get_method(method).select(bad_heads, 10)
        bad_query = frame_of(feats, 0)
        bad_query.query = bad_query.query[:, :-1]
        with pytest.raises(ValueError, match="features.query"):
            get_method(method).select(bad_query, 10)


@pytest.mark.parametrize(
    "method, options, match",
    [
        ("visionzip", {"contextual_share": 1.0}, "contextual_share"),
        ("vispruner", {"important_ratio": 1.5}, "important_ratio"),
        ("vispruner", {"drop_per_step": 0}, "drop_per_step"),
        ("prumerge+", {"neighbours": 0}, "neighbours"),
        ("prumerge+", {"aggregate_token": 1}, "aggregate_token"),
        ("trim", {"negate_similarity": "yes"}, "negate_similarity"),
        ("trim", {"bogus": 1}, "bad options"),
    ],
)
def test_rejects_bad_options(method, options, match):
    with pytest.raises(ValueError, match=match):
        get_method(method, **options)


def test_visionzip_budget_split_follows_its_released_settings():
    from litelvlm.pruning.baselines.visionzip import visionzip_split

    assert [visionzip_split(b, 10 / 64) for b in (64, 128, 192)] == [(54, 10), (108, 20), (162, 30)]


# ---------------------------------------------------------------- on a tiny CLIP
def _pixels(clip, n, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=(140, 150 + 9 * i, 3), dtype=np.uint8) for i in range(n)]
    return clip.image_processor(images=images, return_tensors="pt").pixel_values


def test_attention_matches_transformers_eager_attention(tiny_clip, tiny_clip_dir):
    """The multi-head CLS attention the baselines rank by is CLIP's own last-layer attention."""
    from transformers import CLIPVisionModelWithProjection

    from litelvlm.pruning.baselines.common import multihead_cls_attention

    eager = CLIPVisionModelWithProjection.from_pretrained(tiny_clip_dir, attn_implementation="eager").eval()
    pixels = _pixels(tiny_clip, 2)
    frames = ClipTokenPruner(tiny_clip.vision).encode(pixels)
    with torch.no_grad():
        attentions = eager(pixels, output_attentions=True).attentions
    attention = multihead_cls_attention(frames.query, frames.key, frames.num_heads)
    torch.testing.assert_close(attention, attentions[-1][:, :, 0, 1:], rtol=1e-5, atol=1e-6)
    # the attention VisionZip and VisPruner read: attentions[-2], inside the layer producing the -2 states
    producing = multihead_cls_attention(frames.select_query, frames.select_key, frames.num_heads)
    torch.testing.assert_close(producing, attentions[-2][:, :, 0, 1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", BASELINES)
def test_baselines_run_through_the_pruner(tiny_clip, method):
    pruner = tiny_clip.pruner(method=method)
    embeds = pruner.text_embeds(["the man", "a white dog"])
    result = pruner(_pixels(tiny_clip, 3, seed=2), 81, text_embeds=embeds)
    assert result.method == method and result.indices.shape == (3, 81) and result.features.shape == (3, 81, 32)
    assert all(len(set(row)) == 81 for row in result.indices.tolist())
    if method == "vispruner":  # pruning only: the kept select-layer states themselves
        torch.testing.assert_close(result.features, result.frames.gather(result.indices), rtol=0, atol=0)

"""CDPruner, DivPrune and EVTP (per frame, before the LLM) and IVC-Prune (inside the LLM) against independent
numpy restatements of their released rules (EVTP: of its paper's description), with this project's fixed-budget
adaptations restated as documented; then end to end in the tiny GLaMM and VideoGLaMM."""

import math

import numpy as np
import pytest
import torch

from litelvlm.ivc_prune_llm import ivc_prefill
from litelvlm.lvlm import splice_and_pad
from litelvlm.testing.llm import eager_layers, scripted_head, tiny_llama_pair, tiny_phi3_pair
from litelvlm.pruning import ClipFrameFeatures, available_methods, get_method
from litelvlm.pruning.baselines.cdpruner import dpp_greedy_map
from litelvlm.pruning.baselines.common import max_min_order
from litelvlm.pruning.baselines.ivcprune import ivc_keep

PRE_LLM = ["cdpruner", "divprune", "evtp"]


# ---------------------------------------------------------------- random inputs
def toy_projector(width, llm_width=128, seed=0):
    """A seeded two-layer tanh MLP standing in for the LVLM's projector (float64 inside); ``.weights`` for numpy."""
    gen = torch.Generator().manual_seed(seed + 7)
    shapes = ((llm_width, width), (llm_width,), (llm_width, llm_width), (llm_width,))
    weights = [torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in shapes]
    w1, b1, w2, b2 = weights

    def project(states):
        return (torch.tanh(states.double() @ w1.T + b1) @ w2.T + b2).to(states.dtype)

    project.weights = weights
    return project


def project_reference(states, projector):
    """The toy projector restated in numpy."""
    w1, b1, w2, b2 = (w.numpy() for w in projector.weights)
    return np.tanh(states @ w1.T + b1) @ w2.T + b2


def random_features(frames=2, n=100, width=128, proj=24, seed=0, dtype=torch.float64, llm_width=128):
    """ClipFrameFeatures from random tensors (``projected()`` preset, a toy ``llm_projector``); float64 so rankings
    match numpy exactly."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)  # noqa: E731
    side = math.isqrt(n)
    grid = (side, side) if side * side == n else (1, n)
    return ClipFrameFeatures(states=rand(frames, 1 + n, width), query=rand(frames, 1 + n, width), key=rand(frames, 1 + n, width),
                             value=rand(frames, 1 + n, width), num_heads=4, grid=grid, vision_model=None,
                             _projected=rand(frames, n, proj), select_query=rand(frames, 1 + n, width),
                             select_key=rand(frames, 1 + n, width), llm_projector=toy_projector(width, llm_width, seed=seed))


def llm_side(feats, f):
    """Frame ``f``'s patch states through the toy projector, in numpy: what CDPruner and DivPrune measure."""
    return project_reference(feats.patches[f].numpy(), feats.llm_projector)


def texts(num, proj=24, seed=0):
    return torch.randn(num, proj, generator=torch.Generator().manual_seed(seed + 99), dtype=torch.float64)


def unit(rows):
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


# ---------------------------------------------------------------- independent restatements
def cdpruner_reference(x, proj, text, budget, theta=None):
    """CDPruner: kernel r_i cos_ij r_j with r the min-max normalised mean negated patch-text cosine; the greedy
    MAP restated naively, each step the token that maximises log det of the chosen kernel block."""
    relevance = (-(unit(proj) @ unit(text).T)).mean(axis=1)
    relevance = (relevance - relevance.min() + 1e-6) / (relevance.max() - relevance.min())
    if theta is not None:
        relevance = np.exp(theta / (2 * (1 - theta)) * relevance)
    kernel = relevance[:, None] * (unit(x) @ unit(x).T) * relevance[None, :]
    chosen = []
    for _ in range(budget):
        best, best_logdet = None, -np.inf
        for j in range(len(x)):
            if j in chosen:
                continue
            sign, logdet = np.linalg.slogdet(kernel[np.ix_(chosen + [j], chosen + [j])])
            if sign > 0 and logdet > best_logdet:
                best, best_logdet = j, logdet
        chosen.append(best)
    return sorted(chosen)


def divprune_reference(x, budget):
    """DivPrune as released: d = 1 - cos; first the column with the largest second-smallest value, then the
    largest column minimum over the chosen rows (no exclusion of chosen tokens)."""
    d = 1.0 - unit(x) @ unit(x).T
    chosen = []
    for i in range(budget):
        scores = np.sort(d, axis=0)[1] if i == 0 else d[chosen].min(axis=0)
        chosen.append(int(np.argmax(scores)))
    return sorted(chosen)


def evtp_reference(x, grid, budget, spatial_weight):
    """EVTP as restated: points [x/|x|, w * (row/(h-1), col/(w-1))], Euclidean k-center from the point nearest
    the centroid, then the point farthest from its nearest centre."""
    h, w = grid
    points = np.array([np.concatenate([unit(x[t]), spatial_weight * np.array([t // w / max(h - 1, 1), t % w / max(w - 1, 1)])])
                       for t in range(len(x))])
    dist = np.array([np.linalg.norm(points - point, axis=1) for point in points])
    chosen = [int(np.argmin(np.linalg.norm(points - points.mean(0), axis=1)))]
    while len(chosen) < budget:
        nearest = dist[chosen].min(axis=0)
        nearest[chosen] = -np.inf
        chosen.append(int(np.argmax(nearest)))
    return sorted(chosen)


def value_matrix(values):
    """The release's (n, n) head mean of softmax(V V^T / sqrt(d)) over every token."""
    heads, n, d = values.shape
    out = np.zeros((n, n))
    for h in range(heads):
        logits = values[h] @ values[h].T / math.sqrt(d)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out += e / e.sum(axis=1, keepdims=True)
    return out / heads


def top(scores, count):
    return [int(i) for i in np.argsort(-scores, kind="stable")[:count]]


def ivc_parts(values, cos, sin, start, num_image, per_axis, seeds_wanted, question_start=None):
    """The released pieces for an image at positions [start, start + num_image): IVC tokens (cos and sin
    head-dim means), seeds (question rows, from two past the image unless ``question_start`` says otherwise) and
    the anchor score (seed + question rows)."""
    weights = value_matrix(values)
    question = list(range(start + num_image + 2 if question_start is None else question_start, values.shape[1]))
    image = slice(start, start + num_image)
    coords = set(top(cos[image].mean(1), per_axis)) | set(top(sin[image].mean(1), per_axis)) if per_axis else set()
    seeds = top(weights[question].mean(0)[image], seeds_wanted)
    anchor = weights[[start + s for s in seeds] + question].mean(0)[image]
    return coords, seeds, anchor


def ivc_reference(values, cos, sin, start, num_image, budget, coordinate_share=0.2, seed_share=0.01, question_start=None):
    """IVC-Prune at a fixed budget (the Qwen file's form): IVC tokens and seeds first, the foreground by anchor
    score fills the budget."""
    per_axis = min(round(coordinate_share * budget), (budget - 1) // 2)
    coords, _, _ = ivc_parts(values, cos, sin, start, num_image, per_axis, 1, question_start)
    seeds_wanted = min(max(1, round(seed_share * num_image)), budget - len(coords))
    coords, seeds, anchor = ivc_parts(values, cos, sin, start, num_image, per_axis, seeds_wanted, question_start)
    kept = coords | set(seeds)
    fill = [i for i in top(anchor, num_image) if i not in kept]
    return sorted(kept | set(fill[: budget - len(kept)]))


def ivc_released_union(values, cos, sin, start, num_image):
    """The LLaMA release's variable-count selection: IVC 0.05 N per axis, seeds, foreground top 0.2 N, united."""
    coords, seeds, anchor = ivc_parts(values, cos, sin, start, num_image, round(0.05 * num_image), max(1, round(0.01 * num_image)))
    return sorted(coords | set(seeds) | set(top(anchor, round(0.2 * num_image)))), len(coords)


def rope(positions, dim, base=10000.0):
    freqs = np.outer(positions, 1.0 / base ** (np.arange(0, dim, 2) / dim))
    emb = np.concatenate([freqs, freqs], axis=1)
    return np.cos(emb), np.sin(emb)


# ---------------------------------------------------------------- restatement equality
@pytest.mark.parametrize("budget, num_texts, theta", [(1, 1, None), (9, 2, None), (40, 3, None), (90, 1, None), (25, 2, 0.5)])
def test_cdpruner_matches_reference(budget, num_texts, theta):
    feats, text = random_features(seed=budget), texts(num_texts, seed=budget)
    sel = get_method("cdpruner", theta=theta).select(feats, budget, text)
    for f in range(2):
        expected = cdpruner_reference(llm_side(feats, f), feats.projected()[f].numpy(), text.numpy(), budget, theta)
        assert sel.indices[f].tolist() == expected and sel.features is None


def test_cdpruner_full_size_frame_matches_reference():
    feats, text = random_features(frames=1, n=576, width=1024, seed=5, llm_width=64), texts(2, seed=5)
    sel = get_method("cdpruner").select(feats, 12, text)
    assert sel.indices[0].tolist() == cdpruner_reference(llm_side(feats, 0), feats.projected()[0].numpy(), text.numpy(), 12)


def test_cdpruner_theta_reweights_the_relevance():
    feats, text = random_features(frames=1, seed=3), texts(1, seed=3)
    released = get_method("cdpruner").select(feats, 20, text).indices
    assert not torch.equal(released, get_method("cdpruner", theta=0.9).select(feats, 20, text).indices)


def test_dpp_fills_from_the_given_order_once_the_kernel_rank_is_spent():
    kernel = torch.diag(torch.tensor([4.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64))  # rank 2: two positive gains
    assert dpp_greedy_map(kernel, 4, torch.tensor([4, 3, 2, 1, 0])).tolist() == [0, 1, 3, 4]
    low_rank = random_features(frames=1, n=64, seed=4, llm_width=3)  # 3-dimensional LLM tokens: the DPP runs dry after 3
    sel = get_method("cdpruner").select(low_rank, 20, texts(1))
    assert len(set(sel.indices[0].tolist())) == 20


@pytest.mark.parametrize("n, budget", [(100, 1), (100, 17), (100, 99), (576, 64)])
def test_divprune_matches_reference(n, budget):
    feats = random_features(n=n, seed=n + budget)
    sel = get_method("divprune").select(feats, budget)
    for f in range(2):
        assert sel.indices[f].tolist() == divprune_reference(llm_side(feats, f), budget)


@pytest.mark.parametrize("method", ["cdpruner", "divprune"])
def test_similarity_is_measured_on_the_llm_side(method):
    feats = random_features(frames=1, n=100, seed=11)
    on_llm_side = run(method, feats, 20).indices
    clip_side = random_features(frames=1, n=100, seed=11)
    clip_side.llm_projector = lambda states: states  # the CLIP states themselves: another selection
    assert not torch.equal(on_llm_side, run(method, clip_side, 20).indices)
    unprojected = random_features(frames=1, n=100, seed=11)
    unprojected.llm_projector = None
    with pytest.raises(ValueError, match=f"{method} measures the tokens as the LLM receives them.*llm_projector"):
        run(method, unprojected, 20)


def test_max_min_never_repeats_a_chosen_token_where_the_release_would():
    d = np.full((3, 3), 0.0) + np.eye(3) * 0.1  # a positive self-distance beats every other distance
    assert max_min_order(torch.tensor(d), 0, 3).tolist() == [0, 1, 2]
    assert d[[0]].min(axis=0).argmax() == 0  # the released scoring would pick token 0 again


@pytest.mark.parametrize("n, budget, weight", [(100, 1, 1.0), (100, 30, 1.0), (100, 30, 0.0), (100, 30, 5.0), (576, 64, 1.0), (50, 13, 1.0)])
def test_evtp_matches_reference(n, budget, weight):
    feats = random_features(n=n, seed=n + budget)
    sel = get_method("evtp", spatial_weight=weight).select(feats, budget)
    for f in range(2):
        assert sel.indices[f].tolist() == evtp_reference(feats.patches[f].numpy(), feats.grid, budget, weight)


def test_evtp_spatial_weight_spreads_the_kept_tokens_over_the_grid():
    feats = random_features(frames=1, n=576, seed=8)
    grid = np.stack(np.divmod(np.arange(576), 24), axis=1)

    def covering_radius(kept):  # the farthest any token lies from a kept one, in grid cells
        return np.linalg.norm(grid[:, None] - grid[kept.numpy()][None], axis=-1).min(axis=1).max()

    plain = get_method("evtp", spatial_weight=0.0).select(feats, 36).indices[0]
    spatial = get_method("evtp", spatial_weight=10.0).select(feats, 36).indices[0]
    assert covering_radius(spatial) <= 4.5 < covering_radius(plain)


def _ivc_inputs(seed, start=7, num_image=96, tail=9, heads=2, dim=8):
    rng = np.random.default_rng(seed)
    n = start + num_image + tail
    values = rng.standard_normal((heads, n, dim)) * 2
    cos, sin = rope(np.arange(n), dim)
    return values, cos, sin, start, num_image


def _ivc_keep(values, cos, sin, start, num_image, budget, **shares):
    tensor = lambda a: torch.tensor(a)  # noqa: E731
    question = torch.arange(start + num_image + 2, values.shape[1])
    kept = ivc_keep(tensor(values), tensor(cos), tensor(sin), question, torch.arange(start, start + num_image), budget, **shares)
    return kept.tolist()


@pytest.mark.parametrize("budget", [1, 2, 3, 10, 48, 95, 96])
@pytest.mark.parametrize("seed", [0, 1])
def test_ivc_keep_matches_reference(budget, seed):
    inputs = _ivc_inputs(seed)
    assert _ivc_keep(*inputs, budget) == ivc_reference(*inputs, budget)
    shares = {"coordinate_share": 0.05, "seed_share": 0.05}
    assert _ivc_keep(*inputs, budget, **shares) == ivc_reference(*inputs, budget, **shares)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ivc_keep_at_the_released_count_is_the_released_selection(seed):
    inputs = _ivc_inputs(seed, num_image=200, tail=12)
    union, coords = ivc_released_union(*inputs)
    per_axis = round(0.05 * 200)
    assert _ivc_keep(*inputs, len(union), coordinate_share=per_axis / len(union)) == union
    assert coords > per_axis  # the cos and sin tokens differ, and the count is variable: the union of all parts


# ---------------------------------------------------------------- IVC-Prune inside a tiny LLaMA
PLACEHOLDER, NUM_IMAGE, LAYERS = -200, 24, 3


@pytest.fixture(scope="module")
def llms():
    """The same random weights with SDPA (what the in-LLM methods run on) and eager attention (the reference)."""
    return tiny_llama_pair(LAYERS)


@pytest.fixture(scope="module")
def batch(llms):
    gen = torch.Generator().manual_seed(1)
    prompts = [[1, 7, 8, PLACEHOLDER, 9, 10, 11, 12], [1, 4, PLACEHOLDER, 12, 13, 14, 15, 16, 17, 18], [1, 5, 6, 2, 3, PLACEHOLDER, 19, 20, 21]]
    visual = [[torch.randn(NUM_IMAGE, 32, generator=gen)] for _ in prompts]
    return splice_and_pad(prompts, visual, llms[0].get_input_embeddings(), PLACEHOLDER)


def _eager_layers(model, hidden, positions, layers):
    rotary = model.rotary_emb(hidden, positions)
    mask = torch.full((hidden.shape[1],) * 2, float("-inf")).triu(1)[None, None]
    for layer in layers:
        hidden = layer(hidden, attention_mask=mask, position_embeddings=rotary, position_ids=positions)
    return hidden


def _reference_row(eager, embeds, token_ids, budget, k):
    """One unpadded row: eager layers [0, K-1), layer K-1's values by hand, the numpy rule, drop, go on."""
    model = eager.model
    positions = torch.arange(embeds.shape[0])[None]
    hidden = _eager_layers(model, embeds[None], positions, model.layers[: k - 1])
    layer = model.layers[k - 1]
    values = layer.self_attn.v_proj(layer.input_layernorm(hidden[0])).view(embeds.shape[0], -1, layer.self_attn.head_dim)
    cos, sin = rope(np.arange(embeds.shape[0]), layer.self_attn.head_dim)
    image = (token_ids == -1).nonzero().flatten()
    kept = torch.tensor(ivc_reference(values.transpose(0, 1).double().numpy(), cos, sin, int(image[0]), NUM_IMAGE, budget))
    hidden = _eager_layers(model, hidden, positions, model.layers[k - 1 : k])
    keep = torch.tensor(sorted(set(range(embeds.shape[0])) - set(image.tolist()) | set(image[kept].tolist())))
    hidden = _eager_layers(model, hidden[:, keep], keep[None], model.layers[k:])
    return model.norm(hidden)[0], token_ids[keep], kept


@torch.no_grad()
@pytest.mark.parametrize("k", [1, 2, 3])
def test_ivc_prefill_equals_a_per_row_eager_restatement(llms, batch, k):
    sdpa, eager = llms
    budget = 10
    hidden, token_ids, kept = ivc_prefill(sdpa, batch, budget=budget, layer=k)
    assert kept.shape == (3, budget)
    for b, n in enumerate(batch.lengths):
        ref_hidden, ref_ids, ref_kept = _reference_row(eager, batch.inputs_embeds[b, :n], batch.token_ids[b, :n], budget, k)
        m = ref_ids.numel()
        assert torch.equal(kept[b], ref_kept) and torch.equal(token_ids[b, :m], ref_ids)
        torch.testing.assert_close(hidden[b, :m], ref_hidden, rtol=1e-4, atol=1e-5)
    assert len({tuple(r.tolist()) for r in kept}) > 1  # rows choose on their own


@torch.no_grad()
def test_ivc_prefill_keeping_every_image_token_is_the_normal_prefill(llms, batch):
    hidden, _, kept = ivc_prefill(llms[0], batch, budget=NUM_IMAGE, layer=2)
    normal = llms[0].model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask).last_hidden_state
    assert kept.tolist() == [list(range(NUM_IMAGE))] * 3
    for b, n in enumerate(batch.lengths):
        torch.testing.assert_close(hidden[b, :n], normal[b, :n], rtol=1e-4, atol=1e-5)


def test_ivc_prefill_names_bad_inputs(llms):
    embeds = llms[0].get_input_embeddings()
    no_question = splice_and_pad([[1, 2, PLACEHOLDER, 3]], [[torch.randn(NUM_IMAGE, 32)]], embeds, PLACEHOLDER)
    with pytest.raises(ValueError, match="no text 2 tokens past its image"):
        ivc_prefill(llms[0], no_question, budget=4, layer=1)
    ok = splice_and_pad([[1, PLACEHOLDER, 3, 4, 5]], [[torch.randn(NUM_IMAGE, 32)]], embeds, PLACEHOLDER)
    with pytest.raises(ValueError, match="fewer than budget"):
        ivc_prefill(llms[0], ok, budget=NUM_IMAGE + 1, layer=1)
    with pytest.raises(ValueError, match="layer K"):
        ivc_prefill(llms[0], ok, budget=4, layer=LAYERS + 1)


# ---------------------------------------------------------------- properties of the per-frame methods
def run(method, feats, budget):
    return get_method(method).select(feats, budget, texts(2).to(feats.states.dtype) if get_method(method).uses_text else None)


@pytest.mark.parametrize("method", PRE_LLM)
@pytest.mark.parametrize("n, budget, dtype", [(576, 2, torch.float32), (576, 64, torch.bfloat16), (576, 575, torch.float32),
                                              (50, 13, torch.float32), (50, 50, torch.float32)])
def test_budget_valid_unique_and_deterministic(method, n, budget, dtype):
    feats = random_features(frames=3, n=n, width=32, seed=n + budget, dtype=dtype)
    sel = run(method, feats, budget)
    assert sel.indices.shape == (3, budget) and sel.indices.dtype == torch.long and sel.features is None
    for row in sel.indices.tolist():
        assert len(set(row)) == budget and all(0 <= i < n for i in row) and row == sorted(row)
    assert torch.equal(sel.indices, run(method, feats, budget).indices)


@pytest.mark.parametrize("method", PRE_LLM)
def test_per_frame_equals_single_frame(method):
    feats = random_features(frames=3, seed=21)
    batched = run(method, feats, 30)
    for f in range(3):
        single = ClipFrameFeatures(*(t[f : f + 1] for t in (feats.states, feats.query, feats.key, feats.value)), feats.num_heads,
                                   feats.grid, None, feats._projected[f : f + 1], feats.select_query[f : f + 1], feats.select_key[f : f + 1],
                                   feats.llm_projector)
        assert torch.equal(run(method, single, 30).indices[0], batched.indices[f])


@pytest.mark.parametrize("method", PRE_LLM)
def test_rejects_bad_budgets(method):
    feats = random_features(frames=1, n=50)
    for budget, match in [(0, "out of range"), (51, "out of range"), (2.0, "must be an int")]:
        with pytest.raises(ValueError, match=match):
            run(method, feats, budget)


def test_cdpruner_needs_texts_of_the_projection_width():
    feats = random_features(frames=1, n=50)
    with pytest.raises(ValueError, match="text guided"):
        get_method("cdpruner").select(feats, 10)
    with pytest.raises(ValueError, match="width"):
        get_method("cdpruner").select(feats, 10, torch.randn(2, 7, dtype=torch.float64))


@pytest.mark.parametrize("method, options, match", [
    ("cdpruner", {"theta": 1.0}, "theta"), ("cdpruner", {"theta": "half"}, "theta"),
    ("evtp", {"spatial_weight": -1}, "spatial_weight"), ("evtp", {"spatial_weight": float("nan")}, "spatial_weight"),
    ("ivcprune", {"layer": 0}, "layer must be"), ("ivcprune", {"coordinate_share": 0.6}, "coordinate_share"),
    ("ivcprune", {"seed_share": -0.1}, "seed_share"), ("divprune", {"ratio": 0.1}, "bad options"),
])
def test_rejects_bad_options(method, options, match):
    with pytest.raises(ValueError, match=match):
        get_method(method, **options)


def test_registered_with_their_stages():
    assert {"cdpruner", "divprune", "evtp", "ivcprune"} <= set(available_methods())
    assert [get_method(m).stage for m in PRE_LLM] == ["pre_llm"] * 3 and get_method("cdpruner").uses_text
    ivc = get_method("ivcprune")
    assert (ivc.stage, ivc.layer, ivc.coordinate_share, ivc.seed_share) == ("llm", 16, 0.2, 0.01)
    feats = random_features(frames=2, n=50)
    assert torch.equal(ivc.select(feats, 10).indices, torch.arange(50).expand(2, -1))  # every token enters the LLM


# ---------------------------------------------------------------- end to end in the tiny GLaMM and VideoGLaMM
EXPRESSIONS = ["the man on the left", "a red car"]


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, size=(90, 120, 3), dtype=np.uint8)


@pytest.mark.parametrize("method", PRE_LLM)
def test_pre_llm_methods_segment_images(tiny_segmenter, image, method):
    a = tiny_segmenter.segment(image, EXPRESSIONS, budget=64, method=method)
    b = tiny_segmenter.segment(image, EXPRESSIONS, budget=64, method=method)
    assert a.method == method and a.num_visual_tokens == 64 and a.masks.shape == (2, 90, 120)
    assert all(k.numel() == 64 == len(set(k.tolist())) for k in a.kept)
    assert all(torch.equal(x, y) for x, y in zip(a.kept, b.kept)) and np.array_equal(a.masks, b.masks)


def _clip_frames(segmenter, images):
    """The segmenter's CLIP select-layer states of ``images``, encoded apart from its pruner."""
    from litelvlm.pruning import ClipTokenPruner

    pixels = segmenter.clip.image_processor(images=list(images), return_tensors="pt", input_data_format="channels_last").pixel_values
    return ClipTokenPruner(segmenter.clip.vision, select_layer=segmenter.model.config.select_layer).encode(pixels)


def test_glamm_divprune_measures_the_mm_projector_outputs(tiny_segmenter, image):
    patches = _clip_frames(tiny_segmenter, [image]).patches
    with torch.no_grad():
        tokens = tiny_segmenter.model.mm_projector(patches)[0].double().numpy()
    result = tiny_segmenter.segment(image, EXPRESSIONS[:1], budget=30, method="divprune")
    assert result.kept[0].tolist() == divprune_reference(tokens, 30)
    assert result.kept[0].tolist() != divprune_reference(patches[0].double().numpy(), 30)


def test_ivcprune_segments_images_pruning_inside_the_llm(tiny_segmenter, image):
    method = get_method("ivcprune", layer=1)  # the tiny GLaMM has 2 layers: prune after the first
    a = tiny_segmenter.segment(image, EXPRESSIONS, budget=64, method=method)
    b = tiny_segmenter.segment(image, EXPRESSIONS, budget=64, method=method)
    assert a.method == "ivcprune" and a.num_visual_tokens == 64 and a.masks.shape == (2, 90, 120)
    assert all(k.numel() == 64 == len(set(k.tolist())) and k.max() < 576 for k in a.kept)
    assert all(torch.equal(x, y) for x, y in zip(a.kept, b.kept)) and np.array_equal(a.masks, b.masks)
    for i, expr in enumerate(EXPRESSIONS):  # each conversation chooses on its own, batched or not
        single = tiny_segmenter.segment(image, [expr], budget=64, method=method)
        assert torch.equal(single.kept[0], a.kept[i])
        torch.testing.assert_close(single.seg_embeddings[0], a.seg_embeddings[i], rtol=1e-4, atol=1e-5)
    full = tiny_segmenter.segment(image, EXPRESSIONS[:1], budget=None)
    everything = tiny_segmenter.segment(image, EXPRESSIONS[:1], budget=576, method=method)
    torch.testing.assert_close(everything.seg_embeddings, full.seg_embeddings, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        tiny_segmenter.segment(image, EXPRESSIONS[:1], budget=64, method="ivcprune")  # layer 16 of 2


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, size=(6, 40, 56, 3), dtype=np.uint8)


@pytest.mark.parametrize("method", PRE_LLM)
def test_pre_llm_methods_segment_videos_frame_by_frame(tiny_video_segmenter, frames, method):
    result = tiny_video_segmenter.segment(frames, ["the dog"], budget=81, method=method, answer="Sure, [SEG].")
    kept = result.kept[0]
    assert result.method == method and kept.shape == (16, 81) and all(len(set(row.tolist())) == 81 for row in kept)
    assert result.masks.shape == (1, 6, 40, 56)


def test_videoglamm_divprune_measures_the_image_projector_outputs(tiny_video_segmenter, frames):
    seg = tiny_video_segmenter
    patches = _clip_frames(seg, frames[:1]).patches  # the first sampled frame is the clip's first
    with torch.no_grad():
        tokens = seg.model.image_projector(patches)[0].double().numpy()
    result = seg.segment(frames, ["the dog"], budget=30, method="divprune", layout="unpooled", answer="Sure, [SEG].")
    assert result.kept[0][0].tolist() == divprune_reference(tokens, 30)
    assert result.kept[0][0].tolist() != divprune_reference(patches[0].double().numpy(), 30)


# ---------------------------------------------------------------- IVC-Prune per frame in VideoGLaMM's Phi-3
FRAME_TOKENS, VIDEO_TOKENS, QUOTA, WINDOW = [12, 12, 12], 5, 4, 9


@pytest.fixture(scope="module")
def phi3s():
    """A tiny Phi-3 (fused qkv, partial rotary, a 9-token sliding window) with SDPA and, same weights, eager; the value
    rows of qkv scaled up so the value weights are far from uniform (no near-ties between float32 and float64)."""
    sdpa, eager = tiny_phi3_pair(WINDOW)
    with torch.no_grad():
        for layer in sdpa.model.layers:
            layer.self_attn.qkv_proj.weight[-2 * layer.self_attn.head_dim :] *= 20
    eager.load_state_dict(sdpa.state_dict())
    return sdpa, eager


def _video_batch(model, seed=3):
    """Two rows (frames' tokens, then video tokens, then text), right-padded."""
    gen = torch.Generator().manual_seed(seed)
    prompts = [[1, 3, 4, PLACEHOLDER, 9, 10, 11, 12, 13], [1, 5, PLACEHOLDER, 12, 13, 14, 15, 16, 17, 18, 19]]
    visual = [[torch.randn(sum(FRAME_TOKENS) + VIDEO_TOKENS, 32, generator=gen)] for _ in prompts]
    return splice_and_pad(prompts, visual, model.get_input_embeddings(), PLACEHOLDER)


def _video_reference_row(eager, embeds, token_ids, k):
    """One unpadded row, restated: eager layers [0, K-1) with the window; layer K-1's values from Phi-3's fused qkv by
    hand; per frame the numpy rule over that frame's positions (their own rotary angles), the question rows from two
    past the last visual token (the video tokens'); the video tokens and text stay; layers [K, L) on the rest."""
    model = eager.model
    n, attn = embeds.shape[0], model.layers[k - 1].self_attn
    positions = torch.arange(n)[None]
    hidden = eager_layers(model, embeds[None], positions, model.layers[: k - 1], WINDOW)
    qkv = attn.qkv_proj(model.layers[k - 1].input_layernorm(hidden[0]))
    values = qkv[:, -2 * attn.head_dim :].view(n, 2, attn.head_dim).transpose(0, 1).double().numpy()
    cos, sin = rope(np.arange(n), attn.head_dim // 2)  # partial rotary: half the head dimension
    image = (token_ids == -1).nonzero().flatten()
    question_start, start, keep, kept = int(image[-1]) + 3, int(image[0]), set(range(n)), []
    for count in FRAME_TOKENS:
        kept.append(ivc_reference(values, cos, sin, start, count, QUOTA, question_start=question_start))
        keep -= set(range(start, start + count)) - {start + i for i in kept[-1]}
        start += count
    hidden = eager_layers(model, hidden, positions, model.layers[k - 1 : k], WINDOW)
    keep = torch.tensor(sorted(keep))
    hidden = eager_layers(model, hidden[:, keep], keep[None], model.layers[k:], WINDOW)
    return model.norm(hidden)[0], token_ids[keep], kept


@torch.no_grad()
@pytest.mark.parametrize("k", [1, 2, 3])
def test_ivcprune_video_plan_equals_a_per_frame_eager_restatement(phi3s, k):
    from video.fastv import VideoFastVPlan

    sdpa, eager = phi3s
    batch = _video_batch(sdpa)
    plan = VideoFastVPlan(FRAME_TOKENS, QUOTA, (3, 4), 1, k, True, get_method("ivcprune", layer=k).ranker())
    out = plan.prefill(sdpa, batch)
    for b, n in enumerate(batch.lengths):
        ref_hidden, ref_ids, ref_kept = _video_reference_row(eager, batch.inputs_embeds[b, :n], batch.token_ids[b, :n], k)
        m = ref_ids.numel()
        assert [g.tolist() for g in out.kept[b]] == ref_kept and torch.equal(out.token_ids[b, :m], ref_ids)
        assert int((out.token_ids[b, :m] == -1).sum()) == QUOTA * len(FRAME_TOKENS) + VIDEO_TOKENS
        torch.testing.assert_close(out.hidden[b, :m], ref_hidden, rtol=1e-4, atol=1e-5)
    assert len({tuple(g.tolist()) for row in out.kept for g in row}) > 1  # frames and rows choose on their own
    assert plan == VideoFastVPlan(FRAME_TOKENS, QUOTA, (3, 4), 1, k, True, get_method("ivcprune", layer=k).ranker())


IVC_TINY = get_method("ivcprune", layer=1)  # the tiny VideoGLaMM has 2 layers: prune after the first


@torch.no_grad()
@pytest.mark.parametrize("budget, layout, quota", [(81, "cells", 21), (50, "unpooled", 50)])
def test_ivcprune_segments_videos_frame_by_frame_inside_the_llm(tiny_video_segmenter, frames, budget, layout, quota):
    seg, expressions = tiny_video_segmenter, ["the dog", "a red car"]
    a = seg.segment(frames, expressions, budget=budget, method=IVC_TINY, layout=layout, answer="Sure, [SEG].")
    b = seg.segment(frames, expressions, budget=budget, method=IVC_TINY, layout=layout, answer="Sure, [SEG].")
    covered = 4 * quota if layout == "cells" else quota  # CLIP tokens under the kept LLM tokens of a frame
    assert a.method == "ivcprune" and a.clip_tokens_per_frame == quota and a.visual_tokens_per_frame == quota + 64
    for e, kept in enumerate(a.kept):
        assert kept.shape == (16, covered) and all(len(set(row.tolist())) == covered for row in kept) and kept.max() < 576
        single = seg.segment(frames, [expressions[e]], budget=budget, method=IVC_TINY, layout=layout, answer="Sure, [SEG].")
        assert torch.equal(single.kept[0], kept)  # batched or alone, each expression chooses on its own
    assert len({tuple(row.tolist()) for row in a.kept[0]}) > 1  # frames choose on their own
    assert all(torch.equal(x, y) for x, y in zip(a.kept, b.kept)) and np.array_equal(a.masks, b.masks)


@torch.no_grad()
def test_ivcprune_on_video_keeping_every_token_is_the_unpruned_model(tiny_video_segmenter, frames, monkeypatch):
    from litelvlm.testing.videoglamm import record_seg_states

    states = record_seg_states(tiny_video_segmenter, monkeypatch)
    full = tiny_video_segmenter.segment(frames, ["the dog"], budget=None, answer="Sure, [SEG].")
    ivc = tiny_video_segmenter.segment(frames, ["the dog"], budget=576, method=IVC_TINY, answer="Sure, [SEG].")
    torch.testing.assert_close(states[1], states[0], rtol=1e-4, atol=1e-5)
    assert np.array_equal(ivc.masks, full.masks) and torch.equal(ivc.kept[0], torch.arange(576).expand(16, -1))


@torch.no_grad()
def test_ivcprune_generates_with_and_without_the_kv_cache(tiny_video_segmenter, frames):
    seg = tiny_video_segmenter
    runs = []
    for use_cache in (True, False):
        with scripted_head(seg.model.llm, [5, seg.seg_token_id, 7, min(seg.eos_token_ids)]):
            runs.append(seg.segment(frames, ["the dog"], budget=81, method=IVC_TINY, max_new_tokens=6, use_cache=use_cache))
    assert runs[0].answers == runs[1].answers and runs[0].forward_passes == runs[1].forward_passes == 4
    assert torch.equal(runs[0].kept[0], runs[1].kept[0]) and runs[0].kept[0].shape == (16, 84)  # the prompt's choice


def test_ivcprune_on_video_names_bad_settings(tiny_video_segmenter, frames):
    from litelvlm.run_options import check_method_runs_on
    from video.layout import check_layout_budget

    with pytest.raises(ValueError, match="method 'ivcprune' does not support layout 'regrid'"):
        tiny_video_segmenter.segment(frames, ["x"], budget=81, method=IVC_TINY, layout="regrid", answer="Sure, [SEG].")
    with pytest.raises(ValueError, match="method 'ivcprune' does not support layout 'regrid'"):
        check_layout_budget("regrid", 81, "ivcprune")  # before any model loads
    with pytest.raises(ValueError, match="layer K=16, but this LLM has 2 layers"):
        tiny_video_segmenter.segment(frames, ["x"], budget=81, method="ivcprune", answer="Sure, [SEG].")
    check_method_runs_on("ivcprune", "video")


@pytest.mark.parametrize("method, label", [("ivcprune", "kept by ivcprune inside the LLM"), ("fastv", "kept by fastv inside the LLM"),
                                           ("cdpruner", "kept: reaches the LLM")])
def test_kept_token_maps_say_where_the_tokens_were_kept(method, label):
    from types import SimpleNamespace

    from litelvlm.segment_cli import result_pictures

    result = SimpleNamespace(method=method, num_visual_tokens=4, masks=np.zeros((1, 20, 30), bool), kept=[torch.arange(4)])
    _, maps, _ = result_pictures(np.zeros((20, 30, 3), np.uint8), result, ["x"], SimpleNamespace(image_size=28, patch_size=14))
    assert maps[0].legend[0][1].startswith(label)

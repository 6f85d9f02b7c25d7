"""The pruning core against an independent restatement of the released LiteLVLM rule (FACTS §1)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from litelvlm.pruning import (
    ClipTokenPruner,
    available_methods,
    context_scores,
    get_method,
    grid_indices,
    litelvlm_select,
)


# ---------------------------------------------------------------- independent restatement
def released_rule(similarity: np.ndarray, context: np.ndarray, budget: int) -> list[int]:
    """The released selection, restated in plain numpy / Python sets from its description."""
    num_texts, _ = similarity.shape
    per_text = budget // num_texts
    chosen = set()
    for row in similarity:
        chosen.update(np.argsort(row, kind="stable")[:per_text].tolist())
    union = sorted(chosen)
    by_context = [int(i) for i in np.argsort(-context, kind="stable") if int(i) not in chosen]
    return by_context[: budget - len(union)] + union


def released_scores_with_hooks(vision_model, pixel_values, text_embeds):
    """Similarity and context the way the released tower computes them: a full forward with hooks
    on the last layer's q/k/v projections and hidden_states[-2]."""
    captured = {}
    attn = vision_model.vision_model.encoder.layers[-1].self_attn
    hooks = [
        getattr(attn, name).register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
        for name in ("q_proj", "k_proj", "v_proj")
    ]
    try:
        out = vision_model(pixel_values, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    states = out.hidden_states[-2]
    dim = captured["q_proj"].shape[-1]
    q = F.normalize(captured["q_proj"][:, :1], dim=-1)
    k = F.normalize(captured["k_proj"][:, 1:], dim=-1)
    a = torch.softmax(q @ k.transpose(1, 2) / dim**0.5, dim=-1)
    ctx = (a.transpose(1, 2) * captured["v_proj"][:, 1:]).norm(dim=-1)
    proj = vision_model.visual_projection(vision_model.vision_model.post_layernorm(states[:, 1:]))
    sim = torch.stack([(proj @ t) for t in text_embeds], dim=1)  # (F, T, N)
    return states, sim, ctx


# ---------------------------------------------------------------- litelvlm_select
@pytest.mark.parametrize(
    "num_texts, budget", [(t, b) for t in (1, 2, 3, 5) for b in (1, 7, 64, 128, 192, 575, 576) if b >= t]
)
def test_select_matches_released_rule_on_random_scores(num_texts, budget):
    gen = torch.Generator().manual_seed(1000 * num_texts + budget)
    for _ in range(5):
        sim = torch.randn(num_texts, 576, generator=gen)
        ctx = torch.rand(576, generator=gen)
        kept = litelvlm_select(sim, ctx, budget)
        assert kept.dtype == torch.long and kept.shape == (budget,)
        assert kept.tolist() == released_rule(sim.numpy(), ctx.numpy(), budget)


def test_select_single_text_has_no_context_tokens():
    sim, ctx = torch.randn(1, 100), torch.rand(100)
    kept = litelvlm_select(sim, ctx, 30)
    assert set(kept.tolist()) == set(torch.topk(sim[0], 30, largest=False).indices.tolist())
    assert kept.tolist() == sorted(kept.tolist())


def test_select_overlap_is_refilled_by_context():
    sim = torch.randn(1, 50).repeat(3, 1)  # three identical texts: union = budget // 3 tokens
    ctx = torch.rand(50)
    kept = litelvlm_select(sim, ctx, 12)
    union = sorted(torch.topk(sim[0], 4, largest=False).indices.tolist())
    assert kept[-4:].tolist() == union
    rest = [i for i in torch.argsort(ctx, descending=True).tolist() if i not in union][:8]
    assert kept[:8].tolist() == rest


def test_select_options_context_share_and_raster_order():
    gen = torch.Generator().manual_seed(3)
    sim, ctx = torch.randn(1, 576, generator=gen), torch.rand(576, generator=gen)
    kept = litelvlm_select(sim, ctx, 64, context_share=0.25)
    sim_part = torch.topk(sim[0], 48, largest=False).indices
    assert kept[16:].tolist() == sorted(sim_part.tolist())
    top_ctx = [i for i in torch.argsort(ctx, descending=True).tolist() if i not in set(sim_part.tolist())][:16]
    assert kept[:16].tolist() == top_ctx
    raster = litelvlm_select(sim, ctx, 64, context_share=0.25, raster_order=True)
    assert raster.tolist() == sorted(kept.tolist())


@pytest.mark.parametrize(
    "sim_shape, ctx_shape, budget, match",
    [
        ((1, 10), (10,), 0, "out of range"),
        ((1, 10), (10,), 11, "out of range"),
        ((3, 10), (10,), 2, "smaller than the number of texts"),
        ((0, 10), (10,), 2, "no texts"),
        ((1, 10), (9,), 2, "context must be"),
        ((10,), (10,), 2, r"similarity must be \(T, N\)"),
    ],
)
def test_select_rejects_bad_input(sim_shape, ctx_shape, budget, match):
    with pytest.raises(ValueError, match=match):
        litelvlm_select(torch.randn(sim_shape), torch.rand(ctx_shape), budget)


# ---------------------------------------------------------------- on a tiny CLIP, several frames
def _frames(clip, n, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=(120 + 17 * i, 160, 3), dtype=np.uint8) for i in range(n)]
    return clip.image_processor(images=images, return_tensors="pt").pixel_values


def test_pruner_reproduces_released_selection_over_frames(tiny_clip):
    texts = ["Can you segment the man in this image?", "the red car", "a dog on the left"]
    pruner = tiny_clip.pruner()
    text_embeds = pruner.text_embeds(texts)
    pixels = _frames(tiny_clip, 4)
    result = pruner(pixels, 192, text_embeds=text_embeds)
    assert result.indices.shape == (4, 192) and result.features.shape == (4, 192, 32)

    states, sim, ctx = released_scores_with_hooks(tiny_clip.vision, pixels, text_embeds)
    for f in range(4):
        expected = released_rule(sim[f].numpy(), ctx[f].numpy(), 192)
        assert result.indices[f].tolist() == expected
        torch.testing.assert_close(result.features[f], states[f, 1:][expected], rtol=0, atol=0)
    torch.testing.assert_close(context_scores(result.frames.query, result.frames.key, result.frames.value), ctx)


def test_per_frame_results_equal_single_frame_calls(tiny_clip):
    pruner = tiny_clip.pruner()
    text_embeds = pruner.text_embeds(["the man", "a white dog"])
    pixels = _frames(tiny_clip, 3, seed=5)
    batched = pruner(pixels, 64, text_embeds=text_embeds)
    for f in range(3):
        single = pruner(pixels[f : f + 1], 64, text_embeds=text_embeds)
        assert torch.equal(single.indices[0], batched.indices[f])
        torch.testing.assert_close(single.features[0], batched.features[f], rtol=1e-5, atol=1e-5)


def test_input_ids_path_equals_text_embeds_path_and_counts_text_calls(tiny_clip):
    pruner = tiny_clip.pruner()
    enc = tiny_clip.tokenizer(["the man", "the small cat"], padding=True, return_tensors="pt")
    pixels = _frames(tiny_clip, 2, seed=9)
    a = pruner(pixels, 100, input_ids=enc.input_ids, attention_mask=enc.attention_mask)
    assert pruner.text_calls == 1
    embeds = pruner.text_embeds(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
    b = pruner(pixels, 100, text_embeds=embeds)
    b2 = pruner(pixels, 50, text_embeds=embeds)
    assert pruner.text_calls == 2  # reuse: no text forward for calls given text_embeds
    assert torch.equal(a.indices, b.indices) and b2.indices.shape == (2, 50)


@pytest.mark.parametrize("select_layer", [-1, -2, -3])
def test_select_layer_states_match_hidden_states(tiny_clip, select_layer):
    pixels = _frames(tiny_clip, 1)
    frames = ClipTokenPruner(tiny_clip.vision, select_layer=select_layer).encode(pixels)
    ref = tiny_clip.vision(pixels, output_hidden_states=True).hidden_states[select_layer]
    torch.testing.assert_close(frames.states, ref, rtol=1e-5, atol=1e-5)


def test_pruner_rejects_bad_input(tiny_clip):
    pruner = tiny_clip.pruner()
    embeds = pruner.text_embeds(["the man", "the dog"])
    pixels = _frames(tiny_clip, 2)
    with pytest.raises(ValueError, match="out of range"):
        pruner(pixels, 577, text_embeds=embeds)
    with pytest.raises(ValueError, match="out of range"):
        pruner(pixels, 0, text_embeds=embeds)
    with pytest.raises(ValueError, match="smaller than the number of texts"):
        pruner(pixels, 1, text_embeds=embeds)
    with pytest.raises(ValueError, match="text guided"):
        pruner(pixels, 10)
    with pytest.raises(ValueError, match="no texts"):
        pruner.text_embeds([])
    with pytest.raises(ValueError, match="different sizes"):
        pruner([pixels[0], pixels[1, :, :300]], 10, text_embeds=embeds)
    with pytest.raises(ValueError, match="expects 336x336"):
        pruner(pixels[:, :, :224, :224], 10, text_embeds=embeds)
    with pytest.raises(ValueError, match=r"\(F, 3, H, W\)"):
        pruner(pixels[0], 10, text_embeds=embeds)
    with pytest.raises(ValueError, match="width"):
        pruner(pixels, 10, text_embeds=torch.randn(2, 7))


# ---------------------------------------------------------------- registry and simple methods
def test_registry_lists_core_methods_and_rejects_unknown():
    assert {"litelvlm", "none", "random", "grid"} <= set(available_methods())
    with pytest.raises(ValueError, match="unknown pruning method 'nope'"):
        get_method("nope")
    with pytest.raises(ValueError, match="bad options"):
        get_method("random", sed=1)


def test_random_is_seeded_and_grid_is_uniform(tiny_clip):
    pixels = _frames(tiny_clip, 2)
    frames = ClipTokenPruner(tiny_clip.vision).encode(pixels)
    r1 = get_method("random", seed=7).select(frames, 81).indices
    r2 = get_method("random", seed=7).select(frames, 81).indices
    r3 = get_method("random", seed=8).select(frames, 81).indices
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)
    assert all(len(set(row.tolist())) == 81 for row in r1)
    g = get_method("grid").select(frames, 81).indices
    lattice = np.rint(np.linspace(0, 23, 9)).astype(int)
    assert g[0].tolist() == [int(r) * 24 + int(c) for r in lattice for c in lattice] == g[1].tolist()
    assert grid_indices((24, 24), 144).view(12, 12)[0].tolist() == torch.linspace(0, 23, 12).round().long().tolist()
    odd = grid_indices((24, 24), 100 + 3)
    assert odd.numel() == 103 and len(set(odd.tolist())) == 103 and odd.tolist() == sorted(odd.tolist())
    assert get_method("none").select(frames, 576).indices[1].tolist() == list(range(576))
    with pytest.raises(ValueError, match="keeps all"):
        get_method("none").select(frames, 100)


# ---------------------------------------------------------------- cell granularity option
def test_cell_selection_fills_the_fewest_cells_with_exactly_budget_tokens():
    from litelvlm.pruning import litelvlm_select_cells

    gen = torch.Generator().manual_seed(11)
    sim, ctx = torch.randn(2, 576, generator=gen), torch.rand(576, generator=gen)
    for budget in (196, 81, 8, 575):
        kept = litelvlm_select_cells(sim, ctx, budget, (24, 24), 2)
        assert kept.numel() == budget and len(set(kept.tolist())) == budget
        cells = {(int(i) // 24 // 2, int(i) % 24 // 2) for i in kept}
        assert len(cells) == -(-budget // 4)
    # restatement: the released rule on 2x2-averaged scores decides which cells, in which order
    kept = litelvlm_select_cells(sim, ctx, 81, (24, 24), 2)
    pooled = lambda x: torch.nn.functional.avg_pool2d(x.view(-1, 1, 24, 24), 2).flatten(1)  # noqa: E731
    expected_cells = released_rule(pooled(sim).numpy(), pooled(ctx[None])[0].numpy(), 21)
    seen = []
    for i in kept.tolist():
        c = (i // 24 // 2) * 12 + (i % 24) // 2
        if c not in seen:
            seen.append(c)
    assert seen == expected_cells


def test_litelvlm_cell_option_through_the_registry(tiny_clip):
    pixels = _frames(tiny_clip, 2, seed=4)
    pruner = tiny_clip.pruner()
    embeds = pruner.text_embeds(["the dog"])
    frames = pruner.encode(pixels)
    kept = get_method("litelvlm", cell=2).select(frames, 81, embeds).indices
    assert kept.shape == (2, 81)
    with pytest.raises(ValueError, match="cell must be"):
        get_method("litelvlm", cell=0)


def test_the_pruning_core_imports_neither_transformers_nor_the_video_or_eval_packages():
    """``import litelvlm.pruning`` (every method registered, the video baselines included) stays light: the in-LLM
    parts that need transformers load when a clip runs, and the base package never imports video/ or eval/."""
    import subprocess
    import sys

    code = ("import sys, litelvlm, litelvlm.pruning; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'video', 'eval', 'gradio'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"

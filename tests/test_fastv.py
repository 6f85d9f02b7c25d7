"""FastV inside the LLM prefill, against transformers' eager attention and a per-row restatement."""

import numpy as np
import pytest
import torch

from litelvlm.fastv import fastv_prefill, last_position_attention
from litelvlm.lvlm import splice_and_pad
from litelvlm.testing.llm import tiny_llama_pair
from litelvlm.pruning import available_methods, get_method

PLACEHOLDER = -200
NUM_IMAGE = 12
LAYERS = 3


@pytest.fixture(scope="module")
def llms():
    """The same random weights with SDPA (what the in-LLM methods run on) and eager attention (the reference)."""
    return tiny_llama_pair(LAYERS)


@pytest.fixture(scope="module")
def batch(llms):
    """Three right-padded rows of different lengths, the image at different offsets."""
    gen = torch.Generator().manual_seed(1)
    prompts = [[1, 7, 8, PLACEHOLDER, 9, 10, 11], [1, 4, PLACEHOLDER, 12, 13, 14, 15, 16, 17, 18], [1, 5, 6, 2, 3, PLACEHOLDER, 19, 20]]
    visual = [[torch.randn(NUM_IMAGE, 32, generator=gen)] for _ in prompts]
    spliced = splice_and_pad(prompts, visual, llms[0].get_input_embeddings(), PLACEHOLDER)
    assert len(set(spliced.lengths)) == 3
    return spliced


def _eager_causal_mask(n: int) -> torch.Tensor:
    return torch.full((n, n), float("-inf")).triu(1)[None, None]


def _eager_layers(model, hidden, positions, layers):
    rotary = model.rotary_emb(hidden, positions)
    mask = _eager_causal_mask(hidden.shape[1])
    for layer in layers:
        hidden = layer(hidden, attention_mask=mask, position_embeddings=rotary, position_ids=positions)
    return hidden


def _reference_row(eager, embeds, token_ids, budget, k, keep_position_ids):
    """One unpadded row: eager layers [0, K), layer K-1's attention weights from a hook, drop, continue."""
    model = eager.model
    captured = {}
    hook = model.layers[k - 1].self_attn.register_forward_hook(lambda mod, args, out: captured.update(weights=out[1]))
    positions = torch.arange(embeds.shape[0])[None]
    hidden = _eager_layers(model, embeds[None], positions, model.layers[:k])
    hook.remove()
    scores = captured["weights"][0, :, -1].mean(0)  # head mean of the last query
    image = (token_ids == -1).nonzero().flatten()
    kept = scores[image].topk(budget).indices.sort().values
    keep = torch.tensor(sorted(set(range(embeds.shape[0])) - set(image.tolist()) | set(image[kept].tolist())))
    new_positions = keep[None] if keep_position_ids else torch.arange(keep.numel())[None]
    hidden = _eager_layers(model, hidden[:, keep], new_positions, model.layers[k:])
    return model.norm(hidden)[0], token_ids[keep], kept


@torch.no_grad()
@pytest.mark.parametrize("keep_position_ids", [True, False])
def test_budget_all_image_tokens_equals_the_normal_prefill(llms, batch, keep_position_ids):
    sdpa, _ = llms
    normal = sdpa.model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, use_cache=False).last_hidden_state
    for k in range(1, LAYERS + 1):
        hidden, token_ids, kept = fastv_prefill(sdpa, batch, budget=NUM_IMAGE, layer=k, keep_position_ids=keep_position_ids)
        assert torch.equal(token_ids, batch.token_ids) and torch.equal(kept, torch.arange(NUM_IMAGE).expand(3, -1))
        for b, n in enumerate(batch.lengths):
            torch.testing.assert_close(hidden[b, :n], normal[b, :n], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_attention_map_equals_eager_head_mean_at_the_last_position(llms, batch):
    sdpa, eager = llms
    out = eager.model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, output_attentions=True,
                      output_hidden_states=True, use_cache=False)
    positions = torch.arange(batch.inputs_embeds.shape[1])[None]
    for k in range(1, LAYERS + 1):
        layer_input = out.hidden_states[k - 1]
        rotary = sdpa.model.rotary_emb(layer_input, positions)
        scores = last_position_attention(sdpa.model.layers[k - 1], layer_input, rotary, batch.attention_mask)
        for b, n in enumerate(batch.lengths):
            expected = out.attentions[k - 1][b, :, n - 1].mean(0)
            torch.testing.assert_close(scores[b], expected, rtol=1e-5, atol=1e-6)
            assert scores[b, n:].abs().sum() == 0 and torch.isclose(scores[b].sum(), torch.tensor(1.0))
        assert scores[:, 3:15].std() > 1e-3  # the ranking is not a tie-break of a flat map


@torch.no_grad()
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("keep_position_ids", [True, False])
def test_fastv_equals_a_per_row_eager_restatement(llms, batch, k, keep_position_ids):
    sdpa, eager = llms
    budget = 5
    hidden, token_ids, kept = fastv_prefill(sdpa, batch, budget=budget, layer=k, keep_position_ids=keep_position_ids)
    assert kept.shape == (3, budget) and hidden.shape[1] == token_ids.shape[1] == max(batch.lengths) - NUM_IMAGE + budget
    for b, n in enumerate(batch.lengths):
        ref_hidden, ref_ids, ref_kept = _reference_row(eager, batch.inputs_embeds[b, :n], batch.token_ids[b, :n], budget, k, keep_position_ids)
        m = ref_ids.numel()
        assert m == n - NUM_IMAGE + budget and torch.equal(kept[b], ref_kept)
        assert torch.equal(token_ids[b, :m], ref_ids) and (token_ids[b, m:] == -1).all()
        torch.testing.assert_close(hidden[b, :m], ref_hidden, rtol=1e-4, atol=1e-5)
    assert len({tuple(r.tolist()) for r in kept}) > 1  # rows rank their image tokens on their own


@torch.no_grad()
def test_position_id_modes_differ_once_tokens_are_dropped(llms, batch):
    kept_ids = fastv_prefill(llms[0], batch, budget=4, layer=1, keep_position_ids=True)[0]
    renumbered = fastv_prefill(llms[0], batch, budget=4, layer=1, keep_position_ids=False)[0]
    assert not torch.allclose(kept_ids[0, -3:], renumbered[0, -3:], atol=1e-4)


def test_bad_options_are_named(llms, batch):
    for layer in (0, LAYERS + 1):
        with pytest.raises(ValueError, match="layer K"):
            fastv_prefill(llms[0], batch, budget=4, layer=layer)
    with pytest.raises(ValueError, match="fewer than budget"):
        fastv_prefill(llms[0], batch, budget=NUM_IMAGE + 1, layer=1)
    with pytest.raises(ValueError, match="budget must be"):
        fastv_prefill(llms[0], batch, budget=0, layer=1)
    flipped = type(batch)(batch.inputs_embeds, batch.attention_mask.flip(1), batch.token_ids, batch.lengths)
    with pytest.raises(ValueError, match="right-padded"):
        fastv_prefill(llms[0], flipped, budget=4, layer=1)
    with pytest.raises(ValueError, match="layer must be"):
        get_method("fastv", layer=0)


def test_registered_as_an_in_llm_method_that_keeps_every_token_before_the_llm(tiny_clip):
    assert "fastv" in available_methods()
    method = get_method("fastv", layer=3, keep_position_ids=False)
    assert method.stage == "llm" and method.layer == 3 and method.keep_position_ids is False
    pixels = tiny_clip.image_processor(images=[np.zeros((40, 50, 3), np.uint8)], return_tensors="pt").pixel_values
    pruner = tiny_clip.pruner()
    selection = pruner.select(pruner.encode(pixels), 64, None, method)
    assert torch.equal(selection.indices, torch.arange(selection.frames.num_tokens)[None])


EXPRESSIONS = ["the man on the left", "a red car"]


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, size=(90, 120, 3), dtype=np.uint8)


def test_segmenter_keeps_budget_tokens_per_expression_deterministically(tiny_segmenter, image):
    method = get_method("fastv", layer=1)  # the tiny GLaMM has 2 layers: prune after the first
    a = tiny_segmenter.segment(image, EXPRESSIONS, budget=64, method=method)
    b = tiny_segmenter.segment(image, EXPRESSIONS, budget=64, method=method)
    assert a.method == "fastv" and a.num_visual_tokens == 64 and a.masks.shape == (2, 90, 120)
    for kept in a.kept:
        assert kept.numel() == 64 and len(set(kept.tolist())) == 64 and 0 <= kept.min() and kept.max() < 576
    assert all(torch.equal(x, y) for x, y in zip(a.kept, b.kept)) and np.array_equal(a.masks, b.masks)
    for i, expr in enumerate(EXPRESSIONS):
        single = tiny_segmenter.segment(image, [expr], budget=64, method=method)
        assert torch.equal(single.kept[0], a.kept[i])
        torch.testing.assert_close(single.seg_embeddings[0], a.seg_embeddings[i], rtol=1e-4, atol=1e-5)
    default = tiny_segmenter.segment(image, EXPRESSIONS, budget=64, method="fastv")
    assert default.num_visual_tokens == 64 and all(k.numel() == 64 for k in default.kept)


def test_segmenter_with_every_token_kept_is_the_unpruned_model(tiny_segmenter, image):
    full = tiny_segmenter.segment(image, EXPRESSIONS[:1], budget=None)
    fastv = tiny_segmenter.segment(image, EXPRESSIONS[:1], budget=576, method=get_method("fastv", layer=1))
    assert fastv.kept[0].tolist() == list(range(576))
    torch.testing.assert_close(fastv.seg_embeddings, full.seg_embeddings, rtol=1e-4, atol=1e-5)
    pruned = tiny_segmenter.segment(image, EXPRESSIONS[:1], budget=64, method=get_method("fastv", layer=1))
    assert not torch.allclose(pruned.seg_embeddings, full.seg_embeddings, atol=1e-4)

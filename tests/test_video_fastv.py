"""FastV in the video path: per-frame quotas inside a Phi-3 LLM, against eager restatements and the unpruned model."""

import math

import numpy as np
import pytest
import torch

import video.fastv
from litelvlm.fastv import KeepGroup, fastv_decode_step, fastv_prefill_groups, last_position_attention
from litelvlm.lvlm import splice_and_pad
from litelvlm.pruning import get_method
from litelvlm.testing.llm import eager_layers, scripted_head, tiny_phi3_pair
from litelvlm.testing.videoglamm import record_seg_states

TEACHER = {"answer": "Sure, [SEG]."}
WINDOW = 9  # a sliding window shorter than the tiny sequences, so it matters
FASTV = get_method("fastv", layer=1)  # the tiny VideoGLaMM has 2 layers: prune after the first (K=2 would change nothing)


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, size=(6, 40, 56, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def phi3s():
    return tiny_phi3_pair(WINDOW)


@torch.no_grad()
@pytest.mark.parametrize("layout", ["cells", "unpooled"])
def test_full_budget_equals_the_unpruned_model(tiny_video_segmenter, frames, layout, monkeypatch):
    states = record_seg_states(tiny_video_segmenter, monkeypatch)
    full = tiny_video_segmenter.segment(frames, ["the dog"], budget=None, layout=layout, **TEACHER)
    fastv = tiny_video_segmenter.segment(frames, ["the dog"], budget=576, method=FASTV, layout=layout, **TEACHER)
    torch.testing.assert_close(states[1], states[0], rtol=1e-4, atol=1e-5)
    assert np.array_equal(fastv.masks, full.masks) and fastv.method == "fastv"
    assert torch.equal(fastv.kept[0], torch.arange(576).expand(16, -1))
    assert fastv.clip_tokens_per_frame == full.clip_tokens_per_frame == (144 if layout == "cells" else 576)


def _capture_prefills(monkeypatch):
    outputs, original = [], video.fastv.fastv_prefill_groups

    def capturing(*args, **kwargs):
        outputs.append(original(*args, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(video.fastv, "fastv_prefill_groups", capturing)
    return outputs


@torch.no_grad()
@pytest.mark.parametrize("budget, layout, quota", [(81, "cells", 21), (50, "unpooled", 50)])
def test_every_frame_keeps_its_quota_deterministically(tiny_video_segmenter, frames, budget, layout, quota, monkeypatch):
    outputs = _capture_prefills(monkeypatch)
    states = record_seg_states(tiny_video_segmenter, monkeypatch)
    a = tiny_video_segmenter.segment(frames, ["the dog", "a red car"], budget=budget, method=FASTV, layout=layout, **TEACHER)
    b = tiny_video_segmenter.segment(frames, ["the dog", "a red car"], budget=budget, method=FASTV, layout=layout, **TEACHER)
    covered = 4 * quota if layout == "cells" else quota
    assert a.clip_tokens_per_frame == quota and a.visual_tokens_per_frame == quota + 64
    for kept in a.kept:
        assert kept.shape == (16, covered) and all(len(set(row.tolist())) == covered for row in kept)
        assert kept.min() >= 0 and kept.max() < 576 and torch.equal(kept, kept.sort(1).values)
        if layout == "cells":  # whole 2x2 cells: every covered token's cell holds 4 covered tokens
            cell = (kept // 24 // 2) * 12 + (kept % 24) // 2
            assert all(torch.bincount(row, minlength=144).max() == 4 for row in cell)
    assert len({tuple(row.tolist()) for row in a.kept[0]}) > 1  # frames rank their tokens on their own
    out = outputs[0]
    for row, groups in enumerate(out.kept):
        assert len(groups) == 16 and all(g.numel() == quota for g in groups)
        valid = int((out.token_ids[row] != -1).nonzero().max()) + 1  # rows end in text; -1 beyond is padding
        assert int((out.token_ids[row, :valid] == -1).sum()) == 16 * quota + 16 * 64
    assert all(torch.equal(x, y) for x, y in zip(a.kept, b.kept)) and np.array_equal(a.masks, b.masks)
    torch.testing.assert_close(states[0], states[1])
    full = tiny_video_segmenter.segment(frames, ["the dog", "a red car"], budget=None, layout=layout, **TEACHER)
    assert not torch.allclose(states[0], states[2], atol=1e-4)  # pruning changed the [SEG] states
    assert full.masks.shape == a.masks.shape


def _padded_batch(model, lengths_before, num_image, lengths_after, seed=1):
    gen = torch.Generator().manual_seed(seed)
    prompts = [[1] + list(range(3, 3 + a)) + [-200] + list(range(10, 10 + b)) for a, b in zip(lengths_before, lengths_after)]
    visual = [[torch.randn(num_image, 32, generator=gen)] for _ in prompts]
    return splice_and_pad(prompts, visual, model.get_input_embeddings(), -200)


@torch.no_grad()
def test_phi3_attention_row_equals_transformers_eager_attention(phi3s):
    sdpa, eager = phi3s
    batch = _padded_batch(sdpa, [2, 5, 1], 12, [6, 2, 3])
    out = eager.model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, output_attentions=True,
                      output_hidden_states=True, use_cache=False)
    positions = torch.arange(batch.inputs_embeds.shape[1])[None]
    for k in range(1, 4):
        layer_input = out.hidden_states[k - 1]
        scores = last_position_attention(sdpa.model.layers[k - 1], layer_input, sdpa.model.rotary_emb(layer_input, positions),
                                         batch.attention_mask)
        for b, n in enumerate(batch.lengths):
            torch.testing.assert_close(scores[b], out.attentions[k - 1][b, :, n - 1].mean(0), rtol=1e-5, atol=1e-6)
            assert scores[b, : n - WINDOW].abs().sum() == 0 and scores[b, n:].abs().sum() == 0  # window and padding
        assert scores.std() > 1e-3


def _reference(eager, embeds, stay, k, keep_position_ids):
    """Eager restatement with a fixed set of staying positions: layers [0, K) on all, [K, L) on ``stay``."""
    model = eager.model
    hidden = eager_layers(model, embeds[None], torch.arange(embeds.shape[0])[None], model.layers[:k], WINDOW)
    positions = stay[None] if keep_position_ids else torch.arange(stay.numel())[None]
    return model.norm(eager_layers(model, hidden[:, stay], positions, model.layers[k:], WINDOW))[0]


GROUPS = [KeepGroup(torch.arange(0, 5), 2), KeepGroup(torch.arange(5, 10), 3)]  # image tokens 10, 11: in no group


@torch.no_grad()
@pytest.mark.parametrize("keep_position_ids", [True, False])
def test_group_prefill_and_cached_decode_equal_an_eager_restatement(phi3s, keep_position_ids):
    sdpa, eager = phi3s
    k = 2
    batch = _padded_batch(sdpa, [3], 12, [4])
    prefill = fastv_prefill_groups(sdpa, batch, [GROUPS], layer=k, keep_position_ids=keep_position_ids, use_cache=True)
    image = (batch.token_ids[0] == -1).nonzero().flatten()
    # the per-group choice, restated from eager attention weights
    attentions = eager.model(inputs_embeds=batch.inputs_embeds, output_attentions=True, use_cache=False).attentions
    scores = attentions[k - 1][0, :, -1].mean(0)
    for group, kept in zip(GROUPS, prefill.kept[0]):
        assert torch.equal(kept, scores[image[group.candidates]].topk(group.quota).indices.sort().values)
    dropped = {int(image[g.candidates[i]]) for g, kept in zip(GROUPS, prefill.kept[0]) for i in range(5) if i not in kept}
    stay = torch.tensor([i for i in range(batch.lengths[0]) if i not in dropped])
    assert len(dropped) == 5 and torch.equal(prefill.token_ids[0], batch.token_ids[0, stay])
    torch.testing.assert_close(prefill.hidden[0], _reference(eager, batch.inputs_embeds[0], stay, k, keep_position_ids), rtol=1e-4, atol=1e-5)
    sequence, length, pruned = batch.inputs_embeds[0], batch.lengths[0], stay.numel()
    for step in range(WINDOW + 2):  # past the window in both the full and the pruned layers
        token = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(step))
        positions = (length + step, (length if keep_position_ids else pruned) + step)
        hidden = fastv_decode_step(sdpa, token, prefill.cache, layer=k, positions=positions)
        sequence = torch.cat([sequence, token[0]])
        stay = torch.cat([stay, torch.tensor([length + step])])
        expected = _reference(eager, sequence, stay, k, keep_position_ids)[-1]
        torch.testing.assert_close(hidden[0, 0], expected, rtol=1e-4, atol=1e-5)




def _generate(segmenter, frames, script, budget, method, **options):
    with scripted_head(segmenter.model.llm, script):
        return segmenter.segment(frames, ["the dog"], budget=budget, method=method, max_new_tokens=6, **options)


@torch.no_grad()
def test_cached_generation_equals_the_released_no_cache_loop(tiny_video_segmenter, frames, monkeypatch):
    seg = tiny_video_segmenter
    states = record_seg_states(seg, monkeypatch)
    script = [5, seg.seg_token_id, 7, min(seg.eos_token_ids)]
    fastv = get_method("fastv", layer=1, keep_position_ids=False)
    runs = [_generate(seg, frames, script, 576, fastv), _generate(seg, frames, script, 576, fastv, use_cache=False),
            _generate(seg, frames, script, None, "none")]
    for run in runs:
        assert run.answers == runs[0].answers and run.has_seg == [True] and run.forward_passes == 4
        assert np.array_equal(run.masks, runs[0].masks)
    torch.testing.assert_close(states[0], states[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(states[0], states[2], rtol=1e-4, atol=1e-5)
    pruned = [_generate(seg, frames, script, 81, FASTV), _generate(seg, frames, script, 81, FASTV, use_cache=False)]
    assert pruned[0].answers == pruned[1].answers and pruned[0].forward_passes == pruned[1].forward_passes == 4
    assert torch.equal(pruned[0].kept[0], pruned[1].kept[0]) and pruned[0].kept[0].shape == (16, 84)
    assert math.ceil(81 / 4) * 4 == 84


def test_regrid_and_bad_budgets_are_named(tiny_video_segmenter, frames):
    with pytest.raises(ValueError, match="layout 'regrid'.*'cells'.*'unpooled'"):
        tiny_video_segmenter.segment(frames, ["x"], budget=81, method="fastv", layout="regrid", **TEACHER)
    with pytest.raises(ValueError, match="budget"):
        tiny_video_segmenter.segment(frames, ["x"], budget=600, method="fastv", **TEACHER)
    with pytest.raises(ValueError, match="layer K"):
        tiny_video_segmenter.segment(frames, ["x"], budget=81, method=get_method("fastv", layer=3), **TEACHER)

"""Teacher-forced prompts of a pre-LLM method without a shared prefix: at most ``CPU_ROWS_PER_FORWARD`` rows per LLM
forward on CPU, each forward without a padding mask, and the [SEG] states of one padded, masked batch of every
prompt (to 1e-5)."""

import numpy as np
import pytest
import torch

import video.segmenter as segmenter_module
from litelvlm.lvlm import hidden_before
from video.segmenter import CPU_ROWS_PER_FORWARD, rows_per_forward

# six expressions of different lengths: every batch is right padded
EXPRESSIONS = ["the dog", "a red car on the far left of the road", "the man", "sun in the top right corner",
               "grass", "a child holding a small red ball near the tree"]


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, size=(6, 40, 56, 3), dtype=np.uint8)


def test_rows_per_forward_caps_cpu_batches_only():
    assert CPU_ROWS_PER_FORWARD == 4
    assert [rows_per_forward("cpu", n) for n in (1, 3, 4, 16)] == [1, 3, 4, 4]
    assert rows_per_forward(torch.device("cpu"), 16) == 4
    assert rows_per_forward("cuda", 16) == 16 and rows_per_forward("meta", 5) == 5


def _spied_run(seg, frames, monkeypatch):
    """The result, every expression's [SEG] states, the spliced batches and the masks the LLM prefill was given."""
    batches, masks, states = [], [], []
    splice, prefill, clip_masks = segmenter_module.splice_and_pad, seg.model.prefill_hidden, seg._clip_masks

    def spy_splice(*args, **kwargs):
        batches.append(splice(*args, **kwargs))
        return batches[-1]

    def spy_prefill(embeds, mask):
        masks.append(mask)
        return prefill(embeds, mask)

    def spy_masks(clip_frames, seg_states, *args, **kwargs):
        states.extend(seg_states)
        return clip_masks(clip_frames, seg_states, *args, **kwargs)

    monkeypatch.setattr(segmenter_module, "splice_and_pad", spy_splice)
    monkeypatch.setattr(seg.model, "prefill_hidden", spy_prefill)
    monkeypatch.setattr(seg, "_clip_masks", spy_masks)
    result = seg.segment(frames, EXPRESSIONS, budget=81, method="litelvlm", answer="Sure, [SEG].", mask_mode="none")
    monkeypatch.undo()
    return result, states, batches, masks


def _one_masked_batch(seg, batches):
    """Every row of ``batches`` right padded into one batch, prefilled with its padding mask (the earlier path)."""
    rows = [(b.inputs_embeds[i, :n], b.token_ids[i, :n]) for b in batches for i, n in enumerate(b.lengths)]
    width = max(embeds.shape[0] for embeds, _ in rows)
    embeds = torch.zeros(len(rows), width, rows[0][0].shape[-1])
    token_ids = torch.full((len(rows), width), -1, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (row, ids) in enumerate(rows):
        embeds[i, : row.shape[0]], token_ids[i, : row.shape[0]], mask[i, : row.shape[0]] = row, ids, 1
    with torch.no_grad():
        hidden = seg.model.prefill_hidden(embeds, mask)
    return hidden_before(hidden, token_ids, seg.seg_token_id)


def test_cpu_prompts_run_in_unmasked_chunks_with_the_masked_batch_states(tiny_video_segmenter, frames, monkeypatch):
    seg = tiny_video_segmenter
    result, states, batches, masks = _spied_run(seg, frames, monkeypatch)
    assert [b.inputs_embeds.shape[0] for b in batches] == [4, 2] and len(masks) == 2 and all(m is None for m in masks)
    assert result.forward_passes == 2 and len(states) == len(EXPRESSIONS)
    assert all(len(set(b.lengths)) > 1 for b in batches)  # each chunk is padded
    reference = _one_masked_batch(seg, batches)
    assert [s.shape for s in states] == [s.shape for s in reference] and sum(s.shape[0] for s in states) > 0
    for ours, batched in zip(states, reference):
        torch.testing.assert_close(ours, batched, rtol=1e-5, atol=1e-5)

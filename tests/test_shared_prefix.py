"""A prompt prefix prefilled once: continuations equal whole passes (also past Phi-3's sliding window), the prefix's
cache is never written to, and which methods may share it."""

import pytest
import torch

from litelvlm.decoding import Sampling, generate
from litelvlm.pruning import get_method
from litelvlm.pruning.clip_level import ClipSelector
from litelvlm.shared_prefix import SharedPrefix
from litelvlm.testing.llm import EveryNthHead, tiny_phi3

PREFIX, WINDOW = 20, 9  # the prefix is longer than the window


def _prompts(llm, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    width = llm.config.hidden_size
    prefix = torch.randn(1, PREFIX, width, generator=g)
    return prefix, [torch.cat([prefix, torch.randn(1, n, width, generator=g)], dim=1) for n in lengths]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_right_padded_continuations_equal_whole_passes_past_the_window(attn):
    llm = tiny_phi3(attn, window=WINDOW)
    prefix_embeds, rows = _prompts(llm, [3, 7, 1])
    prefix = SharedPrefix.prefill(llm, prefix_embeds)
    before = [t.clone() for layer in prefix.cache.layers for t in (layer.keys, layer.values)]
    width = max(r.shape[1] for r in rows)
    embeds = torch.zeros(len(rows), width, llm.config.hidden_size)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        embeds[b, : r.shape[1]], mask[b, : r.shape[1]] = r[0], 1
    with torch.no_grad():
        shared = prefix.view(llm).prefill_hidden(embeds, mask)
        for b, r in enumerate(rows):
            whole = llm.model(inputs_embeds=r, use_cache=False).last_hidden_state
            torch.testing.assert_close(shared[b : b + 1, : r.shape[1]], whole, rtol=1e-5, atol=1e-5)
    assert prefix.continuations == 3
    after = [t for layer in prefix.cache.layers for t in (layer.keys, layer.values)]
    assert all(torch.equal(x, y) for x, y in zip(before, after)) and after[0].shape[2] == PREFIX  # every key kept


@pytest.mark.parametrize("sampling", [None, Sampling(temperature=0.7)])
def test_generation_from_the_prefix_equals_the_whole_prompt_run(sampling):
    llm = tiny_phi3("sdpa", window=WINDOW, seed=1)
    prefix_embeds, rows = _prompts(llm, [4, 2], seed=2)
    prefix = SharedPrefix.prefill(llm, prefix_embeds)
    options = dict(max_new_tokens=2 * WINDOW, eos_token_ids=set(), seg_token_id=7, sampling=sampling)
    head = llm.lm_head
    for row in rows:
        runs = []
        for model in (llm, prefix.view(llm)):
            llm.lm_head = EveryNthHead(head, 7)  # [SEG] every third step: its states are compared
            runs.append(generate(model, lambda: row, generator=torch.Generator().manual_seed(5), **options))
        llm.lm_head = head
        assert runs[0].token_ids == runs[1].token_ids and runs[0].forward_passes == runs[1].forward_passes
        assert runs[0].seg_hidden.shape[0] == 6
        torch.testing.assert_close(runs[0].seg_hidden, runs[1].seg_hidden, rtol=1e-5, atol=1e-5)
    assert prefix.continuations == 2  # one prompt pass per row; the decoding steps use the row's own cache


def test_a_prompt_without_the_prefix_is_refused():
    llm = tiny_phi3("sdpa", window=WINDOW)
    prefix_embeds, rows = _prompts(llm, [3])
    prefix = SharedPrefix.prefill(llm, prefix_embeds)
    with pytest.raises(ValueError, match="does not start with the shared prefix"):
        prefix.view(llm).prefill_hidden(rows[0] + 1, torch.ones(1, rows[0].shape[1], dtype=torch.long))
    with pytest.raises(ValueError, match="nothing after it"):
        prefix.view(llm).prefill_hidden(prefix_embeds, torch.ones(1, PREFIX, dtype=torch.long))


class _QuestionFreePlan(ClipSelector):
    llm_reads_question = False

    def llm_plan(self, image_counts, video_count):
        return None


class _SomePlan(ClipSelector):
    def llm_plan(self, image_counts, video_count):
        return None


def test_which_methods_share_the_prefix():
    shared = ["none", "random", "grid", "visionzip", "vispruner", "prumerge", "fastvid", "dycoke"]
    alone = ["litelvlm", "litelvlm-time", "trim", "fastv", "prunevid"]
    assert [get_method(m).shares_prefix for m in shared] == [True] * len(shared)
    assert [get_method(m).shares_prefix for m in alone] == [False] * len(alone)
    assert get_method("dycoke").acts_in_llm and not get_method("fastvid").acts_in_llm
    # an in-LLM part is taken to read the question unless the method says it does not
    assert not _SomePlan().shares_prefix and _QuestionFreePlan().shares_prefix

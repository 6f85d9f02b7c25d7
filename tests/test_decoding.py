"""Greedy decoding: KV-cache decoding equals the released no-cache loop; [SEG] states are the predicting ones."""

import torch
from transformers import Phi3Config, Phi3ForCausalLM

from litelvlm.decoding import generate


def _tiny_phi3(seed=0):
    torch.manual_seed(seed)
    cfg = Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=4, max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    cfg._attn_implementation = "sdpa"
    return Phi3ForCausalLM(cfg).eval()


def test_cached_equals_uncached_and_seg_states_match_a_teacher_forced_pass():
    llm = _tiny_phi3()
    prompt = torch.randn(1, 20, 32)
    # make token 7 ([SEG] here) win at some steps: bias its logit through the LM head row
    with torch.no_grad():
        llm.lm_head.weight[7] = llm.lm_head.weight[7] * 0 + llm.model.norm.weight * 0.3
    calls = {"n": 0}

    def prompt_fn():
        calls["n"] += 1
        return prompt

    cached = generate(llm, prompt_fn, max_new_tokens=8, eos_token_ids={2}, seg_token_id=7, use_cache=True)
    assert calls["n"] == 1 and cached.forward_passes == len(cached.token_ids)
    uncached = generate(llm, prompt_fn, max_new_tokens=8, eos_token_ids={2}, seg_token_id=7, use_cache=False)
    assert calls["n"] == 1 + len(uncached.token_ids)  # the released loop rebuilds the prompt every step
    assert cached.token_ids == uncached.token_ids
    torch.testing.assert_close(cached.seg_hidden, uncached.seg_hidden, rtol=1e-4, atol=1e-5)
    # teacher-forced restatement: the state before each [SEG] in one forward of prompt + answer
    ids = torch.tensor([cached.token_ids])
    full = torch.cat([prompt, llm.get_input_embeddings()(ids)], dim=1)
    hidden = llm.model(inputs_embeds=full).last_hidden_state[0]
    positions = [20 + i - 1 for i, t in enumerate(cached.token_ids) if t == 7]
    assert positions, "the biased head should emit [SEG] at least once"
    torch.testing.assert_close(cached.seg_hidden, hidden[positions], rtol=1e-4, atol=1e-5)


def test_no_seg_gives_an_empty_state_tensor_and_eos_stops():
    llm = _tiny_phi3(1)
    with torch.no_grad():
        llm.lm_head.weight[2] = llm.model.norm.weight * 5  # EOS wins immediately
    gen = generate(llm, lambda: torch.randn(1, 5, 32), max_new_tokens=8, eos_token_ids={2}, seg_token_id=7)
    assert gen.token_ids == [2] and gen.stopped_by == "eos" and gen.seg_hidden.shape == (0, 32)


def test_generation_builds_no_autograd_graph_and_times_its_passes():
    from litelvlm.timing import StageTimer

    llm = _tiny_phi3(2)
    with torch.no_grad():
        llm.lm_head.weight[7] = llm.model.norm.weight * 5  # [SEG] wins every step
    timer = StageTimer("cpu")
    with torch.enable_grad():
        gen = generate(llm, lambda: torch.randn(1, 6, 32), max_new_tokens=4, eos_token_ids={2}, seg_token_id=7, timer=timer)
    assert gen.seg_hidden.shape[0] >= 1 and not gen.seg_hidden.requires_grad and gen.seg_hidden.grad_fn is None
    assert set(timer.seconds) == {"generate_prompt", "generate_tokens"} and timer.seconds["generate_tokens"] > 0

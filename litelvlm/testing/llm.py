"""A tiny random Phi-3 (grouped-query attention, partial rotary, a sliding window) and LLaMA, each as an SDPA + eager
pair with the same weights, and a scripted LM head, for tests of methods that act inside the LLM."""

from __future__ import annotations

from contextlib import contextmanager

import torch

__all__ = ["tiny_phi3", "tiny_phi3_pair", "tiny_llama_pair", "ScriptedHead", "scripted_head", "EveryNthHead", "sliding_mask",
           "eager_layers"]


def tiny_phi3(attn_implementation: str, layers: int = 3, window: int = 9, seed: int = 0):
    """A ``Phi3ForCausalLM`` of ``layers`` layers (width 32, 4 query / 2 key-value heads, half the head rotated,
    ``window``-token sliding window: shorter than the tests' sequences, so it matters), seeded."""
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                        num_key_value_heads=2, max_position_embeddings=256, sliding_window=window, pad_token_id=0,
                        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5})
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    return Phi3ForCausalLM(config).eval()


def tiny_phi3_pair(window: int = 9, layers: int = 3):
    """(sdpa, eager): ``tiny_phi3`` with SDPA (what the in-LLM methods run on) and the same weights with eager attention
    (the reference)."""
    sdpa, eager = tiny_phi3("sdpa", layers, window), tiny_phi3("eager", layers, window)
    eager.load_state_dict(sdpa.state_dict())
    return sdpa, eager


def tiny_llama_pair(layers: int = 3):
    """(sdpa, eager): one seeded ``LlamaForCausalLM`` of ``layers`` layers (width 32, 4 query / 2 key-value heads,
    vocabulary 50) with SDPA (what the in-LLM methods run on) and the same weights with eager attention (the reference)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def build(attn_implementation: str):
        config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.3)
        config._attn_implementation = attn_implementation
        torch.manual_seed(0)
        return LlamaForCausalLM(config).eval()

    sdpa, eager = build("sdpa"), build("eager")
    eager.load_state_dict(sdpa.state_dict())
    return sdpa, eager


class ScriptedHead(torch.nn.Module):
    """An LM head with ``script``'s next token forced at every call (the last one repeated), so a tiny random LLM
    decodes a chosen number of steps."""

    def __init__(self, head, script):
        super().__init__()
        self.head, self.script, self.calls = head, list(script), 0

    def forward(self, hidden):
        token = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return self.head(hidden).index_fill(-1, torch.tensor([token]), 1e4)


@contextmanager
def scripted_head(llm, script):
    """``llm``'s LM head replaced by ``ScriptedHead(head, script)`` inside the block, restored after it (even on error)."""
    original = llm.lm_head
    llm.lm_head = ScriptedHead(original, script)
    try:
        yield llm.lm_head
    finally:
        llm.lm_head = original


class EveryNthHead(torch.nn.Module):
    """An LM head with ``token`` forced at calls 1, 1 + ``every``, 1 + 2 ``every``, ...; the other tokens stay the
    model's own choice (greedy or sampled), so decoding still depends on every state."""

    def __init__(self, head, token: int, every: int = 3):
        super().__init__()
        self.head, self.token, self.every, self.calls = head, token, every, 0

    def forward(self, hidden):
        self.calls += 1
        logits = self.head(hidden)
        return logits.index_fill(-1, torch.tensor([self.token]), 1e4) if self.calls % self.every == 1 else logits


def sliding_mask(n: int, window: int) -> torch.Tensor:
    """(1, 1, n, n) additive causal mask with a ``window``-token sliding window, written out (for eager restatements)."""
    i, j = torch.arange(n)[:, None], torch.arange(n)[None]
    return torch.where((j <= i) & (j > i - window), 0.0, float("-inf"))[None, None]


def eager_layers(model, hidden: torch.Tensor, positions: torch.Tensor, layers, window: int) -> torch.Tensor:
    """``hidden`` through ``layers`` of ``model`` (a Phi-3 / LLaMA decoder) with explicit sliding-window masks."""
    rotary = model.rotary_emb(hidden, positions)
    for layer in layers:
        hidden = layer(hidden, attention_mask=sliding_mask(hidden.shape[1], window), position_embeddings=rotary,
                       position_ids=positions)
    return hidden

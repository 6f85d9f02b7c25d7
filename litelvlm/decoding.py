"""Decoding a transformers causal LM from prompt embeddings (greedy, or sampling as ``generate()`` does),
reading ``[SEG]`` states.

The hidden state used for a ``[SEG]`` mask is the last-layer state of the position that predicts
it (the position just before ``[SEG]``), the same state a teacher-forced forward gives. With the KV
cache the prompt is prefilled once and each step feeds one token; ``use_cache=False`` reproduces the
released loop, which re-embeds the prompt (``prompt_fn`` may re-run the encoders) and re-runs the
whole sequence for every generated token. ``forward`` swaps the LLM pass (e.g. a FastV prefill
followed by cached decode steps); its state object is opaque to the loop.
"""

from __future__ import annotations

import contextlib

from dataclasses import dataclass, field
from typing import Callable

import torch

from .hf_compat import cache_kwargs, output_cache

__all__ = ["Generation", "Sampling", "generate", "plain_forward"]


@dataclass
class Generation:
    """Generated ids (prompt excluded), the state predicting each ``[SEG]`` (n, H), forward passes run."""

    token_ids: list[int]
    seg_hidden: torch.Tensor
    forward_passes: int
    stopped_by: str = field(default="max_new_tokens")


def _step_logits(llm, hidden_last: torch.Tensor) -> torch.Tensor:
    return llm.lm_head(hidden_last)


@dataclass(frozen=True)
class Sampling:
    """Multinomial sampling as transformers' ``generate(do_sample=True)`` does it (4.41 and 5 alike):
    logits in fp32 divided by ``temperature`` (when != 1), tokens outside the ``top_k`` highest set to
    -inf (when top_k > 0), then outside the smallest set whose probability reaches ``top_p`` (when < 1,
    at least one kept), softmax, one multinomial draw. The defaults are transformers' own."""

    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0

    def __post_init__(self):
        if self.temperature <= 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"invalid sampling settings {self}: need temperature > 0, top_k >= 0, 0 < top_p <= 1")

    @classmethod
    def from_generation_config(cls, config: dict) -> "Sampling | None":
        """The checkpoint's sampling (``generation_config.json`` fields), or None when it decodes greedily."""
        if not config.get("do_sample"):
            return None
        return cls(float(config.get("temperature", 1.0)), int(config.get("top_k", 50) or 0), float(config.get("top_p", 1.0)))

    def warp(self, logits: torch.Tensor) -> torch.Tensor:
        """(V,) logits -> the scores the draw is made from (-inf outside the kept set)."""
        scores = logits.float()
        if self.temperature != 1.0:
            scores = scores / self.temperature
        if self.top_k:
            kth = torch.topk(scores, min(self.top_k, scores.shape[-1])).values[..., -1, None]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            ascending, order = torch.sort(scores, descending=False)
            remove = ascending.softmax(-1).cumsum(-1) <= 1 - self.top_p
            remove[..., -1:] = False
            scores = scores.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
        return scores

    def pick(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> int:
        probs = torch.softmax(self.warp(logits), dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))


def plain_forward(llm, use_cache: bool) -> Callable:
    """The default ``forward(inputs_embeds, state) -> (final-norm hidden (1, L, H), state)``: the LLM with
    its own KV cache as the state (``use_cache``), or a full pass without one."""

    def forward(inputs_embeds: torch.Tensor, cache):
        out = llm.model(inputs_embeds=inputs_embeds, use_cache=use_cache, **cache_kwargs(cache))
        return out.last_hidden_state, output_cache(out)

    return forward


def _stage(timer, name: str):
    return contextlib.nullcontext() if timer is None else timer(name)


@torch.no_grad()
def generate(
    llm,
    prompt_fn: Callable[[], torch.Tensor],
    *,
    max_new_tokens: int,
    eos_token_ids: set[int],
    seg_token_id: int,
    use_cache: bool = True,
    forward: Callable | None = None,
    sampling: Sampling | None = None,
    generator: torch.Generator | None = None,
    timer=None,
) -> Generation:
    """Decode one sequence, greedily (``sampling`` None) or by sampling with ``generator``.
    ``prompt_fn()`` returns the prompt embeddings (1, L, H). ``timer`` (a ``StageTimer``, optional) times the
    first LLM pass as ``generate_prompt`` and the later ones as ``generate_tokens``.

    ``forward(inputs_embeds, state) -> (hidden (1, L, H), state)`` (default ``plain_forward``): with
    ``use_cache`` it gets the prompt and state None first, then one token and the state it returned;
    without, the whole sequence and state None every step.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    embed = llm.get_input_embeddings()
    prompt = prompt_fn()
    generated: list[int] = []
    seg_states: list[torch.Tensor] = []
    forward = forward or plain_forward(llm, use_cache)
    cache, passes, stopped = None, 0, "max_new_tokens"
    next_input = prompt
    for _ in range(max_new_tokens):
        with _stage(timer, "generate_tokens" if passes else "generate_prompt"):
            if use_cache:
                hidden, cache = forward(next_input, cache)
            else:
                if passes:  # the released loop: prompt rebuilt (encoders re-run), whole sequence again
                    prompt = prompt_fn()
                ids = torch.tensor([generated], dtype=torch.long, device=prompt.device)
                sequence = torch.cat([prompt, embed(ids)], dim=1) if generated else prompt
                hidden, _ = forward(sequence, None)
        passes += 1
        last = hidden[:, -1]
        logits = _step_logits(llm, last)[0]
        token = int(logits.argmax(-1)) if sampling is None else sampling.pick(logits, generator)
        if token == seg_token_id:
            seg_states.append(last[0])
        generated.append(token)
        if token in eos_token_ids:
            stopped = "eos"
            break
        next_input = embed(torch.tensor([[token]], device=prompt.device))
    hidden = torch.stack(seg_states) if seg_states else prompt.new_zeros(0, prompt.shape[-1])
    return Generation(generated, hidden, passes, stopped)

"""A prompt prefix prefilled once and continued by many prompts, each from its own copy of the prefix's KV cache.

VideoGLaMM's prompt puts the system text and every visual token before the question. For a method whose visual
tokens and whose processing inside the LLM do not depend on the expression (``TokenSelector.shares_prefix``),
that prefix is the same for every expression of a clip: ``SharedPrefix.prefill`` runs it once, and
``SharedPrefix.view(llm)`` is the LLM as the plans and the decoding loop call it, except that its decoder, given
embeddings that start with the prefix and an empty (or no) cache, runs only the rest from a copy of the prefix's
cache. It returns what the whole pass returns: the last-layer states of every position (the prefix's from the
shared prefill) and, with ``use_cache``, a cache holding the whole prompt. Causal attention makes the prefix's
states independent of what follows, so this is the whole pass computed in two parts (float rounding aside).

The prefix's cache keeps every key (a ``DynamicCache`` without a config, so no sliding-window layer drops keys);
a copy is made by ``Cache.update`` with those keys, as if the prefix had been run into the caller's cache, so a
sliding-window layer keeps its window and counts every position. The attention mask applies Phi-3's sliding
window as in a single pass, also when the window is shorter than the prompt. Copies are made by concatenation:
the prefix's tensors are never written to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .hf_compat import CACHE_KEYWORD, cache_kwargs, cached_layer

__all__ = ["SharedPrefix", "PrefixedLLM"]


@dataclass
class SharedPrefix:
    """The prefix's embeddings (1, P, H), last-layer states (1, P, H) and full KV cache; ``continuations`` counts
    the passes that started from it."""

    embeds: torch.Tensor
    hidden: torch.Tensor
    cache: object
    continuations: int = 0

    @classmethod
    def prefill(cls, llm, embeds: torch.Tensor) -> "SharedPrefix":
        """One forward of ``llm``'s decoder over ``embeds`` (1, P, H), keeping every key and value."""
        from transformers.cache_utils import DynamicCache

        if embeds.ndim != 3 or embeds.shape[0] != 1 or embeds.shape[1] < 1:
            raise ValueError(f"a shared prefix is one row of embeddings (1, P, H), got shape {tuple(embeds.shape)}")
        cache = DynamicCache()  # no config: full layers, nothing dropped by a sliding window
        out = llm.model(inputs_embeds=embeds, use_cache=True, **cache_kwargs(cache))
        return cls(embeds, out.last_hidden_state, cache)

    @property
    def length(self) -> int:
        return self.embeds.shape[1]

    def copy_into(self, cache):
        """``cache`` (empty, of the caller's type) holding the prefix's keys and values of every layer."""
        if cache.get_seq_length() != 0:
            raise ValueError(f"the cache to continue the shared prefix from must be empty, it holds "
                             f"{cache.get_seq_length()} positions")
        for index in range(len(self.cache.layers)):
            cache.update(*cached_layer(self.cache, index), index)
        return cache

    def view(self, llm) -> "PrefixedLLM":
        """``llm`` with its decoder continuing from this prefix (see the module docstring)."""
        return PrefixedLLM(llm, self)

    def check_row(self, row: torch.Tensor, length: int) -> None:
        """Raise unless ``row`` (L, H) starts with the prefix and has positions after it within ``length``."""
        if length <= self.length or not torch.equal(row[: self.length], self.embeds[0]):
            raise ValueError("a prompt passed to the shared-prefix LLM does not start with the shared prefix (or has nothing "
                             "after it): its expressions cannot share the prefill")


class _PrefixedDecoder:
    """The decoder of a ``PrefixedLLM``: prompt passes continue the prefix; decoding steps (a cache that already
    holds positions) go to the real decoder. Every other attribute is the real decoder's."""

    def __init__(self, decoder, prefix: SharedPrefix):
        self._decoder, self._prefix = decoder, prefix

    def __getattr__(self, name):
        return getattr(self._decoder, name)

    def __call__(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, use_cache: bool | None = None,
                 **kwargs):
        cache = kwargs.pop(CACHE_KEYWORD, None)
        if kwargs:
            raise TypeError(f"the shared-prefix decoder takes inputs_embeds, attention_mask, use_cache and the cache; "
                            f"got {sorted(kwargs)}")
        if cache is not None and cache.get_seq_length() > 0:  # a decoding step after the prompt
            return self._decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=use_cache,
                                 **cache_kwargs(cache))
        return self._continue(inputs_embeds, attention_mask, cache, bool(use_cache))

    def _continue(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None, cache, use_cache: bool):
        """Each (right-padded) row from its own copy of the prefix's cache; padded positions get zero states."""
        from transformers.cache_utils import DynamicCache
        from transformers.modeling_outputs import BaseModelOutputWithPast

        rows, width = inputs_embeds.shape[:2]
        if cache is not None and rows != 1:
            raise ValueError(f"a cache to fill is for one row, got {rows} rows")
        lengths = [width] * rows if attention_mask is None else [int(n) for n in attention_mask.long().sum(1)]
        prefix = self._prefix
        hidden = inputs_embeds.new_zeros(rows, width, prefix.hidden.shape[-1])
        for b, length in enumerate(lengths):
            prefix.check_row(inputs_embeds[b], length)
            if attention_mask is not None and not bool(attention_mask[b, :length].all()):
                raise ValueError("the shared-prefix decoder takes right-padded rows (ones, then zeros)")
            row_cache = prefix.copy_into(cache if cache is not None else DynamicCache(config=self._decoder.config))
            out = self._decoder(inputs_embeds=inputs_embeds[b : b + 1, prefix.length : length], use_cache=True,
                                **cache_kwargs(row_cache))
            hidden[b, : prefix.length] = prefix.hidden[0]
            hidden[b, prefix.length : length] = out.last_hidden_state[0]
            prefix.continuations += 1
        return BaseModelOutputWithPast(last_hidden_state=hidden, **cache_kwargs(row_cache if use_cache else None))


class PrefixedLLM:
    """A causal LM whose ``model`` (decoder) continues a ``SharedPrefix``; every other attribute (``lm_head``,
    ``get_input_embeddings``, ``config``) is the wrapped LLM's, read when used."""

    def __init__(self, llm, prefix: SharedPrefix):
        self._llm = llm
        self.model = _PrefixedDecoder(llm.model, prefix)
        self.prefix = prefix

    def __getattr__(self, name):
        return getattr(self._llm, name)

    def prefill_hidden(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer states of one pass over ``inputs_embeds`` (no cache), as ``VideoGLaMM.prefill_hidden``."""
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False).last_hidden_state

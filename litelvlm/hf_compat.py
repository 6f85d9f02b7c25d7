"""The transformers API differences litelvlm bridges: the KV-cache keyword, and how a cache holds its layers.

transformers up to 5.23 names it ``past_key_values`` (in model forwards, mask builders and outputs); 5.24
renamed it ``cache`` and warns on the old name (removed in 5.40). The name is read from the installed
version's ``create_causal_mask`` signature once.
"""

from __future__ import annotations

import inspect

__all__ = ["CACHE_KEYWORD", "cache_kwargs", "output_cache", "cached_layer"]


def _cache_keyword() -> str:
    from transformers.masking_utils import create_causal_mask

    return "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"


CACHE_KEYWORD = _cache_keyword()


def cache_kwargs(cache) -> dict:
    """``{keyword: cache}`` for model forwards and mask builders of the installed transformers."""
    return {CACHE_KEYWORD: cache}


def output_cache(outputs):
    """The KV cache a model forward returned."""
    return getattr(outputs, CACHE_KEYWORD)


def cached_layer(cache, index: int):
    """Layer ``index``'s cached (keys, values) (B, kv heads, L, d): ``cache.layers`` (transformers 5) or the older
    ``key_cache`` / ``value_cache`` lists."""
    if hasattr(cache, "layers"):
        return cache.layers[index].keys, cache.layers[index].values
    return cache.key_cache[index], cache.value_cache[index]

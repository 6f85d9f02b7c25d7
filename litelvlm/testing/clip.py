"""Tiny random CLIP checkpoints for tests (the writer lives in ``litelvlm.tiny_clip``: the demo and the
benchmarks use it too)."""

from ..tiny_clip import TINY_CLIP_WORDS, make_tiny_clip, tiny_clip_tokenizer

__all__ = ["make_tiny_clip", "tiny_clip_tokenizer", "TINY_CLIP_WORDS"]

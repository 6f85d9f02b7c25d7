"""Tiny random checkpoints in the real public layouts, for tests, demos and benchmarks (no downloads)."""

from .clip import make_tiny_clip, tiny_clip_tokenizer

__all__ = ["make_tiny_clip", "tiny_clip_tokenizer"]

"""Tiny random checkpoints in the real public layouts, for tests (no downloads). Library code never imports
this package; what the demo and the benchmarks need lives in ``litelvlm.tiny_clip`` / ``litelvlm.tokenizer_files``."""

from .clip import make_tiny_clip, tiny_clip_tokenizer
from .glamm import make_tiny_glamm, tiny_sam_architecture, write_llama_tokenizer, write_sharded
from .videoglamm import make_tiny_videoglamm

__all__ = ["make_tiny_clip", "tiny_clip_tokenizer", "make_tiny_glamm", "tiny_sam_architecture", "write_llama_tokenizer", "write_sharded", "make_tiny_videoglamm"]

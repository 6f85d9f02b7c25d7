"""Tiny random GLaMM-RefSeg checkpoints for tests (the writer lives in ``litelvlm.tiny_glamm``: the demo,
the one-call pipeline and the benchmarks use it too)."""

from ..tiny_glamm import GLAMM_ADDED_TOKENS, make_tiny_glamm, region_encoder_state, tiny_sam_architecture, write_llama_tokenizer, write_sharded

__all__ = ["make_tiny_glamm", "write_llama_tokenizer", "write_sharded", "GLAMM_ADDED_TOKENS", "tiny_sam_architecture",
           "region_encoder_state"]

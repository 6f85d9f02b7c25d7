"""Tiny Phi-3 sentencepiece tokenizers in the files a VideoGLaMM checkpoint saves (benchmarks and tests)."""

from __future__ import annotations

import json
from pathlib import Path

from litelvlm.tokenizer_files import train_tiny_sentencepiece

__all__ = ["write_phi3_tokenizer", "PHI3_SPECIAL_TOKENS", "VIDEOGLAMM_ADDED_TOKENS", "PHI3_MAX_LENGTH"]

# Phi-3-mini-4k-instruct's added tokens (ids 32000..32010 after the 32000 sentencepiece pieces), in id order.
PHI3_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>", "<|placeholder4|>",
    "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>",
)
VIDEOGLAMM_ADDED_TOKENS = PHI3_SPECIAL_TOKENS + ("[SEG]",)  # VideoGLaMM: tokenizer.add_tokens("[SEG]")
PHI3_MAX_LENGTH = 4096


def _token_entry(content: str, *, special: bool, rstrip: bool = False) -> dict:
    return {"content": content, "lstrip": False, "normalized": not special, "rstrip": rstrip, "single_word": False, "special": special}


def write_phi3_tokenizer(out: Path) -> dict[str, int]:
    """A tiny sentencepiece ``tokenizer.model`` plus the tokenizer files a VideoGLaMM checkpoint saves:
    Phi-3's special tokens right after the pieces, then ``[SEG]`` (a normal added token), pad = ``<unk>``,
    eos = ``<|endoftext|>``, no BOS added. Returns the token -> id map of the added tokens plus ``vocab_size``."""
    first = train_tiny_sentencepiece(out)  # the added tokens follow the sentencepiece pieces
    vocab = first + len(VIDEOGLAMM_ADDED_TOKENS)
    ids = {tok: first + i for i, tok in enumerate(VIDEOGLAMM_ADDED_TOKENS)}
    decoder = {"0": _token_entry("<unk>", special=True), "1": _token_entry("<s>", special=True),
               "2": dict(_token_entry("</s>", special=False, rstrip=True), normalized=False)}
    for tok, i in ids.items():
        entry = _token_entry(tok, special=True, rstrip=tok != "<|endoftext|>") if tok != "[SEG]" else _token_entry(tok, special=False)
        decoder[str(i)] = entry
    (out / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False, "add_eos_token": False, "added_tokens_decoder": decoder, "bos_token": "<s>",
        "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>", "legacy": False,
        "model_max_length": PHI3_MAX_LENGTH, "pad_token": "<unk>", "padding_side": "left", "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>", "use_default_system_prompt": False,
    }, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "<|endoftext|>", "pad_token": "<unk>", "unk_token": "<unk>"}, indent=2))
    (out / "added_tokens.json").write_text(json.dumps(ids, indent=2))
    return dict(ids, vocab_size=vocab)

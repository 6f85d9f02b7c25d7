"""Tiny sentencepiece tokenizers in the file layouts LLaMA-based checkpoints ship (benchmarks and tests).

``train_tiny_sentencepiece`` trains a BPE ``tokenizer.model`` with LLaMA's trainer settings (byte fallback,
identity normalisation, whitespace kept, dummy prefix, digits split; unk 0, bos 1, eos 2).
``write_llama_tokenizer_files`` writes the JSON files beside it, in one of two layouts:

* ``"released"``: what the GLaMM release's transformers (4.28.0.dev0, LLaVA's pin) writes with
  ``save_pretrained``: ``added_tokens.json``, ``special_tokens_map.json`` (bos/eos/unk as AddedToken dicts,
  pad as the string ``"<unk>"``) and a ``tokenizer_config.json`` whose special tokens are
  ``{"__type": "AddedToken"}`` dicts, with no ``added_tokens_decoder``. transformers 4.31 also writes
  ``"legacy": true``; pass ``legacy`` to write the key.
* ``"transformers5"``: the newer layout (``added_tokens_decoder``, ``"legacy": false``) that litelvlm's first
  tiny checkpoints used; kept so both layouts stay tested.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

__all__ = ["LAYOUTS", "GLAMM_ADDED_TOKENS", "train_tiny_sentencepiece", "write_llama_tokenizer_files", "write_llama_tokenizer"]

LAYOUTS = ("released", "transformers5")
# Tokens GLaMM adds to the LLaMA vocabulary, in the order its training script adds them (ids 32000...).
GLAMM_ADDED_TOKENS = ("<im_start>", "<im_end>", "<bbox>", "<point>", "[SEG]", "<p>", "</p>")

_CORPUS = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions.\nUSER: The image provides an overview of the picture.\n"
    "Can you segment the man on the left in this image? Please segment the woman in this image. "
    "What is the red car in this image? Please respond with segmentation mask. ASSISTANT: Sure, it is segmented. "
    "It is the dog. Sure, the cat. the person, a small white bus, big blue truck, right side, left side.\n"
)


def train_tiny_sentencepiece(out: Path, vocab_size: int = 600) -> int:
    """Train ``out/tokenizer.model`` (BPE, LLaMA's settings) on a small prompt corpus; returns its size.

    With 600 pieces GLaMM's prompt tokenizes to about as many tokens as with LLaMA's own tokenizer (whole
    words), so benchmarks see the real prompt length."""
    import sentencepiece as spm

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(_CORPUS * 8)
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(out / "tokenizer"), vocab_size=vocab_size, model_type="bpe",
            byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0, split_digits=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
            allow_whitespace_only_pieces=True, num_threads=1, minloglevel=2,
        )
    (out / "tokenizer.vocab").unlink(missing_ok=True)
    return vocab_size


def _added_token(content: str, **extra) -> dict:
    return {**extra, "content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_llama_tokenizer_files(out: Path, sp_vocab_size: int, added=GLAMM_ADDED_TOKENS, *, layout: str = "released",
                                legacy: bool | None = None, model_max_length: int = 1536) -> dict[str, int]:
    """Write the tokenizer JSON files of ``layout`` for ``added`` tokens (ids from ``sp_vocab_size`` on);
    returns the added token -> id map."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    added_ids = {tok: sp_vocab_size + i for i, tok in enumerate(added)}
    _write_json(out / "added_tokens.json", added_ids)
    if layout == "released":
        specials = {name: _added_token(tok) for name, tok in (("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>"))}
        _write_json(out / "special_tokens_map.json", {**specials, "pad_token": "<unk>"})
        config = {name: dict(value, __type="AddedToken") for name, value in specials.items()}
        config.update({"add_bos_token": True, "add_eos_token": False, "clean_up_tokenization_spaces": False,
                       "model_max_length": model_max_length, "pad_token": None, "padding_side": "right",
                       "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer"})
        if legacy is not None:
            config["legacy"] = bool(legacy)
    else:
        _write_json(out / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"})
        decoder = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
                   for t, i in added_ids.items()}
        config = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                  "pad_token": "<unk>", "clean_up_tokenization_spaces": False, "legacy": False if legacy is None else bool(legacy),
                  "model_max_length": model_max_length, "padding_side": "right", "sp_model_kwargs": {},
                  "tokenizer_class": "LlamaTokenizer", "added_tokens_decoder": decoder}
    _write_json(out / "tokenizer_config.json", config)
    return added_ids


def write_llama_tokenizer(out: Path, vocab_size: int = 600, added=GLAMM_ADDED_TOKENS, model_max_length: int = 1536, *,
                          layout: str = "released", legacy: bool | None = None) -> int:
    """A tiny ``tokenizer.model`` plus its JSON files in ``layout``; returns the full vocabulary size."""
    train_tiny_sentencepiece(out, vocab_size)
    write_llama_tokenizer_files(out, vocab_size, added, layout=layout, legacy=legacy, model_max_length=model_max_length)
    return vocab_size + len(added)

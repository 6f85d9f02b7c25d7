"""Tiny random CLIP checkpoints in the openai/clip-vit-large-patch14-336 directory layout (demo, benchmarks, tests)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["make_tiny_clip", "tiny_clip_tokenizer", "TINY_CLIP_WORDS"]

# Words given their own BPE merges so the tiny tokenizer yields word-level ids for typical prompts;
# any other text still tokenizes (byte-level fallback), exactly as CLIP's tokenizer does.
TINY_CLIP_WORDS = (
    "can you segment the in this image please a man woman person dog cat car left right red blue "
    "white black small big on of with what is video respond masks"
).split()


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP byte-to-unicode alphabet (256 printable symbols standing for the 256 bytes)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def _word_merges(words) -> list[tuple[str, str]]:
    """Left-to-right merges that build each word (with the ``</w>`` end-of-word suffix) from its letters."""
    merges: list[tuple[str, str]] = []
    for word in words:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            if pair not in merges:
                merges.append(pair)
            symbols = [symbols[0] + symbols[1]] + symbols[2:]
    return merges


def tiny_clip_tokenizer():
    """An offline ``CLIPTokenizer`` with CLIP's vocabulary structure (bytes, bytes+</w>, merges, specials)."""
    from transformers import CLIPTokenizer

    alphabet = _byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges = _word_merges(TINY_CLIP_WORDS)
    tokens += ["".join(pair) for pair in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _tiny_clip_config(vocab_size: int, eos_token_id: int, bos_token_id: int, *, width: int, layers: int, heads: int, projection: int):
    from transformers import CLIPConfig

    text = dict(
        vocab_size=vocab_size, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=77, projection_dim=projection,
        eos_token_id=eos_token_id, bos_token_id=bos_token_id, pad_token_id=1,
    )
    vision = dict(
        hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads,
        image_size=336, patch_size=14, projection_dim=projection,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection)


def make_tiny_clip(out_dir: str | Path, *, width: int = 32, layers: int = 2, heads: int = 2, projection: int = 24, seed: int = 0) -> Path:
    """Write a tiny random CLIP ViT-?/14-336 to ``out_dir``: same files, key names and 24x24 patch grid
    as openai/clip-vit-large-patch14-336 (config.json, model.safetensors, tokenizer and preprocessor
    files), with tiny widths. Returns the directory."""
    from transformers import CLIPImageProcessorPil, CLIPModel

    from .clip import quiet_transformers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_clip_tokenizer()
    config = _tiny_clip_config(
        len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id,
        width=width, layers=layers, heads=heads, projection=projection,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with quiet_transformers():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "vocab.json").write_text(json.dumps(tokenizer.get_vocab(), ensure_ascii=False))
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    processor.save_pretrained(out)
    return out

"""A tiny random GLaMM-RefSeg checkpoint: the real folder layout and key names, tiny sizes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from .clip import make_tiny_clip

__all__ = ["make_tiny_glamm", "write_llama_tokenizer", "write_sharded", "GLAMM_ADDED_TOKENS", "tiny_sam_architecture"]

# Tokens GLaMM adds to the LLaMA vocabulary, in the order its training script adds them.
GLAMM_ADDED_TOKENS = ("<im_start>", "<im_end>", "<bbox>", "<point>", "[SEG]", "<p>", "</p>")

_CORPUS = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.\nUSER: The image provides an overview of the picture.\n"
    "Can you segment the man on the left in this image? Please segment the woman in this image. "
    "What is the red car in this image? Please respond with segmentation mask. ASSISTANT: Sure, it is segmented. "
    "It is the dog. Sure, the cat. the person, a small white bus, big blue truck, right side, left side.\n"
)


def write_llama_tokenizer(out: Path, vocab_size: int = 600, added=GLAMM_ADDED_TOKENS, model_max_length: int = 1536) -> int:
    """Train a tiny sentencepiece BPE ``tokenizer.model`` (LLaMA's format: unk 0, bos 1, eos 2, byte
    fallback) and write the tokenizer files of a LLaVA checkpoint. Returns the full vocabulary size.

    With the default 600 pieces, GLaMM's prompt tokenizes to about as many tokens as with LLaMA's
    own tokenizer (whole words), so benchmarks see the real prompt length."""
    import sentencepiece as spm

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(_CORPUS * 8)
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(out / "tokenizer"), vocab_size=vocab_size, model_type="bpe",
            byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
            split_digits=True, num_threads=1, minloglevel=2,
        )
    (out / "tokenizer.vocab").unlink(missing_ok=True)
    added_ids = {tok: vocab_size + i for i, tok in enumerate(added)}
    (out / "added_tokens.json").write_text(json.dumps(added_ids, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}, indent=2))
    decoder = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
               for t, i in added_ids.items()}
    (out / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<unk>", "clean_up_tokenization_spaces": False, "legacy": False, "model_max_length": model_max_length,
        "padding_side": "right", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer", "added_tokens_decoder": decoder,
    }, indent=2))
    return vocab_size + len(added)


def write_sharded(state: dict[str, torch.Tensor], out: Path, *, weight_format: str = "safetensors", num_shards: int = 2) -> None:
    """Write ``state`` as HF shards plus ``*.index.json`` (``safetensors`` or ``bin``)."""
    if weight_format not in ("safetensors", "bin"):
        raise ValueError(f"weight_format must be 'safetensors' or 'bin', got {weight_format!r}")
    keys = list(state)
    per = -(-len(keys) // num_shards)
    stem, ext = ("model", "safetensors") if weight_format == "safetensors" else ("pytorch_model", "bin")
    weight_map, total = {}, 0
    for s in range(num_shards):
        name = f"{stem}-{s + 1:05d}-of-{num_shards:05d}.{ext}"
        shard = {k: state[k].contiguous() for k in keys[s * per : (s + 1) * per]}
        if weight_format == "safetensors":
            from safetensors.torch import save_file

            save_file(shard, str(out / name), metadata={"format": "pt"})
        else:
            torch.save(shard, out / name)
        weight_map.update({k: name for k in shard})
        total += sum(t.numel() * t.element_size() for t in shard.values())
    (out / f"{stem}.{ext}.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def tiny_sam_architecture():
    """The SAM used by tiny test checkpoints: real 1024 input and 64x64 grid, tiny widths."""
    from ..sam.config import SamArchitecture

    return SamArchitecture(
        vision_width=32, vision_depth=2, vision_heads=2, vision_mlp_dim=64, window_size=14, global_attn_indexes=(1,),
        embed_dim=32, decoder_mlp_dim=64, iou_head_hidden_dim=32,
    )


def _tiny_sam_state_dict(seed: int) -> dict[str, torch.Tensor]:
    from transformers import SamModel

    from ..sam import to_segment_anything_state_dict

    torch.manual_seed(seed)
    return to_segment_anything_state_dict(SamModel(tiny_sam_architecture().to_sam_config()).state_dict())


def _glamm_state_dict(vocab: int, hidden: int, layers: int, clip_width: int, sam_dim: int, seed: int) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4))
    state = dict(llm.state_dict())
    linear = lambda i, o: (torch.randn(o, i) / i**0.5, torch.randn(o) * 0.02)  # noqa: E731
    for prefix, dims in (("model.mm_projector", (clip_width, hidden, hidden)), ("model.text_hidden_fcs.0", (hidden, hidden, sam_dim))):
        for idx, (i, o) in zip((0, 2), zip(dims[:-1], dims[1:])):
            state[f"{prefix}.{idx}.weight"], state[f"{prefix}.{idx}.bias"] = linear(i, o)
    state.update({f"model.grounding_encoder.{k}": v for k, v in _tiny_sam_state_dict(seed).items()})
    # Region-encoder weights exist in the real checkpoint; unused for segmentation (names as released).
    state["model.region_encoder.mlvl_fuse.input_conv.0.weight"] = torch.randn(8, clip_width, 1, 1)
    state["model.region_encoder.roi_align.fc.weight"] = torch.randn(8, 8)
    return state


def make_tiny_glamm(out_dir: str | Path, *, weight_format: str = "safetensors", num_shards: int = 2,
                    dtype: torch.dtype = torch.bfloat16, hidden: int = 64, layers: int = 2, seed: int = 0) -> dict[str, Path]:
    """Write a tiny random GLaMM-RefSeg folder and a tiny CLIP folder under ``out_dir``.

    Same files as the real checkpoint (config.json, generation_config.json, sentencepiece tokenizer
    with GLaMM's added tokens, sharded weights with an index) and the same key names. Returns
    ``{"glamm": dir, "clip": dir}``.
    """
    root = Path(out_dir)
    clip_dir = make_tiny_clip(root / "clip-vit-large-patch14-336", seed=seed)
    glamm = root / "GLaMM-RefSeg"
    glamm.mkdir(parents=True, exist_ok=True)
    vocab = write_llama_tokenizer(glamm)
    clip_width = json.loads((clip_dir / "config.json").read_text())["vision_config"]["hidden_size"]
    sam_dim = tiny_sam_architecture().embed_dim
    state = _glamm_state_dict(vocab, hidden, layers, clip_width, sam_dim, seed)
    write_sharded({k: v.to(dtype) for k, v in state.items()}, glamm, weight_format=weight_format, num_shards=num_shards)
    config = {
        "_name_or_path": "MBZUAI/GLaMM-RefSeg", "architectures": ["GLaMMForCausalLM"], "model_type": "llava",
        "hidden_act": "silu", "hidden_size": hidden, "intermediate_size": 2 * hidden, "initializer_range": 0.02,
        "max_position_embeddings": 4096, "num_attention_heads": 4, "num_hidden_layers": layers, "num_key_value_heads": 4,
        "pretraining_tp": 1, "rms_norm_eps": 1e-6, "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "torch_dtype": str(dtype).replace("torch.", ""), "use_cache": False, "vocab_size": vocab,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
        "mm_hidden_size": clip_width, "mm_projector_type": "mlp2x_gelu", "mm_use_im_patch_token": False,
        "mm_use_im_start_end": True, "mm_vision_select_feature": "patch", "mm_vision_select_layer": -2,
        "mm_vision_tower": "openai/clip-vit-large-patch14-336", "image_aspect_ratio": "square", "out_dim": sam_dim,
        "with_region": True, "num_level_reg_features": 4,
    }
    (glamm / "config.json").write_text(json.dumps(config, indent=2))
    (glamm / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}, indent=2))
    return {"glamm": glamm, "clip": clip_dir}

"""A tiny random VideoGLaMM checkpoint in the released layout (docs/videoglamm_layout.md), tiny sizes.

Writes three things, as a real setup has them: the VideoGLaMM folder (config.json with the real field
names, Phi-3 sentencepiece tokenizer files with Phi-3's special tokens and ``[SEG]``, sharded weights
with an index, SAM2 under ``model.visual_model.`` in the original naming with VideoGLaMM's fuser
spelling, the InternVideo2 tower copy under ``model.vision_tower.``), a CLIP folder and the
InternVideo2-Stage2 ``.pt``.

Its weights are random except for one planted chain: greedy decoding answers ``TINY_ANSWER`` ("Sure, [SEG].",
then ``<|end|>``) whatever the video and question, so the [SEG] read-out, SAM2 and the masks run on it (the
masks still mean nothing). See ``plant_answer``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from litelvlm.tiny_clip import make_tiny_clip
from litelvlm.tiny_glamm import mlp_state, write_sharded

__all__ = ["make_tiny_videoglamm", "plant_answer", "answer_chain", "TINY_ANSWER"]

TINY_ANSWER = "Sure, [SEG]."  # what the tiny model answers by construction
CHAIN_EMBEDDING = 1.0  # planted along one hidden axis per chain token: the random part of a row is ~0.16 long
CHAIN_HEAD = 2.0  # the next token's logit is then ~2 x 8 (the final norm scales to sqrt(hidden)): others are < 1


def _phi3_state(vocab: int, hidden: int, layers: int, heads: int, token_ids: dict, seed: int) -> dict[str, torch.Tensor]:
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(seed)
    llm = Phi3ForCausalLM(Phi3Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, bos_token_id=1, eos_token_id=token_ids["<|endoftext|>"], pad_token_id=0,
    ))
    return dict(llm.state_dict())


def answer_chain(checkpoint: Path, answer: str = TINY_ANSWER) -> list[int]:
    """The token ids greedy decoding must walk: the prompt's last token (``<|assistant|>``), then ``answer`` and
    ``<|end|>`` as the segmenter's chat tokenizes them (video/prompt.py)."""
    from video.model import load_videoglamm_tokenizer
    from video.prompt import build_chat, prompt_ids

    tokenizer, _ = load_videoglamm_tokenizer(checkpoint)
    prompt = prompt_ids(build_chat("?", 4), tokenizer)
    chain = prompt[-1:] + prompt_ids(build_chat("?", 4, answer), tokenizer)[len(prompt):]
    if len(set(chain)) != len(chain):
        raise ValueError(f"the answer {answer!r} repeats a token: a next-token chain cannot spell it")
    return chain


def plant_answer(state: dict[str, torch.Tensor], chain: list[int]) -> None:
    """Make each chain token predict the next one, whatever the context: token ``chain[i]``'s embedding gets
    ``CHAIN_EMBEDDING`` on hidden axis i and ``chain[i + 1]``'s LM-head row ``CHAIN_HEAD`` on the same axis. The
    residual stream of a chain token then points along its axis (the random layers add little), so after the
    final norm the next token's logit dominates. Every other row stays random."""
    embed, head = state["model.embed_tokens.weight"], state["lm_head.weight"]
    if len(chain) - 1 > embed.shape[1]:
        raise ValueError(f"a chain of {len(chain)} tokens needs a hidden size of at least {len(chain) - 1}")
    for axis, (token, following) in enumerate(zip(chain, chain[1:])):
        embed[token, axis] += CHAIN_EMBEDDING
        head[following, axis] += CHAIN_HEAD


def _video_tower_state(video_config, seed: int) -> dict[str, torch.Tensor]:
    """The InternVideo2 tower as VideoGLaMM's save keeps it: ``model.vision_tower.{vision_encoder,vision_proj}.*``."""
    from video.internvideo2 import tiny_internvideo2_checkpoint

    module = tiny_internvideo2_checkpoint(video_config, seed)["module"]
    return {f"model.vision_tower.{k}": v for k, v in module.items() if k.startswith(("vision_encoder.", "vision_proj."))}


def _config_json(*, hidden: int, layers: int, heads: int, vocab: int, ids: dict, clip_width: int, video_width: int,
                 out_dim: int, dtype: torch.dtype, sliding_window: int) -> dict:
    from video.model import CLIP_TOWER_NAME, VIDEO_TOWER_NAME

    return {
        "_name_or_path": "microsoft/Phi-3-mini-4k-instruct", "architectures": ["VideoGLaMMForCausalLM"], "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_phi3.Phi3Config", "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM"},
        "bos_token_id": 1, "config": {"freeze": False, "mm_tune": True, "vision_tune": False}, "embd_pdrop": 0.0,
        "eos_token_id": ids["<|endoftext|>"], "freeze_mm_mlp_adapter": False, "hidden_act": "silu", "hidden_size": hidden,
        "image_aspect_ratio": "square", "image_grid_pinpoints": None, "image_mm_hidden_size": clip_width,
        "image_mm_projector_type": "mlp2x_gelu", "image_mm_vision_tower": CLIP_TOWER_NAME, "image_vision_tower": CLIP_TOWER_NAME,
        "initializer_range": 0.02, "intermediate_size": 2 * hidden, "mask_decoder_itm": False, "max_position_embeddings": 4096,
        "mm_hidden_size": video_width, "mm_projector_lr": 2e-05, "mm_projector_type": "mlp2x_gelu", "mm_use_box_start_end": False,
        "mm_use_im_patch_token": False, "mm_use_im_start_end": False, "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2, "mm_vision_tower": VIDEO_TOWER_NAME, "model_type": "VideoGPT+",
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": heads,
        "original_max_position_embeddings": 4096, "out_dim": out_dim, "pad_token_id": 0, "pretrain_image_mm_mlp_adapter": None,
        "pretrain_mm_mlp_adapter": None, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 10000.0,
        "seg_token_idx": ids["[SEG]"], "sliding_window": sliding_window, "tie_word_embeddings": False,
        "torch_dtype": str(dtype).replace("torch.", ""), "train_mask_decoder": True, "use_cache": False, "use_mm_proj": True,
        "use_sam2": True, "vision_tower": VIDEO_TOWER_NAME, "vocab_size": vocab,
    }


def make_tiny_videoglamm(out_dir: str | Path, *, weight_format: str = "bin", num_shards: int = 2, dtype: torch.dtype = torch.bfloat16,
                         hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0,
                         include_video_tower: bool = True, sliding_window: int = 2047, extra_state: dict | None = None) -> dict[str, Path]:
    """Write a tiny random VideoGLaMM setup under ``out_dir``; return the keyword arguments of
    ``VideoSegmenter.from_pretrained``: ``{"checkpoint": dir, "vision_tower": CLIP dir, "video_tower": .pt}``.

    ``weight_format`` "bin" is what the release uses (``pytorch_model-*.bin`` + index); "safetensors" is
    also accepted. ``include_video_tower=False`` leaves ``model.vision_tower.*`` out of the checkpoint.
    ``sliding_window``: config.json's Phi-3 window (Phi-3-mini-4k: 2047); ``extra_state``: tensors added as is.
    """
    from video.internvideo2 import InternVideo2Config, write_tiny_internvideo2
    from video.sam2 import VIDEOGLAMM_SAM2_PREFIX, tiny_sam2_architecture, write_tiny_sam2_state_dict

    root = Path(out_dir)
    clip_dir = make_tiny_clip(root / "clip-vit-large-patch14-336", seed=seed)
    video_config = InternVideo2Config.tiny()
    video_pt = root / "InternVideo2-Stage2_1B-224p-f4" / "InternVideo2-stage2_1b-224p-f4.pt"
    write_tiny_internvideo2(video_pt, video_config, seed=seed)
    ckpt = root / "VideoGLaMM"
    ckpt.mkdir(parents=True, exist_ok=True)
    from video.tokenizer_files import write_phi3_tokenizer

    ids = write_phi3_tokenizer(ckpt)
    vocab = ids.pop("vocab_size")
    clip_width = json.loads((clip_dir / "config.json").read_text())["vision_config"]["hidden_size"]
    out_dim = tiny_sam2_architecture().hidden_size
    generator = torch.Generator().manual_seed(seed)
    state = _phi3_state(vocab, hidden, layers, heads, ids, seed)
    plant_answer(state, answer_chain(ckpt))
    state.update(mlp_state("model.image_mm_projector.", (clip_width, hidden, hidden), generator))
    state.update(mlp_state("model.mm_projector.", (video_config.width, hidden, hidden), generator))
    state.update(mlp_state("model.text_hidden_fcs.0.", (hidden, hidden, out_dim), generator))
    sam2 = write_tiny_sam2_state_dict(seed=seed, layer_scale_name="weight")
    state.update({VIDEOGLAMM_SAM2_PREFIX + k: v for k, v in sam2.items()})
    if include_video_tower:
        state.update(_video_tower_state(video_config, seed))
    state.update(extra_state or {})
    write_sharded({k: v.to(dtype) for k, v in state.items()}, ckpt, weight_format=weight_format, num_shards=num_shards)
    config = _config_json(hidden=hidden, layers=layers, heads=heads, vocab=vocab, ids=ids, clip_width=clip_width,
                          video_width=video_config.width, out_dim=out_dim, dtype=dtype, sliding_window=sliding_window)
    (ckpt / "config.json").write_text(json.dumps(config, indent=2))
    eos = [ids["<|endoftext|>"], ids["<|assistant|>"], ids["<|end|>"]]
    (ckpt / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "do_sample": True, "eos_token_id": eos, "pad_token_id": ids["<|endoftext|>"]}, indent=2))
    return {"checkpoint": ckpt, "vision_tower": clip_dir, "video_tower": video_pt}

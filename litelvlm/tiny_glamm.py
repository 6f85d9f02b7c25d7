"""A tiny random GLaMM-RefSeg checkpoint: the layout the release writes, tiny sizes.

``layout="released"`` (default) is what the released ``scripts/merge_lora_weights.py`` + ``save_pretrained``
(transformers 4.28/4.31) write: ``pytorch_model-*.bin`` shards with an index, a rotary ``inv_freq`` buffer key
per LLaMA layer, bf16 LLM / projector / region encoder next to fp32 SAM and ``text_hidden_fcs``, the region
encoder's 43 keys under ``model.region_encoder.{mlvl_fuse,roi_align}``, ``model_type: llava`` without
``rope_theta``, and the 4.x tokenizer files (``litelvlm.tokenizer_files``). ``layout="transformers5"`` is the
tidier layout of litelvlm's first tiny checkpoints (safetensors, one dtype, ``added_tokens_decoder``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .tokenizer_files import GLAMM_ADDED_TOKENS, LAYOUTS, write_llama_tokenizer
from .tiny_clip import make_tiny_clip

__all__ = ["make_tiny_glamm", "mlp_state", "write_llama_tokenizer", "write_sharded", "GLAMM_ADDED_TOKENS", "tiny_sam_architecture",
           "region_encoder_state"]


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
    from .sam.config import SamArchitecture

    return SamArchitecture(
        vision_width=32, vision_depth=2, vision_heads=2, vision_mlp_dim=64, window_size=14, global_attn_indexes=(1,),
        embed_dim=32, decoder_mlp_dim=64, iou_head_hidden_dim=32,
    )


def _tiny_sam_state_dict(seed: int) -> dict[str, torch.Tensor]:
    from transformers import SamModel

    from .sam import to_segment_anything_state_dict

    torch.manual_seed(seed)
    return to_segment_anything_state_dict(SamModel(tiny_sam_architecture().to_sam_config()).state_dict())


def _linear(fan_in: int, fan_out: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(fan_out, fan_in, generator=generator) / fan_in**0.5, torch.randn(fan_out, generator=generator) * 0.02


def mlp_state(prefix: str, dims: tuple[int, ...], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """``{prefix}{0,2,...}.{weight,bias}``: random Linear layers through ``dims`` (``nn.Sequential`` with activations
    between them), drawn from ``generator`` (None: torch's global one)."""
    state = {}
    for k, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        state[f"{prefix}{2 * k}.weight"], state[f"{prefix}{2 * k}.bias"] = _linear(fan_in, fan_out, generator)
    return state


def region_encoder_state(embed: int, out: int, levels: int = 4, fuse: int = 5, roi: int = 14, pos: tuple[int, int] = (16, 0)) -> dict:
    """The released region encoder's keys (``MLVLROIQueryModule``: 4 levels, 5 GN fuse convs, RoI extractor),
    43 in all, with ``embed`` = CLIP width and ``out`` = LLM width. Unused for segmentation; real names."""
    pos_hidden, pos_out = pos[0], pos[1] or embed
    state: dict[str, torch.Tensor] = {}
    for lvl in range(levels):
        state[f"mlvl_fuse.input_conv.{lvl}.weight"] = torch.randn(embed, embed + 2, 1, 1) * 0.01
        state[f"mlvl_fuse.input_conv.{lvl}.bias"] = torch.zeros(embed)
    for i in range(fuse):  # mmcv ConvModule with GroupNorm: conv without bias, norm named "gn"
        state[f"mlvl_fuse.fuse_convs.{i}.conv.weight"] = torch.randn(embed, embed, 3, 3) * 0.01
        state[f"mlvl_fuse.fuse_convs.{i}.gn.weight"] = torch.ones(embed)
        state[f"mlvl_fuse.fuse_convs.{i}.gn.bias"] = torch.zeros(embed)
    for lvl in range(levels):
        state[f"roi_align.pconvs.{lvl}.weight"] = torch.randn(embed, embed, 3, 3) * 0.01
        state[f"roi_align.pconvs.{lvl}.bias"] = torch.zeros(embed)
    for idx, (i, o) in ((0, (4, pos_hidden)), (3, (pos_hidden, pos_out))):
        state[f"roi_align.pos_embedd.{idx}.weight"], state[f"roi_align.pos_embedd.{idx}.bias"] = _linear(i, o)
    for idx, width in ((2, pos_hidden), (5, pos_out)):  # LayerNorms
        state[f"roi_align.pos_embedd.{idx}.weight"], state[f"roi_align.pos_embedd.{idx}.bias"] = torch.ones(width), torch.zeros(width)
    state["roi_align.updims.weight"], state["roi_align.updims.bias"] = _linear(pos_out, out)
    state["roi_align.flatten_linear.weight"], state["roi_align.flatten_linear.bias"] = _linear(embed * roi * roi, pos_out)
    return state


def _llama_state(vocab: int, hidden: int, layers: int, seed: int) -> dict[str, torch.Tensor]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4))
    return dict(llm.state_dict())


def _rotary_buffers(hidden: int, heads: int, layers: int, theta: float = 10000.0) -> dict[str, torch.Tensor]:
    """The ``rotary_emb.inv_freq`` buffer every LLaMA layer of transformers 4.28-4.31 saves (cast with the model)."""
    dim = hidden // heads
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2).float() / dim))
    return {f"model.layers.{i}.self_attn.rotary_emb.inv_freq": inv_freq.clone() for i in range(layers)}


def _glamm_groups(vocab: int, hidden: int, layers: int, clip_width: int, sam_dim: int, seed: int, released: bool) -> dict[str, dict]:
    """The checkpoint's tensors by group (llm, mm_projector, region_encoder, grounding_encoder, text_hidden_fcs, buffers)."""
    llm = _llama_state(vocab, hidden, layers, seed)
    projector = mlp_state("model.mm_projector.", (clip_width, hidden, hidden))
    fcs = mlp_state("model.text_hidden_fcs.0.", (hidden, hidden, sam_dim))
    if released:
        region = {f"model.region_encoder.{k}": v for k, v in region_encoder_state(clip_width, hidden).items()}
    else:  # the first tiny layout: two region-encoder keys
        region = {"model.region_encoder.mlvl_fuse.input_conv.0.weight": torch.randn(8, clip_width, 1, 1),
                  "model.region_encoder.roi_align.fc.weight": torch.randn(8, 8)}
    sam = {f"model.grounding_encoder.{k}": v for k, v in _tiny_sam_state_dict(seed).items()}
    buffers = _rotary_buffers(hidden, 4, layers) if released else {}
    return {"llm": llm, "mm_projector": projector, "region_encoder": region, "grounding_encoder": sam,
            "text_hidden_fcs": fcs, "buffers": buffers}


# dtypes the released GLaMM-RefSeg stores each group in (FACTS §2); None keeps the tensor's own dtype.
RELEASED_DTYPES = {"llm": torch.bfloat16, "mm_projector": torch.bfloat16, "region_encoder": torch.bfloat16,
                   "grounding_encoder": torch.float32, "text_hidden_fcs": torch.float32, "buffers": torch.bfloat16}


def _ordered_state(groups: dict[str, dict], dtypes: dict) -> dict[str, torch.Tensor]:
    """One state dict in the released module order (a layer's ``rotary_emb.inv_freq`` right after its
    attention projections, as torch's ``state_dict()`` lists a child's buffers), each group in its dtype."""
    llm, buffers = groups["llm"], groups["buffers"]
    state: dict[str, torch.Tensor] = {}
    for key, tensor in llm.items():
        if key.startswith("lm_head."):
            continue
        state[key] = tensor
        if key.endswith(".self_attn.o_proj.weight"):
            buffer = key.replace("o_proj.weight", "rotary_emb.inv_freq")
            if buffer in buffers:
                state[buffer] = buffers[buffer]
    for name in ("mm_projector", "region_encoder", "grounding_encoder", "text_hidden_fcs"):
        state.update(groups[name])
    state.update({k: v for k, v in llm.items() if k.startswith("lm_head.")})
    group_of = {k: g for g, tensors in groups.items() for k in tensors}
    return {k: (v.to(dtypes[group_of[k]]) if dtypes[group_of[k]] is not None else v) for k, v in state.items()}


def _released_config(hidden: int, layers: int, vocab: int, clip_width: int, sam_dim: int) -> dict:
    """config.json as GLaMM's 4.x ``save_pretrained`` writes it: model_type llava, no rope_theta, GLaMM fields."""
    ids = {t: vocab - len(GLAMM_ADDED_TOKENS) + i for i, t in enumerate(GLAMM_ADDED_TOKENS)}
    return {
        "_name_or_path": "MBZUAI/GLaMM-GranD-Pretrained", "architectures": ["GLaMMForCausalLM"], "model_type": "llava",
        "bbox_token_idx": ids["<bbox>"], "bop_token_idx": ids["<p>"], "eop_token_idx": ids["</p>"], "seg_token_idx": ids["[SEG]"],
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "ce_loss_weight": 1.0, "dice_loss_weight": 0.5,
        "bce_loss_weight": 2.0, "freeze_mm_mlp_adapter": False, "hidden_act": "silu", "hidden_size": hidden,
        "image_aspect_ratio": "square", "image_grid_pinpoints": None, "initializer_range": 0.02,
        "intermediate_size": 2 * hidden, "max_length": 4096, "max_position_embeddings": 4096, "mm_hidden_size": clip_width,
        "mm_use_im_patch_token": False, "mm_use_im_start_end": True, "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2, "mm_vision_tower": "openai/clip-vit-large-patch14-336", "num_attention_heads": 4,
        "num_hidden_layers": layers, "num_key_value_heads": 4, "num_level_reg_features": 4, "num_reg_features": 4,
        "out_dim": sam_dim, "pretrain_mm_mlp_adapter": None, "pretraining_tp": 1, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "select_feature_type": "patch", "tie_word_embeddings": False, "torch_dtype": "bfloat16", "train_mask_decoder": True,
        "transformers_version": "4.28.0.dev0", "tune_mm_mlp_adapter": False, "use_cache": False, "use_mm_proj": True,
        "vision_pretrained": "./checkpoints/sam_vit_h_4b8939.pth", "vision_tower": "openai/clip-vit-large-patch14-336",
        "vocab_size": vocab, "with_region": True,
    }


def _transformers5_config(hidden: int, layers: int, vocab: int, clip_width: int, sam_dim: int, dtype: torch.dtype) -> dict:
    return {
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


def make_tiny_glamm(out_dir: str | Path, *, layout: str = "released", legacy: bool | None = None,
                    weight_format: str | None = None, num_shards: int = 2, dtype: torch.dtype = torch.bfloat16,
                    hidden: int = 64, layers: int = 2, seed: int = 0) -> dict[str, Path]:
    """Write a tiny random GLaMM-RefSeg folder and a tiny CLIP folder under ``out_dir``.

    ``layout="released"``: the files and tensors the release writes (module docstring); ``legacy`` writes
    the tokenizer's ``legacy`` key (None: absent, as the pinned transformers writes it). ``weight_format``
    defaults to ``bin`` (released) or ``safetensors`` (transformers5); ``dtype`` applies to the
    transformers5 layout only. Returns ``{"glamm": dir, "clip": dir}``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    released = layout == "released"
    root = Path(out_dir)
    clip_dir = make_tiny_clip(root / "clip-vit-large-patch14-336", seed=seed)
    glamm = root / "GLaMM-RefSeg"
    glamm.mkdir(parents=True, exist_ok=True)
    vocab = write_llama_tokenizer(glamm, layout=layout, legacy=legacy)
    clip_width = json.loads((clip_dir / "config.json").read_text())["vision_config"]["hidden_size"]
    sam_dim = tiny_sam_architecture().embed_dim
    groups = _glamm_groups(vocab, hidden, layers, clip_width, sam_dim, seed, released)
    dtypes = RELEASED_DTYPES if released else {g: dtype for g in groups}
    state = _ordered_state(groups, dtypes)
    write_sharded(state, glamm, weight_format=weight_format or ("bin" if released else "safetensors"), num_shards=num_shards)
    config = (_released_config(hidden, layers, vocab, clip_width, sam_dim) if released
              else _transformers5_config(hidden, layers, vocab, clip_width, sam_dim, dtype))
    (glamm / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    generation = {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    (glamm / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return {"glamm": glamm, "clip": clip_dir}

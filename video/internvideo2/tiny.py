"""Tiny random InternVideo2-Stage2 checkpoints with the official ``.pt`` key names and nesting."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from .config import InternVideo2Config
from .encoder import InternVideo2VisionEncoder

__all__ = ["write_tiny_internvideo2", "tiny_internvideo2_checkpoint", "TINY_HEAD_SIZES"]

# Sizes of the parts the features never use (attention-pool head, CLIP-distillation decoders, BERT text
# side, contrastive projections); the real model has 768 / 3200 / 768 / 6 / BERT-large / 512.
TINY_HEAD_SIZES = dict(clip_embed=32, teacher_embed=48, teacher_final=32, return_layers=2, text_width=32,
                       text_layers=2, fusion_layer=1, text_mlp=64, vocab=30, max_positions=16, joint_embed=16)


def _random(name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Deterministic values large enough that every part of a tiny model changes the output visibly."""
    noise = torch.randn(shape, generator=generator)
    if name.endswith("position_ids"):
        return torch.arange(shape[-1]).expand(shape).clone()
    if name.endswith(("pos_embed", "cls_token")):
        return 0.5 * noise
    if name.endswith("gamma"):
        return 0.5 + 0.1 * noise
    if len(shape) == 1 and name.endswith("weight"):
        return 1.0 + 0.1 * noise
    if len(shape) <= 1:
        return 0.1 * noise
    return noise / math.sqrt(math.prod(shape[1:]))


def _vision_extra_shapes(config: InternVideo2Config) -> dict[str, tuple[int, ...]]:
    """Vision-encoder tensors outside the feature path (Stage2 1B: clip_* heads, 6 decoders)."""
    w, s = config.width, TINY_HEAD_SIZES
    shapes = {"clip_pos_embed": (1, 1 + config.num_patches, w)}
    if config.separate_image_pos_embed:
        shapes["clip_img_pos_embed"] = (1, 1 + config.tokens_per_frame, w)
    for norm in ("norm1_q", "norm1_k", "norm1_v"):
        shapes.update({f"clip_projector.{norm}.weight": (w,), f"clip_projector.{norm}.bias": (w,)})
    for part in ("q", "k", "v"):
        shapes.update({f"clip_projector.cross_attn.{part}.weight": (w, w), f"clip_projector.cross_attn.{part}_bias": (w,)})
    shapes.update({"clip_projector.cross_attn.proj.weight": (s["clip_embed"], w), "clip_projector.cross_attn.proj.bias": (s["clip_embed"],)})
    decoders = {f"clip_decoder.{i}": (s["teacher_embed"], w) for i in range(s["return_layers"])}
    decoders["final_clip_decoder"] = (s["teacher_final"], s["clip_embed"])
    for name, (out_dim, in_dim) in decoders.items():
        shapes.update({f"{name}.head.weight": (out_dim, in_dim), f"{name}.head.bias": (out_dim,),
                       f"{name}.norm.weight": (out_dim,), f"{name}.norm.bias": (out_dim,)})
    return shapes


def _linear(name: str, out_dim: int, in_dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (out_dim, in_dim), f"{name}.bias": (out_dim,)}


def _bert_layer_shapes(i: int, vision_width: int) -> dict[str, tuple[int, ...]]:
    s, base = TINY_HEAD_SIZES, f"text_encoder.bert.encoder.layer.{i}"
    tw, shapes = s["text_width"], {}
    attentions = {"attention": tw} if i < s["fusion_layer"] else {"attention": tw, "crossattention": vision_width}
    for kind, kv_width in attentions.items():
        shapes.update(_linear(f"{base}.{kind}.self.query", tw, tw))
        shapes.update(_linear(f"{base}.{kind}.self.key", tw, kv_width))
        shapes.update(_linear(f"{base}.{kind}.self.value", tw, kv_width))
        shapes.update(_linear(f"{base}.{kind}.output.dense", tw, tw))
        shapes.update({f"{base}.{kind}.output.LayerNorm.weight": (tw,), f"{base}.{kind}.output.LayerNorm.bias": (tw,)})
    shapes.update(_linear(f"{base}.intermediate.dense", s["text_mlp"], tw))
    shapes.update(_linear(f"{base}.output.dense", tw, s["text_mlp"]))
    shapes.update({f"{base}.output.LayerNorm.weight": (tw,), f"{base}.output.LayerNorm.bias": (tw,)})
    return shapes


def _stage2_extra_shapes(config: InternVideo2Config) -> dict[str, tuple[int, ...]]:
    """Non-vision Stage2 tensors: BERT (text_encoder.bert / .cls, cross-attention from fusion_layer), heads, temp."""
    s, tw = TINY_HEAD_SIZES, TINY_HEAD_SIZES["text_width"]
    emb = "text_encoder.bert.embeddings"
    shapes = {f"{emb}.word_embeddings.weight": (s["vocab"], tw), f"{emb}.position_embeddings.weight": (s["max_positions"], tw),
              f"{emb}.token_type_embeddings.weight": (2, tw), f"{emb}.LayerNorm.weight": (tw,), f"{emb}.LayerNorm.bias": (tw,),
              f"{emb}.position_ids": (1, s["max_positions"])}
    for i in range(s["text_layers"]):
        shapes.update(_bert_layer_shapes(i, config.width))
    head = "text_encoder.cls.predictions"
    shapes.update({f"{head}.bias": (s["vocab"],), f"{head}.transform.LayerNorm.weight": (tw,), f"{head}.transform.LayerNorm.bias": (tw,)})
    shapes.update(_linear(f"{head}.transform.dense", tw, tw))
    shapes.update(_linear(f"{head}.decoder", s["vocab"], tw))
    shapes.update(_linear("vision_proj", s["joint_embed"], s["clip_embed"]))
    shapes.update(_linear("text_proj", s["joint_embed"], tw))
    shapes.update(_linear("itm_head", 2, tw))
    shapes["temp"] = ()
    return shapes


def tiny_internvideo2_checkpoint(config: InternVideo2Config | None = None, seed: int = 0) -> dict:
    """``{"module": state}`` as in the official file: all ``depth`` blocks, unused heads and text side included."""
    config = config if config is not None else InternVideo2Config.tiny()
    with torch.device("meta"):
        full = InternVideo2VisionEncoder(dataclasses.replace(config, return_block_index=-1))
    vision = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    vision.update(_vision_extra_shapes(config))
    shapes = {f"vision_encoder.{k}": v for k, v in vision.items()}
    shapes.update(_stage2_extra_shapes(config))
    generator = torch.Generator().manual_seed(seed)
    return {"module": {name: _random(name, shape, generator) for name, shape in shapes.items()}}


def write_tiny_internvideo2(path: str | Path, config: InternVideo2Config | None = None, seed: int = 0) -> InternVideo2Config:
    """Save a tiny random Stage2-layout ``.pt`` at ``path`` (zip format, loadable memory-mapped); return its config."""
    config = config if config is not None else InternVideo2Config.tiny()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_internvideo2_checkpoint(config, seed), path)
    return config

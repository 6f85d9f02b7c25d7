"""Loading CLIP towers (vision + text with projections, tokenizer, image processor) from a local directory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .pruning import ClipTokenPruner

__all__ = ["ClipTowers", "load_clip_towers", "random_clip_towers", "require_local_dir", "quiet_transformers"]


def require_local_dir(path: str | Path, what: str, must_contain: tuple[str, ...] = ("config.json",), patterns=None) -> Path:
    """The checkpoint folder ``path`` names: a local folder, or a Hugging Face Hub id resolved through the
    cache (``litelvlm.hub``); raises one clear error naming it otherwise."""
    from .hub import resolve_folder

    return resolve_folder(path, what, patterns=patterns, must_contain=must_contain)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and processor fallback notices inside the block."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def _load_tower(cls, path: Path, device, dtype, attn_implementation: str | None = None):
    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with quiet_transformers():
        model, info = cls.from_pretrained(path, dtype=dtype, output_loading_info=True, **options)
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise ValueError(f"{cls.__name__} weights in {path} lack {len(missing)} keys, e.g. {missing[:5]}")
    return model.to(device).eval().requires_grad_(False)


@dataclass
class ClipTowers:
    """A CLIP checkpoint's parts used by the LVLM and by token pruning."""

    vision: torch.nn.Module
    text: torch.nn.Module
    tokenizer: object
    image_processor: object
    path: Path

    def pruner(self, select_layer: int = -2, method="litelvlm", **method_options) -> ClipTokenPruner:
        """A ``ClipTokenPruner`` over these towers."""
        return ClipTokenPruner(self.vision, self.text, select_layer, tokenizer=self.tokenizer, method=method, **method_options)


def load_clip_towers(path: str | Path, device="cpu", dtype: torch.dtype | None = None,
                     attn_implementation: str | None = None) -> ClipTowers:
    """Load CLIP's vision and text towers with projections from an openai-layout folder or Hub id
    (e.g. ``openai/clip-vit-large-patch14-336``, resolved through the huggingface_hub cache).

    ``attn_implementation``: ``eager`` reproduces the released transformers 4.x CLIP (eager only), which
    matters in bf16/fp16 (the kept tokens change); None: transformers' default (SDPA)."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    from .hub import PATTERNS

    p = require_local_dir(path, "CLIP vision tower", patterns=PATTERNS["clip"])
    vision = _load_tower(CLIPVisionModelWithProjection, p, device, dtype, attn_implementation)
    text = _load_tower(CLIPTextModelWithProjection, p, device, dtype, attn_implementation)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(p)
        processor = CLIPImageProcessorPil.from_pretrained(p)
    return ClipTowers(vision, text, tokenizer, processor, p)


def random_clip_towers(arch, device="cpu", dtype=torch.float32) -> "ClipTowers":
    """CLIP towers with random weights shaped by ``arch``'s ``clip_*``/``text_*`` fields (336 px, patch 14),
    with the tiny offline tokenizer: for benchmarks (speed does not depend on weight values)."""
    from transformers import CLIPImageProcessorPil, CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModelWithProjection

    from .tiny_clip import tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer()
    vision_cfg = CLIPVisionConfig(hidden_size=arch.clip_width, intermediate_size=arch.clip_mlp, num_hidden_layers=arch.clip_layers,
                                  num_attention_heads=arch.clip_heads, image_size=336, patch_size=14, projection_dim=arch.clip_projection)
    text_cfg = CLIPTextConfig(vocab_size=max(49408, len(tokenizer)), hidden_size=arch.text_width, intermediate_size=arch.text_mlp,
                              num_hidden_layers=arch.text_layers, num_attention_heads=arch.text_heads, max_position_embeddings=77,
                              projection_dim=arch.clip_projection, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    for cfg in (vision_cfg, text_cfg):
        cfg._attn_implementation = "sdpa"
    with torch.device(device):
        vision = CLIPVisionModelWithProjection(vision_cfg).to(dtype).eval().requires_grad_(False)
        text = CLIPTextModelWithProjection(text_cfg).to(dtype).eval().requires_grad_(False)
    processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                      image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    return ClipTowers(vision, text, tokenizer, processor, Path("<random>"))

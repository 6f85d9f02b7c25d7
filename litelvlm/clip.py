"""Loading CLIP towers (vision + text with projections, tokenizer, image processor) from a local directory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .pruning import ClipTokenPruner

__all__ = ["ClipTowers", "load_clip_towers", "require_local_dir", "quiet_transformers"]


def require_local_dir(path: str | Path, what: str, must_contain: tuple[str, ...] = ("config.json",)) -> Path:
    """Resolve ``path`` as a local checkpoint directory or raise one clear error naming it."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(
            f"{what} directory not found: {p}. Download the checkpoint and pass its local folder "
            "(nothing is fetched from the Hub at run time)."
        )
    missing = [name for name in must_contain if not (p / name).exists()]
    if missing:
        raise FileNotFoundError(f"{p} is not a {what} directory: missing {', '.join(missing)}")
    return p


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


def _load_tower(cls, path: Path, device, dtype):
    with quiet_transformers():
        model, info = cls.from_pretrained(path, dtype=dtype, output_loading_info=True)
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


def load_clip_towers(path: str | Path, device="cpu", dtype: torch.dtype | None = None) -> ClipTowers:
    """Load CLIP's vision and text towers with projections from a local openai-layout directory."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    p = require_local_dir(path, "CLIP vision tower")
    vision = _load_tower(CLIPVisionModelWithProjection, p, device, dtype)
    text = _load_tower(CLIPTextModelWithProjection, p, device, dtype)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(p)
        processor = CLIPImageProcessorPil.from_pretrained(p)
    return ClipTowers(vision, text, tokenizer, processor, p)

"""Loading CLIP towers (vision + text with projections, tokenizer, image processor) from a local directory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .pruning import ClipTokenPruner

__all__ = ["ClipTowers", "load_clip_towers", "random_clip_towers", "require_local_dir", "quiet_transformers", "check_clip_dir",
           "resolve_clip_dir"]


def require_local_dir(path: str | Path, what: str, must_contain: tuple[str, ...] = ("config.json",), patterns=None) -> Path:
    """The checkpoint folder ``path`` names: a local folder, or a Hugging Face Hub id resolved through the
    cache (``litelvlm.hub``); raises one clear error naming it otherwise."""
    from .hub import resolve_folder

    return resolve_folder(path, what, patterns=patterns, must_contain=must_contain)


def resolve_clip_dir(path: str | Path) -> Path:
    """The checked local folder of a CLIP tower (a folder or Hub id): resolved, ``check_clip_dir``-checked and its
    tokenizer and image processor read once, so a segmenter refuses a bad CLIP before it loads its own, larger
    weights."""
    from .hub import PATTERNS

    folder = require_local_dir(path, "CLIP vision tower", patterns=PATTERNS["clip"])
    check_clip_dir(folder)
    _load_tokenizer_and_processor(folder)
    return folder


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


# The JSON files of a CLIP folder transformers reads; each is parsed here first so a bad one is named.
CLIP_JSON_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "special_tokens_map.json",
                   "preprocessor_config.json")
CLIP_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_clip_dir(path: Path) -> None:
    """Check a CLIP folder before anything is built from it: its JSON files parse, ``config.json``'s sizes are within
    the bounds of CLIP ViT-L/14-336 (``litelvlm.config_bounds``), and it holds weights whose index or header (names,
    shards inside the folder, a weights-only pickle, a complete safetensors header) reads."""
    from .checkpoint import CheckpointDir
    from .config_bounds import check_clip_config
    from .jsonfile import read_json, read_json_object

    config = path / "config.json"
    check_clip_config(read_json_object(config, "CLIP config"), str(config))
    for name in CLIP_JSON_FILES[1:]:
        if (path / name).is_file():
            read_json(path / name, "CLIP tokenizer / processor file")
    if not any((path / name).is_file() for name in CLIP_WEIGHT_FILES):
        raise FileNotFoundError(f"no CLIP weights in {path}: expected one of {', '.join(CLIP_WEIGHT_FILES)}")
    CheckpointDir(path)  # reads only the index / headers (a .bin memory-mapped): cheap, before any model loads


@contextlib.contextmanager
def _tokenizer_file_errors(path: Path):
    """Whatever transformers / tokenizers raise for unusable tokenizer or processor files, as one line naming them."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as err:  # tokenizers raises its own Exception types, transformers OSError / ValueError / TypeError
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ValueError(f"cannot load the CLIP tokenizer / image processor files in {path} (tokenizer.json, vocab.json, "
                         f"merges.txt, preprocessor_config.json): {reason}; the files are corrupt or incomplete: "
                         "re-download them") from None


def _load_tokenizer_and_processor(path: Path):
    """The CLIP tokenizer and image processor of a folder (errors: one line naming its tokenizer files)."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil

    with quiet_transformers(), _tokenizer_file_errors(path):
        return AutoTokenizer.from_pretrained(path), CLIPImageProcessorPil.from_pretrained(path)


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
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    from .hub import PATTERNS

    p = require_local_dir(path, "CLIP vision tower", patterns=PATTERNS["clip"])
    check_clip_dir(p)  # the small files and the weights' headers first: a bad one fails before the weights load
    tokenizer, processor = _load_tokenizer_and_processor(p)
    vision = _load_tower(CLIPVisionModelWithProjection, p, device, dtype, attn_implementation)
    text = _load_tower(CLIPTextModelWithProjection, p, device, dtype, attn_implementation)
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

"""Loading the vision-encoder part of an official InternVideo2-Stage2 ``.pt`` checkpoint.

The Stage2 file (e.g. ``InternVideo2-stage2_1b-224p-f4.pt``) is a DeepSpeed save: ``{"module": state}``
whose keys are ``vision_encoder.*`` (patch_embed, cls_token, pos_embed, img_pos_embed, blocks.N.*, plus
the unused clip_pos_embed, clip_img_pos_embed, clip_projector, clip_decoder.K, final_clip_decoder),
``text_encoder.bert.*`` / ``text_encoder.cls.*`` (BERT-large), ``vision_proj``, ``text_proj``,
``itm_head`` and ``temp``. Only the tensors that produce the selected block's features are kept.
"""

from __future__ import annotations

import logging
import math
import re
import zipfile
from collections import Counter
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import torch

from litelvlm.config_bounds import INTERNVIDEO2_1B, check_sizes

from .config import HEAD_DIM_RULE, InternVideo2Config
from .encoder import InternVideo2VisionEncoder

__all__ = [
    "load_internvideo2",
    "read_checkpoint",
    "unwrap_state_dict",
    "find_vision_prefix",
    "infer_internvideo2_config",
    "select_encoder_tensors",
]

logger = logging.getLogger(__name__)

_ANCHOR = "patch_embed.proj.weight"
_WRAPPERS = ("model", "module", "state_dict")


def read_checkpoint(path: str | Path, allow_pickle: bool = False):
    """``torch.load`` on CPU; memory-mapped when the file is in the zip format, weights-only unless allowed."""
    from litelvlm.checkpoint import weight_file_errors

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"InternVideo2 checkpoint not found: {path}")
    with weight_file_errors(path, "InternVideo2 checkpoint",
                            "if you trust the file, call load_internvideo2(..., allow_pickle=True)"):
        return torch.load(path, map_location="cpu", mmap=zipfile.is_zipfile(path), weights_only=not allow_pickle)


def unwrap_state_dict(checkpoint) -> dict[str, torch.Tensor]:
    """Descend through ``model`` / ``module`` / ``state_dict`` wrappers to the flat name -> tensor mapping."""
    current = checkpoint
    while isinstance(current, Mapping) and not any(isinstance(v, torch.Tensor) for v in current.values()):
        wrapper = next((k for k in _WRAPPERS if isinstance(current.get(k), Mapping)), None)
        if wrapper is None:
            raise ValueError(
                f"InternVideo2 checkpoint: no tensors and none of the wrapper keys {_WRAPPERS} at a level with keys "
                f"{sorted(map(str, current))[:10]}"
            )
        current = current[wrapper]
    if not isinstance(current, Mapping):
        raise TypeError(f"InternVideo2 checkpoint: expected a mapping of tensors, got {type(current).__name__}")
    return dict(current)


def find_vision_prefix(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The key prefix of the vision encoder (``vision_encoder.`` in Stage2 files), found via its patch conv."""
    hits = [k[: -len(_ANCHOR)] for k in state_dict if k.endswith(_ANCHOR) and (k == _ANCHOR or k[-len(_ANCHOR) - 1] == ".")]
    if len(hits) != 1:
        found = "none" if not hits else ", ".join(h + _ANCHOR for h in hits)
        raise KeyError(f"InternVideo2 checkpoint: expected exactly one '*{_ANCHOR}' key (the Conv3d patch embedding), found {found}")
    return hits[0]


def _required(state_dict, prefix: str, name: str, purpose: str) -> torch.Tensor:
    tensor = state_dict.get(prefix + name)
    if tensor is None:
        raise KeyError(f"InternVideo2 checkpoint lacks '{prefix + name}', needed to infer the {purpose}; pass a config")
    return tensor


def _image_grid(state_dict, prefix: str) -> int:
    name = next((n for n in ("img_pos_embed", "clip_img_pos_embed") if prefix + n in state_dict), None)
    if name is None:
        raise KeyError(f"InternVideo2 checkpoint has no '{prefix}img_pos_embed' to infer the image size from; pass a config")
    tokens = state_dict[prefix + name].shape[1] - 1
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
        raise ValueError(f"'{prefix + name}' holds {tokens} patch positions, not a square grid")
    return grid


def infer_depth(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    """1 + the highest ``blocks.N`` index under ``prefix``, at most 8x the released depth (``litelvlm.config_bounds``):
    a stray ``blocks.10000000.*`` key is refused here, not built as ten million blocks."""
    pattern = re.compile(re.escape(prefix) + r"blocks\.(\d+)\.")
    block_ids = {int(m.group(1)) for k in state_dict if (m := pattern.match(k))}
    if not block_ids:
        raise KeyError(f"InternVideo2 checkpoint has no '{prefix}blocks.N.*' keys")
    check_sizes({"depth": max(block_ids) + 1}, INTERNVIDEO2_1B, f"InternVideo2 checkpoint ('{prefix}blocks.N' keys)")
    return max(block_ids) + 1


def infer_internvideo2_config(
    state_dict: Mapping[str, torch.Tensor], prefix: str | None = None, return_block_index: int = -2
) -> InternVideo2Config:
    """Read the architecture off tensor shapes.

    width / in-channels / tubelet / patch from the Conv3d weight (width, C, t, p, p); depth from the
    highest ``blocks.N``; MLP width from ``fc1``; image size from ``img_pos_embed`` (1 + G*G rows);
    frames from ``pos_embed`` (1 + T/t*G*G rows); qkv bias, qk-norm and LayerScale from key presence;
    heads = width // 88 (``HEAD_DIM_RULE``), so other widths need an explicit config.
    """
    prefix = find_vision_prefix(state_dict) if prefix is None else prefix
    conv = _required(state_dict, prefix, _ANCHOR, "patch size")
    if conv.dim() != 5 or conv.shape[3] != conv.shape[4]:
        raise ValueError(f"'{prefix}{_ANCHOR}' should be a (width, C, t, p, p) Conv3d weight, got {tuple(conv.shape)}")
    width, in_channels, tubelet, patch = (int(s) for s in conv.shape[:4])
    if width % HEAD_DIM_RULE:
        raise ValueError(f"width {width} is not a multiple of {HEAD_DIM_RULE}, so the head count is unknown; pass a config")
    grid = _image_grid(state_dict, prefix)
    patches = _required(state_dict, prefix, "pos_embed", "frame count").shape[1] - 1
    if patches % (grid * grid):
        raise ValueError(f"'{prefix}pos_embed' holds {patches} positions, not a multiple of the {grid}x{grid} grid")
    has = lambda name: prefix + name in state_dict  # noqa: E731
    sizes = dict(image_size=grid * patch, patch_size=patch, tubelet_size=tubelet, in_channels=in_channels, width=width,
                 num_frames=patches // (grid * grid) * tubelet,
                 mlp_hidden_dim=int(_required(state_dict, prefix, "blocks.0.mlp.fc1.weight", "MLP width").shape[0]))
    check_sizes(sizes, INTERNVIDEO2_1B, "InternVideo2 checkpoint (sizes read off its tensor shapes)")
    return InternVideo2Config(
        **sizes, depth=infer_depth(state_dict, prefix), num_heads=width // HEAD_DIM_RULE,
        qkv_bias=has("blocks.0.attn.qkv.bias"), qk_norm=has("blocks.0.attn.q_norm.weight"),
        layerscale=has("blocks.0.ls1.gamma"), separate_image_pos_embed=has("img_pos_embed"),
        return_block_index=return_block_index,
    )


def _check_depth(state_dict, prefix: str, config: InternVideo2Config) -> None:
    stored = infer_depth(state_dict, prefix)
    if stored != config.depth:
        raise ValueError(f"config.depth is {config.depth} but the checkpoint has {stored} blocks under '{prefix}blocks.'")


def _group(name: str) -> str:
    """``blocks.7.attn.qkv.weight`` -> ``blocks.7``; ``clip_decoder.0.head.bias`` -> ``clip_decoder``."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "blocks" and len(parts) > 1 else parts[0]


def select_encoder_tensors(state_dict, prefix: str, expected: Mapping[str, torch.Tensor]):
    """Split the checkpoint into the encoder's tensors (prefix stripped) and the skipped key names.

    Raises naming the full key when an expected tensor is missing or has another shape, or when a
    key sits in a part the encoder runs (a kept block, the patch embedding) but the config lacks it.
    """
    kept, skipped, model_groups = {}, [], {_group(k) for k in expected}
    for key, tensor in state_dict.items():
        local = key[len(prefix) :] if key.startswith(prefix) else None
        if local is not None and local in expected:
            if tuple(tensor.shape) != tuple(expected[local].shape):
                raise ValueError(f"'{key}' has shape {tuple(tensor.shape)}, the config expects {tuple(expected[local].shape)}")
            kept[local] = tensor
        elif local is not None and _group(local) in model_groups:
            raise KeyError(f"unexpected checkpoint key '{key}' for this config (check qkv_bias / qk_norm / layerscale)")
        else:
            skipped.append(key)
    missing = [prefix + k for k in expected if k not in kept]
    if missing:
        raise KeyError(f"InternVideo2 checkpoint is missing {len(missing)} key(s): {', '.join(missing[:8])}")
    return kept, skipped


def _skipped_summary(skipped: list[str], prefix: str) -> str:
    groups = Counter(prefix + _group(k[len(prefix) :]) if k.startswith(prefix) else k.split(".")[0] for k in skipped)
    return ", ".join(f"{name} ({count})" for name, count in groups.items()) or "nothing"


@contextmanager
def _naming_the_file(file: str | None):
    """For a checkpoint read from ``file``: what does not fit (a ``KeyError`` / ``TypeError`` / ``ValueError``) as one
    ``ValueError`` naming the file; for a state dict passed in (``file`` None), the errors as they are."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as err:
        if file is None:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise ValueError(f"{file}: {message}") from None


def load_internvideo2(
    path_or_state_dict, config: InternVideo2Config | None = None, dtype: torch.dtype | None = None, *, allow_pickle: bool = False
) -> InternVideo2VisionEncoder:
    """Build a frozen, eval-mode encoder from an official Stage2 ``.pt`` (path or loaded object).

    The config is inferred from shapes unless given (then it is checked against them). Weights keep the
    checkpoint's storage (memory-mapped for files; shared with a given dict) unless ``dtype`` converts
    them; without ``dtype`` all take the patch conv's dtype. Skipped keys are logged at INFO level.
    """
    from_file = isinstance(path_or_state_dict, (str, Path))
    raw = read_checkpoint(path_or_state_dict, allow_pickle) if from_file else path_or_state_dict
    source = str(path_or_state_dict) if from_file else "state dict"
    with _naming_the_file(source if from_file else None):
        state = unwrap_state_dict(raw)
        prefix = find_vision_prefix(state)
        if config is None:
            config = infer_internvideo2_config(state, prefix)
        else:
            _check_depth(state, prefix, config)
        with torch.device("meta"):
            model = InternVideo2VisionEncoder(config)
        kept, skipped = select_encoder_tensors(state, prefix, model.state_dict())
    logger.info(
        "InternVideo2 (%s): loaded %d tensors under '%s' for block %d of %d; skipped %d keys not needed for the "
        "features: %s", source, len(kept), prefix, config.num_blocks_run - 1, config.depth, len(skipped),
        _skipped_summary(skipped, prefix),
    )
    target = dtype if dtype is not None else kept[_ANCHOR].dtype
    model.load_state_dict({k: v.to(target) if v.is_floating_point() else v for k, v in kept.items()}, assign=True)
    return model.eval().requires_grad_(False)

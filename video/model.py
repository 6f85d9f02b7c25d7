"""VideoGLaMM composed from transformers' Phi-3, ``video.internvideo2`` and ``video.sam2``, loaded from a
local VideoGLaMM folder (layout and sources: docs/videoglamm_layout.md).

Checkpoint key groups: Phi-3 under ``model.`` + ``lm_head.``; ``model.image_mm_projector.*`` (CLIP ->
LLM) and ``model.mm_projector.*`` (InternVideo2 -> LLM); ``model.text_hidden_fcs.0.*``; SAM2 in the
original naming under ``model.visual_model.``; the InternVideo2 tower under ``model.vision_tower.``
(used when no ``.pt`` is given). The CLIP towers are not part of this module: they load from their own
folder with ``litelvlm.clip.load_clip_towers``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from litelvlm.checkpoint import CheckpointDir, LoadSummary, split_rotary_buffers
from litelvlm.clip import require_local_dir
from litelvlm.config_bounds import PHI3_MINI, Released, check_llm_config, check_select_layer, check_sizes
from litelvlm.glamm.model import rope_parameters
from litelvlm.jsonfile import read_json_object
from litelvlm.lvlm import (LVLMArchitecture, build_llm, check_rotary_buffers, load_into, mlp_from_weights, pick_attn_implementation,
                           scaled_depth)

from .internvideo2 import InternVideo2Config, InternVideo2VisionEncoder, load_internvideo2, preprocess_internvideo2_frames
from .layout import adaptive_pool_tokens
from .sam2 import RELEASED_HIERA_LAYOUTS, VIDEOGLAMM_SAM2_PREFIX, Sam2Architecture, Sam2PixelDecoder

__all__ = [
    "VideoGLaMMConfig",
    "VideoGLaMM",
    "VideoGLaMMArchitecture",
    "VideoGLaMMTokenizer",
    "load_videoglamm_tokenizer",
    "load_generation_config",
    "transformers5_sliding_window",
    "adaptive_pool_tokens",
    "hiera_large_sam2",
    "PHI3_FIELDS",
    "IMAGE_TOKEN_INDEX",
    "SEG_TOKEN",
    "CLIP_TOWER_NAME",
    "VIDEO_TOWER_NAME",
]

log = logging.getLogger(__name__)

PHI3_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "hidden_act", "max_position_embeddings", "original_max_position_embeddings", "rms_norm_eps", "rope_theta",
    "rope_scaling", "sliding_window", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
    "resid_pdrop", "embd_pdrop", "attention_dropout",
)
IMAGE_TOKEN_INDEX = -200  # the <image> placeholder id inserted by VideoGLaMM's tokenizer_image_token
SEG_TOKEN = "[SEG]"
CLIP_TOWER_NAME = "openai/clip-vit-large-patch14-336"
VIDEO_TOWER_NAME = "OpenGVLab/InternVideo2-Stage2_1B-224p-f4/InternVideo2-stage2_1b-224p-f4.pt"

LLM_PREFIXES = ("model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.")
IMAGE_PROJECTOR_PREFIX = "model.image_mm_projector."
VIDEO_PROJECTOR_PREFIX = "model.mm_projector."
FCS_PREFIX = "model.text_hidden_fcs.0."
VIDEO_TOWER_PREFIX = "model.vision_tower."
VIDEO_ENCODER_PREFIX = "model.vision_tower.vision_encoder."
CLIP_TOWER_PREFIX = "model.image_vision_tower."
KNOWN_PREFIXES = LLM_PREFIXES + (
    IMAGE_PROJECTOR_PREFIX, VIDEO_PROJECTOR_PREFIX, FCS_PREFIX, VIDEOGLAMM_SAM2_PREFIX, VIDEO_TOWER_PREFIX, CLIP_TOWER_PREFIX,
)
# Parts of the saved InternVideo2 tower that never produce the features VideoGLaMM uses.
UNUSED_VIDEO_TOWER_PARTS = ("clip_", "final_clip_decoder")
PROJECTOR_TYPE = re.compile(r"^(linear|mlp(\d+)x_gelu)$")
VIDEOGLAMM_HEADS = Released("VideoGLaMM", {"out_dim": 256})  # the [SEG] projection's output (SAM2's prompt width)


# ----------------------------------------------------------------------------- config


def transformers5_sliding_window(released: int | None) -> int | None:
    """The ``sliding_window`` to give transformers 5's Phi-3 for a checkpoint's config value.

    The released run (transformers 4.41, eager) masks keys with ``i - j > sliding_window``
    (``_make_causal_mask(diagonal=-sliding_window - 1)``): each query sees ``sliding_window + 1`` keys.
    transformers 5 keeps ``j > i - sliding_window``: exactly ``sliding_window`` keys. VideoGLaMM's prompts
    (~3,400 tokens) exceed the window (2047), so the value is raised by one to give the released states."""
    return None if released is None else int(released) + 1



def _check_projector_type(kind: str, what: str) -> str:
    if not isinstance(kind, str) or not PROJECTOR_TYPE.match(kind):
        raise ValueError(f"{what} is {kind!r}; supported: 'linear' and 'mlp<N>x_gelu' (an identity projector cannot map to the LLM width)")
    return kind


@dataclass
class VideoGLaMMConfig:
    """What VideoGLaMM's ``config.json`` (plus its hard-coded constants) decides beyond the LLM itself."""

    llm_fields: dict
    select_layer: int = -2
    num_frames: int = 16  # NUM_FRAMES: frames sampled for both encoders
    chunk_size: int = 4  # CHUNK_SIZE: frames per InternVideo2 clip
    image_pool_side: int = 12  # CLIP 24x24 -> 12x12 after the projector
    video_pool_side: int = 8  # InternVideo2 16x16 -> 8x8 after the projector
    image_projector_type: str = "mlp2x_gelu"
    video_projector_type: str = "mlp2x_gelu"
    vision_tower: str = CLIP_TOWER_NAME  # the CLIP tower (GLaMM's name for it)
    video_tower: str = VIDEO_TOWER_NAME
    seg_token_idx: int | None = None
    out_dim: int = 256
    use_im_start_end: bool = False

    @classmethod
    def from_dir(cls, path: Path) -> "VideoGLaMMConfig":
        file = Path(path) / "config.json"
        return cls.from_dict(read_json_object(file, "VideoGLaMM config"), str(file))

    @classmethod
    def from_dict(cls, raw: dict, where: str = "config") -> "VideoGLaMMConfig":
        """Read a VideoGLaMM ``config.json`` dict; raises naming what makes it unusable (sizes beyond Phi-3-mini's
        bounds, ``litelvlm.config_bounds``, included: before any model is built)."""
        fields = {k: raw[k] for k in PHI3_FIELDS if raw.get(k) is not None}
        for required in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            if required not in fields:
                raise ValueError(f"{where} is not a VideoGLaMM config: it lacks the Phi-3 field {required!r}")
        check_llm_config(fields, PHI3_MINI, where)
        check_sizes(raw, VIDEOGLAMM_HEADS, where)
        if raw.get("attention_bias"):
            raise ValueError(f"{where}: attention_bias=true is not a Phi-3 layout (transformers' Phi3 has no attention biases)")
        if raw.get("use_sam2") is False:
            raise ValueError(f"{where}: use_sam2=false (a SAM-1 VideoGLaMM variant); only the SAM2 release is supported")
        fields["rope_parameters"] = rope_parameters(fields.pop("rope_theta", 10000.0), fields.pop("rope_scaling", None))
        if "sliding_window" in fields:
            fields["sliding_window"] = transformers5_sliding_window(fields["sliding_window"])
        return cls(
            llm_fields=fields,
            select_layer=check_select_layer(raw.get("mm_vision_select_layer", -2), where),
            image_projector_type=_check_projector_type(raw.get("image_mm_projector_type", "linear"), f"{where}: image_mm_projector_type"),
            video_projector_type=_check_projector_type(raw.get("mm_projector_type", "linear"), f"{where}: mm_projector_type"),
            vision_tower=str(raw.get("image_mm_vision_tower", raw.get("image_vision_tower", CLIP_TOWER_NAME))),
            video_tower=str(raw.get("mm_vision_tower", raw.get("vision_tower", VIDEO_TOWER_NAME))),
            seg_token_idx=raw.get("seg_token_idx"),
            out_dim=int(raw.get("out_dim", 256)),
            use_im_start_end=bool(raw.get("mm_use_im_start_end", False)),
        )


# ----------------------------------------------------------------------------- small building blocks


def _require_biases(tensors: dict[str, torch.Tensor], what: str) -> None:
    """VideoGLaMM's projector and [SEG] Linear layers all have biases: a missing one is a broken checkpoint."""
    missing = sorted(k[: -len("weight")] + "bias" for k in tensors if k.endswith("weight") and k[: -len("weight")] + "bias" not in tensors)
    if missing:
        raise ValueError(f"{what}: checkpoint lacks the Linear biases {missing}")


def _projector_from_weights(kind: str, tensors: dict[str, torch.Tensor], what: str) -> nn.Module:
    """The module of a VideoGLaMM projector type, sized from its weights (``build_vision_projector``)."""
    _require_biases(tensors, what)
    if kind == "linear":
        if "weight" not in tensors:
            raise ValueError(f"{what}: type 'linear' expects 'weight' and 'bias', found {sorted(tensors)}")
        out_f, in_f = tensors["weight"].shape
        return nn.Linear(in_f, out_f)
    module = mlp_from_weights(tensors, nn.GELU, what)
    depth = int(PROJECTOR_TYPE.match(kind).group(2))
    linears = sum(isinstance(m, nn.Linear) for m in module)
    if linears != depth:
        raise ValueError(f"{what}: config says {kind!r} ({depth} Linear layers) but the checkpoint holds {linears}")
    return module


def _text_hidden_fcs_from_weights(tensors: dict[str, torch.Tensor]) -> nn.Module:
    """Linear -> ReLU -> Linear (VideoGLaMM's trailing Dropout(0) has no weights and does nothing)."""
    _require_biases(tensors, "text_hidden_fcs")
    return mlp_from_weights(tensors, lambda: nn.ReLU(inplace=True), "text_hidden_fcs")


def _linear_dims(module: nn.Module) -> tuple[int, int]:
    """(in_features of the first Linear, out_features of the last Linear)."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(module).__name__} has no Linear layer")
    return linears[0].in_features, linears[-1].out_features


def _first_param(module: nn.Module) -> torch.Tensor:
    return next(module.parameters())


# ----------------------------------------------------------------------------- loading pieces


def _check_key_groups(keys: list[str], root: Path, external_video_tower: bool) -> None:
    """Every key must belong to a known group; skipped groups are logged."""
    unknown = [k for k in keys if not k.startswith(KNOWN_PREFIXES)]
    if unknown:
        raise ValueError(f"{root}: unexpected checkpoint keys {unknown[:8]} ({len(unknown)} in all)")
    clip = [k for k in keys if k.startswith(CLIP_TOWER_PREFIX)]
    if clip:
        log.info("skipping %d CLIP tower keys (%s): CLIP loads from its own folder", len(clip), CLIP_TOWER_PREFIX)
    tower = [k for k in keys if k.startswith(VIDEO_TOWER_PREFIX)]
    if tower and external_video_tower:
        log.info("skipping the checkpoint's InternVideo2 copy (%d keys under %s): video_tower was given", len(tower), VIDEO_TOWER_PREFIX)


def _load_llm(ckpt: CheckpointDir, config: VideoGLaMMConfig, device, dtype, attn_implementation: str,
              summary: LoadSummary) -> nn.Module:
    """Phi-3 from the checkpoint; rotary ``inv_freq`` buffers (saved by some transformers-4 versions) are
    checked against the config and ignored."""
    from transformers import Phi3Config, Phi3ForCausalLM

    keys, rotary_keys = split_rotary_buffers([k for k in ckpt.keys() if k.startswith(LLM_PREFIXES)])
    if "model.embed_tokens.weight" not in keys:
        raise ValueError(f"{ckpt.path}: no model.embed_tokens.weight (the Phi-3 weights)")
    rows = ckpt.load(["model.embed_tokens.weight"])["model.embed_tokens.weight"].shape[0]
    llm = build_llm(Phi3Config, Phi3ForCausalLM, dict(config.llm_fields, vocab_size=rows), attn_implementation=attn_implementation)
    cast = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731 - applied per tensor as shards are read
    stored: dict[str, torch.dtype] = {}
    tensors = ckpt.load(keys, cast, stored)
    summary.add_loaded("llm", tensors, stored)
    llm = load_into(llm, tensors, "Phi-3", device, dtype)
    check_rotary_buffers(ckpt.load(rotary_keys), llm, str(ckpt.path))
    summary.ignored_buffers = rotary_keys
    return llm


def _load_mlp(ckpt: CheckpointDir, prefix: str, build, what: str, device, dtype) -> nn.Module:
    """The module ``build(tensors)`` makes from the tensors under ``prefix``, with those tensors assigned."""
    tensors = ckpt.load_prefix(prefix, lambda t: t.to(device=device, dtype=dtype))
    if not tensors:
        raise ValueError(f"{ckpt.path}: no {prefix}* keys (the {what})")
    return load_into(build(tensors), tensors, what, device, dtype)


def _load_pixel_decoder(ckpt: CheckpointDir, device, dtype) -> Sam2PixelDecoder:
    sd = ckpt.load_prefix(VIDEOGLAMM_SAM2_PREFIX)
    if not sd:
        raise ValueError(f"{ckpt.path}: no {VIDEOGLAMM_SAM2_PREFIX}* keys (the SAM2 pixel decoder)")
    return Sam2PixelDecoder.from_original_state_dict(sd, dtype=dtype).to(device).eval().requires_grad_(False)


def _load_video_encoder(ckpt: CheckpointDir, video_tower, device, dtype) -> InternVideo2VisionEncoder:
    """From the ``.pt`` at ``video_tower`` when given, else from the checkpoint's ``model.vision_tower`` copy."""
    if video_tower is not None:
        from litelvlm.hub import resolve_file

        path = resolve_file(video_tower, "InternVideo2 video tower (.pt)")  # a local file or owner/name/file.pt on the Hub
        log.info("InternVideo2 from %s", path)
        return load_internvideo2(path, dtype=dtype).to(device)
    keys = ckpt.with_prefix(VIDEO_ENCODER_PREFIX)
    if not keys:
        raise ValueError(
            f"{ckpt.path} holds no InternVideo2 weights ({VIDEO_ENCODER_PREFIX}*): pass video_tower= the "
            "InternVideo2-Stage2_1B-224p-f4 .pt file"
        )
    needed = [k for k in keys if not k[len(VIDEO_ENCODER_PREFIX):].startswith(UNUSED_VIDEO_TOWER_PARTS)]
    log.info("InternVideo2 from the checkpoint's copy under %s (%d of %d tower keys read)",
             VIDEO_TOWER_PREFIX, len(needed), len(ckpt.with_prefix(VIDEO_TOWER_PREFIX)))
    return load_internvideo2(ckpt.load(needed), dtype=dtype).to(device)


# ----------------------------------------------------------------------------- the model


class VideoGLaMM(nn.Module):
    """Phi-3 + CLIP and InternVideo2 projectors + [SEG] projection + SAM2 pixel decoder + InternVideo2 encoder.

    The CLIP towers live apart (``litelvlm.clip.load_clip_towers``); this module starts from their
    layer -2 patch states.
    """

    def __init__(self, llm: nn.Module, image_projector: nn.Module, video_projector: nn.Module, text_hidden_fcs: nn.Module,
                 pixel_decoder: Sam2PixelDecoder, video_encoder: InternVideo2VisionEncoder, config: VideoGLaMMConfig):
        super().__init__()
        self.llm = llm
        self.image_projector = image_projector
        self.video_projector = video_projector
        self.text_hidden_fcs = text_hidden_fcs
        self.pixel_decoder = pixel_decoder
        self.video_encoder = video_encoder
        self.config = config
        self._check_widths()

    def _check_widths(self) -> None:
        hidden = self.llm.config.hidden_size
        video_in, video_out = _linear_dims(self.video_projector)
        fcs_in, fcs_out = _linear_dims(self.text_hidden_fcs)
        checks = {
            "image projector output": (_linear_dims(self.image_projector)[1], hidden),
            "video projector input": (video_in, self.video_encoder.config.width),
            "video projector output": (video_out, hidden),
            "text_hidden_fcs input": (fcs_in, hidden),
            "text_hidden_fcs output": (fcs_out, self.pixel_decoder.hidden_size),
            "InternVideo2 frames per clip": (self.video_encoder.config.num_frames, self.config.chunk_size),
        }
        wrong = {k: f"{a} != {b}" for k, (a, b) in checks.items() if a != b}
        if wrong:
            raise ValueError(f"VideoGLaMM parts do not fit together: {wrong}")

    @classmethod
    def from_checkpoint(cls, path: str | Path, video_tower: str | Path | None = None, device="cpu",
                        dtype: torch.dtype = torch.float32, attn_implementation: str | None = "sdpa") -> "VideoGLaMM":
        """Load from a local VideoGLaMM folder, shard by shard, casting each tensor as it is read.

        ``video_tower``: the InternVideo2-Stage2 ``.pt`` (as the released code loads it); None uses the
        copy saved in the checkpoint under ``model.vision_tower.``. Unknown keys, missing groups and
        missing/unexpected tensors raise errors that name them.
        """
        from litelvlm.hub import PATTERNS

        root = require_local_dir(path, "VideoGLaMM checkpoint", patterns=PATTERNS["videoglamm"])
        config = VideoGLaMMConfig.from_dir(root)
        ckpt = CheckpointDir(root)
        _check_key_groups(ckpt.keys(), root, external_video_tower=video_tower is not None)
        summary = LoadSummary(root)
        llm = _load_llm(ckpt, config, device, dtype, pick_attn_implementation(device, attn_implementation), summary)
        image_projector = _load_mlp(ckpt, IMAGE_PROJECTOR_PREFIX, lambda sd: _projector_from_weights(
            config.image_projector_type, sd, "image_mm_projector"), "image_mm_projector", device, dtype)
        video_projector = _load_mlp(ckpt, VIDEO_PROJECTOR_PREFIX, lambda sd: _projector_from_weights(
            config.video_projector_type, sd, "mm_projector"), "mm_projector", device, dtype)
        fcs = _load_mlp(ckpt, FCS_PREFIX, _text_hidden_fcs_from_weights, "text_hidden_fcs", device, dtype)
        decoder = _load_pixel_decoder(ckpt, device, dtype)
        encoder = _load_video_encoder(ckpt, video_tower, device, dtype)
        model = cls(llm, image_projector, video_projector, fcs, decoder, encoder, config)
        model.load_summary = summary
        log.info("%s", summary)
        return model

    @classmethod
    def from_architecture(cls, arch: "VideoGLaMMArchitecture", device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0,
                          attn_implementation: str | None = None) -> "VideoGLaMM":
        """Random weights of ``arch`` (for speed and memory benchmarks: same shapes and token counts)."""
        from transformers import Phi3Config, Phi3ForCausalLM

        config = arch.config()
        llm_config = Phi3Config(**config.llm_fields)
        llm_config._attn_implementation = pick_attn_implementation(device, attn_implementation)
        torch.manual_seed(seed)
        w = arch.llm_width
        with torch.device(device):
            llm = Phi3ForCausalLM(llm_config)
            image_projector = nn.Sequential(nn.Linear(arch.clip_width, w), nn.GELU(), nn.Linear(w, w))
            video_projector = nn.Sequential(nn.Linear(arch.video.width, w), nn.GELU(), nn.Linear(w, w))
            fcs = nn.Sequential(nn.Linear(w, w), nn.ReLU(inplace=True), nn.Linear(w, arch.sam2.hidden_size))
            decoder = Sam2PixelDecoder(arch.sam2.to_transformers())
            encoder = InternVideo2VisionEncoder(arch.video)
        parts = [m.to(dtype).eval().requires_grad_(False) for m in (llm, image_projector, video_projector, fcs, decoder, encoder)]
        return cls(*parts, config=config)

    # ------------------------------------------------------------------ properties

    @property
    def embed_tokens(self) -> nn.Embedding:
        """The Phi-3 input embedding (call it on token ids)."""
        return self.llm.get_input_embeddings()

    @property
    def hidden_size(self) -> int:
        return self.llm.config.hidden_size

    @property
    def image_feature_width(self) -> int:
        """Width of the CLIP states the image projector takes (1024 for ViT-L/14-336)."""
        return _linear_dims(self.image_projector)[0]

    # ------------------------------------------------------------------ visual tokens

    def project_image_tokens(self, clip_states: torch.Tensor) -> torch.Tensor:
        """CLIP layer -2 patch states (F, N, 1024) -> (F, N, hidden) through ``image_mm_projector``
        (any N: pruned tokens too). Pool afterwards with ``pool_image_tokens``."""
        if clip_states.ndim != 3 or clip_states.shape[-1] != self.image_feature_width:
            raise ValueError(f"clip_states must be (frames, N, {self.image_feature_width}), got {tuple(clip_states.shape)}")
        weight = _first_param(self.image_projector)
        return self.image_projector(clip_states.to(weight.device, weight.dtype))

    def pool_image_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Projected CLIP tokens (F, N, hidden) of a square grid -> (F, 144, hidden) (12x12 pooling)."""
        return adaptive_pool_tokens(tokens, self.config.image_pool_side)

    def video_token_grids(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """InternVideo2 pixel values (T, 3, S, S), T a multiple of 4 -> per-frame grids (T, G, G, 1408)
        (4-frame clips encoded independently, block -2, CLS dropped)."""
        if pixel_values.ndim != 4:
            raise ValueError(f"pixel_values must be (T, 3, S, S), got {tuple(pixel_values.shape)}")
        weight = _first_param(self.video_encoder)
        video = pixel_values.to(weight.device, weight.dtype).permute(1, 0, 2, 3)[None]
        return self.video_encoder.frame_token_grids(video)[0]

    def project_video_tokens(self, grids: torch.Tensor) -> torch.Tensor:
        """Per-frame InternVideo2 grids (F, G, G, 1408) -> (F, 64, hidden): ``mm_projector`` per token, then
        8x8 adaptive average pooling (project first, then pool, as VideoGLaMM)."""
        width = self.video_encoder.config.width
        if grids.ndim != 4 or grids.shape[1] != grids.shape[2] or grids.shape[-1] != width:
            raise ValueError(f"grids must be (frames, G, G, {width}), got {tuple(grids.shape)}")
        weight = _first_param(self.video_projector)
        tokens = self.video_projector(grids.flatten(1, 2).to(weight.device, weight.dtype))
        return adaptive_pool_tokens(tokens, self.config.video_pool_side)

    def encode_video(self, frames) -> torch.Tensor:
        """The sampled RGB frames (F, H, W, 3) uint8, F a multiple of 4 -> video tokens (F, 64, hidden):
        VideoGLaMM's InternVideo2 preprocessing, encoder, projector and 8x8 pooling."""
        pixel_values = preprocess_internvideo2_frames(list(frames), self.video_encoder.config.image_size)
        return self.project_video_tokens(self.video_token_grids(pixel_values))

    # ------------------------------------------------------------------ language side

    def seg_prompts(self, hidden: torch.Tensor) -> torch.Tensor:
        """Last-layer hidden states before each [SEG] (n, hidden) -> SAM2 prompt embeddings (n, 256)."""
        if hidden.ndim != 2 or hidden.shape[-1] != self.hidden_size:
            raise ValueError(f"hidden must be (n, {self.hidden_size}), got {tuple(hidden.shape)}")
        weight = _first_param(self.text_hidden_fcs)
        return self.text_hidden_fcs(hidden.to(weight.device, weight.dtype))

    def prefill_hidden(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Last-layer hidden states of one forward over ``inputs_embeds`` (no LM head, no cache); ``attention_mask``
        None: causal attention only."""
        out = self.llm.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state


# ----------------------------------------------------------------------------- architectures for benchmarks


def hiera_large_sam2() -> Sam2Architecture:
    """SAM2.0 Hiera-L at 1024 px (VideoGLaMM's ``sam2_hiera_l.yaml``)."""
    stages = (2, 6, 36, 4)
    layout = RELEASED_HIERA_LAYOUTS[(144, stages)]
    return Sam2Architecture(
        image_size=layout.image_size, embed_dim=144, num_heads=layout.num_heads, blocks_per_stage=stages,
        window_spec=tuple(layout.window_spec), global_attention_blocks=tuple(layout.global_attention_blocks),
        window_pos_embed_bkg=(7, 7),
    )


def _scaled_sam2(sam2: Sam2Architecture, width: float, depth: float) -> Sam2Architecture:
    """Hiera trunk widths times ``width`` (heads kept), blocks per stage times ``depth`` (at least 1), global
    attention blocks moved proportionally inside the third stage; SAM heads, memory and 1024 px unchanged."""
    embed = max(1, round(sam2.embed_dim * width / sam2.num_heads)) * sam2.num_heads
    stages = tuple(max(1, round(b * depth)) for b in sam2.blocks_per_stage)
    old_start, old_third = sum(sam2.blocks_per_stage[:2]), sam2.blocks_per_stage[2]
    start, third = sum(stages[:2]), stages[2]
    moved = {start + min(third - 1, round((g - old_start) * third / old_third))
             for g in sam2.global_attention_blocks if old_start <= g < old_start + old_third}
    return replace(sam2, embed_dim=embed, blocks_per_stage=stages, global_attention_blocks=tuple(sorted(moved)) or (start + third - 1,))


def _scaled_video(video: InternVideo2Config, width: float, depth: float) -> InternVideo2Config:
    """Width times ``width`` with an even head count (head dim 88 kept: the 3-D sin-cos position table needs
    width % 16 == 0), depth times ``depth`` (at least 2: features come from block -2)."""
    vh = max(2, round(video.width * width / video.head_dim / 2) * 2)
    vw = vh * video.head_dim
    return replace(video, width=vw, num_heads=vh, depth=scaled_depth(video.depth, depth),
                   mlp_hidden_dim=max(8, round(video.mlp_hidden_dim * width / 8) * 8))


@dataclass(frozen=True)
class VideoGLaMMArchitecture(LVLMArchitecture):
    """Every shape that decides VideoGLaMM: CLIP towers (built by the caller), Phi-3, InternVideo2, SAM2.

    ``full()`` is the released model; the CLIP field names match ``litelvlm.glamm.build.GLaMMArchitecture``.
    """

    llm_width: int = 3072
    llm_layers: int = 32
    llm_heads: int = 32
    llm_mlp: int = 8192
    llm_vocab: int = 32012  # Phi-3's 32011 tokens + [SEG] (VideoGLaMM resizes the embedding to the tokenizer)
    llm_sliding_window: int | None = 2047  # config.json's value (the released run sees one key more)
    video: InternVideo2Config = field(default_factory=InternVideo2Config.stage2_1b_224p_f4)
    sam2: Sam2Architecture = field(default_factory=hiera_large_sam2)
    num_frames: int = 16
    image_pool_side: int = 12
    video_pool_side: int = 8

    @classmethod
    def full(cls) -> "VideoGLaMMArchitecture":
        """CLIP ViT-L/14-336 + Phi-3-mini-4k + InternVideo2-Stage2 1B (block -2) + SAM2 Hiera-L."""
        return cls()

    def scaled(self, width: float, depth: float) -> "VideoGLaMMArchitecture":
        """Every component's widths times ``width`` and depths times ``depth`` (head widths kept); token
        counts (576 CLIP and 256 InternVideo2 tokens per frame, 16 frames, 1024 px SAM2) are unchanged."""
        return replace(self, **self.scaled_shared_fields(width, depth), video=_scaled_video(self.video, width, depth),
                       sam2=_scaled_sam2(self.sam2, width, depth))

    def config(self) -> VideoGLaMMConfig:
        """The ``VideoGLaMMConfig`` of this architecture (Phi-3-mini-4k token ids and settings)."""
        fields = dict(
            vocab_size=self.llm_vocab, hidden_size=self.llm_width, intermediate_size=self.llm_mlp,
            num_hidden_layers=self.llm_layers, num_attention_heads=self.llm_heads, num_key_value_heads=self.llm_heads,
            max_position_embeddings=4096, original_max_position_embeddings=4096, rms_norm_eps=1e-5,
            sliding_window=transformers5_sliding_window(self.llm_sliding_window), tie_word_embeddings=False, bos_token_id=1, eos_token_id=32000,
            pad_token_id=0, rope_parameters=rope_parameters(10000.0, None),
        )
        return VideoGLaMMConfig(
            llm_fields=fields, num_frames=self.num_frames, chunk_size=self.video.num_frames,
            image_pool_side=self.image_pool_side, video_pool_side=self.video_pool_side,
            seg_token_idx=self.llm_vocab - 1, out_dim=self.sam2.hidden_size,
        )

    def describe(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- tokenizer


class VideoGLaMMTokenizer(NamedTuple):
    """The checkpoint's tokenizer and the ids VideoGLaMM needs; unpacks as ``tokenizer, ids``.

    ``ids``: ``"seg"`` (the ``[SEG]`` id), ``"image"`` (``IMAGE_TOKEN_INDEX`` = -200, not a vocabulary id:
    the placeholder replaced by visual tokens) and ``"eos"`` (the ids that end generation: the
    checkpoint's ``generation_config.json`` ``eos_token_id``, Phi-3's 32000/32001/32007, else the
    tokenizer's eos).
    """

    tokenizer: object
    ids: dict


def _eos_ids(root: Path, tokenizer) -> list[int]:
    file = root / "generation_config.json"
    eos = read_json_object(file, "generation config").get("eos_token_id") if file.exists() else None
    if eos is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{root}: neither generation_config.json nor the tokenizer names an eos token")
        return [tokenizer.eos_token_id]
    return [eos] if isinstance(eos, int) else list(eos)


def load_generation_config(path: str | Path) -> dict:
    """The sampling settings of the checkpoint's ``generation_config.json`` with transformers' defaults
    (do_sample False, temperature 1.0, top_k 50, top_p 1.0): what ``generate()`` uses when the released
    code passes none of them."""
    file = Path(path) / "generation_config.json"
    raw = read_json_object(file, "generation config") if file.exists() else {}
    defaults = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0}
    return {k: (raw[k] if raw.get(k) is not None else v) for k, v in defaults.items()}


def load_videoglamm_tokenizer(path: str | Path) -> VideoGLaMMTokenizer:
    """The Phi-3 sentencepiece tokenizer saved with a VideoGLaMM checkpoint, tokenizing as the released
    transformers 4.41 slow tokenizer does (``litelvlm.tokenizer``, rules 4.41: a prompt starting with
    ``<|system|>`` keeps its leading ``▁``), and its ``seg`` / ``image`` / ``eos`` ids. Raises when ``[SEG]``
    is unknown or disagrees with ``seg_token_idx`` in config.json."""
    from litelvlm.tokenizer import ReleasedLlamaTokenizer

    from litelvlm.hub import PATTERNS

    root = require_local_dir(path, "VideoGLaMM checkpoint", must_contain=("tokenizer.model",), patterns=PATTERNS["videoglamm"])
    tokenizer = ReleasedLlamaTokenizer.from_pretrained(root, rules="4.41")
    seg = tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    if seg is None or seg == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer in {root} does not know the {SEG_TOKEN} token: wrong checkpoint folder?")
    config_file = root / "config.json"
    expected = read_json_object(config_file, "VideoGLaMM config").get("seg_token_idx") if config_file.exists() else None
    if expected is not None and expected != seg:
        raise ValueError(f"{root}: tokenizer gives {SEG_TOKEN} id {seg} but config.json has seg_token_idx {expected}")
    return VideoGLaMMTokenizer(tokenizer, {"seg": seg, "image": IMAGE_TOKEN_INDEX, "eos": _eos_ids(root, tokenizer)})

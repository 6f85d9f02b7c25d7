"""GLaMM composed from transformers parts, loaded from a local GLaMM-RefSeg folder (FACTS §2).

Checkpoint keys: LLaMA under ``model.`` + ``lm_head.``; ``model.mm_projector.{0,2}``;
``model.text_hidden_fcs.0.{0,2}``; ``model.grounding_encoder.*`` in segment-anything naming;
``model.region_encoder.*`` and ``model.vision_tower.*`` are reported and skipped (the CLIP tower
comes from its own folder).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import CheckpointDir, LoadSummary, split_rotary_buffers
from ..clip import require_local_dir
from ..config_bounds import LLAMA_7B, check_llm_config, check_select_layer
from ..jsonfile import read_json_object
from ..lvlm import build_llm, check_rotary_buffers, load_into, mlp_from_weights
from ..sam import GroundingEncoder

__all__ = ["GLaMMConfig", "GLaMM", "LLAMA_FIELDS", "SKIPPED_PREFIXES", "rope_parameters"]

log = logging.getLogger(__name__)

LLAMA_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "rope_scaling", "attention_bias", "mlp_bias", "tie_word_embeddings", "bos_token_id", "eos_token_id",
    "pad_token_id", "head_dim",
)
SKIPPED_PREFIXES = ("model.region_encoder.", "model.vision_tower.")
LLM_PREFIXES = ("model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.")


def rope_parameters(theta: float, scaling: dict | None) -> dict:
    """transformers v5 ``rope_parameters`` from a v4-style config's ``rope_theta`` / ``rope_scaling``."""
    params = {"rope_type": "default", "rope_theta": float(theta)}
    if scaling:
        params.update({k: v for k, v in scaling.items() if k != "type"})
        params["rope_type"] = scaling.get("rope_type", scaling.get("type", "default"))
    return params


@dataclass
class GLaMMConfig:
    """What GLaMM's ``config.json`` decides beyond the LLM itself."""

    llm_fields: dict
    select_layer: int = -2
    use_im_start_end: bool = True
    vision_tower: str = "openai/clip-vit-large-patch14-336"

    @classmethod
    def from_dir(cls, path: Path) -> "GLaMMConfig":
        """Read ``config.json``; its sizes are checked against LLaMA-7B's (``litelvlm.config_bounds``) here, before
        any model is built."""
        file = Path(path) / "config.json"
        raw = read_json_object(file, "GLaMM config")
        fields = {k: raw[k] for k in LLAMA_FIELDS if raw.get(k) is not None}
        for required in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            if required not in fields:
                raise ValueError(f"{path} is not a GLaMM checkpoint directory: its config.json lacks the LLaMA field {required!r}")
        check_llm_config(fields, LLAMA_7B, str(file))
        fields["rope_parameters"] = rope_parameters(fields.pop("rope_theta", 10000.0), fields.pop("rope_scaling", None))
        return cls(
            llm_fields=fields,
            select_layer=check_select_layer(raw.get("mm_vision_select_layer", -2), str(file)),
            use_im_start_end=bool(raw.get("mm_use_im_start_end", True)),
            vision_tower=str(raw.get("mm_vision_tower", raw.get("vision_tower", cls.vision_tower))),
        )


class GLaMM(nn.Module):
    """LLM + mm_projector + text_hidden_fcs + SAM grounding encoder (the CLIP towers live apart)."""

    def __init__(self, llm: nn.Module, mm_projector: nn.Module, text_hidden_fcs: nn.Module, grounding: GroundingEncoder, config: GLaMMConfig):
        super().__init__()
        self.llm = llm
        self.mm_projector = mm_projector
        self.text_hidden_fcs = text_hidden_fcs
        self.grounding = grounding
        self.config = config

    @classmethod
    def from_checkpoint(cls, path: str | Path, device="cpu", dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa") -> "GLaMM":
        """Load from a GLaMM-RefSeg folder or Hub id (``MBZUAI/GLaMM-RefSeg``), shard by shard, casting each
        tensor as it is read.

        Region-encoder and vision-tower keys are skipped; the rotary ``inv_freq`` buffers transformers 4
        saved per layer are checked against the config and ignored; any other unexpected or missing key
        raises naming it. ``model.load_summary`` tells what was read (and the dtypes it was stored in).
        """
        from ..hub import PATTERNS

        root = require_local_dir(path, "GLaMM checkpoint", patterns=PATTERNS["glamm"])
        config = GLaMMConfig.from_dir(root)
        ckpt = CheckpointDir(root)
        keys, rotary_keys = split_rotary_buffers(ckpt.keys())
        summary = LoadSummary(root, ignored_buffers=rotary_keys)
        for prefix in SKIPPED_PREFIXES:
            if skipped := [k for k in keys if k.startswith(prefix)]:
                summary.skipped[prefix.split(".")[1]] = len(skipped)
        known = LLM_PREFIXES + SKIPPED_PREFIXES + ("model.mm_projector.", "model.text_hidden_fcs.", "model.grounding_encoder.")
        unknown = [k for k in keys if not k.startswith(known)]
        if unknown:
            raise ValueError(f"{root}: unexpected checkpoint keys {unknown[:8]} ({len(unknown)} in all)")

        cast = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731 - applied per tensor as shards are read
        llm = cls._load_llm(ckpt, [k for k in keys if k.startswith(LLM_PREFIXES)], config, device, dtype, attn_implementation, summary)
        check_rotary_buffers(ckpt.load(rotary_keys), llm, f"{root}")
        stored: dict[str, torch.dtype] = {}
        projector_sd = ckpt.load_prefix("model.mm_projector.", cast, stored)
        projector = load_into(mlp_from_weights(projector_sd, nn.GELU, "mm_projector"), projector_sd, "mm_projector", device, dtype)
        summary.add_loaded("mm_projector", projector_sd, stored)
        stored = {}
        fcs_sd = ckpt.load_prefix("model.text_hidden_fcs.0.", cast, stored)
        fcs = load_into(mlp_from_weights(fcs_sd, lambda: nn.ReLU(inplace=True), "text_hidden_fcs"), fcs_sd, "text_hidden_fcs", device, dtype)
        summary.add_loaded("text_hidden_fcs", fcs_sd, stored)
        stored = {}
        sam_sd = ckpt.load_prefix("model.grounding_encoder.", stored_dtypes=stored)
        if not sam_sd:
            raise ValueError(f"{root}: no model.grounding_encoder.* keys (the SAM weights)")
        grounding = GroundingEncoder.from_original_state_dict(sam_sd, dtype=dtype).to(device).eval().requires_grad_(False)
        summary.add_loaded("grounding_encoder", sam_sd, stored)
        model = cls(llm, projector, fcs, grounding, config)
        model.load_summary = summary
        log.info("%s", summary)
        return model

    @staticmethod
    def _load_llm(ckpt: CheckpointDir, llm_keys: list[str], config: GLaMMConfig, device, dtype, attn_implementation: str,
                  summary: LoadSummary) -> nn.Module:
        from transformers import LlamaConfig, LlamaForCausalLM

        embed = ckpt.load(["model.embed_tokens.weight"])["model.embed_tokens.weight"]
        fields = dict(config.llm_fields, vocab_size=embed.shape[0])
        del embed
        llm = build_llm(LlamaConfig, LlamaForCausalLM, fields, attn_implementation=attn_implementation)
        stored: dict[str, torch.dtype] = {}
        tensors = ckpt.load(llm_keys, lambda t: t.to(device=device, dtype=dtype), stored)
        summary.add_loaded("llm", tensors, stored)
        return load_into(llm, tensors, "LLaMA", device, dtype)

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.llm.get_input_embeddings()

    def project_image_tokens(self, clip_states: torch.Tensor) -> torch.Tensor:
        """CLIP select-layer patch states (F, N, clip width) -> (F, N, hidden) through ``mm_projector``: the LLM's
        input embeddings of those image tokens."""
        weight = next(self.mm_projector.parameters())
        return self.mm_projector(clip_states.to(weight.device, weight.dtype))

    def prefill_hidden(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer hidden states of a teacher-forced forward (no LM head: masks need only states)."""
        out = self.llm.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state

"""Model-agnostic pieces of a LLaVA-style LVLM, shared by GLaMM (image) and VideoGLaMM (video).

- building the transformers LLM from a LLaVA ``config.json`` and loading it without a second copy,
- the mm projector and the ``[SEG]`` projection (``text_hidden_fcs``) sized from their weights,
- splicing visual tokens into the embedded prompt at placeholder ids, right-padded batching,
- reading the hidden state just before each ``[SEG]`` token.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

__all__ = [
    "VISUAL_TOKEN_ID",
    "GENERATED_TOKEN_ID",
    "generation_row",
    "IMAGE_PLACEHOLDER",
    "IMAGE_TOKEN_INDEX",
    "tokenize_with_image",
    "LVLMArchitecture",
    "scaled_width",
    "scaled_depth",
    "format_question",
    "check_expressions",
    "default_dtype",
    "pick_attn_implementation",
    "build_llm",
    "load_into",
    "mlp_from_weights",
    "check_rotary_buffers",
    "SplicedBatch",
    "splice_and_pad",
    "hidden_before",
]


IMAGE_PLACEHOLDER = "<image>"
IMAGE_TOKEN_INDEX = -200  # LLaVA's id for an image placeholder; replaced by visual tokens


def tokenize_with_image(prompt: str, tokenizer) -> list[int]:
    """Token ids with ``IMAGE_TOKEN_INDEX`` at each ``<image>``: the text chunks around it are tokenized
    separately, the first with BOS, as LLaVA's ``tokenizer_image_token`` does."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split(IMAGE_PLACEHOLDER)]
    bos = tokenizer.bos_token_id
    ids: list[int] = list(chunks[0])
    for chunk in chunks[1:]:
        ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(chunk[1:] if chunk and chunk[0] == bos else chunk)
    return ids


def format_question(template: str, expression: str) -> str:
    """``template`` with the referring expression (stripped, lower-cased as the released evaluations do)."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"empty referring expression: {expression!r}")
    return template.format(expression=expression.strip().lower())


def check_expressions(expressions) -> list[str]:
    """A non-empty list of expressions (a single string becomes a one-item list)."""
    expressions = [expressions] if isinstance(expressions, str) else list(expressions)
    if not expressions:
        raise ValueError("no expressions given: pass at least one referring expression")
    return expressions


def scaled_width(width: int, factor: float, head_dim: int) -> tuple[int, int]:
    """(width, heads) scaled by ``factor``, keeping the head width: at least one head."""
    heads = max(1, round(width * factor / head_dim))
    return heads * head_dim, heads


@dataclass(frozen=True)
class LVLMArchitecture:
    """Shapes GLaMM and VideoGLaMM share: the CLIP ViT-L/14-336 towers and a decoder LLM."""

    clip_width: int = 1024
    clip_layers: int = 24
    clip_heads: int = 16
    clip_mlp: int = 4096
    clip_projection: int = 768
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_mlp: int = 3072
    llm_width: int = 4096
    llm_layers: int = 32
    llm_heads: int = 32
    llm_mlp: int = 11008

    def scaled_shared_fields(self, width: float, depth: float) -> dict:
        """CLIP and LLM fields with widths times ``width`` (head widths kept) and depths times ``depth``."""
        cw, ch = scaled_width(self.clip_width, width, self.clip_width // self.clip_heads)
        tw, th = scaled_width(self.text_width, width, self.text_width // self.text_heads)
        lw, lh = scaled_width(self.llm_width, width, self.llm_width // self.llm_heads)
        return dict(
            clip_width=cw, clip_heads=ch, clip_mlp=4 * cw, clip_layers=scaled_depth(self.clip_layers, depth, 3),
            clip_projection=max(16, round(self.clip_projection * width)), text_width=tw, text_heads=th, text_mlp=4 * tw,
            text_layers=scaled_depth(self.text_layers, depth), llm_width=lw, llm_heads=lh,
            llm_mlp=max(8, round(self.llm_mlp * width / 8) * 8), llm_layers=scaled_depth(self.llm_layers, depth),
        )


def scaled_depth(layers: int, factor: float, minimum: int = 2) -> int:
    """``layers`` times ``factor``, rounded, at least ``minimum``."""
    return max(minimum, round(layers * factor))


def default_dtype(device: str | torch.device) -> torch.dtype:
    """fp32 on CPU, bf16 on GPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def pick_attn_implementation(device: str | torch.device, requested: str | None = None) -> str:
    """``requested`` if given; flash-attn 2 on CUDA when it is installed; SDPA otherwise."""
    if requested:
        return requested
    if torch.device(device).type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def build_llm(config_cls, model_cls, llm_fields: dict, *, attn_implementation: str):
    """Instantiate ``model_cls`` on the meta device (no memory) from ``llm_fields`` of a config.json."""
    config = config_cls(**llm_fields)
    config._attn_implementation = attn_implementation
    with torch.device("meta"):
        model = model_cls(config)
    return model


def _rebuild_meta_buffers(module: nn.Module, device) -> None:
    """Non-persistent buffers (rotary inverse frequencies) are not in checkpoints: rebuild them."""
    for name, child in module.named_modules():
        if "RotaryEmbedding" in type(child).__name__ and any(b.is_meta for b in child.buffers(recurse=False)):
            rebuilt = type(child)(child.config).to(device)
            parent = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            setattr(parent, name.rsplit(".", 1)[-1], rebuilt)


def load_into(module: nn.Module, tensors: dict[str, torch.Tensor], what: str, device, dtype) -> nn.Module:
    """Assign ``tensors`` to ``module``'s parameters (cast one by one); every parameter must be set.

    Raises a ``ValueError`` naming the missing and unexpected keys.
    """
    own = dict(module.state_dict())
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{what}: checkpoint does not match the model. missing {len(missing)} keys {missing[:8]}; "
            f"unexpected {len(unexpected)} keys {unexpected[:8]}"
        )
    for name, ref in own.items():
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise ValueError(f"{what}: {name} has shape {tuple(tensors[name].shape)} in the checkpoint, model expects {tuple(ref.shape)}")
    cast = {k: t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype) for k, t in tensors.items()}
    module.load_state_dict(cast, strict=True, assign=True)
    _rebuild_meta_buffers(module, device)
    return module.to(device).eval().requires_grad_(False)


def check_rotary_buffers(buffers: dict[str, torch.Tensor], llm: nn.Module, what: str) -> None:
    """Compare rotary ``inv_freq`` buffers saved by transformers 4 with the frequencies ``llm`` computes from
    its config (default RoPE only; other RoPE types rescale them in transformers 5). A mismatch means the
    config's RoPE settings (e.g. ``rope_theta``) do not belong to these weights: raise naming the key."""
    layers = llm.config.num_hidden_layers
    beyond = [k for k in buffers if int(k.split(".")[2]) >= layers]
    if beyond:
        raise ValueError(f"{what}: unexpected keys {beyond[:8]}: rotary buffers of layers the {layers}-layer model does not have")
    rotary = getattr(getattr(llm, "model", llm), "rotary_emb", None)
    if not buffers or rotary is None or getattr(rotary, "rope_type", "default") != "default":
        return
    expected = rotary.inv_freq.detach().float().cpu()
    for key, stored in buffers.items():
        stored = stored.float().cpu()
        if stored.shape != expected.shape or not torch.allclose(stored, expected, rtol=1e-2, atol=0.0):
            raise ValueError(
                f"{what}: {key} (saved rotary frequencies, shape {tuple(stored.shape)}) differs from the frequencies of "
                f"config.json's RoPE settings (shape {tuple(expected.shape)}): rope_theta / head size in config.json do not "
                "match these weights"
            )


def mlp_from_weights(tensors: dict[str, torch.Tensor], activation: type[nn.Module], what: str) -> nn.Sequential:
    """An ``nn.Sequential`` of Linear layers at the even indices of ``tensors`` (``0.weight``,
    ``2.weight``, ...) with ``activation`` between them, sized from the weight shapes."""
    indices = sorted({int(k.split(".")[0]) for k in tensors})
    if not indices or indices != list(range(0, 2 * len(indices), 2)):
        raise ValueError(f"{what}: expected Linear layers at indices 0, 2, ...; found {sorted(tensors)}")
    layers: list[nn.Module] = []
    for i in indices:
        out_f, in_f = tensors[f"{i}.weight"].shape
        if layers:
            layers.append(activation())
        layers.append(nn.Linear(in_f, out_f, bias=f"{i}.bias" in tensors))
    return nn.Sequential(*layers)


VISUAL_TOKEN_ID = -1  # ``SplicedBatch.token_ids`` value at visual positions (and at padding)
GENERATED_TOKEN_ID = -2  # token id the no-cache loop gives generated positions: text, never a visual token


@dataclass
class SplicedBatch:
    """Right-padded prompt embeddings with visual tokens spliced in.

    ``token_ids`` (B, L) holds each position's text id, ``VISUAL_TOKEN_ID`` (-1) for visual tokens and padding.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    token_ids: torch.Tensor
    lengths: list[int]


def generation_row(inputs_embeds: torch.Tensor, prompt_token_ids: torch.Tensor) -> SplicedBatch:
    """One unpadded row for a generation step's forward: the prompt's token ids (``VISUAL_TOKEN_ID`` at its visual
    positions), then the generated positions marked ``GENERATED_TOKEN_ID``."""
    length, prompt_length = inputs_embeds.shape[1], prompt_token_ids.shape[-1]
    if length < prompt_length:
        raise ValueError(f"inputs_embeds ({length} positions) must hold the whole prompt ({prompt_length} positions)")
    extra = torch.full((1, length - prompt_length), GENERATED_TOKEN_ID, dtype=prompt_token_ids.dtype, device=prompt_token_ids.device)
    token_ids = torch.cat([prompt_token_ids.reshape(1, -1), extra], dim=1).to(inputs_embeds.device)
    mask = torch.ones(1, length, dtype=torch.long, device=inputs_embeds.device)
    return SplicedBatch(inputs_embeds, mask, token_ids, [length])


def splice_and_pad(
    prompts: Sequence[Sequence[int]],
    visual: Sequence[Sequence[torch.Tensor]],
    embed_tokens: nn.Embedding,
    placeholder_id: int,
) -> SplicedBatch:
    """Embed each prompt and replace its k-th ``placeholder_id`` with the k-th visual chunk (n_k, H)."""
    if len(prompts) != len(visual):
        raise ValueError(f"{len(prompts)} prompts but {len(visual)} visual inputs")
    device = embed_tokens.weight.device
    rows, ids_rows = [], []
    for ids, chunks in zip(prompts, visual):
        ids_t = torch.as_tensor(list(ids), dtype=torch.long)
        slots = (ids_t == placeholder_id).nonzero().flatten().tolist()
        if len(slots) != len(chunks):
            raise ValueError(f"prompt has {len(slots)} image placeholders but {len(chunks)} visual inputs were given")
        pieces, piece_ids, start = [], [], 0
        for slot, chunk in zip(slots + [len(ids_t)], list(chunks) + [None]):
            text = ids_t[start:slot].to(device)
            pieces.append(embed_tokens(text))
            piece_ids.append(text)
            if chunk is not None:
                pieces.append(chunk.to(device=device, dtype=embed_tokens.weight.dtype))
                piece_ids.append(torch.full((chunk.shape[0],), VISUAL_TOKEN_ID, dtype=torch.long, device=device))
            start = slot + 1
        rows.append(torch.cat(pieces))
        ids_rows.append(torch.cat(piece_ids))
    lengths = [r.shape[0] for r in rows]
    width = max(lengths)
    embeds = rows[0].new_zeros(len(rows), width, rows[0].shape[-1])
    token_ids = torch.full((len(rows), width), VISUAL_TOKEN_ID, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for b, (row, row_ids) in enumerate(zip(rows, ids_rows)):
        embeds[b, : row.shape[0]] = row
        token_ids[b, : row.shape[0]] = row_ids
        mask[b, : row.shape[0]] = 1
    return SplicedBatch(embeds, mask, token_ids, lengths)


def hidden_before(hidden: torch.Tensor, token_ids: torch.Tensor, token_id: int) -> list[torch.Tensor]:
    """Per row, the hidden states (n, H) at the position just before each occurrence of ``token_id``
    (the state that predicts it), in order of occurrence."""
    out = []
    for b in range(hidden.shape[0]):
        positions = (token_ids[b] == token_id).nonzero().flatten()
        if positions.numel() and positions.min() == 0:
            raise ValueError("a [SEG] token cannot be the first token of a prompt")
        out.append(hidden[b, positions - 1])
    return out

"""What a CLIP vision forward yields for token selection, and the scores computed from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["ClipFrameFeatures", "encode_frames", "context_scores", "text_similarity", "resolve_select_layer"]


def resolve_select_layer(select_layer: int, num_layers: int) -> int:
    """Index into transformers' ``hidden_states`` tuple (0 = embeddings, ``num_layers`` = last layer)."""
    index = num_layers + 1 + select_layer if select_layer < 0 else select_layer
    if not 0 <= index <= num_layers:
        raise ValueError(f"select_layer={select_layer} is out of range for a {num_layers}-layer vision tower")
    return index


@dataclass
class ClipFrameFeatures:
    """Select-layer states and last-layer attention inputs of F frames of one CLIP vision forward.

    ``states`` (F, 1+N, D) are the features the LVLM consumes (row 0 is CLS); ``query``/``key``/
    ``value`` (F, 1+N, D) are the last encoder layer's projections, computed without its MLP;
    ``select_query``/``select_key`` (F, 1+N, D) are the projections inside the layer that produces
    ``states`` (the attention VisionZip and VisPruner read: ``attentions[select_layer]``); ``llm_projector``, when
    the LVLM gives it, maps patch states (F, N, D) to the LLM's input embeddings of those tokens (``llm_tokens``).
    """

    states: torch.Tensor
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    num_heads: int
    grid: tuple[int, int]
    vision_model: torch.nn.Module = field(repr=False)
    _projected: torch.Tensor | None = field(default=None, repr=False)
    select_query: torch.Tensor | None = field(default=None, repr=False)
    select_key: torch.Tensor | None = field(default=None, repr=False)
    llm_projector: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)
    _llm_tokens: torch.Tensor | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        return self.states.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.states.shape[1] - 1

    @property
    def patches(self) -> torch.Tensor:
        """(F, N, D) patch rows of ``states``."""
        return self.states[:, 1:]

    def projected(self) -> torch.Tensor:
        """(F, N, P) ``visual_projection(post_layernorm(patches))``: patch features in CLIP's joint space."""
        if self._projected is None:
            vm = self.vision_model
            normed = vm.vision_model.post_layernorm(self.patches.to(vm.vision_model.post_layernorm.weight.dtype))
            self._projected = vm.visual_projection(normed)
        return self._projected

    def llm_tokens(self, method: str = "this method") -> torch.Tensor:
        """(F, N, H) ``llm_projector(patches)``: every patch token as the LLM would receive it (GLaMM's ``mm_projector``,
        VideoGLaMM's ``image_mm_projector``, token by token, before any pooling); computed once."""
        if self._llm_tokens is None:
            if self.llm_projector is None:
                raise ValueError(f"{method} measures the tokens as the LLM receives them, but these ClipFrameFeatures have no "
                                 "llm_projector: build them with ClipTokenPruner(..., llm_projector=model.project_image_tokens) "
                                 "(the GLaMM and VideoGLaMM segmenters do)")
            self._llm_tokens = self.llm_projector(self.patches)
        return self._llm_tokens

    def gather(self, indices: torch.Tensor) -> torch.Tensor:
        """(F, K, D) patch states at ``indices`` (F, K)."""
        return torch.gather(self.patches, 1, indices.unsqueeze(-1).expand(-1, -1, self.states.shape[-1]))


@torch.no_grad()
def encode_frames(vision_model: torch.nn.Module, pixel_values: torch.Tensor, select_layer: int = -2,
                  llm_projector: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ClipFrameFeatures:
    """Run a ``CLIPVisionModelWithProjection`` once over ``pixel_values`` (F, 3, H, W); ``llm_projector``: see
    ``ClipFrameFeatures``.

    Only the layers needed are run: up to the select layer and the last layer's q/k/v projections
    (on its ``layer_norm1`` input); the last layer's attention output and MLP run only when
    ``select_layer`` asks for the final output.
    """
    tower = vision_model.vision_model
    layers = tower.encoder.layers
    num_layers = len(layers)
    select_index = resolve_select_layer(select_layer, num_layers)
    dtype = tower.embeddings.patch_embedding.weight.dtype
    hidden = tower.pre_layrnorm(tower.embeddings(pixel_values.to(dtype)))
    selected = hidden if select_index == 0 else None
    select_qk = (None, None)
    for i, layer in enumerate(layers[:-1]):
        if i + 1 == select_index:  # the layer producing the selected states: keep its q/k (two linears)
            normed = layer.layer_norm1(hidden)
            select_qk = (layer.self_attn.q_proj(normed), layer.self_attn.k_proj(normed))
        hidden = layer(hidden, None)
        if i + 1 == select_index:
            selected = hidden
    last = layers[-1]
    normed = last.layer_norm1(hidden)
    attn = last.self_attn
    query, key, value = attn.q_proj(normed), attn.k_proj(normed), attn.v_proj(normed)
    if select_index == num_layers:
        select_qk = (query, key)
        selected = last(hidden, None)
    patch = vision_model.config.patch_size
    return ClipFrameFeatures(
        states=selected,
        query=query,
        key=key,
        value=value,
        num_heads=vision_model.config.num_attention_heads,
        grid=(pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch),
        vision_model=vision_model,
        select_query=select_qk[0],
        select_key=select_qk[1],
        llm_projector=llm_projector,
    )


def context_scores(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """(F, N) LiteLVLM context score: ``|| a_i * v_i ||`` with ``a`` the single-head, full-width,
    cosine-normalised CLS attention over the N patches, scaled by ``1/sqrt(D)`` (FACTS §1)."""
    q = F.normalize(query[:, :1], dim=-1)
    k = F.normalize(key[:, 1:], dim=-1)
    dim = query.shape[-1]
    weights = torch.softmax(q @ k.transpose(-2, -1) / dim**0.5, dim=-1)  # (F, 1, N)
    return (weights.transpose(1, 2) * value[:, 1:]).norm(dim=-1)


def text_similarity(projected: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """(F, T, N) unnormalised dot products of projected patches (F, N, P) with text embeddings (T, P)."""
    if projected.shape[-1] != text_embeds.shape[-1]:
        raise ValueError(
            f"text_embeds width {text_embeds.shape[-1]} does not match the vision projection width {projected.shape[-1]}: "
            "use the text tower of the same CLIP checkpoint"
        )
    return torch.einsum("fnp,tp->ftn", projected, text_embeds.to(projected.dtype))

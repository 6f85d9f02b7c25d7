"""``ClipTokenPruner``: one batched CLIP vision forward for F frames, then per-frame selection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .features import ClipFrameFeatures, encode_frames
from .methods import TokenSelector, get_method

__all__ = ["ClipTokenPruner", "PruneResult"]


@dataclass
class PruneResult:
    """Per-frame outcome: ``indices`` (F, budget) into the N patches, ``features`` (F, budget, D)
    select-layer states (merged features for merging methods), and the full forward's features."""

    indices: torch.Tensor
    features: torch.Tensor
    method: str
    frames: ClipFrameFeatures = field(repr=False)

    @property
    def budget(self) -> int:
        return self.indices.shape[1]


class ClipTokenPruner:
    """Prune CLIP patch tokens of one image or of the F frames of one clip.

    ``vision_model`` is a transformers ``CLIPVisionModelWithProjection``; ``text_model`` a
    ``CLIPTextModelWithProjection`` (needed only by text-guided methods unless ``text_embeds`` are
    passed); ``tokenizer`` optional, lets ``text_embeds`` take strings; ``llm_projector`` optional, the LVLM's
    patch-state -> LLM-input projector, for methods that measure the tokens as the LLM receives them (CDPruner,
    DivPrune). ``method`` is a registered name or a ``TokenSelector``; ``method_options`` go to its constructor.
    """

    def __init__(
        self,
        vision_model: torch.nn.Module,
        text_model: torch.nn.Module | None = None,
        select_layer: int = -2,
        *,
        tokenizer=None,
        llm_projector=None,
        method: str | TokenSelector = "litelvlm",
        **method_options,
    ):
        self.vision_model = vision_model
        self.text_model = text_model
        self.select_layer = select_layer
        self.tokenizer = tokenizer
        self.llm_projector = llm_projector
        self.method = get_method(method, **method_options)
        self.text_calls = 0  # how many text-tower forwards ran: callers assert reuse with it

    @property
    def num_tokens(self) -> int:
        cfg = self.vision_model.config
        return (cfg.image_size // cfg.patch_size) ** 2

    @torch.no_grad()
    def text_embeds(
        self,
        texts: Sequence[str] | None = None,
        *,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(T, P) CLIP ``text_embeds`` (projected EOS state, not normalised). Compute once, reuse."""
        if self.text_model is None:
            raise ValueError("this pruner has no text_model: build it with the CLIP text tower or pass text_embeds")
        if texts is not None:
            if input_ids is not None:
                raise ValueError("pass either texts or input_ids, not both")
            if isinstance(texts, str):
                texts = [texts]
            if len(texts) == 0:
                raise ValueError("no texts given: pass at least one expression or question")
            if self.tokenizer is None:
                raise ValueError("this pruner has no tokenizer: pass input_ids/attention_mask, or build it with tokenizer=")
            enc = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
            input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]
        if input_ids is None:
            raise ValueError("no texts given: pass texts, or input_ids (T, L) with attention_mask")
        if input_ids.dim() != 2 or input_ids.shape[0] == 0:
            raise ValueError(f"input_ids must be (T, L) with T >= 1, got shape {tuple(input_ids.shape)}")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} does not match input_ids {tuple(input_ids.shape)}")
        device = self.text_model.device
        out = self.text_model(
            input_ids=input_ids.to(device),
            attention_mask=None if attention_mask is None else attention_mask.to(device),
        )
        self.text_calls += 1
        return out.text_embeds

    def encode(self, pixel_values: torch.Tensor | Sequence[torch.Tensor]) -> ClipFrameFeatures:
        """One batched vision forward over F frames (F, 3, H, W) or a list of (3, H, W) frames."""
        pixel_values = self._stack_frames(pixel_values)
        device = self.vision_model.device
        return encode_frames(self.vision_model, pixel_values.to(device), self.select_layer, self.llm_projector)

    def select(
        self,
        frames: ClipFrameFeatures,
        budget: int | None,
        text_embeds: torch.Tensor | None = None,
        method: str | TokenSelector | None = None,
    ) -> PruneResult:
        """Select ``budget`` tokens per frame of an already encoded clip (``None`` keeps all)."""
        selector = self.method if method is None else get_method(method)
        if budget is None:
            budget = frames.num_tokens
        if text_embeds is not None and text_embeds.dim() == 1:
            text_embeds = text_embeds.unsqueeze(0)
        selection = selector.select(frames, budget, text_embeds)
        features = selection.features if selection.features is not None else frames.gather(selection.indices)
        return PruneResult(indices=selection.indices, features=features, method=selector.name, frames=frames)

    def __call__(
        self,
        pixel_values: torch.Tensor | Sequence[torch.Tensor],
        budget: int | None,
        *,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        method: str | TokenSelector | None = None,
    ) -> PruneResult:
        """Encode F frames once and prune each against the same texts."""
        selector = self.method if method is None else get_method(method)
        if text_embeds is None and input_ids is not None:
            text_embeds = self.text_embeds(input_ids=input_ids, attention_mask=attention_mask)
        if selector.uses_text and text_embeds is None:
            raise ValueError(f"method {selector.name!r} is text guided: pass input_ids/attention_mask or text_embeds")
        return self.select(self.encode(pixel_values), budget, text_embeds, selector)

    def _stack_frames(self, pixel_values) -> torch.Tensor:
        if isinstance(pixel_values, (list, tuple)):
            if not pixel_values:
                raise ValueError("no frames given")
            shapes = {tuple(p.shape) for p in pixel_values}
            if len(shapes) != 1:
                raise ValueError(f"frames have different sizes {sorted(shapes)}: resize them to one size first")
            pixel_values = torch.stack(list(pixel_values))
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(f"pixel_values must be (F, 3, H, W), got {shape}")
        size = self.vision_model.config.image_size
        if tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(
                f"pixel_values are {pixel_values.shape[-2]}x{pixel_values.shape[-1]} but the vision tower expects "
                f"{size}x{size}: preprocess with the tower's CLIPImageProcessor"
            )
        return pixel_values

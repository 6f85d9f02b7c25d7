"""``Sam2PixelDecoder``: VideoGLaMM's SAM2 mask head, driving transformers' Sam2VideoModel submodules.

transformers' ``Sam2VideoInferenceSession`` only takes points, boxes and masks, so the frame loop is
written here around the model's own modules (vision encoder, prompt encoder, mask decoder, memory
attention, memory encoder, object-pointer projection). All E objects of a video share one image
encoder pass per frame and are decoded, memory-attended and memory-encoded as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .architecture import sam2_config_from_state_dict
from .convert import convert_sam2_state_dict
from .preprocess import as_uint8_frames, preprocess_frames

__all__ = ["Sam2PixelDecoder", "FrameFeatures", "HeadOutput", "NO_OBJECT_SCORE"]

NO_OBJECT_SCORE = -1024.0  # SAM2's logit for "object absent" (sam2_base.NO_OBJ_SCORE)
MODES = ("propagate", "framewise")


@dataclass
class FrameFeatures:
    """One frame's image-encoder outputs (batch 1)."""

    top: torch.Tensor  # (h*w, 1, C) stride-16 FPN level
    top_pos: torch.Tensor  # (h*w, 1, C) its sine position encoding
    high_res: list[torch.Tensor]  # [(1, C/8, 4h, 4w), (1, C/4, 2h, 2w)] after conv_s0 / conv_s1


@dataclass
class HeadOutput:
    """Mask-head outputs for E objects on one frame."""

    low_res: torch.Tensor  # (E, 4h, 4w) float32 logits, NO_OBJECT_SCORE where the object is judged absent
    object_pointer: torch.Tensor  # (E, C)
    object_score: torch.Tensor  # (E, 1)


@dataclass
class _Memory:
    features: torch.Tensor  # (h*w, E, 64) bfloat16, as SAM2's video predictor stores them
    position: torch.Tensor  # (h*w, E, 64)
    pointer: torch.Tensor  # (E, C)


def _state_dict_dtype(sd: Mapping[str, torch.Tensor]) -> torch.dtype:
    dtypes = {v.dtype for v in sd.values() if v.is_floating_point()}
    if len(dtypes) != 1:
        raise ValueError(f"SAM2 weights mix dtypes {sorted(map(str, dtypes))}; pass dtype= explicitly")
    return dtypes.pop()


class ShapeCachedSinePositionEmbedding(nn.Module):
    """transformers' SAM2 sine position embedding with one cached table per (shape, device, dtype).

    transformers caches a single shape (``lru_cache(maxsize=1)``) but the FPN neck asks for four shapes per frame,
    so it recomputed every table for every frame (about 0.2 s per frame at 1024 px on one CPU thread, measured in
    docs/benchmarks.md). The tables depend only on the shape, so caching each is exact."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self._tables: dict[tuple, torch.Tensor] = {}

    def forward(self, shape, device, dtype, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            return self.inner(shape, device, dtype, mask)
        key = (tuple(shape), str(device), dtype)
        if key not in self._tables:
            self._tables[key] = self.inner(shape, device, dtype)
        return self._tables[key]


class Sam2PixelDecoder(nn.Module):
    """SAM2 (transformers ``Sam2VideoModel``) turning [SEG] prompt embeddings into video masks, as VideoGLaMM does."""

    def __init__(self, config):
        super().__init__()
        from transformers import Sam2VideoModel

        self.config = config
        self.model = Sam2VideoModel(config).eval().requires_grad_(False)
        neck = self.model.vision_encoder.neck
        neck.position_encoding = ShapeCachedSinePositionEmbedding(neck.position_encoding)

    @classmethod
    def from_original_state_dict(cls, sd: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None, **overrides):
        """Build from original-naming SAM2 weights (``dtype`` None: the weights' own dtype).

        ``overrides`` go to ``sam2_config_from_state_dict`` (``image_size``, ``num_heads``, ...).
        """
        from transformers.initialization import no_init_weights

        dtype = dtype or _state_dict_dtype(sd)
        config = sam2_config_from_state_dict(sd, **overrides)
        hf_sd = convert_sam2_state_dict(sd, config)
        with no_init_weights():
            decoder = cls(config)
        decoder.model.load_state_dict(hf_sd, strict=True)
        return decoder.to(dtype)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def hidden_size(self) -> int:
        return self.config.prompt_encoder_config.hidden_size

    @property
    def dtype(self) -> torch.dtype:
        return self.model.no_memory_embedding.dtype

    @property
    def device(self) -> torch.device:
        return self.model.no_memory_embedding.device

    def preprocess(self, frames) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB -> (T, 3, S, S) float32 pixel values (VideoGLaMM's SAM2 preprocessing)."""
        return preprocess_frames(frames, self.image_size)

    # ------------------------------------------------------------------ per-frame pieces

    @torch.no_grad()
    def encode_frame(self, pixel_values: torch.Tensor) -> FrameFeatures:
        """Image encoder (Hiera + FPN, conv_s0/conv_s1 applied) on one (1, 3, S, S) frame."""
        out = self.model.get_image_features(pixel_values.to(self.device, self.dtype), return_dict=True)
        sizes = self.config.vision_config.backbone_feature_sizes
        high_res = [x.permute(1, 2, 0).reshape(1, -1, *size) for x, size in zip(out.fpn_hidden_states[:-1], sizes)]
        return FrameFeatures(out.fpn_hidden_states[-1], out.fpn_position_encoding[-1], high_res)

    def _top_map(self, features: torch.Tensor) -> torch.Tensor:
        """(h*w, B, C) -> (B, C, h, w)."""
        h, w = self.config.vision_config.backbone_feature_sizes[-1]
        return features.permute(1, 2, 0).reshape(features.shape[1], -1, h, w)

    def object_tokens(self, prompt_embeddings: torch.Tensor) -> torch.Tensor:
        """Frame-0 sparse prompt of VideoGLaMM's video branch: [not-a-point, padding point, [SEG]] -> (E, 1, 3, C)."""
        empty = self.empty_prompt_tokens(len(prompt_embeddings))
        return torch.cat([empty, prompt_embeddings[:, None, None, :].to(empty)], dim=2)

    def empty_prompt_tokens(self, num_objects: int) -> torch.Tensor:
        """Sparse prompt without inputs (one label -1 point, plus SAM's padding point) -> (E, 1, 2, C)."""
        points = torch.zeros(num_objects, 1, 1, 2, device=self.device, dtype=self.dtype)
        labels = -torch.ones(num_objects, 1, 1, dtype=torch.int32, device=self.device)
        sparse, _ = self.model.prompt_encoder(
            input_points=points, input_labels=labels, input_boxes=None, input_masks=None
        )
        return sparse

    def _use_multimask(self, is_first_frame: bool) -> bool:
        """SAM2's rule with zero clicks (VideoGLaMM never passes points): multimask on every frame for Hiera-L."""
        cfg = self.config
        return cfg.multimask_output_in_sam and (is_first_frame or cfg.multimask_output_for_tracking) and (
            cfg.multimask_min_pt_num <= 0 <= cfg.multimask_max_pt_num
        )

    @torch.no_grad()
    def decode_heads(
        self, pixel_features: torch.Tensor, high_res: list[torch.Tensor], tokens: torch.Tensor, multimask: bool
    ) -> HeadOutput:
        """SAM2 heads on memory-conditioned features (E, C, h, w) with sparse tokens (E, 1, N, C).

        As in SAM2's ``_forward_sam_heads``: no-mask dense embedding, object-score gating, best-IoU mask
        when ``multimask``, object pointer from the chosen mask token (no-object pointer when absent).
        """
        model, num_objects = self.model, tokens.shape[0]
        h, w = pixel_features.shape[-2:]
        dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(num_objects, -1, h, w)
        masks, iou, mask_tokens, scores = model.mask_decoder(
            image_embeddings=pixel_features,
            image_positional_embeddings=model.get_image_wide_positional_embeddings().expand(num_objects, -1, -1, -1),
            sparse_prompt_embeddings=tokens.to(self.device, self.dtype),
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_resolution_features=[x.expand(num_objects, -1, -1, -1) for x in high_res],
        )
        masks, iou, mask_tokens, scores = masks[:, 0], iou[:, 0], mask_tokens[:, 0], scores[:, 0]
        appearing = scores > 0
        masks = torch.where(appearing[:, :, None, None], masks, torch.full_like(masks, NO_OBJECT_SCORE))
        rows = torch.arange(num_objects, device=masks.device)
        best = iou.argmax(-1) if multimask else torch.zeros_like(rows)
        pointer = model.object_pointer_proj(mask_tokens[rows, best])
        weight = appearing.to(pointer.dtype)
        pointer = weight * pointer + (1 - weight) * model.no_object_pointer
        return HeadOutput(masks[rows, best].float(), pointer, scores)

    # ------------------------------------------------------------------ memory

    @torch.no_grad()
    def _encode_memory(self, frame: FrameFeatures, head: HeadOutput, binarize: bool) -> _Memory:
        """SAM2 memory encoder on the frame's raw top features and the chosen mask (binarized on the prompted frame)."""
        cfg, model = self.config, self.model
        num_objects = head.low_res.shape[0]
        size = (self.image_size, self.image_size)
        high = F.interpolate(head.low_res[:, None], size=size, mode="bilinear", align_corners=False)
        mask = (high > 0).float() if binarize else torch.sigmoid(high)
        mask = mask * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
        pixels = self._top_map(frame.top).expand(num_objects, -1, -1, -1)
        features, position = model.memory_encoder(pixels, mask.to(self.dtype))
        if model.occlusion_spatial_embedding_parameter is not None:  # SAM 2.1 only
            absent = (head.object_score <= 0).to(features.dtype)
            features = features + absent[..., None, None] * model.occlusion_spatial_embedding_parameter[..., None, None]
        flat = lambda x: x.flatten(2).permute(2, 0, 1)  # noqa: E731
        return _Memory(flat(features).to(torch.bfloat16), flat(position).to(self.dtype), head.object_pointer)

    def _spatial_memories(self, bank: dict[int, _Memory], frame_idx: int) -> tuple[list, list]:
        """Prompted frame 0 (temporal slot num_maskmem-1) plus the last num_maskmem-1 tracked frames."""
        num_maskmem = self.config.num_maskmem
        temporal = self.model.memory_temporal_positional_encoding
        chosen = [(bank[0], num_maskmem - 1)]
        for offset in range(num_maskmem - 1, 0, -1):
            if frame_idx - offset >= 1:  # frame 0 is the conditioning frame, already included
                chosen.append((bank[frame_idx - offset], offset - 1))
        features = [m.features.to(self.dtype) for m, _ in chosen]
        positions = [m.position + temporal[slot] for m, slot in chosen]
        return features, positions

    def _pointer_memories(self, bank: dict[int, _Memory], frame_idx: int, num_frames: int) -> tuple[torch.Tensor, ...]:
        """Object pointers of frame 0 and of up to max-1 preceding tracked frames, split into memory-width tokens."""
        from transformers.models.sam2_video.modeling_sam2_video import get_1d_sine_pe

        cfg, model = self.config, self.model
        max_pointers = min(num_frames, cfg.max_object_pointers_in_encoder)
        offsets, pointers = [frame_idx], [bank[0].pointer]
        for offset in range(1, max_pointers):
            if frame_idx - offset < 0:
                break
            if frame_idx - offset >= 1:
                offsets.append(offset)
                pointers.append(bank[frame_idx - offset].pointer)
        pointers = torch.stack(pointers)  # (P, E, C)
        num, num_objects, channels = pointers.shape
        mem_dim = model.mem_dim
        if cfg.enable_temporal_pos_encoding_for_object_pointers:  # SAM 2.1 only
            sine = get_1d_sine_pe(torch.tensor(offsets, device=self.device) / (max_pointers - 1), dim=channels)
            position = model.temporal_positional_encoding_projection_layer(sine.to(self.dtype))
            position = position[:, None].expand(-1, num_objects, -1)
        else:
            position = pointers.new_zeros(num, num_objects, mem_dim)
        splits = channels // mem_dim
        pointers = pointers.reshape(num, num_objects, splits, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
        return pointers, position.repeat_interleave(splits, dim=0)

    @torch.no_grad()
    def _memory_conditioned(
        self, frame: FrameFeatures, bank: dict[int, _Memory], frame_idx: int, num_frames: int
    ) -> torch.Tensor:
        """Memory attention of the frame's top features over the memory bank -> (E, C, h, w)."""
        num_objects = bank[0].pointer.shape[0]
        features, positions = self._spatial_memories(bank, frame_idx)
        pointers, pointer_positions = self._pointer_memories(bank, frame_idx, num_frames)
        out = self.model.memory_attention(
            current_vision_features=frame.top.expand(-1, num_objects, -1),
            memory=torch.cat([*features, pointers.to(self.dtype)], dim=0),
            current_vision_position_embeddings=frame.top_pos.expand(-1, num_objects, -1),
            memory_posision_embeddings=torch.cat([*positions, pointer_positions.to(self.dtype)], dim=0),
            num_object_pointer_tokens=pointers.shape[0],
        )  # (1, E, h*w, C)
        return self._top_map(out[0].transpose(0, 1))

    # ------------------------------------------------------------------ whole videos

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        is_float = isinstance(pixel_values, torch.Tensor) and pixel_values.is_floating_point()
        if not is_float or tuple(pixel_values.shape[1:]) != (3, size, size) or not len(pixel_values):
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            raise ValueError(f"pixel_values must be a float tensor (T >= 1, 3, {size}, {size}), got {shape}")
        return pixel_values

    @torch.no_grad()
    def propagate_logits(self, pixel_values: torch.Tensor, first_frame_tokens: torch.Tensor) -> torch.Tensor:
        """Prompt every object on frame 0 with ``first_frame_tokens`` (E, 1, N, C) and track it with memory.

        Returns low-resolution mask logits (E, T, 4h, 4w) (VideoGLaMM's ``inference_video_branch``).
        """
        pixel_values = self._check_pixel_values(pixel_values)
        num_frames, num_objects = len(pixel_values), first_frame_tokens.shape[0]
        keep = max(self.config.num_maskmem, self.config.max_object_pointers_in_encoder)
        bank: dict[int, _Memory] = {}
        logits = []
        for t in range(num_frames):
            frame = self.encode_frame(pixel_values[t : t + 1])
            if t == 0:
                pixels = self._top_map(frame.top + self.model.no_memory_embedding).expand(num_objects, -1, -1, -1)
                tokens = first_frame_tokens
            else:
                pixels = self._memory_conditioned(frame, bank, t, num_frames)
                tokens = self.empty_prompt_tokens(num_objects)
            head = self.decode_heads(pixels, frame.high_res, tokens, self._use_multimask(t == 0))
            bank[t] = self._encode_memory(frame, head, binarize=t == 0)
            if t - keep >= 1:  # out of reach of both memory windows; frame 0 always stays
                del bank[t - keep]
            logits.append(head.low_res)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def framewise_logits(self, pixel_values: torch.Tensor, prompt_embeddings: torch.Tensor) -> torch.Tensor:
        """Decode every frame on its own with the same [SEG] embeddings (E, C) -> logits (E, T, 4h, 4w).

        VideoGLaMM's ``inference_framewise``: features + no-memory embedding, sparse = [SEG] only,
        single-mask output (with SAM2's dynamic multimask fallback), no object-score gating.
        """
        pixel_values = self._check_pixel_values(pixel_values)
        tokens = prompt_embeddings[None, :, None, :].to(self.device, self.dtype)  # (1, E, 1, C)
        pe = self.model.get_image_wide_positional_embeddings()
        logits = []
        for t in range(len(pixel_values)):
            frame = self.encode_frame(pixel_values[t : t + 1])
            pixels = self._top_map(frame.top + self.model.no_memory_embedding)
            h, w = pixels.shape[-2:]
            dense = self.model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w)
            masks = self.model.mask_decoder(
                image_embeddings=pixels,
                image_positional_embeddings=pe,
                sparse_prompt_embeddings=tokens,
                dense_prompt_embeddings=dense,
                multimask_output=False,
                high_resolution_features=frame.high_res,
            )[0]
            logits.append(masks[0, :, 0].float())
        return torch.stack(logits, dim=1)

    def _inputs(self, frames_or_pixel_values, original_size) -> tuple[torch.Tensor, tuple[int, int]]:
        is_pixels = isinstance(frames_or_pixel_values, torch.Tensor) and frames_or_pixel_values.is_floating_point()
        if is_pixels:
            if original_size is None:
                raise ValueError("original_size (H, W) is required when passing preprocessed pixel_values")
            return self._check_pixel_values(frames_or_pixel_values), tuple(original_size)
        frames = as_uint8_frames(frames_or_pixel_values)
        return self.preprocess(frames), tuple(original_size or frames.shape[1:3])

    def _check_prompts(self, prompts: torch.Tensor) -> torch.Tensor:
        is_tensor = isinstance(prompts, torch.Tensor)
        if not is_tensor or prompts.ndim != 2 or prompts.shape[1] != self.hidden_size:
            shape = tuple(prompts.shape) if is_tensor else type(prompts)
            raise ValueError(
                f"prompt_embeddings must be a (E, {self.hidden_size}) tensor (one [SEG] embedding per object), got {shape}"
            )
        return prompts.to(self.device, self.dtype)

    @staticmethod
    def masks_at(logits: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits (E, T, h, w) -> bool masks (E, T, H, W): bilinear resize (align_corners=False), logits > 0."""
        out = torch.empty(*logits.shape[:2], *original_size, dtype=torch.bool, device=logits.device)
        for t in range(logits.shape[1]):
            frame = logits[:, t : t + 1].float()
            resized = F.interpolate(frame, size=tuple(original_size), mode="bilinear", align_corners=False)
            out[:, t] = resized[:, 0] > 0
        return out

    def segment(
        self, frames_or_pixel_values, prompt_embeddings: torch.Tensor, original_size=None, mode: str = "propagate"
    ) -> torch.Tensor:
        """Masks (E, T, H, W) bool at the original video size, one object per [SEG] embedding (E, C).

        ``frames_or_pixel_values``: uint8 (T, H, W, 3) frames, or float (T, 3, S, S) pixel values from
        ``preprocess`` (then ``original_size`` (H, W) is required). ``mode``: "propagate" (prompt on
        frame 0, track with memory, as VideoGLaMM) or "framewise" (decode every frame independently).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        pixel_values, original_size = self._inputs(frames_or_pixel_values, original_size)
        prompts = self._check_prompts(prompt_embeddings)
        if len(prompts) == 0:
            return torch.zeros(0, len(pixel_values), *original_size, dtype=torch.bool, device=self.device)
        if mode == "propagate":
            logits = self.propagate_logits(pixel_values, self.object_tokens(prompts))
        else:
            logits = self.framewise_logits(pixel_values, prompts)
        return self.masks_at(logits, original_size)

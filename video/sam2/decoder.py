"""``Sam2PixelDecoder``: VideoGLaMM's SAM2 mask head, driving transformers' Sam2VideoModel submodules.

transformers' ``Sam2VideoInferenceSession`` only takes points, boxes and masks, so the frame loop is
written here around the model's own modules (vision encoder, prompt encoder, mask decoder, memory
attention, memory encoder, object-pointer projection). All E objects of a video share one image
encoder pass per frame and are decoded, memory-attended and memory-encoded as one batch.

Memory attention runs through ``MemoryAttentionRunner`` (each memory frame's keys and values projected once,
layer 0 shared by all objects; ``memory_attention_impl = "module"`` calls transformers' module instead, as the
reference) and may keep only ``memory_budget`` spatial tokens per memory frame (``memory_select``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .architecture import sam2_config_from_state_dict
from .convert import convert_sam2_state_dict
from .memory_attention import MemoryAttentionRunner, ProjectedMemory
from .memory_select import check_memory_budget, get_memory_selector, memory_grid_logits, select_memory_tokens
from .preprocess import as_uint8_frames, preprocess_frames

__all__ = ["Sam2PixelDecoder", "FrameFeatures", "HeadOutput", "NO_OBJECT_SCORE", "SAM2_STAGES"]

NO_OBJECT_SCORE = -1024.0  # SAM2's logit for "object absent" (sam2_base.NO_OBJ_SCORE)
MODES = ("propagate", "framewise")
MEMORY_ATTENTION_IMPLS = ("cached", "module")
# StageTimer stages of segment(), nested inside the caller's
SAM2_STAGES = ("sam2_image_encoder", "sam2_memory_attention", "sam2_memory_encoder", "sam2_mask_decoder")


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
    grid_logits: torch.Tensor  # (E, h, w) the frame's mask logits at the memory grid (memory_select)


@dataclass
class _Track:
    """One propagation: the memory bank, and with the cached runner each memory frame's projected keys/values."""

    bank: dict[int, _Memory]
    runner: MemoryAttentionRunner | None  # None: transformers' module (the reference path)
    budget: int | None
    selector: str
    projected: dict[int, ProjectedMemory] = field(default_factory=dict)


def _stage(timer, name: str):
    """``timer(name)`` (a ``litelvlm.timing.StageTimer``), or nothing without a timer."""
    return timer(name) if timer is not None else contextlib.nullcontext()


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

    def __init__(self, config, image_batch: int | None = None):
        super().__init__()
        from transformers import Sam2VideoModel

        from .hiera import drop_unused_attention_weights

        self.config = config
        self.model = Sam2VideoModel(config).eval().requires_grad_(False)
        neck = self.model.vision_encoder.neck
        neck.position_encoding = ShapeCachedSinePositionEmbedding(neck.position_encoding)
        drop_unused_attention_weights(self.model.vision_encoder)
        self.image_batch = image_batch
        self.memory_attention_impl = "cached"  # "module": transformers' Sam2VideoMemoryAttention (reference, no budget)

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

    @property
    def image_batch(self) -> int:
        """Frames per image-encoder call (same features as one at a time): set an int, or None for 1 on CPU (no gain
        there) and 8 on an accelerator."""
        return self._image_batch or (1 if self.device.type == "cpu" else 8)

    @image_batch.setter
    def image_batch(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"image_batch must be a positive number of frames or None (automatic), got {value!r}")
        self._image_batch = value

    @property
    def memory_tokens(self) -> int:
        """Spatial memory tokens per frame (64 x 64 = 4096 at 1024 px): the largest ``memory_budget``."""
        h, w = self.config.vision_config.backbone_feature_sizes[-1]
        return h * w

    def check_memory_options(self, memory_budget: int | None, memory_selector: str, mode: str = "propagate") -> None:
        """One-line ValueErrors for a bad memory budget or selector, before any work."""
        if self.memory_attention_impl not in MEMORY_ATTENTION_IMPLS:
            raise ValueError(f"memory_attention_impl must be one of {MEMORY_ATTENTION_IMPLS}, got {self.memory_attention_impl!r}")
        check_memory_budget(memory_budget, self.memory_tokens)
        get_memory_selector(memory_selector)
        if memory_budget is not None and mode != "propagate":
            raise ValueError(f"memory_budget prunes SAM2's memory bank: it needs mode 'propagate', got {mode!r}")
        if memory_budget is not None and self.memory_attention_impl == "module":
            raise ValueError("memory_budget needs memory_attention_impl 'cached' (transformers' module attends to every token)")

    def preprocess(self, frames) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB -> (T, 3, S, S) float32 pixel values (VideoGLaMM's SAM2 preprocessing)."""
        return preprocess_frames(frames, self.image_size)

    # ------------------------------------------------------------------ per-frame pieces

    @torch.no_grad()
    def encode_frames(self, pixel_values: torch.Tensor) -> list[FrameFeatures]:
        """Image encoder (Hiera + FPN, conv_s0/conv_s1 applied) on (B, 3, S, S) frames in one call -> one each."""
        out = self.model.get_image_features(pixel_values.to(self.device, self.dtype), return_dict=True)
        sizes, count = self.config.vision_config.backbone_feature_sizes, len(pixel_values)
        high_res = [x.permute(1, 2, 0).reshape(count, -1, *size) for x, size in zip(out.fpn_hidden_states[:-1], sizes)]
        top, top_pos = out.fpn_hidden_states[-1], out.fpn_position_encoding[-1]
        return [FrameFeatures(top[:, i : i + 1], top_pos[:, i : i + 1], [x[i : i + 1] for x in high_res]) for i in range(count)]

    def encode_frame(self, pixel_values: torch.Tensor) -> FrameFeatures:
        """``encode_frames`` on one (1, 3, S, S) frame."""
        return self.encode_frames(pixel_values)[0]

    def _encoded_frames(self, pixel_values: torch.Tensor, timer=None) -> Iterator[FrameFeatures]:
        """Every frame's features in order, ``image_batch`` frames per image-encoder call."""
        step = self.image_batch
        for start in range(0, len(pixel_values), step):
            with _stage(timer, "sam2_image_encoder"):
                frames = self.encode_frames(pixel_values[start : start + step])
            yield from frames

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
        grid_logits = memory_grid_logits(head.low_res, tuple(features.shape[-2:]))
        return _Memory(flat(features).to(torch.bfloat16), flat(position).to(self.dtype), head.object_pointer, grid_logits)

    def _spatial_slots(self, frame_idx: int) -> list[tuple[int, int]]:
        """(memory frame, temporal slot): prompted frame 0 at slot num_maskmem-1, then the last num_maskmem-1 tracked frames."""
        num_maskmem = self.config.num_maskmem
        slots = [(0, num_maskmem - 1)]
        for offset in range(num_maskmem - 1, 0, -1):
            if frame_idx - offset >= 1:  # frame 0 is the conditioning frame, already included
                slots.append((frame_idx - offset, offset - 1))
        return slots

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
        return pointers.to(self.dtype), position.repeat_interleave(splits, dim=0).to(self.dtype)

    @torch.no_grad()
    def _module_memory_attention(self, frame: FrameFeatures, bank: dict[int, _Memory], frame_idx: int, pointers) -> torch.Tensor:
        """transformers' ``Sam2VideoMemoryAttention`` over every memory token (the reference path) -> (h*w, E, C)."""
        pointers, pointer_positions = pointers
        num_objects = pointers.shape[1]
        temporal = self.model.memory_temporal_positional_encoding
        slots = self._spatial_slots(frame_idx)
        features = [bank[f].features.to(self.dtype) for f, _ in slots]
        positions = [bank[f].position + temporal[slot] for f, slot in slots]
        out = self.model.memory_attention(
            current_vision_features=frame.top.expand(-1, num_objects, -1),
            memory=torch.cat([*features, pointers], dim=0),
            current_vision_position_embeddings=frame.top_pos.expand(-1, num_objects, -1),
            memory_posision_embeddings=torch.cat([*positions, pointer_positions], dim=0),
            num_object_pointer_tokens=pointers.shape[0],
        )  # (1, E, h*w, C)
        return out[0].transpose(0, 1)

    def _projected(self, track: _Track, frame_idx: int) -> ProjectedMemory:
        """A memory frame's keys and values, at the tokens the selector keeps when there is a budget."""
        memory, rows = track.bank[frame_idx], None
        if track.budget is not None:
            rows = select_memory_tokens(track.selector, memory.grid_logits, memory.features.to(self.dtype), track.budget)
        return track.runner.project(memory.features, memory.position, rows)

    @torch.no_grad()
    def _memory_conditioned(self, frame: FrameFeatures, track: _Track, frame_idx: int, num_frames: int) -> torch.Tensor:
        """Memory attention of the frame's top features over the memory bank -> (E, C, h, w)."""
        pointers = self._pointer_memories(track.bank, frame_idx, num_frames)
        if track.runner is None:
            return self._top_map(self._module_memory_attention(frame, track.bank, frame_idx, pointers))
        slots = self._spatial_slots(frame_idx)
        track.projected = {f: track.projected[f] if f in track.projected else self._projected(track, f) for f, _ in slots}
        memories = [(track.projected[f], slot) for f, slot in slots]
        temporal = self.model.memory_temporal_positional_encoding
        return self._top_map(track.runner(frame.top, frame.top_pos, memories, temporal, *pointers))

    # ------------------------------------------------------------------ whole videos

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        is_float = isinstance(pixel_values, torch.Tensor) and pixel_values.is_floating_point()
        if not is_float or tuple(pixel_values.shape[1:]) != (3, size, size) or not len(pixel_values):
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            raise ValueError(f"pixel_values must be a float tensor (T >= 1, 3, {size}, {size}), got {shape}")
        return pixel_values

    @torch.no_grad()
    def propagate_logits(self, pixel_values: torch.Tensor, first_frame_tokens: torch.Tensor, memory_budget: int | None = None,
                         memory_selector: str = "mask", timer=None) -> torch.Tensor:
        """Prompt every object on frame 0 with ``first_frame_tokens`` (E, 1, N, C) and track it with memory.

        Returns low-resolution mask logits (E, T, 4h, 4w) (VideoGLaMM's ``inference_video_branch``).
        ``memory_budget``: spatial tokens each memory frame keeps per object (None: all), chosen by
        ``memory_selector`` (``memory_select``); ``timer``: a ``StageTimer`` for the ``SAM2_STAGES``.
        """
        pixel_values = self._check_pixel_values(pixel_values)
        self.check_memory_options(memory_budget, memory_selector)
        num_frames, num_objects = len(pixel_values), first_frame_tokens.shape[0]
        keep = max(self.config.num_maskmem, self.config.max_object_pointers_in_encoder)
        runner = MemoryAttentionRunner(self.model.memory_attention, self.dtype) if self.memory_attention_impl == "cached" else None
        track = _Track({}, runner, memory_budget, memory_selector)
        logits = []
        for t, frame in enumerate(self._encoded_frames(pixel_values, timer)):
            if t == 0:
                pixels = self._top_map(frame.top + self.model.no_memory_embedding).expand(num_objects, -1, -1, -1)
            else:
                with _stage(timer, "sam2_memory_attention"):
                    pixels = self._memory_conditioned(frame, track, t, num_frames)
            with _stage(timer, "sam2_mask_decoder"):
                tokens = first_frame_tokens if t == 0 else self.empty_prompt_tokens(num_objects)
                head = self.decode_heads(pixels, frame.high_res, tokens, self._use_multimask(t == 0))
            with _stage(timer, "sam2_memory_encoder"):
                track.bank[t] = self._encode_memory(frame, head, binarize=t == 0)
            if t - keep >= 1:  # out of reach of both memory windows; frame 0 always stays
                del track.bank[t - keep]
            logits.append(head.low_res)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def framewise_logits(self, pixel_values: torch.Tensor, prompt_embeddings: torch.Tensor, timer=None) -> torch.Tensor:
        """Decode every frame on its own with the same [SEG] embeddings (E, C) -> logits (E, T, 4h, 4w).

        VideoGLaMM's ``inference_framewise``: features + no-memory embedding, sparse = [SEG] only,
        single-mask output (with SAM2's dynamic multimask fallback), no object-score gating.
        """
        pixel_values = self._check_pixel_values(pixel_values)
        tokens = prompt_embeddings[None, :, None, :].to(self.device, self.dtype)  # (1, E, 1, C)
        pe = self.model.get_image_wide_positional_embeddings()
        logits = []
        for frame in self._encoded_frames(pixel_values, timer):
            with _stage(timer, "sam2_mask_decoder"):
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

    def segment(self, frames_or_pixel_values, prompt_embeddings: torch.Tensor, original_size=None, mode: str = "propagate",
                memory_budget: int | None = None, memory_selector: str = "mask", timer=None) -> torch.Tensor:
        """Masks (E, T, H, W) bool at the original video size, one object per [SEG] embedding (E, C).

        ``frames_or_pixel_values``: uint8 (T, H, W, 3) frames, or float (T, 3, S, S) pixel values from
        ``preprocess`` (then ``original_size`` (H, W) is required). ``mode``: "propagate" (prompt on
        frame 0, track with memory, as VideoGLaMM) or "framewise" (decode every frame independently).
        ``memory_budget`` (propagate only): spatial memory tokens kept per memory frame and object, an int
        in [1, ``memory_tokens``] or None (all, exact), chosen by ``memory_selector`` (``memory_select``).
        ``timer``: a ``litelvlm.timing.StageTimer`` timing the ``SAM2_STAGES`` (nested in the caller's stage).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.check_memory_options(memory_budget, memory_selector, mode)
        pixel_values, original_size = self._inputs(frames_or_pixel_values, original_size)
        prompts = self._check_prompts(prompt_embeddings)
        if len(prompts) == 0:
            return torch.zeros(0, len(pixel_values), *original_size, dtype=torch.bool, device=self.device)
        if mode == "propagate":
            logits = self.propagate_logits(pixel_values, self.object_tokens(prompts), memory_budget, memory_selector, timer)
        else:
            logits = self.framewise_logits(pixel_values, prompts, timer)
        return self.masks_at(logits, original_size)

"""GLaMM's grounding encoder: transformers' ``SamModel`` driven the way GLaMM/LISA drive SAM."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from .config import infer_sam_architecture
from .keys import convert_sam_state_dict

__all__ = ["GroundingEncoder"]


class GroundingEncoder(torch.nn.Module):
    """SAM image encoder + prompt encoder + mask decoder (a transformers ``SamModel`` in ``self.sam``).

    Masks come from one sparse prompt token per object (an LLM ``[SEG]`` embedding projected to the
    prompt width), no points, boxes or mask inputs, and a single (non-multimask) output.
    """

    def __init__(self, config):
        super().__init__()
        from transformers import SamModel

        self.sam = SamModel(config)

    @classmethod
    def from_original_state_dict(
        cls, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None, decoder_num_heads: int | None = None
    ) -> "GroundingEncoder":
        """Build from an original segment-anything state dict (no checkpoint prefix): infer the
        architecture from the shapes, rename, load strictly. ``dtype=None`` keeps the stored dtype.
        The result is in eval mode with gradients off; the tensors of ``state_dict`` are reused."""
        config = infer_sam_architecture(state_dict, decoder_num_heads).to_sam_config()
        hf_sd = convert_sam_state_dict(state_dict, decoder_num_heads)
        with torch.device("meta"):
            encoder = cls(config)
        try:
            encoder.sam.load_state_dict(hf_sd, strict=True, assign=True)
        except RuntimeError as err:
            raise ValueError(f"SAM weights do not fit the architecture inferred from their shapes: {err}") from err
        left_on_meta = [name for name, t in encoder.state_dict().items() if t.is_meta]
        if left_on_meta:
            raise ValueError(f"SAM tensors not provided by the state dict: {left_on_meta}")
        if dtype is not None:
            encoder = encoder.to(dtype)
        return encoder.eval().requires_grad_(False)

    @property
    def config(self):
        """The transformers ``SamConfig``."""
        return self.sam.config

    @property
    def image_size(self) -> int:
        """Side of the square padded input image (1024 for released SAMs)."""
        return int(self.sam.config.vision_config.image_size)

    @property
    def embedding_size(self) -> int:
        """Side of the square image-embedding grid (64 for released SAMs)."""
        return int(self.sam.config.prompt_encoder_config.image_embedding_size)

    @property
    def embed_dim(self) -> int:
        """Channels of the image embeddings and width of a prompt embedding (256 for released SAMs)."""
        return int(self.sam.config.prompt_encoder_config.hidden_size)

    @property
    def dtype(self) -> torch.dtype:
        return self.sam.mask_decoder.iou_token.weight.dtype

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised, padded images -> image embeddings (B, embed_dim, S/16, S/16)."""
        size = self.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
            raise ValueError(f"pixel_values must have shape (B, 3, {size}, {size}) (see preprocess_for_sam); got {tuple(pixel_values.shape)}")
        return self.sam.vision_encoder(pixel_values.to(self.dtype)).last_hidden_state

    def dense_positional_embedding(self) -> torch.Tensor:
        """The prompt encoder's positional encoding of the embedding grid, (1, embed_dim, g, g)."""
        return self.sam.get_image_wide_positional_embeddings()

    def no_mask_dense_embedding(self) -> torch.Tensor:
        """The dense prompt embedding used when no mask is given, (1, embed_dim, g, g)."""
        g = self.embedding_size
        return self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, g, g)

    def decode_masks(self, image_embeddings: torch.Tensor, prompt_embeddings: torch.Tensor) -> torch.Tensor:
        """Low-resolution mask logits (E, 1, 4g, 4g) for E prompt embeddings (E, embed_dim) of one image
        with embeddings (1, embed_dim, g, g): each prompt is the single sparse token, one batched call."""
        expected = (1, self.embed_dim, self.embedding_size, self.embedding_size)
        if tuple(image_embeddings.shape) != expected:
            raise ValueError(f"image_embeddings must have shape {expected} (one image); got {tuple(image_embeddings.shape)}")
        if prompt_embeddings.ndim != 2 or prompt_embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"prompt_embeddings must have shape (E, {self.embed_dim}); got {tuple(prompt_embeddings.shape)}")
        low = 4 * self.embedding_size
        if prompt_embeddings.shape[0] == 0:
            return image_embeddings.new_zeros((0, 1, low, low))
        masks, _ = self.sam.mask_decoder(
            image_embeddings=image_embeddings.to(self.dtype),
            image_positional_embeddings=self.dense_positional_embedding(),
            sparse_prompt_embeddings=prompt_embeddings.to(self.dtype)[None, :, None, :],
            dense_prompt_embeddings=self.no_mask_dense_embedding(),
            multimask_output=False,
        )
        return masks.reshape(prompt_embeddings.shape[0], 1, low, low)

    def postprocess_masks(
        self, low_res_logits: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        """Mask logits (E, H, W) at the original image size: bilinear up to the padded input size,
        crop the ``input_size`` (h, w after resizing) region, bilinear to ``original_size`` (H, W).
        Masks are ``logits > 0``."""
        if low_res_logits.ndim != 4 or low_res_logits.shape[1] != 1:
            raise ValueError(f"low_res_logits must have shape (E, 1, h, w); got {tuple(low_res_logits.shape)}")
        size = self.image_size
        if not (0 < input_size[0] <= size and 0 < input_size[1] <= size):
            raise ValueError(f"input_size {tuple(input_size)} must lie within the padded input {size}x{size}")
        masks = F.interpolate(low_res_logits, (size, size), mode="bilinear", align_corners=False)
        masks = masks[..., : int(input_size[0]), : int(input_size[1])]
        masks = F.interpolate(masks, (int(original_size[0]), int(original_size[1])), mode="bilinear", align_corners=False)
        return masks[:, 0]

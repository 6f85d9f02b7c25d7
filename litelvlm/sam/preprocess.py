"""SAM input preprocessing as GLaMM does it: resize the longest side, normalise, pad bottom/right."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["SamImagePreprocessor", "preprocess_for_sam", "SAM_PIXEL_MEAN", "SAM_PIXEL_STD"]

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def _as_rgb_uint8(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"image must be an RGB PIL image; got mode {image.mode!r} (call .convert('RGB') first)")
        image = np.asarray(image)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        described = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
        raise ValueError(f"image must be an RGB uint8 array of shape (H, W, 3); got {described}")
    if min(image.shape[:2]) == 0:
        raise ValueError(f"image must not be empty; got shape {image.shape}")
    return image


@dataclass(frozen=True)
class SamImagePreprocessor:
    """Resize so the longest side is ``target_size`` (PIL bilinear), normalise with SAM's pixel
    mean/std, zero-pad bottom/right to ``target_size`` x ``target_size``."""

    target_size: int = 1024
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD

    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) after resizing: each side scaled by target/longest and rounded half up."""
        scale = self.target_size * 1.0 / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def __call__(self, image) -> tuple[torch.Tensor, tuple[int, int]]:
        """RGB uint8 (H, W, 3) array or RGB PIL image -> (pixel_values (1, 3, S, S) float32, (h, w) after resize)."""
        image = _as_rgb_uint8(image)
        height, width = self.resized_shape(*image.shape[:2])
        resized = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
        pixels = torch.from_numpy(resized.copy()).permute(2, 0, 1).to(torch.float32)
        mean = torch.tensor(self.pixel_mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.pixel_std, dtype=torch.float32).view(3, 1, 1)
        pixels = (pixels - mean) / std
        pixels = F.pad(pixels, (0, self.target_size - width, 0, self.target_size - height))
        return pixels.unsqueeze(0), (height, width)


def preprocess_for_sam(image, target_size: int = 1024) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM input for one image: (pixel_values (1, 3, target_size, target_size), input_size (h, w) after resize)."""
    return SamImagePreprocessor(target_size)(image)

"""VideoGLaMM's SAM2 input preprocessing (utils/sam_transforms.py ``sam_preprocess(model_type="sam2")``).

Per frame: resize the longest side to ``image_size`` with PIL bilinear (what torchvision's
``resize`` does to a PIL image; the result is uint8 again), normalise with the ImageNet mean/std on
the 0-255 scale, then bilinearly stretch (``align_corners=False``) to an ``image_size`` square.
(Meta's own video predictor resizes straight to the square; VideoGLaMM's two-step version is kept.)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["SAM2_PIXEL_MEAN", "SAM2_PIXEL_STD", "longest_side_shape", "as_uint8_frames", "preprocess_frames"]

SAM2_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM2_PIXEL_STD = (58.395, 57.12, 57.375)


def longest_side_shape(height: int, width: int, target: int) -> tuple[int, int]:
    """(h, w) after scaling the longest side to ``target``, rounded half up (SAM's ResizeLongestSide)."""
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def as_uint8_frames(frames) -> np.ndarray:
    """Check and return video frames as a (T, H, W, 3) uint8 array."""
    array = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise ValueError(
            f"frames must be uint8 RGB of shape (T, H, W, 3) with T >= 1, got dtype {array.dtype} shape {array.shape}"
        )
    return array


def preprocess_frames(frames, image_size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB frames -> (T, 3, image_size, image_size) float32 SAM2 pixel values."""
    array = as_uint8_frames(frames)
    height, width = array.shape[1:3]
    new_h, new_w = longest_side_shape(height, width, image_size)
    mean = torch.tensor(SAM2_PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(SAM2_PIXEL_STD).view(3, 1, 1)
    out = torch.empty(len(array), 3, image_size, image_size)
    for t, frame in enumerate(array):
        resized = np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.BILINEAR))
        normalised = (torch.from_numpy(resized.copy()).permute(2, 0, 1).float() - mean) / std
        out[t] = F.interpolate(normalised[None], size=(image_size, image_size), mode="bilinear", align_corners=False)[0]
    return out

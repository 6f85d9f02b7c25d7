"""VideoGLaMM's InternVideo2 frame preprocessing (its ``VideoTrainProcessor``).

Each RGB uint8 frame is resized to 224x224 with OpenCV's default bilinear filter (no crop, aspect
ratio not kept), scaled to [0, 1] and normalised with the ImageNet mean/std. VideoGLaMM first pads a
short clip to 16 frames by repeating the last one, or keeps the first 16; that sampling is not done here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["INTERNVIDEO2_MEAN", "INTERNVIDEO2_STD", "preprocess_internvideo2_frames"]

INTERNVIDEO2_MEAN = (0.485, 0.456, 0.406)
INTERNVIDEO2_STD = (0.229, 0.224, 0.225)


def preprocess_internvideo2_frames(frames: Sequence[np.ndarray], image_size: int = 224) -> torch.Tensor:
    """List of (H, W, 3) uint8 RGB frames -> float32 (T, 3, image_size, image_size).

    For the encoder, reorder to (1, 3, T, S, S) with ``out.permute(1, 0, 2, 3)[None]``.
    """
    import cv2

    if len(frames) == 0:
        raise ValueError("preprocess_internvideo2_frames: got no frames")
    mean, std = np.asarray(INTERNVIDEO2_MEAN), np.asarray(INTERNVIDEO2_STD)
    out = []
    for i, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {i}: expected an (H, W, 3) uint8 RGB array, got {frame.dtype} {frame.shape}")
        resized = cv2.resize(frame, (image_size, image_size))
        out.append(((resized / 255.0 - mean) / std).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out)).float()

"""Small videos for tests: the sample scene sliding by, and an mp4 as OpenCV writes it by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["scene_clip", "write_opencv_mp4"]


def scene_clip(frames: int = 6, step: int = 16, every: int = 4) -> np.ndarray:
    """(frames, 90, 120, 3) uint8: the bundled sample scene (every ``every``-th pixel), rolled ``step`` pixels a frame."""
    from litelvlm.demo import sample_image_path
    from litelvlm.viz import load_rgb

    scene = load_rgb(sample_image_path())[::every, ::every]
    return np.stack([np.roll(scene, step * t, axis=1) for t in range(frames)])


def write_opencv_mp4(frames: np.ndarray, path: str | Path, fps: float = 5.0) -> Path:
    """``frames`` written with OpenCV's defaults for .mp4 (MPEG-4 part 2, fourcc mp4v): a file browsers cannot play."""
    import cv2

    out = Path(path)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return out

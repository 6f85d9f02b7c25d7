"""The video path: VideoGLaMM (CLIP + InternVideo2 + Phi-3 + SAM2) with per-frame visual-token pruning.

Heavy submodules load on first use: ``from video import VideoSegmenter`` pulls in transformers.
"""

__all__ = ["VideoSegmenter", "VideoSegmenterConfig", "VideoSegmentationResult", "VideoGLaMM", "read_video"]


def __getattr__(name):
    if name in ("VideoSegmenter", "VideoSegmenterConfig", "VideoSegmentationResult"):
        from . import segmenter

        return getattr(segmenter, name)
    if name == "VideoGLaMM":
        from .model import VideoGLaMM

        return VideoGLaMM
    if name == "read_video":
        from .io import read_video

        return read_video
    raise AttributeError(f"module 'video' has no attribute {name!r}")

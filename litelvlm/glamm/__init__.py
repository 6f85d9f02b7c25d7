"""The image path: GLaMM (CLIP ViT-L/14-336 + LLaMA-7B + SAM ViT-H) with visual-token pruning."""

from .model import GLaMM, GLaMMConfig
from .segmenter import GLaMMSegmenter, SegmentationResult

__all__ = ["GLaMM", "GLaMMConfig", "GLaMMSegmenter", "SegmentationResult"]

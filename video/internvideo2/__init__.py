"""InternVideo2-Stage2 vision encoder (VideoGLaMM's video tower): config, model, official-checkpoint loader."""

from .checkpoint import find_vision_prefix, infer_internvideo2_config, load_internvideo2, unwrap_state_dict
from .config import HEAD_DIM_RULE, InternVideo2Config
from .encoder import InternVideo2VisionEncoder
from .preprocess import INTERNVIDEO2_MEAN, INTERNVIDEO2_STD, preprocess_internvideo2_frames
from .tiny import tiny_internvideo2_checkpoint, write_tiny_internvideo2

__all__ = [
    "InternVideo2Config",
    "InternVideo2VisionEncoder",
    "load_internvideo2",
    "infer_internvideo2_config",
    "find_vision_prefix",
    "unwrap_state_dict",
    "write_tiny_internvideo2",
    "tiny_internvideo2_checkpoint",
    "preprocess_internvideo2_frames",
    "INTERNVIDEO2_MEAN",
    "INTERNVIDEO2_STD",
    "HEAD_DIM_RULE",
]

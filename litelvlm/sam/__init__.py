"""SAM grounding encoder (GLaMM): transformers' ``SamModel`` loaded from original segment-anything weights."""

from .config import (
    SAM_DECODER_HEADS,
    SAM_VIT_B,
    SAM_VIT_H,
    SAM_VIT_L,
    SamArchitecture,
    infer_sam_architecture,
    sam_config_from_state_dict,
)
from .encoder import GroundingEncoder
from .keys import convert_sam_state_dict, expected_hf_keys, strip_prefix, to_segment_anything_state_dict
from .preprocess import SAM_PIXEL_MEAN, SAM_PIXEL_STD, SamImagePreprocessor, preprocess_for_sam

__all__ = [
    "GroundingEncoder",
    "SamArchitecture",
    "SAM_VIT_B",
    "SAM_VIT_L",
    "SAM_VIT_H",
    "SAM_DECODER_HEADS",
    "infer_sam_architecture",
    "sam_config_from_state_dict",
    "convert_sam_state_dict",
    "to_segment_anything_state_dict",
    "expected_hf_keys",
    "strip_prefix",
    "SamImagePreprocessor",
    "preprocess_for_sam",
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
]

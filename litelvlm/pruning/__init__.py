"""The shared per-frame pruning core: one module for the image path, the video path and the benchmarks."""

from .features import ClipFrameFeatures, context_scores, encode_frames, text_similarity
from .methods import (
    AllTokens,
    GridSelector,
    LiteLVLMSelector,
    RandomSelector,
    Selection,
    TokenSelector,
    available_methods,
    get_method,
    grid_indices,
    register_method,
)
from .pruner import ClipTokenPruner, PruneResult
from .select import check_budget, litelvlm_select

__all__ = [
    "litelvlm_select",
    "check_budget",
    "ClipTokenPruner",
    "PruneResult",
    "ClipFrameFeatures",
    "encode_frames",
    "context_scores",
    "text_similarity",
    "Selection",
    "TokenSelector",
    "register_method",
    "get_method",
    "available_methods",
    "grid_indices",
    "LiteLVLMSelector",
    "AllTokens",
    "RandomSelector",
    "GridSelector",
]

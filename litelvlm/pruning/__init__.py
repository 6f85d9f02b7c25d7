"""The shared pruning core: per-frame methods (``TokenSelector``) and clip-level methods (``ClipSelector``), one
registry, for the image path, the video path and the benchmarks."""

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
    method_from_spec,
    parse_method_spec,
    register_method,
)
from .pruner import ClipTokenPruner, PruneResult
from .clip_level import ClipSelector, ClipTokens, FrameSelection, TimeAwareLiteLVLM, check_clip_budget, clip_level_methods
from . import baselines  # noqa: F401  registers visionzip, vispruner, prumerge(+), trim, cdpruner, divprune, evtp, ivcprune, dycoke, fastvid, prunevid, sttm, holitom
from .select import cell_tokens, check_budget, litelvlm_select, litelvlm_select_cells

__all__ = [
    "litelvlm_select",
    "litelvlm_select_cells",
    "cell_tokens",
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
    "parse_method_spec",
    "method_from_spec",
    "grid_indices",
    "LiteLVLMSelector",
    "AllTokens",
    "RandomSelector",
    "GridSelector",
    "ClipSelector",
    "ClipTokens",
    "FrameSelection",
    "check_clip_budget",
    "clip_level_methods",
    "TimeAwareLiteLVLM",
]

"""VideoGLaMM's SAM2 pixel decoder, composed from transformers' Sam2Video and loaded from original sam2 weights.

What VideoGLaMM does (mbzuai-oryx/VideoGLaMM, commit 6b15b1e "code release"):

* Weights. ``VideoGLaMMForCausalLM.model`` is a ``VideoGLaMMModel`` whose ``visual_model`` is a SAM2
  Hiera-L (``model/VideoGLaMM.py`` ``initialize_lisa_modules``: ``build_sam2_video_predictor(
  "sam2_hiera_l.yaml", ...)`` with ``--use_sam2_video_branch``, ``build_sam2`` otherwise; same
  parameters). So the checkpoint stores SAM2 under ``model.visual_model.`` in the original sam2
  naming (``VIDEOGLAMM_SAM2_PREFIX``), with one change: its vendored sam2
  (``model/segment_anything_2/sam2/modeling/memory_encoder.py`` CXBlock) renamed the memory fuser
  layer scale ``gamma`` -> ``weight`` and ``build_sam.py::_load_checkpoint`` renames ``.gamma`` to
  ``.weight`` when reading Meta's ``sam2_hiera_large.pt``; the key is therefore
  ``memory_encoder.fuser.layers.{i}.weight``. [SEG] goes through ``model.text_hidden_fcs.0``
  (Linear(3072,3072), ReLU, Linear(3072,256), Dropout(0)) to a 256-d embedding.
* Config (``model/segment_anything_2/sam2_configs/sam2_hiera_l.yaml``): SAM2.0 (no 2.1 extras),
  Hiera embed 144, heads 2, stages (2,6,36,4), global blocks (23,33,43), windows (8,4,16,8),
  image 1024, num_maskmem 7, sigmoid scale/bias 20/-10, directly_add_no_mem_embed,
  high-res features, multimask_output_in_sam with multimask_min/max_pt_num 0/1 and
  multimask_output_for_tracking (so multimask on every frame), use_multimask_token_for_obj_ptr,
  object-score prediction (MLP) with fixed no-object pointer, object pointers without temporal
  encoding (add_tpos_enc_to_obj_ptrs false), only past pointers at eval. ``build_sam.py`` adds
  dynamic_multimask_via_stability (delta 0.05, thresh 0.98) and, for the video predictor,
  binarize_mask_from_pts_for_mem_enc=true and fill_hole_area=8 (hole filling itself is a no-op
  ``pass  # TODO`` in its ``sam2_video_predictor.py``).
* Injection. The vendored ``sam/prompt_encoder.py`` takes ``text_embeds`` and concatenates them
  after the point/box sparse tokens; dense = no-mask embedding. The released evaluations
  (``eval_referdavis_infer.py``, ``eval_mevis.py``, ... all run with ``--use_sam2_video_branch``) use
  ``VideoGLaMM.py::inference_video_branch``: ``init_state_from_tensor(images_for_sam, H, W)``, then
  for each [SEG] i ``add_new_text(frame_idx=0, obj_id=i, text=emb[i])`` (``sam2_video_predictor.py``),
  which runs ``track_step`` on frame 0 as an initial conditioning frame with ``point_inputs=None``;
  ``_forward_sam_heads`` then pads with one label -1 point at (0,0), the prompt encoder adds its
  padding point, and the [SEG] embedding is appended: 3 sparse tokens, multimask on, best-IoU mask,
  object-score gating. The embedding is used on frame 0 only; ``propagate_in_video`` tracks all
  objects (batched, independent) through every frame with the memory bank (frame 0 memory from the
  binarized mask, later frames from sigmoid masks; memories kept in bfloat16; 7 memory frames; up to
  16 object pointers). Output: low-res (256x256) logits bilinearly resized to the original (H, W)
  (``_get_orig_video_res_output``), then ``> 0``; no non-overlap constraint.
  ``inference_framewise`` (without ``--use_sam2_video_branch``) instead decodes every frame on its
  own: features + no_mem_embed, sparse = [SEG] only, ``multimask_output=False`` (dynamic multimask
  fallback applies in eval), no object-score gating, ``postprocess_masks`` = bilinear to (H, W).
* Frames. ``chat.py::preprocess_vision`` sends every frame it is given to SAM2 (the 16-frame
  ``np.linspace`` subsampling is only for the LLM encoders): ``eval_referdavis_infer.py`` feeds
  clips of up to 64 frames, ``eval_mevis.py`` (MeViS, Ref-YouTube-VOS) whole videos. Frames are
  preprocessed by ``utils/sam_transforms.py`` (``SAM_v2_Preprocess``; see ``video.sam2.preprocess``).

litelvlm's own additions: memory attention over keys/values projected once per memory frame
(``memory_attention``, equal to transformers' module up to float rounding) and, off by default, memory
pruning to ``memory_budget`` spatial tokens per memory frame (``memory_select``).

Differences kept on purpose: everything runs in the decoder's dtype (VideoGLaMM wraps inference in
fp16 autocast); masks are computed for all objects as one batch (numerically the same as SAM2's
per-object loop).
"""

from .architecture import (
    RELEASED_HIERA_LAYOUTS,
    SAM2_IMAGE_SIZE,
    TINY_SAM2_IMAGE_SIZE,
    HieraLayout,
    Sam2Architecture,
    infer_sam2_architecture,
    sam2_config_from_state_dict,
)
from .convert import (
    VIDEOGLAMM_SAM2_PREFIX,
    convert_sam2_state_dict,
    expected_hf_shapes,
    extract_sam2_state_dict,
    to_original_sam2_state_dict,
)
from .decoder import NO_OBJECT_SCORE, SAM2_STAGES, FrameFeatures, HeadOutput, Sam2PixelDecoder
from .flops import memory_attention_flops
from .memory_select import available_memory_selectors, get_memory_selector, register_memory_selector
from .preprocess import SAM2_PIXEL_MEAN, SAM2_PIXEL_STD, longest_side_shape, preprocess_frames
from .tiny import random_sam2_tensors, tiny_sam2_architecture, write_tiny_sam2_state_dict

__all__ = [
    "RELEASED_HIERA_LAYOUTS",
    "SAM2_IMAGE_SIZE",
    "TINY_SAM2_IMAGE_SIZE",
    "HieraLayout",
    "Sam2Architecture",
    "infer_sam2_architecture",
    "sam2_config_from_state_dict",
    "VIDEOGLAMM_SAM2_PREFIX",
    "convert_sam2_state_dict",
    "expected_hf_shapes",
    "extract_sam2_state_dict",
    "to_original_sam2_state_dict",
    "NO_OBJECT_SCORE",
    "FrameFeatures",
    "HeadOutput",
    "Sam2PixelDecoder",
    "SAM2_STAGES",
    "memory_attention_flops",
    "available_memory_selectors",
    "get_memory_selector",
    "register_memory_selector",
    "SAM2_PIXEL_MEAN",
    "SAM2_PIXEL_STD",
    "longest_side_shape",
    "preprocess_frames",
    "random_sam2_tensors",
    "tiny_sam2_architecture",
    "write_tiny_sam2_state_dict",
]

"""``GLaMMSegmenter``: referring-expression segmentation with R of 576 visual tokens.

Per image: one CLIP vision forward, one CLIP text forward for all its texts, one SAM image-encoder
forward; all conversations of the image through the LLM in one right-padded batch; all masks in one
mask-decoder call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..clip import ClipTowers, load_clip_towers
from ..lvlm import check_expressions, default_dtype, hidden_before, pick_attn_implementation, splice_and_pad
from ..pruning import ClipTokenPruner, get_method
from ..pruning.methods import InLLMSelector
from ..sam import preprocess_for_sam
from ..timing import StageTimer
from .model import GLaMM
from .prompt import DEFAULT_ANSWER, DEFAULT_QUESTION, IMAGE_TOKEN_INDEX, SEG_TOKEN, build_conversation, question_for, tokenize_with_image

__all__ = ["GLaMMSegmenter", "SegmentationResult", "PRUNE_SCOPES", "CONVERSATIONS", "PRUNE_TEXTS"]

PRUNE_SCOPES = ("expression", "image")
CONVERSATIONS = ("separate", "multi_turn")
PRUNE_TEXTS = ("question", "expression")


@dataclass
class SegmentationResult:
    """Masks (E, H, W) bool at the image size; ``kept`` the E kept-index tensors that reached the LLM."""

    masks: np.ndarray
    kept: list[torch.Tensor]
    num_visual_tokens: int
    method: str
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage and "total", in the timer's clock
    seg_embeddings: torch.Tensor | None = field(default=None, repr=False)
    wall_timings: dict[str, float] = field(default_factory=dict)  # wall-clock seconds per stage and "total"


class GLaMMSegmenter:
    """Segment referring expressions in an image with GLaMM, pruning CLIP tokens before the LLM."""

    def __init__(self, model: GLaMM, clip: ClipTowers, tokenizer, device="cpu", dtype=torch.float32):
        self.model = model
        self.clip = clip
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.dtype = dtype
        self.pruner = ClipTokenPruner(clip.vision, clip.text, model.config.select_layer, tokenizer=clip.tokenizer,
                                      llm_projector=model.project_image_tokens)
        seg_ids = tokenizer(SEG_TOKEN, add_special_tokens=False).input_ids
        if len(seg_ids) != 1:
            raise ValueError(f"the GLaMM tokenizer does not know the {SEG_TOKEN} token (got ids {seg_ids}): wrong checkpoint folder?")
        self.seg_token_id = seg_ids[0]

    @classmethod
    def from_pretrained(
        cls,
        glamm_dir: str | Path,
        vision_tower: str | Path | None = None,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        attn_implementation: str | None = None,
        clip_attn_implementation: str | None = None,
    ) -> "GLaMMSegmenter":
        """Load GLaMM from a GLaMM-RefSeg folder or Hub id (``MBZUAI/GLaMM-RefSeg``) and CLIP from ``vision_tower``
        (a folder or Hub id; default: the one named in the checkpoint's config, ``openai/clip-vit-large-patch14-336``). The released evaluation ran bf16 with
        transformers 4's eager attention: ``dtype=torch.bfloat16, clip_attn_implementation="eager"``
        reproduces its kept tokens (``litelvlm precision`` measures how much SDPA changes them)."""
        from ..clip import require_local_dir, resolve_clip_dir
        from ..hub import PATTERNS
        from ..tokenizer import ReleasedLlamaTokenizer
        from .model import GLaMMConfig

        dtype = dtype or default_dtype(device)
        glamm_dir = require_local_dir(glamm_dir, "GLaMM checkpoint", patterns=PATTERNS["glamm"])  # a Hub id becomes its cached folder
        # the small files first (configs, the CLIP folder, the tokenizer): a bad one fails before 7B weights load
        clip_dir = resolve_clip_dir(vision_tower or GLaMMConfig.from_dir(glamm_dir).vision_tower)
        tokenizer = ReleasedLlamaTokenizer.from_pretrained(glamm_dir)  # the released ids from the checkpoint's tokenizer.model
        model = GLaMM.from_checkpoint(glamm_dir, device, dtype, pick_attn_implementation(device, attn_implementation))
        clip = load_clip_towers(clip_dir, device, dtype, attn_implementation=clip_attn_implementation)
        return cls(model, clip, tokenizer, device, dtype)

    # ------------------------------------------------------------------ stages
    def _texts_for_pruning(self, expressions, questions, prune_text: str) -> list[str]:
        if prune_text not in PRUNE_TEXTS:
            raise ValueError(f"prune_text must be one of {PRUNE_TEXTS}, got {prune_text!r}")
        return list(questions) if prune_text == "question" else [e.strip().lower() for e in expressions]

    def _select(self, frames, budget, text_embeds, selector, prune_scope):
        """Kept features per conversation row: (E, V, D) for per-expression scope, (1, V, D) joint."""
        if selector.stage == "clip":
            selector.select(None, budget)  # raises: a clip-level method needs a video
        if selector.stage != "pre_llm" and not isinstance(selector, InLLMSelector):  # FastV, IVC-Prune: all tokens enter the LLM
            raise ValueError(f"method {selector.name!r} prunes inside the LLM and is not supported by this segmenter yet")
        if prune_scope == "image" or not selector.uses_text:
            res = self.pruner.select(frames, budget, text_embeds if selector.uses_text else None, selector)
            return res.indices, res.features
        rows = [self.pruner.select(frames, budget, text_embeds[e : e + 1], selector) for e in range(text_embeds.shape[0])]
        return torch.cat([r.indices for r in rows]), torch.cat([r.features for r in rows])

    def _prefill(self, batch, selector, budget):
        """Last-layer hidden states, their token ids and, for a method pruning inside the LLM, the (B, budget) image
        tokens it kept."""
        if isinstance(selector, InLLMSelector):
            return selector.prefill(self.model.llm, batch, budget)
        return self.model.prefill_hidden(batch.inputs_embeds, batch.attention_mask), batch.token_ids, None

    def _prompts(self, questions, answers, conversation):
        use_se = self.model.config.use_im_start_end
        if conversation == "multi_turn":
            return [tokenize_with_image(build_conversation(questions, answers, use_se), self.tokenizer)]
        return [tokenize_with_image(build_conversation([q], [a], use_se), self.tokenizer) for q, a in zip(questions, answers)]

    @torch.no_grad()
    def segment(
        self,
        image: np.ndarray,
        expressions: Sequence[str],
        budget: int | None = None,
        method: str = "litelvlm",
        *,
        questions: Sequence[str] | None = None,
        answers: Sequence[str] | None = None,
        prune_scope: str = "expression",
        conversation: str = "separate",
        prune_text: str = "question",
        question_template: str = DEFAULT_QUESTION,
        timer: StageTimer | None = None,
    ) -> SegmentationResult:
        """Masks for each expression of ``image`` (H, W, 3) uint8.

        ``budget`` visual tokens per expression (None: all 576, unpruned). ``prune_scope="image"``
        prunes once against all the image's texts (released); ``conversation="multi_turn"`` asks all
        questions in one conversation (released; requires image scope). ``prune_text`` picks what
        the CLIP text tower scores: the templated question (released) or the bare expression.
        ``timer`` (a ``StageTimer``, e.g. a memory-measuring probe) wraps each stage.
        """
        image, expressions = self._check_inputs(image, expressions, prune_scope, conversation)
        questions = list(questions) if questions is not None else [question_for(e, question_template) for e in expressions]
        answers = list(answers) if answers is not None else [DEFAULT_ANSWER] * len(expressions)
        if len(questions) != len(expressions) or len(answers) != len(expressions):
            raise ValueError(f"{len(expressions)} expressions need as many questions and answers (got {len(questions)}, {len(answers)})")
        selector = get_method("none" if budget is None else method)  # None: all 576 tokens, the unpruned model
        timer = timer or StageTimer(self.device)
        model = self.model

        with timer("clip_vision"):
            clip_pixels = self.clip.image_processor(images=[image], return_tensors="pt", input_data_format="channels_last").pixel_values
            frames = self.pruner.encode(clip_pixels.to(self.device, self.dtype))
        with timer("clip_text"):
            text_embeds = self.pruner.text_embeds(self._texts_for_pruning(expressions, questions, prune_text))
        with timer("selection"):
            kept, features = self._select(frames, budget, text_embeds, selector, prune_scope)
        with timer("llm_prefill"):
            prompts = self._prompts(questions, answers, conversation)
            visual = model.project_image_tokens(features)
            visual_rows = [[visual[0 if visual.shape[0] == 1 else i]] for i in range(len(prompts))]
            batch = splice_and_pad(prompts, visual_rows, model.embed_tokens, IMAGE_TOKEN_INDEX)
            hidden, token_ids, llm_kept = self._prefill(batch, selector, budget)
            if llm_kept is not None:  # ranks among each row's image tokens -> patch indices
                kept = kept.expand(llm_kept.shape[0], -1).gather(1, llm_kept)
            seg_hidden = torch.cat(hidden_before(hidden, token_ids, self.seg_token_id))
            seg_embeddings = model.text_hidden_fcs(seg_hidden)
        with timer("sam_image_encoder"):
            sam_pixels, input_size = preprocess_for_sam(image)
            image_embeddings = model.grounding.encode_image(sam_pixels.to(self.device, self.dtype))
        with timer("mask_decoder"):
            low_res = model.grounding.decode_masks(image_embeddings, seg_embeddings)
            logits = model.grounding.postprocess_masks(low_res, input_size, image.shape[:2])
            masks = (logits.float() > 0).cpu().numpy()

        kept_rows = [kept[0 if kept.shape[0] == 1 else i].cpu() for i in range(len(expressions))]
        return SegmentationResult(masks, kept_rows, int(kept.shape[1]), selector.name, timer.as_dict(), seg_embeddings.float().cpu(),
                                  timer.wall_dict())

    def _check_inputs(self, image, expressions, prune_scope, conversation):
        expressions = check_expressions(expressions)
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be an (H, W, 3) uint8 array, got shape {image.shape} dtype {image.dtype}")
        if prune_scope not in PRUNE_SCOPES:
            raise ValueError(f"prune_scope must be one of {PRUNE_SCOPES}, got {prune_scope!r}")
        if conversation not in CONVERSATIONS:
            raise ValueError(f"conversation must be one of {CONVERSATIONS}, got {conversation!r}")
        if conversation == "multi_turn" and prune_scope != "image":
            raise ValueError("conversation='multi_turn' shares one image among all questions: use prune_scope='image'")
        return image, expressions

"""Which sentences of a split are scored, with which questions, and how: the ``all`` and ``glamm`` protocols.

* ``all`` (default): every sentence of every ref, the fixed question "Can you segment the {expr} in this
  image?" and answer "Sure, it is [SEG].", each expression segmented on its own (separate conversation,
  per-expression pruning). Nothing is random, so a run repeats to the last digit. Scored against the UNION
  of the annotation's polygons (``ReferSplit.gt_mask``), I = |P and G|, U = |P or G|, and gIoU = the mean
  of the per-expression terms.
* ``glamm``: the released GLaMM/LiteLVLM procedure (``eval/referring_seg/infer_and_evaluate.py`` with
  ``RefCOCO_Segm_ds.py`` and ``tools/utils.py``). Per image at most 3 sentences drawn without replacement
  from all sentences of the image's refs, each with a question template and an answer drawn from GLaMM's
  lists, all asked in ONE multi-turn conversation with joint pruning over the image's questions. The
  released code draws from unseeded global RNGs; here each image draws from its own generator seeded by
  (seed, image_id), so runs repeat for a fixed ``--seed`` regardless of sharding or resuming.

  Scoring reproduces the release:

  - ground truth = the SUM of the annotation's decoded polygons cast to uint8 (``ReferSplit.gt_counts``):
    2 where two parts overlap, the part count modulo 256 in general; an empty segmentation is all zeros;
  - per expression the released ``intersectionAndUnionGPU(pred, gt, K=2, ignore_index=255)``
    (``released_intersection_union``): only pixels equal to 1 are target foreground, overlap pixels (2, 3,
    ...) are out of the target and the intersection but a prediction there still enlarges the union, and
    pixels equal to 255 are ignored;
  - gIoU = sum of ``I / (U + 1e-5)`` (+1.0 when U == 0) divided by ``count + 1e-5`` (the released
    ``AverageMeter.all_reduce``); cIoU = sum I / (sum U + 1e-10).

  It does NOT reproduce: the ``DistributedSampler(drop_last=False)`` padding, which scores some images
  twice when the image count is not a multiple of the number of GPUs (here every image is scored once,
  whatever the number of processes); the float32 accumulation of the released meters (here exact integer
  sums of I and U and ``math.fsum`` of the gIoU terms); the unseeded draws (seeded per image, see above).

Expressions are put into questions as GLaMM does: stripped and lower-cased. Records hold each expression's
(intersection, union) integers under its protocol's rule, so resumed and multi-process runs merge exactly.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np

from eval.metrics.iou import (GIOU_COUNT_EPS, IoUSummary, intersection_union, released_intersection_union,
                              summarize_iou)

from .dataset import ReferExpression, ReferImage, ReferSplit

__all__ = [
    "SEG_QUESTIONS",
    "ANSWER_LIST",
    "FIXED_QUESTION",
    "FIXED_ANSWER",
    "GLAMM_SENTENCES_PER_IMAGE",
    "PROTOCOLS",
    "Scoring",
    "UNION_SCORING",
    "RELEASED_SCORING",
    "SCORING",
    "ImageTask",
    "expression_text",
    "image_rng",
    "build_tasks",
]

# GLaMM's segmentation question templates and answers (groundingLMM dataset/utils/utils.py), in its order.
SEG_QUESTIONS = (
    "Can you segment the {class_name} in this image?",
    "Please segment {class_name} in this image.",
    "What is {class_name} in this image? Please respond with segmentation mask.",
    "What is {class_name} in this image? Please output segmentation mask.",
    "Can you segment the {class_name} in this image",
    "Please segment {class_name} in this image",
    "What is {class_name} in this image? Please respond with segmentation mask",
    "What is {class_name} in this image? Please output segmentation mask",
    "Could you provide a segmentation mask for the {class_name} in this image?",
    "Please identify and segment the {class_name} in this image.",
    "Where is the {class_name} in this picture? Please respond with a segmentation mask.",
    "Can you highlight the {class_name} in this image with a segmentation mask?",
    "Could you provide a segmentation mask for the {class_name} in this image",
    "Please identify and segment the {class_name} in this image",
    "Where is the {class_name} in this picture? Please respond with a segmentation mask",
    "Can you highlight the {class_name} in this image with a segmentation mask",
)
ANSWER_LIST = (
    "It is [SEG].",
    "Sure, [SEG].",
    "Sure, it is [SEG].",
    "Sure, the segmentation result is [SEG].",
    "[SEG].",
)
FIXED_QUESTION = SEG_QUESTIONS[0]
FIXED_ANSWER = "Sure, it is [SEG]."
GLAMM_SENTENCES_PER_IMAGE = 3


@dataclass(frozen=True)
class ImageTask:
    """The expressions of one image to segment in one ``segment`` call, with its conversation settings."""

    image: ReferImage
    expressions: tuple[ReferExpression, ...]
    questions: tuple[str, ...]
    answers: tuple[str, ...]
    prune_scope: str
    conversation: str

    @property
    def keys(self) -> list[tuple[int, int]]:
        """Record keys (ref_id, sent_id) of the task's expressions, in order."""
        return [e.key for e in self.expressions]


def expression_text(sentence: str) -> str:
    """The sentence as GLaMM inserts it into a question template: stripped, lower-cased."""
    return sentence.strip().lower()


def image_rng(seed: int, image_id: int) -> random.Random:
    """A generator owned by one image: same (seed, image_id) -> same draws on every machine and Python."""
    digest = hashlib.sha256(f"refseg-glamm:{int(seed)}:{int(image_id)}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _all_task(image: ReferImage, seed: int) -> ImageTask:
    exprs = tuple(image.expressions)
    questions = tuple(FIXED_QUESTION.format(class_name=expression_text(e.sentence)) for e in exprs)
    return ImageTask(image=image, expressions=exprs, questions=questions, answers=(FIXED_ANSWER,) * len(exprs),
                     prune_scope="expression", conversation="separate")


def _glamm_task(image: ReferImage, seed: int) -> ImageTask:
    rng = image_rng(seed, image.image_id)
    pool = image.expressions
    if len(pool) >= GLAMM_SENTENCES_PER_IMAGE:
        picked = rng.sample(range(len(pool)), GLAMM_SENTENCES_PER_IMAGE)
    else:
        picked = list(range(len(pool)))
    exprs = tuple(pool[i] for i in picked)
    questions, answers = [], []
    for expr in exprs:
        questions.append(rng.choice(SEG_QUESTIONS).format(class_name=expression_text(expr.sentence)))
        answers.append(rng.choice(ANSWER_LIST))
    return ImageTask(image=image, expressions=exprs, questions=tuple(questions), answers=tuple(answers),
                     prune_scope="image", conversation="multi_turn")


PROTOCOLS: dict[str, Callable[[ReferImage, int], ImageTask]] = {"all": _all_task, "glamm": _glamm_task}


@dataclass(frozen=True)
class Scoring:
    """How a protocol scores: its ground-truth rule, per-expression (I, U) rule and gIoU denominator.

    ``released_gt`` False: union of the polygons and plain I/U; True: the released summed-polygon uint8
    ground truth and ``intersectionAndUnionGPU``. ``giou_count_eps`` is added to the expression count in
    the gIoU denominator (0: mean; 1e-5: the released meter).
    """

    released_gt: bool
    giou_count_eps: float

    @property
    def ground_truth(self) -> str:
        """The ground-truth rule in words (recorded in stats.json)."""
        return "summed polygons (released)" if self.released_gt else "union of polygons"

    @property
    def giou_denominator(self) -> str:
        """The gIoU denominator in words (recorded in stats.json)."""
        return f"expressions + {self.giou_count_eps:g}" if self.giou_count_eps else "expressions"

    def intersection_union(self, split: ReferSplit, expression: ReferExpression, image: ReferImage,
                           mask: np.ndarray) -> tuple[int, int]:
        """(I, U) pixel counts of one predicted (H, W) mask against the expression's ground truth."""
        if self.released_gt:
            return released_intersection_union(mask, split.gt_counts(expression, image))
        return intersection_union(mask, split.gt_mask(expression, image))

    def summarize(self, pairs) -> IoUSummary:
        """gIoU / cIoU of (I, U) pairs, one per expression."""
        return summarize_iou(pairs, giou_count_eps=self.giou_count_eps)


UNION_SCORING = Scoring(released_gt=False, giou_count_eps=0.0)
RELEASED_SCORING = Scoring(released_gt=True, giou_count_eps=GIOU_COUNT_EPS)
SCORING: dict[str, Scoring] = {"all": UNION_SCORING, "glamm": RELEASED_SCORING}


def build_tasks(split: ReferSplit, protocol: str, seed: int = 0, limit: int | None = None) -> list[ImageTask]:
    """One task per image of ``split`` (sorted by image id), for the first ``limit`` images if given."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive number of images, got {limit}")
    images = split.images if limit is None else split.images[:limit]
    return [PROTOCOLS[protocol](image, seed) for image in images]

"""Which sentences of a split are scored, and with which questions: the ``all`` and ``glamm`` protocols.

* ``all`` (default): every sentence of every ref, the fixed question "Can you segment the {expr} in this
  image?" and answer "Sure, it is [SEG].", each expression segmented on its own (separate conversation,
  per-expression pruning). Nothing is random, so a run repeats to the last digit.
* ``glamm``: the released GLaMM/LiteLVLM procedure. Per image at most 3 sentences drawn without replacement
  from all sentences of the image's refs, each with a question template and an answer drawn from GLaMM's
  lists, all asked in ONE multi-turn conversation with joint pruning over the image's questions. The
  released code draws from unseeded global RNGs; here each image draws from its own generator seeded by
  (seed, image_id), so runs repeat for a fixed ``--seed`` regardless of sharding or resuming.

Expressions are put into questions as GLaMM does: stripped and lower-cased.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable

from .dataset import ReferExpression, ReferImage, ReferSplit

__all__ = [
    "SEG_QUESTIONS",
    "ANSWER_LIST",
    "FIXED_QUESTION",
    "FIXED_ANSWER",
    "GLAMM_SENTENCES_PER_IMAGE",
    "PROTOCOLS",
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


def build_tasks(split: ReferSplit, protocol: str, seed: int = 0, limit: int | None = None) -> list[ImageTask]:
    """One task per image of ``split`` (sorted by image id), for the first ``limit`` images if given."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive number of images, got {limit}")
    images = split.images if limit is None else split.images[:limit]
    return [PROTOCOLS[protocol](image, seed) for image in images]

"""GLaMM's referring-segmentation prompt: the released ``conv_llava_v1`` conversation (FACTS §2).

System prompt "... a curious human ... the human's questions" with roles USER / ASSISTANT, separators
" " and "</s>", the image in the first turn as ``The <im_start><image><im_end> provides an overview of the
picture.\n``. Token ids come from ``litelvlm.tokenizer.ReleasedLlamaTokenizer`` (the released tokenization).
"""

from __future__ import annotations

from typing import Sequence

from ..lvlm import IMAGE_TOKEN_INDEX, format_question, tokenize_with_image

__all__ = [
    "SYSTEM_PROMPT",
    "IMAGE_PLACEHOLDER",
    "IMAGE_TOKEN_INDEX",
    "SEG_TOKEN",
    "IM_START",
    "IM_END",
    "DEFAULT_QUESTION",
    "DEFAULT_ANSWER",
    "question_for",
    "build_conversation",
    "tokenize_with_image",
]

SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
IMAGE_PLACEHOLDER = "<image>"
SEG_TOKEN = "[SEG]"
IM_START, IM_END = "<im_start>", "<im_end>"
DEFAULT_QUESTION = "Can you segment the {expression} in this image?"
DEFAULT_ANSWER = "Sure, it is [SEG]."
IMAGE_INTRO = "The {image} provides an overview of the picture.\n"


def question_for(expression: str, template: str = DEFAULT_QUESTION) -> str:
    """The question asking to segment ``expression`` (lower-cased as the released datasets do)."""
    return format_question(template, expression)


def build_conversation(questions: Sequence[str], answers: Sequence[str], use_im_start_end: bool = True) -> str:
    """One vicuna-v1 conversation: the image goes with the first question, each answer ends in ``</s>``."""
    if len(questions) == 0 or len(questions) != len(answers):
        raise ValueError(f"need one answer per question, got {len(questions)} questions and {len(answers)} answers")
    for answer in answers:
        if answer.count(SEG_TOKEN) != 1:
            raise ValueError(f"each answer must contain exactly one {SEG_TOKEN}: {answer!r}")
    image = f"{IM_START}{IMAGE_PLACEHOLDER}{IM_END}" if use_im_start_end else IMAGE_PLACEHOLDER
    turns = [(IMAGE_INTRO.format(image=image) + questions[0], answers[0])] + list(zip(questions[1:], answers[1:]))
    return SYSTEM_PROMPT + " " + "".join(f"USER: {q} ASSISTANT: {a}</s>" for q, a in turns)

"""VideoGLaMM's referring-segmentation prompt (Phi-3 chat, 16 frame placeholders; docs/videoglamm_layout.md §5)."""

from __future__ import annotations

from litelvlm.lvlm import IMAGE_PLACEHOLDER, IMAGE_TOKEN_INDEX, tokenize_with_image

__all__ = ["SYSTEM", "QUESTION", "DEFAULT_ANSWER", "SEG_TOKEN", "EXPRESSION_TEXTS", "expression_text", "video_question",
           "build_chat", "prompt_ids"]

SYSTEM = "You are a helpful AI assistant."
QUESTION = "What is {expression} in this video? Please respond with segmentation masks."
DEFAULT_ANSWER = "Sure, [SEG]."
SEG_TOKEN = "[SEG]"


EXPRESSION_TEXTS = ("strip", "lower", "collapse")


def expression_text(expression: str, mode: str = "strip") -> str:
    """The expression as it goes into the question: ``strip`` (litelvlm: stripped, lower-cased), ``lower``
    (released Ref-DAVIS17 / Ref-YouTube-VOS: ``exp.lower()`` only) or ``collapse`` (released MeViS: its
    dataset's ``" ".join(exp.lower().split())``)."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"empty referring expression: {expression!r}")
    if mode == "strip":
        return expression.strip().lower()
    if mode == "lower":
        return expression.lower()
    if mode == "collapse":
        return " ".join(expression.lower().split())
    raise ValueError(f"expression_text must be one of {EXPRESSION_TEXTS}, got {mode!r}")


def video_question(expression: str, template: str = QUESTION, mode: str = "strip") -> str:
    """The question about ``expression`` (its text per ``mode``, see ``expression_text``)."""
    return template.format(expression=expression_text(expression, mode))


def build_chat(question: str, num_frames: int = 16, answer: str | None = None) -> str:
    """The phi3_instruct conversation; the assistant turn is empty for generation, or holds ``answer``."""
    user = IMAGE_PLACEHOLDER * num_frames + "\n" + question
    text = f"<|system|>\n{SYSTEM}<|end|>\n<|user|>\n{user}<|end|>\n<|assistant|>\n"
    return text if answer is None else text + answer + "<|end|>"


def prompt_ids(text: str, tokenizer) -> list[int]:
    """Token ids with the run of frame placeholders collapsed into ONE ``IMAGE_TOKEN_INDEX`` slot, where
    the whole clip's visual tokens go (the released code treats consecutive placeholders as one video)."""
    ids = tokenize_with_image(text, tokenizer)
    collapsed: list[int] = []
    for token in ids:
        if token == IMAGE_TOKEN_INDEX and collapsed and collapsed[-1] == IMAGE_TOKEN_INDEX:
            continue
        collapsed.append(token)
    if collapsed.count(IMAGE_TOKEN_INDEX) != 1:
        raise ValueError("a video prompt needs one run of consecutive frame placeholders")
    return collapsed

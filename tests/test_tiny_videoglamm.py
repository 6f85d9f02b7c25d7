"""The tiny VideoGLaMM answers "Sure, [SEG]." by construction (``video.tiny.plant_answer``) whatever the video and
the question, so its masks come from real [SEG] read-outs; its other weights stay random."""

import numpy as np
import pytest
import torch

from litelvlm.testing.videos import scene_clip
from video.tiny import TINY_ANSWER, answer_chain, plant_answer


@pytest.mark.parametrize("frames, expressions, budget, method", [
    (np.random.default_rng(0).integers(0, 256, size=(5, 40, 56, 3), dtype=np.uint8), ["the dog", "a red car on the left"], 81, "litelvlm"),
    (scene_clip(), ["what moves"], None, "none"),
])
def test_greedy_decoding_answers_with_seg_and_masks_whatever_the_input(tiny_video_segmenter, frames, expressions, budget, method):
    result = tiny_video_segmenter.segment(frames, expressions, budget=budget, method=method)  # generation, no forced answer
    assert result.answers == [[TINY_ANSWER + "<|end|>"]] * len(expressions) and result.has_seg == [True] * len(expressions)
    assert result.masks.shape == (len(expressions), *frames.shape[:3])
    assert all(mask.any() for mask in result.masks)  # each expression's union over frames


def test_the_chain_walks_from_the_prompt_end_through_the_answer(tiny_videoglamm_kwargs):
    from video.model import load_videoglamm_tokenizer

    tokenizer, ids = load_videoglamm_tokenizer(tiny_videoglamm_kwargs["checkpoint"])
    chain = answer_chain(tiny_videoglamm_kwargs["checkpoint"])
    assert tokenizer.decode(chain[:1]) == "<|assistant|>" and tokenizer.decode(chain[1:]) == TINY_ANSWER + "<|end|>"
    assert ids["seg"] in chain and chain[-1] in ids["eos"]
    with pytest.raises(ValueError, match="repeats a token"):
        answer_chain(tiny_videoglamm_kwargs["checkpoint"], "Sure, [SEG] and [SEG].")


def test_planting_changes_only_the_chain_rows():
    generator = torch.Generator().manual_seed(0)
    state = {"model.embed_tokens.weight": 0.02 * torch.randn(50, 16, generator=generator),
             "lm_head.weight": 0.02 * torch.randn(50, 16, generator=generator)}
    before = {k: v.clone() for k, v in state.items()}
    plant_answer(state, [7, 3, 41])
    embed, head = (state[k] - before[k] for k in ("model.embed_tokens.weight", "lm_head.weight"))
    assert embed.nonzero().tolist() == [[3, 1], [7, 0]] and head.nonzero().tolist() == [[3, 0], [41, 1]]
    embedded = state["model.embed_tokens.weight"]
    hidden = embedded / embedded.pow(2).mean(-1, keepdim=True).sqrt()  # Phi-3's final RMS norm, unit weights
    assert (hidden @ state["lm_head.weight"].T).argmax(-1)[[7, 3]].tolist() == [3, 41]
    with pytest.raises(ValueError, match="hidden size of at least"):
        plant_answer(state, list(range(18)))  # 17 steps, 16 axes
    plant_answer(state, list(range(17)))

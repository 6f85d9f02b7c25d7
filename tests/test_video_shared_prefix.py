"""VideoSegmenter with several expressions per clip: methods whose visual tokens and LLM states over them do not
depend on the expression prefill system text + visual tokens once per clip, and every expression's [SEG] states and
generated ids equal the per-expression run (Phi-3 windows longer and shorter than the prompt)."""

import warnings

import numpy as np
import pytest
import torch

from litelvlm.shared_prefix import SharedPrefix
from litelvlm.testing.llm import EveryNthHead

EXPRESSIONS = ["the dog", "a red car on the left", "the man in a blue shirt"]
FORCED = {"answer": "Sure, [SEG].", "mask_mode": "none"}
WINDOW = 23  # config.json's window of the short-window model (Phi-3 sees 24 keys): far shorter than its prompts


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, size=(6, 40, 56, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    from litelvlm.testing import make_tiny_videoglamm
    from video.segmenter import VideoSegmenter

    return VideoSegmenter.from_pretrained(**make_tiny_videoglamm(tmp_path_factory.mktemp("vg_window"), sliding_window=WINDOW,
                                                                 dtype=torch.float32))


def _run(seg, frames, method, budget, expressions=EXPRESSIONS, **options):
    """The result, every expression's [SEG] states and the positions the LLM decoder was fed per call (no masks)."""
    states, positions = [], []
    llm, clip_masks = seg.model.llm, seg._clip_masks
    hook = llm.model.register_forward_pre_hook(lambda _, args, kwargs: positions.append(kwargs["inputs_embeds"].shape[1]),
                                                with_kwargs=True)

    def spy(clip_frames, seg_states, *args, **kwargs):
        states.extend(seg_states)
        return clip_masks(clip_frames, seg_states, *args, **kwargs)

    seg._clip_masks = spy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DyCoke: the budget it cannot meet, its layer on a 2-layer LLM
            result = seg.segment(frames, expressions, budget=budget, method=method, **{"mask_mode": "none", **options})
    finally:
        hook.remove()
        del seg._clip_masks
    return result, states, positions


def _compare(shared, alone):
    """The shared run against the per-expression one: the same answers, tokens and [SEG] states (to 1e-5)."""
    clips = len(shared[0].sampled_frames)
    assert shared[0].shared_prefix and shared[0].prefix_passes == clips and shared[0].shared_prefix_reason == ""
    assert not alone[0].shared_prefix and alone[0].prefix_passes == 0 and alone[0].shared_prefix_reason == "share_prefix is off"
    assert shared[0].answers == alone[0].answers and shared[0].llm_visual_tokens == alone[0].llm_visual_tokens
    assert [s.shape for s in shared[1]] == [s.shape for s in alone[1]] and sum(s.shape[0] for s in shared[1]) > 0
    for ours, theirs in zip(shared[1], alone[1]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def _both(seg, frames, method, budget, **options):
    shared = _run(seg, frames, method, budget, **options)
    alone = _run(seg, frames, method, budget, share_prefix=False, **options)
    _compare(shared, alone)
    return shared, alone


@pytest.mark.parametrize("method, budget, options, window", [
    ("none", None, {}, "shorter"),  # 3,328 visual tokens: past the default model's 2,048-key window
    ("random", 81, {"clip_length": 3}, None),  # two clips: one prefix prefill each
    ("fastvid", 81, {}, "longer"),
    ("dycoke", 81, {}, None),
])
def test_teacher_forced_seg_states_equal_the_per_expression_run(tiny_video_segmenter, frames, method, budget, options, window):
    seg = tiny_video_segmenter
    (shared, _, fed), (alone, _, fed_alone) = _both(seg, frames, method, budget, answer="Sure, [SEG].", **options)
    clips = len(shared.sampled_frames)
    assert shared.forward_passes == clips * len(EXPRESSIONS) and alone.forward_passes == clips  # a pass per question vs a batch
    # per clip, the LLM was fed the prefix once, then each question + answer; per expression: one batch of whole prompts
    assert len(fed) == clips * (1 + len(EXPRESSIONS)) and len(fed_alone) == clips
    for clip in range(clips):
        ours = fed[clip * (1 + len(EXPRESSIONS)) : (clip + 1) * (1 + len(EXPRESSIONS))]
        assert ours[0] + max(ours[1:]) == fed_alone[clip] and max(ours[1:]) < 40 < ours[0]
    limit = seg.model.llm.config.sliding_window
    assert window is None or (fed[0] > limit if window == "shorter" else fed_alone[0] < limit)


def _generated(seg, frames, method, budget, steps, decoding):
    """The shared and the per-expression generation (greedy, or the checkpoint's sampling seeded), compared."""
    original, eos, runs = seg.model.llm.lm_head, seg.eos_token_ids, []
    seg.eos_token_ids = set()  # every run decodes all ``steps`` tokens (the tiny model's planted answer ends early)
    try:
        for share in (True, False):
            seg.model.llm.lm_head = EveryNthHead(original, seg.seg_token_id)
            runs.append(_run(seg, frames, method, budget, EXPRESSIONS[:2], share_prefix=share, decoding=decoding, seed=3,
                             max_new_tokens=steps))
    finally:
        seg.model.llm.lm_head, seg.eos_token_ids = original, eos
    _compare(*runs)
    assert runs[0][0].forward_passes == runs[1][0].forward_passes == 2 * steps


@pytest.mark.parametrize("method, budget, decoding", [
    ("none", None, "greedy"), ("random", 81, "checkpoint"), ("fastvid", 81, "greedy"),
    ("dycoke", 81, "greedy"), ("dycoke", 81, "checkpoint"),
])
def test_generated_ids_and_seg_states_equal_the_per_expression_run(tiny_video_segmenter, frames, method, budget, decoding):
    _generated(tiny_video_segmenter, frames, method, budget, 4, decoding)


@pytest.mark.parametrize("decoding", ["greedy", "checkpoint"])
def test_a_window_shorter_than_the_prompt_gives_the_same_states_and_ids(windowed, frames, decoding):
    assert windowed.model.llm.config.sliding_window == WINDOW + 1
    if decoding == "greedy":
        (forced, _, fed), _ = _both(windowed, frames, "random", 81, answer="Sure, [SEG].")
        assert fed[0] > 40 * WINDOW
    _generated(windowed, frames, "random", 81, WINDOW + 3, decoding)  # decoding steps past the window too


@pytest.mark.parametrize("method, options, reason", [
    ("litelvlm", FORCED, "selects the visual tokens by the expression's text"),
    ("prunevid", FORCED, "acts inside the LLM on the question's attention"),
    ("none", {"use_cache": False, "max_new_tokens": 1, "expressions": EXPRESSIONS[:2]}, "use_cache=False"),
    ("none", {**FORCED, "expressions": EXPRESSIONS[:1]}, "one expression: nothing to share"),
])
def test_runs_that_cannot_share_say_why(tiny_video_segmenter, frames, monkeypatch, method, options, reason):
    prefills = []
    monkeypatch.setattr(SharedPrefix, "prefill", classmethod(lambda cls, *a: prefills.append(a)))
    result = _run(tiny_video_segmenter, frames, method, None if method == "none" else 81, **options)[0]
    assert not result.shared_prefix and reason in result.shared_prefix_reason
    assert result.prefix_passes == 0 and prefills == []

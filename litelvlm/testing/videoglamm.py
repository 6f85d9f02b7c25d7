"""Tiny random VideoGLaMM setups for tests (the writer lives in ``video.tiny``; imported when called, as the
base package never imports ``video`` at module level)."""

__all__ = ["make_tiny_videoglamm", "record_seg_states"]


def make_tiny_videoglamm(*args, **kwargs):
    """``video.tiny.make_tiny_videoglamm``."""
    from video.tiny import make_tiny_videoglamm as make

    return make(*args, **kwargs)


def record_seg_states(segmenter, monkeypatch) -> list:
    """The [SEG] states a ``VideoSegmenter`` hands to its pixel decoder, in call order (a list filled as it runs)."""
    states, original = [], segmenter.model.seg_prompts

    def recording(hidden):
        states.append(hidden.detach().clone())
        return original(hidden)

    monkeypatch.setattr(segmenter.model, "seg_prompts", recording)
    return states

"""Tiny random VideoGLaMM setups for tests (the writer lives in ``video.tiny``; imported when called, as the
base package never imports ``video`` at module level)."""

__all__ = ["make_tiny_videoglamm"]


def make_tiny_videoglamm(*args, **kwargs):
    """``video.tiny.make_tiny_videoglamm``."""
    from video.tiny import make_tiny_videoglamm as make

    return make(*args, **kwargs)

"""litelvlm: training-free visual token pruning for pixel-grounding vision-language models.

``litelvlm.load("glamm", budget=192)`` returns a segmenter you call with an image (or, for ``"videoglamm"``,
a video) and referring expressions; see ``litelvlm.pipeline``.
"""

__version__ = "0.1.0"

__all__ = ["load", "__version__"]


def load(*args, **kwargs):
    """``litelvlm.pipeline.load``: a one-call segmenter for ``"glamm"`` (images) or ``"videoglamm"`` (videos)."""
    from .pipeline import load as _load

    return _load(*args, **kwargs)

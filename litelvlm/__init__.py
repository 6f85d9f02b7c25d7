"""litelvlm: training-free visual token pruning for pixel-grounding vision-language models."""

__version__ = "0.1.0"

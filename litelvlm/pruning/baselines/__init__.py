"""Pre-LLM token-pruning baselines on CLIP features, each registered in the method registry.

``visionzip``, ``vispruner``, ``prumerge``, ``prumerge+`` and ``trim``: faithful to their released
selection code, adapted so that exactly ``budget`` tokens per frame reach the LLM. Each class
docstring states the rule, the source file and every adaptation.
"""

from .prumerge import PruMergePlusSelector, PruMergeSelector
from .trim import TrimSelector
from .vispruner import VisPrunerSelector
from .visionzip import VisionZipSelector

__all__ = ["VisionZipSelector", "VisPrunerSelector", "PruMergePlusSelector", "PruMergeSelector", "TrimSelector"]

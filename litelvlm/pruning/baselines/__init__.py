"""Token-pruning baselines, each registered in the method registry.

Per image or frame, on CLIP features: ``visionzip``, ``vispruner``, ``prumerge``, ``prumerge+`` and ``trim``,
faithful to their released selection code, adapted so that exactly ``budget`` tokens per frame reach the LLM.
Per video clip (``ClipSelector``, VideoGLaMM only): ``dycoke``, ``fastvid`` and ``prunevid``, adapted to
VideoGLaMM's two visual streams. Each module docstring states the rule, the source files and every adaptation.
"""

from .prumerge import PruMergePlusSelector, PruMergeSelector
from .trim import TrimSelector
from .vispruner import VisPrunerSelector
from .visionzip import VisionZipSelector
from .video_dycoke import DyCokeSelector
from .video_fastvid import FastVIDSelector
from .video_prunevid import PruneVidSelector

__all__ = ["VisionZipSelector", "VisPrunerSelector", "PruMergePlusSelector", "PruMergeSelector", "TrimSelector", "DyCokeSelector", "FastVIDSelector", "PruneVidSelector"]

"""Token-pruning baselines, each registered in the method registry.

Per image or frame, on CLIP features: ``visionzip``, ``vispruner``, ``prumerge``, ``prumerge+``, ``trim``,
``cdpruner`` and ``divprune``, faithful to their released selection code, and ``evtp`` (no public code: restated
from its paper), adapted so that exactly ``budget`` tokens per frame reach the LLM. Inside the LLM (image path):
``ivcprune`` (``fastv`` lives in ``litelvlm.pruning.methods``).
Per video clip (``ClipSelector``, VideoGLaMM only): ``dycoke``, ``fastvid``, ``prunevid``, ``sttm`` and ``holitom``,
adapted to VideoGLaMM's two visual streams. Each module docstring states the rule, the source files and every adaptation.
"""

from .cdpruner import CDPrunerSelector
from .divprune import DivPruneSelector
from .evtp import EVTPSelector
from .ivcprune import IVCPruneSelector
from .prumerge import PruMergePlusSelector, PruMergeSelector
from .trim import TrimSelector
from .vispruner import VisPrunerSelector
from .visionzip import VisionZipSelector
from .video_dycoke import DyCokeSelector
from .video_fastvid import FastVIDSelector
from .video_prunevid import PruneVidSelector
from .video_sttm import STTMSelector
from .video_holitom import HoliTomSelector

__all__ = ["VisionZipSelector", "VisPrunerSelector", "PruMergePlusSelector", "PruMergeSelector", "TrimSelector",
           "CDPrunerSelector", "DivPruneSelector", "EVTPSelector", "IVCPruneSelector", "DyCokeSelector", "FastVIDSelector",
           "PruneVidSelector", "STTMSelector", "HoliTomSelector"]

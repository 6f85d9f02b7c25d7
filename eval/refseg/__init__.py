"""RefCOCO / RefCOCO+ / RefCOCOg referring-segmentation evaluation (cIoU / gIoU) of GLaMM with token pruning.

Modules: ``dataset`` (REFER-format reading), ``masks`` (COCO polygons / RLE), ``protocols`` (``all`` and
``glamm`` sentence/question selection), ``sources`` (model or saved predictions), ``model``
(``build_segmenter``), ``config`` (``RefSegConfig``), ``runner`` (``run_refseg``: sharded, resumable loop),
``cli`` (``python -m eval.refseg``), ``synthetic`` (tiny REFER-format datasets and a fake segmenter for
tests and demos).
"""

from .config import RefSegConfig
from .runner import run_refseg

__all__ = ["RefSegConfig", "run_refseg"]

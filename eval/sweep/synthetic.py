"""The offline benchmarks' data, written under ``--out`` once: a tiny REFER-format refcoco|val (``synthetic``) or a
tiny Ref-DAVIS17 (``synthetic-video``), by the harnesses' own synthetic writers with a fixed seed.

The data goes to a temporary folder next to its place and is renamed into place when complete, so an interrupted
write never leaves half a dataset for a resumed sweep to read.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

__all__ = ["SYNTHETIC_SEED", "write_synthetic_data"]

SYNTHETIC_SEED = 1


def _write_refer(root: Path) -> None:
    from eval.refseg.synthetic import write_synthetic_refer

    write_synthetic_refer(root, datasets=("refcoco",), seed=SYNTHETIC_SEED)


def _write_davis(root: Path) -> None:
    from eval.rvos.synthetic import SyntheticRVOSConfig, write_synthetic_ref_davis17

    write_synthetic_ref_davis17(root, SyntheticRVOSConfig(num_videos=2, num_frames=4, num_objects=1, seed=SYNTHETIC_SEED))


WRITERS = {"synthetic": _write_refer, "synthetic-video": _write_davis}


def write_synthetic_data(benchmark: str, folder: str | Path) -> Path:
    """``folder`` holding the synthetic data of ``benchmark`` (written unless it is already there)."""
    folder = Path(folder)
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        WRITERS[benchmark](staging)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder

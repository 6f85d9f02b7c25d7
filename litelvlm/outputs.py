"""The output folder every writing command checks before any work: created, a folder, writable."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["prepare_output_dir"]


def prepare_output_dir(path: str | os.PathLike, option: str = "--out", subdirs: tuple[str, ...] = ()) -> Path:
    """Create the folder ``path`` (with its parents) or raise one ``ValueError`` line naming ``option``, the path
    and the fix: an existing file, a parent that is a file, no permission, not writable, or a file where one of
    ``subdirs`` (folders the run keeps inside it) should be. Call it before loading any model."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {out} is an existing file, not a folder: pass a folder path (it is created when missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
        where = f"{blocker} is a file" if blocker is not None else "a part of the path is not a folder"
        raise ValueError(f"{option} {out} cannot be created: {where}; pass another folder") from None
    except OSError as err:
        raise ValueError(f"{option} {out} cannot be created ({err.strerror or err}); pass a folder you can write to") from None
    for sub in subdirs:
        if (out / sub).exists() and not (out / sub).is_dir():
            raise ValueError(f"{option} {out} holds a file {out / sub} where the run keeps its {sub} folder; move it away "
                             f"or choose another {option}")
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ValueError(f"{option} {out} is not writable ({err.strerror or err}): pass a folder you can write to") from None
    return out

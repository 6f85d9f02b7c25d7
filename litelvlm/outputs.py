"""The output folder every writing command checks before any work: created, a folder, writable; and removed
again, with the parents the run created, when the run fails before writing anything into it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["prepare_output_dir", "output_dir"]


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, option: str = "--out", subdirs: tuple[str, ...] = ()) -> Iterator[Path]:
    """``prepare_output_dir`` around a run: when the body (or the check itself) fails, the folders this call created
    are removed again while they are empty. A folder that existed before is never removed, nor one holding a file."""
    created = _missing_folders(Path(path))
    try:
        yield prepare_output_dir(path, option, subdirs)
    except BaseException:
        _remove_empty(created)
        raise


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and its parents that do not exist yet, deepest first."""
    missing = []
    for folder in [path, *path.parents]:
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first: a parent is empty only once its child is gone
        try:
            folder.rmdir()
        except OSError:  # not empty (the run wrote something), or already gone: keep what is there
            return


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

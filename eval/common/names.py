"""Dataset-controlled names (video ids, expression ids, frame names, image file names) and the paths built from them.

Benchmark files name the folders and files the harnesses read and write: MeViS / Ref-YouTube-VOS / Ref-DAVIS17
``meta_expressions.json`` gives video ids, expression ids and frame names, RefCOCO's ``instances.json`` gives image
file names. Such a name is data, not a path: ``safe_name`` accepts a plain file or folder name and refuses
anything that could leave the folder it is joined to (a path separator ``/`` or ``\\``, ``.`` or ``..``, an
absolute or drive path, an empty name, NUL or another control character) or that no file system can hold (more
than ``MAX_NAME_BYTES`` bytes, so that ``<name>.png`` fits the usual 255-byte limit; text that is not encodable).
``safe_path`` joins checked names to a root without resolving anything (no file-system call: checking a million
names costs no path resolution); ``zip_entry`` builds a checked zip member name. Every path of the harnesses made
from dataset-controlled names goes through these. Symbolic links are a separate matter: reads follow them (a
dataset may be laid out with links), and every write goes through ``eval.common.writer``, which never follows one,
so writes stay inside the results folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["MAX_NAME_BYTES", "UnsafeNameError", "name_problem", "safe_name", "safe_path", "zip_entry"]

_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_NAME_BYTES = 251  # 255 (NAME_MAX of ext4, xfs, btrfs, ...) minus the ".png" / ".jpg" the harnesses append


class UnsafeNameError(ValueError):
    """A dataset-controlled name that is not a plain file or folder name."""


def name_problem(value: object) -> str | None:
    """Why ``value`` is not a plain file or folder name (None when it is one)."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if value == "":
        return "is empty"
    if value.strip() == "":
        return "is only whitespace"
    if "\x00" in value:
        return "contains a NUL character"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character"
    if "/" in value or "\\" in value:
        return "contains a path separator ('/' or '\\')"
    if value in (".", ".."):
        return f"is {value!r}, a relative folder reference"
    if _DRIVE.match(value):
        return "starts with a drive letter"
    try:
        size = len(os.fsencode(value))
    except UnicodeEncodeError:
        return "holds characters no file name can store (a lone surrogate?)"
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long; file names hold at most {MAX_NAME_BYTES} (255 with the '.png' added)"
    return None


def safe_name(value: object, what: str, source: str | os.PathLike | None = None) -> str:
    """``value`` if it is a plain file or folder name, else ``UnsafeNameError`` naming ``what`` (e.g. "video id")
    and ``source`` (the file the name came from)."""
    problem = name_problem(value)
    if problem is None:
        return value  # type: ignore[return-value]
    where = f" in {source}" if source is not None else ""
    raise UnsafeNameError(f"{what} {value!r}{where} {problem}; dataset ids and file names must be plain names "
                          f"(no '/', '\\', '..', absolute paths or control characters, at most {MAX_NAME_BYTES} "
                          f"bytes): fix the dataset file")


def safe_path(root: str | os.PathLike, *names: object, what: str = "name") -> Path:
    """``root / name / ...`` with every name checked by ``safe_name``; nothing is resolved (see the module docstring
    for symbolic links)."""
    path = Path(root)
    for name in names:
        path = path / safe_name(name, what)
    return path


def zip_entry(*names: object, folder: str = "") -> str:
    """A zip member name ``folder/name/...``: each of ``names`` must be a plain name (``safe_name``); ``folder`` (a
    top folder chosen by the caller, e.g. ``Annotations``, possibly ``a/b`` or empty) is split at ``/`` and each
    piece checked the same way."""
    pieces = [piece for piece in folder.split("/") if piece != ""]
    pieces = [safe_name(piece, "zip folder") for piece in pieces]
    pieces += [safe_name(name, "zip entry name") for name in names]
    if not pieces:
        raise UnsafeNameError("a zip entry needs at least one name")
    return "/".join(pieces)

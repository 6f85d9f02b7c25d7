"""Reading benchmark files and preparing the results folder, with one-line errors that name the file and the fix.

* ``read_json(path, what)``: a JSON file; a missing file, a directory, bad bytes or bad JSON are errors naming the
  file and, for bad JSON, the line and column.
* ``read_plain_pickle(path, what)``: a pickle that may only hold plain data (lists, tuples, dicts, strings, bytes,
  numbers, booleans, None), as the REFER ``refs(unc).p`` files do. It is read with an unpickler whose
  ``find_class`` refuses every global, so a crafted file cannot run code; a truncated or non-pickle file is an
  error naming it. What it built is then measured as a tree (an object referenced twice counts twice, as the
  harness would expand it): more than ``MAX_NODES_PER_BYTE`` objects per byte of the file (a few KB of memo
  references can stand for 1e8 sentences), a reference cycle or nesting deeper than ``MAX_PICKLE_DEPTH`` is
  refused naming the file.
* ``prepare_results_dir(path)``: create ``--results_path`` (or check it) and prove it, and the run's folders in it,
  writable before any work.

A symbolic link among the inputs is followed (a dataset may be laid out with links) when it leads to a regular file
(``require_regular_file``); a loop or a link to nothing is an error naming it.
"""

from __future__ import annotations

import errno
import io
import math
import os
import pickle
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

from litelvlm.jsonfile import read_json as read_json_file

__all__ = ["DataFileError", "first_problems", "as_int", "require_regular_file", "read_json", "read_plain_pickle",
           "prepare_results_dir"]


class DataFileError(ValueError):
    """An input file that cannot be read as what it should be (the message names it and says what to do)."""


def first_problems(problems: list[str], shown: int = 3) -> str:
    """The first ``shown`` of ``problems`` joined with '; ' (and '; ...' when there are more), for one-line errors."""
    return "; ".join(problems[:shown]) + ("; ..." if len(problems) > shown else "")


def as_int(value: Any) -> int | None:
    """An integer field of a data file as an int: an int, an integral finite float (``3.0``) or a decimal string
    (``"12"``); None for anything else (``NaN``, ``1e999``, ``1.5``, ``True``, other text), so that the caller can
    name the file instead of failing in ``int()``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str) and len(value) < 100 and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        return int(value)
    return None


def require_regular_file(path: Path, what: str, hint: str = "") -> None:
    """Raise ``FileNotFoundError`` / ``DataFileError`` naming ``what`` and ``path`` (and ``hint``) unless it is a
    regular file, symbolic links followed (a link to nothing and a link loop are named as such)."""
    more = f". {hint}" if hint else ""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            raise FileNotFoundError(f"{what} not found: {path} is a symbolic link to {os.readlink(path)}, which does "
                                    f"not exist; fix the link{more}") from None
        raise FileNotFoundError(f"{what} not found: {path}{more}") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise DataFileError(f"{what} {path} is a symbolic link loop; point it at the real file") from None
        raise DataFileError(f"{what} {path} cannot be read ({err.strerror or err}); check the file and its "
                            f"permissions") from None
    if not stat.S_ISREG(mode):
        raise DataFileError(f"{what} {path} is not a file{more}")


def read_json(path: str | os.PathLike, what: str = "JSON file", hint: str = "") -> Any:
    """The parsed content of the JSON file ``path`` (``litelvlm.jsonfile.read_json``); errors name ``what`` and the
    file (and line / column)."""
    path = Path(path)
    require_regular_file(path, what, hint)
    return read_json_file(path, what, fix="fix or re-download the file", error=DataFileError)


MAX_NODES_PER_BYTE = 2  # a plain pickle spends >= 1 byte per object; memo references are how files exceed it
MIN_NODE_LIMIT = 1_000_000  # allowed whatever the file size
MAX_PICKLE_DEPTH = 100  # REFER refs nest 6 deep


class _Refused(pickle.UnpicklingError):
    """The file asks for something plain data never needs (a global, a persistent id)."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds only what pickle opcodes make without a global (lists, tuples, dicts, strings, bytes, numbers, booleans,
    None): every global (a class or function, e.g. ``os.system``) is refused, so the file cannot run code."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle's hook
        raise _Refused(f"it names the Python global {module}.{name}")

    def persistent_load(self, pid):
        raise _Refused("it uses a persistent id")


def read_plain_pickle(path: str | os.PathLike, what: str = "pickle file", hint: str = "") -> Any:
    """The plain data of the pickle file ``path`` (no globals allowed); errors name ``what`` and the file."""
    path = Path(path)
    require_regular_file(path, what, hint)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataFileError(f"{what} {path} cannot be read ({err.strerror or err})") from None
    fix = hint or "re-download the file"
    try:
        unpickler = _PlainUnpickler(io.BytesIO(data))
        value = unpickler.load()
    except _Refused as err:
        raise DataFileError(f"{what} {path} was refused: {err}; it should hold only lists, dicts, strings and "
                            f"numbers ({fix})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            UnicodeDecodeError, OverflowError, MemoryError) as err:
        detail = "the file ends early (truncated?)" if isinstance(err, EOFError) else f"{type(err).__name__}: {err}"
        raise DataFileError(f"{what} {path} is not a readable pickle ({detail}); {fix}") from None
    problem = _expansion_problem(value, max(MIN_NODE_LIMIT, MAX_NODES_PER_BYTE * len(data)), MAX_PICKLE_DEPTH)
    if problem:
        raise DataFileError(f"{what} {path} was refused: {problem}; {fix}")
    return value


_CONTAINERS = {list, tuple, dict, set, frozenset}


def _split_children(node: Any) -> tuple[int, list]:
    """(how many children of ``node`` are plain values, its container children); a dict's keys count too."""
    items = [*node.keys(), *node.values()] if type(node) is dict else node
    inner = [child for child in items if type(child) in _CONTAINERS]
    return len(items) - len(inner), inner


def _expansion_problem(value: Any, limit: int, max_depth: int) -> str | None:
    """Why the unpickled ``value`` is refused: more than ``limit`` objects once every shared reference is counted
    where it appears (each distinct container is walked once, its tree size remembered), a reference cycle, or
    nesting deeper than ``max_depth``. None when it is fine."""
    if type(value) not in _CONTAINERS:
        return None
    too_many = (f"its shared references expand to more than {limit:,} objects (at most {MAX_NODES_PER_BYTE} per byte "
                f"of the file are allowed)")
    sizes: dict[int, int] = {}
    on_path = {id(value)}
    leaves, inner = _split_children(value)
    expanded = 1 + leaves
    stack = [(value, iter(inner), 0)]  # (container, its container children, objects counted before it)
    while stack:
        node, children, before = stack[-1]
        for child in children:
            if id(child) in sizes:
                expanded += sizes[id(child)]
            elif id(child) in on_path:
                return "it holds a reference cycle (a list or dict that contains itself)"
            elif len(stack) >= max_depth:
                return f"it nests lists / dicts more than {max_depth} levels deep"
            else:
                on_path.add(id(child))
                leaves, inner = _split_children(child)
                stack.append((child, iter(inner), expanded))
                expanded += 1 + leaves
                break
            if expanded > limit:
                return too_many
        else:
            stack.pop()
            on_path.discard(id(node))
            sizes[id(node)] = expanded - before
        if expanded > limit:
            return too_many
    return None


def prepare_results_dir(path: str | os.PathLike, option: str = "--results_path", subdirs: tuple[str, ...] = ()) -> Path:
    """``litelvlm.outputs.prepare_output_dir`` for a results folder (errors as ``DataFileError``): created if
    needed, a writable folder, ``subdirs`` (e.g. ``records``) writable folders if they exist, before any work."""
    from litelvlm.outputs import prepare_output_dir

    try:
        out = prepare_output_dir(path, option, subdirs)
    except ValueError as err:
        raise DataFileError(str(err)) from None
    for sub in subdirs:
        folder = out / sub
        if folder.is_symlink() or not folder.is_dir():
            continue  # missing: created by the run; a link: refused by the run's link check
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise DataFileError(f"{option} {out}: its {sub} folder {folder} is not writable ({err.strerror or err}); "
                                f"make it writable or pass another {option}") from None
    return out

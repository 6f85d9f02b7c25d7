"""Reading benchmark files and preparing the results folder, with one-line errors that name the file and the fix.

* ``read_json(path, what)``: a JSON file; a missing file, a directory, bad bytes or bad JSON are errors naming the
  file and, for bad JSON, the line and column.
* ``read_plain_pickle(path, what)``: a pickle that may only hold plain data (lists, tuples, dicts, strings, bytes,
  numbers, booleans, None), as the REFER ``refs(unc).p`` files do. It is read with an unpickler whose
  ``find_class`` refuses every global, so a crafted file cannot run code; a truncated or non-pickle file is an
  error naming it.
* ``prepare_results_dir(path)``: create ``--results_path`` (or check it) and prove it is writable before any work.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["DataFileError", "first_problems", "require_regular_file", "read_json", "read_plain_pickle", "prepare_results_dir"]


class DataFileError(ValueError):
    """An input file that cannot be read as what it should be (the message names it and says what to do)."""


def first_problems(problems: list[str], shown: int = 3) -> str:
    """The first ``shown`` of ``problems`` joined with '; ' (and '; ...' when there are more), for one-line errors."""
    return "; ".join(problems[:shown]) + ("; ..." if len(problems) > shown else "")


def require_regular_file(path: Path, what: str, hint: str = "") -> None:
    """Raise ``FileNotFoundError`` / ``DataFileError`` naming ``what`` and ``path`` (and ``hint``) unless it is a file."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}" + (f". {hint}" if hint else ""))
    if not path.is_file():
        raise DataFileError(f"{what} {path} is not a file" + (f". {hint}" if hint else ""))


def read_json(path: str | os.PathLike, what: str = "JSON file", hint: str = "") -> Any:
    """The parsed content of the JSON file ``path``; errors name ``what`` and the file (and line / column)."""
    path = Path(path)
    require_regular_file(path, what, hint)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise DataFileError(f"{what} {path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno} "
                            f"(char {err.pos}); fix or re-download the file") from None
    except UnicodeDecodeError as err:
        raise DataFileError(f"{what} {path} is not UTF-8 text (byte {err.start}: {err.reason}); fix or re-download "
                            f"the file") from None
    except OSError as err:
        raise DataFileError(f"{what} {path} cannot be read ({err.strerror or err}); check the file and its "
                            f"permissions") from None


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
    return value


def prepare_results_dir(path: str | os.PathLike, option: str = "--results_path", subdirs: tuple[str, ...] = ()) -> Path:
    """``litelvlm.outputs.prepare_output_dir`` for a results folder (errors as ``DataFileError``): created if
    needed, a writable folder, ``subdirs`` (e.g. ``records``) folders if they exist, before any work."""
    from litelvlm.outputs import prepare_output_dir

    try:
        return prepare_output_dir(path, option, subdirs)
    except ValueError as err:
        raise DataFileError(str(err)) from None

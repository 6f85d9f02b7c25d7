"""Reading the JSON files of a checkpoint folder (configs, shard indexes, tokenizer files), and through
``eval.common.files.read_json`` the benchmarks' annotation files, with one-line errors.

Every way such a file can be unreadable (bad bytes, bad JSON, nesting so deep that the parser gives up, a list
where an object belongs) becomes one ``ValueError`` that names the file, says what is wrong and how to fix it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_json", "read_json_object"]

_FIX = "the file is corrupt or incomplete; re-download it"
_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def read_json(path: str | Path, what: str, fix: str = _FIX, error: type[ValueError] = ValueError) -> Any:
    """The parsed content of the JSON file ``path`` (``what`` names it in errors, e.g. ``"checkpoint index"``). An
    unreadable file raises ``error`` naming it, what is wrong and ``fix``; a missing one ``FileNotFoundError``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        problem = f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}, char {err.pos})"
    except UnicodeDecodeError as err:
        problem = f"is not UTF-8 text (byte {err.start}: {err.reason})"
    except RecursionError:
        problem = "nests its JSON lists / objects too deeply to read"
    except IsADirectoryError:
        problem = "is a folder, not a JSON file"
    except FileNotFoundError:
        raise
    except OSError as err:
        raise error(f"{what} {path} cannot be read ({err.strerror or err}): check the file and its permissions") from None
    raise error(f"{what} {path} {problem}: {fix}")


def read_json_object(path: str | Path, what: str) -> dict:
    """``read_json`` for a file that must hold a JSON object (a config, an index, a tokenizer config)."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise ValueError(f"{what} {Path(path)} holds a JSON {_JSON_TYPES.get(type(data), 'value')}, not an object: {_FIX}")
    return data

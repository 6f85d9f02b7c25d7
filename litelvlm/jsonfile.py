"""Reading the JSON files of a checkpoint folder (configs, shard indexes, tokenizer files) with one-line errors.

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


def read_json(path: str | Path, what: str) -> Any:
    """The parsed content of the JSON file ``path`` (``what`` names it in errors, e.g. ``"checkpoint index"``)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is not valid JSON ({err.msg}: line {err.lineno} column {err.colno}, "
                         f"char {err.pos}): {_FIX}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {err.start}): {_FIX}") from None
    except RecursionError:
        raise ValueError(f"{what} {path} nests JSON arrays or objects too deeply to parse: {_FIX}") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a folder, not a JSON file: {_FIX}") from None
    except PermissionError:
        raise ValueError(f"cannot read {what} {path}: permission denied") from None


def read_json_object(path: str | Path, what: str) -> dict:
    """``read_json`` for a file that must hold a JSON object (a config, an index, a tokenizer config)."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise ValueError(f"{what} {Path(path)} holds a JSON {_JSON_TYPES.get(type(data), 'value')}, not an object: {_FIX}")
    return data

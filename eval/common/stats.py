"""``<results_dir>/stats.json``: a JSON list with one entry appended per evaluation run.

Appending is atomic: the new list goes to a temporary file in the same folder that then replaces the old
file, under an exclusive lock, so concurrent runs never lose each other's entries and a crash never leaves a
half-written file.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["STATS_FILE", "append_stats", "load_stats"]

STATS_FILE = "stats.json"


def load_stats(results_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of ``<results_dir>/stats.json`` ([] when the file does not exist)."""
    path = Path(results_dir) / STATS_FILE
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); move it away or fix it") from err
    if not isinstance(entries, list):
        raise ValueError(f"{path} must hold a JSON list of run entries, found {type(entries).__name__}")
    return entries


def append_stats(results_dir: str | os.PathLike, entry: dict[str, Any]) -> Path:
    """Append ``entry`` (a JSON-serialisable dict) to ``<results_dir>/stats.json`` atomically; returns the path."""
    if not isinstance(entry, dict):
        raise TypeError(f"a stats entry must be a dict, got {type(entry).__name__}")
    _check_finite(entry)
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATS_FILE
    with open(folder / f".{STATS_FILE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = load_stats(folder)
        entries.append(entry)
        text = json.dumps(entries, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".stats.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def _check_finite(entry: dict[str, Any]) -> None:
    bad = [k for k, v in entry.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ValueError(f"stats entry has non-finite values for {bad}; JSON cannot store them")

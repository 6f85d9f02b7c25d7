"""``<results_dir>/stats.json``: a JSON list with one entry appended per evaluation run.

Appending is atomic: the new list goes to a temporary file in the same folder that then replaces the old
file, under an exclusive lock, so concurrent runs never lose each other's entries and a crash never leaves a
half-written file. The lock file and stats.json are written through ``eval.common.writer`` (no symbolic link is
followed; the file gets the mode the umask gives, e.g. 0644). ``same_run`` makes an append idempotent: a resumed run
that finds its finished entry already there (same run id and records) adds nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from .writer import open_results_fd, write_results_file

__all__ = ["STATS_FILE", "append_stats", "load_stats", "records_digest"]

STATS_FILE = "stats.json"


def load_stats(results_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of ``<results_dir>/stats.json`` ([] when the file does not exist)."""
    path = Path(results_dir) / STATS_FILE
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        why = "nests too deeply" if isinstance(err, RecursionError) else f"is not valid JSON ({err})"
        raise ValueError(f"{path} {why}; move it away or fix it") from None
    if not isinstance(entries, list):
        raise ValueError(f"{path} must hold a JSON list of run entries, found {type(entries).__name__}")
    return entries


def append_stats(results_dir: str | os.PathLike, entry: dict[str, Any], same_run: tuple[str, ...] = ()) -> bool:
    """Append ``entry`` (a JSON-serialisable dict) to ``<results_dir>/stats.json`` atomically. With ``same_run``
    (field names), nothing is appended when an entry already has the same values for all of them; returns whether
    ``entry`` was appended."""
    if not isinstance(entry, dict):
        raise TypeError(f"a stats entry must be a dict, got {type(entry).__name__}")
    _check_finite(entry)
    folder = Path(results_dir)
    lock = open_results_fd(folder, folder / f".{STATS_FILE}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = load_stats(folder)
        if same_run and any(all(old.get(k) == entry.get(k) for k in same_run) for old in entries):
            return False
        entries.append(entry)
        write_results_file(folder, folder / STATS_FILE,
                           json.dumps(entries, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    finally:
        os.close(lock)
    return True


def records_digest(records: Any) -> str:
    """A short SHA-256 of a run's merged records (JSON-serialisable, in canonical order): equal records, equal
    digest; what ``append_stats(same_run=("run_id", "records_digest"))`` compares."""
    text = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _check_finite(entry: dict[str, Any]) -> None:
    bad = [k for k, v in entry.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ValueError(f"stats entry has non-finite values for {bad}; JSON cannot store them")

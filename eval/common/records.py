"""Resumable per-item result records in JSON Lines files, keyed by a tuple of fields.

A run writes one record (a JSON object) per finished item, one line each, flushed at once, so a crash
loses at most the line being written. Reopening with ``resume=True`` reloads every record, drops a torn
(unterminated or unparsable) LAST line, and lets the caller skip the keys already done.

Layout used by the harnesses: ``<results_dir>/records/<run_id>.rank<R>.jsonl``: each process of a
distributed run appends to its own file; all files of a run are read on resume and when merging, so a run
may be resumed with a different number of processes (the files must be visible to every process).

Records and the run meta are written through ``eval.common.writer``: no symbolic link is followed, a record is one
``write`` of a complete line, and a failed write (disk full, read-only) raises ``ResultsWriteError`` at once.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import writer

__all__ = [
    "RecordsExistError",
    "RecordStore",
    "read_jsonl",
    "record_path",
    "meta_path",
    "run_record_paths",
    "record_key",
    "check_run_meta",
    "open_run_store",
]

Key = tuple


class RecordsExistError(FileExistsError):
    """Records of the same run already exist and resuming was not requested."""


def record_path(results_dir: str | os.PathLike, run_id: str, rank: int) -> Path:
    """Records file of process ``rank`` of run ``run_id``."""
    _check_run_id(run_id)
    return Path(results_dir) / "records" / f"{run_id}.rank{int(rank)}.jsonl"


def meta_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    """The run meta file of run ``run_id`` (see ``check_run_meta``)."""
    _check_run_id(run_id)
    return Path(results_dir) / "records" / f"{run_id}.meta.json"


def run_record_paths(results_dir: str | os.PathLike, run_id: str) -> list[Path]:
    """All existing records files of run ``run_id`` (every rank), sorted by rank."""
    _check_run_id(run_id)
    folder = Path(results_dir) / "records"
    if not folder.is_dir():
        return []
    pattern = re.compile(re.escape(run_id) + r"\.rank(\d+)\.jsonl")
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def _check_run_id(run_id: str) -> None:
    if not run_id or "/" in run_id or os.sep in run_id:
        raise ValueError(f"run_id must be a non-empty file-name stem without path separators, got {run_id!r}")


def record_key(record: dict, key_fields: Sequence[str]) -> Key:
    """The tuple of ``key_fields`` values of one record; a missing field is an error."""
    missing = [f for f in key_fields if f not in record]
    if missing:
        raise KeyError(f"record lacks key field(s) {missing}: {record!r:.200}")
    return tuple(record[f] for f in key_fields)


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], int]:
    """Records of a JSONL file and the byte length of its valid prefix.

    A torn last line (no trailing newline, or not a JSON object) is left out and the returned length stops
    before it. A bad line anywhere else is an error naming the file and line.
    """
    return parse_jsonl(Path(path).read_bytes(), path)


def parse_jsonl(data: bytes, path: str | os.PathLike) -> tuple[list[dict], int]:
    """``read_jsonl`` of the bytes ``data`` of the file ``path`` (named in errors)."""
    lines = data.split(b"\n")
    last_filled = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records, valid_len = [], 0
    for index, line in enumerate(lines):
        terminated = index < len(lines) - 1
        if line.strip():
            parsed = _parse_line(line) if terminated else None
            if parsed is None:
                if index == last_filled:
                    break  # torn tail of an interrupted write
                raise ValueError(f"{path}: line {index + 1} is not a JSON object; the records file is corrupt "
                                 f"(only a torn last line is tolerated)")
            records.append(parsed)
        valid_len += len(line) + int(terminated)
    return records, valid_len


def _parse_line(line: bytes) -> dict | None:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class RecordStore:
    """Append-only JSONL records of one process, plus read-only records of the run's other files.

    ``key_fields`` name the record fields that identify an item, e.g. ``("ref_id", "sent_id")`` or
    ``("video", "exp_id")``. Without ``resume`` any existing file of the run is an error; with it, every
    record found is loaded (the own file's torn tail is truncated away) and ``has(key)`` tells what is done.

    A key is recorded once, unless ``supersede_field`` names a numeric field (e.g. ``"attempt"``): then a
    record with a larger value of that field replaces the earlier one (a retried item), in any file.

    The own file is opened through ``eval.common.writer`` below ``root`` (default: its folder): a symbolic link
    there, or on the way from ``root``, is refused before anything is read.
    """

    def __init__(self, path: str | os.PathLike, key_fields: Sequence[str], *, resume: bool = False,
                 other_paths: Iterable[str | os.PathLike] = (), supersede_field: str | None = None,
                 root: str | os.PathLike | None = None):
        self.path = Path(path)
        self.key_fields = tuple(key_fields)
        self.supersede_field = supersede_field
        if not self.key_fields:
            raise ValueError("key_fields must name at least one record field")
        others = [Path(p) for p in other_paths if Path(p) != self.path]
        existing = [p for p in [self.path, *others] if p.exists()]
        if existing and not resume:
            raise RecordsExistError(
                f"records of this run already exist ({', '.join(str(p) for p in existing)}): pass --resume to "
                f"continue it, or choose another results path")
        self._fd = writer.open_results_fd(self.path.parent if root is None else root, self.path,
                                          os.O_RDWR | os.O_CREAT | os.O_APPEND)
        self._records: dict[Key, dict] = {}
        try:
            for other in others:
                if other.exists():
                    self._load(other, read_jsonl(other)[0])
            self._load_own()
        except BaseException:
            os.close(self._fd)
            raise

    def _load_own(self) -> None:
        """Load the own file (through its descriptor) and cut a torn last line off."""
        chunks, offset = [], 0
        while chunk := os.pread(self._fd, 1 << 24, offset):
            chunks.append(chunk)
            offset += len(chunk)
        data = b"".join(chunks)
        records, valid_len = parse_jsonl(data, self.path)
        if valid_len < len(data):
            try:
                os.ftruncate(self._fd, valid_len)
            except OSError as err:
                raise writer.ResultsWriteError(f"cannot cut the torn last line off {self.path} "
                                               f"({err.strerror or err}); make the records folder writable") from None
        self._load(self.path, records)

    def _load(self, path: Path, records: list[dict]) -> None:
        for record in records:
            key = record_key(record, self.key_fields)
            if key in self._records and not self._supersedes(record, self._records[key]):
                if self._supersedes(self._records[key], record):
                    continue  # an older attempt, already replaced
                raise ValueError(f"{path}: record {dict(zip(self.key_fields, key))} appears twice in this run's "
                                 f"records; were two runs writing the same results path?")
            self._records[key] = record

    def _supersedes(self, new: dict, old: dict) -> bool:
        """Whether ``new`` replaces ``old`` (same key): only with a larger ``supersede_field`` value."""
        field = self.supersede_field
        if field is None:
            return False
        if field not in new or field not in old:
            raise KeyError(f"record lacks the supersede field {field!r}: {new!r:.200}")
        return new[field] > old[field]

    def key(self, record: dict) -> Key:
        """The key of ``record``."""
        return record_key(record, self.key_fields)

    def has(self, key: Key) -> bool:
        """Whether an item with this key is already recorded."""
        return tuple(key) in self._records

    def get(self, key: Key) -> dict:
        """The record of ``key`` (KeyError if not recorded)."""
        return self._records[tuple(key)]

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> dict[Key, dict]:
        """All known records by key (loaded and added)."""
        return dict(self._records)

    def add(self, record: dict[str, Any]) -> None:
        """Append one record (one flushed line); a key already recorded is an error unless it supersedes."""
        key = self.key(record)
        if key in self._records and not self._supersedes(record, self._records[key]):
            raise ValueError(f"record {dict(zip(self.key_fields, key))} is already in {self.path}")
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        writer.write_all(self._fd, (line + "\n").encode("utf-8"), self.path)
        self._records[key] = record

    def close(self) -> None:
        """Flush to disk and close the file."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        except OSError as err:
            raise writer.ResultsWriteError(f"cannot write {self.path} to disk ({err.strerror or err}); rerun with "
                                           f"--resume once the disk is fixed") from None
        finally:
            os.close(fd)

    def __enter__(self) -> "RecordStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_run_meta(results_dir: str | os.PathLike, run_id: str, meta: dict[str, Any], *, fresh: bool,
                   write: bool = True) -> Path:
    """Pin the inputs of run ``run_id`` in ``records/<run_id>.meta.json``.

    ``fresh`` (no records exist yet): the file is (re)written. Otherwise a stored meta must equal ``meta``,
    which guards against resuming records produced from another checkpoint or data. ``write=False`` only
    checks (for the non-zero ranks of a distributed run; rank 0 writes).
    """
    path = meta_path(results_dir, run_id)
    meta = json.loads(json.dumps(meta))
    if not fresh and path.exists():
        from .files import read_json

        stored = read_json(path, "run meta file", f"move {path.parent} away or choose another results path")
        if not isinstance(stored, dict):
            raise ValueError(f"run meta file {path} must hold a JSON object; move {path.parent} away or choose "
                             f"another results path")
        changed = sorted(k for k in set(stored) | set(meta) if stored.get(k) != meta.get(k))
        if changed:
            details = "; ".join(f"{k}: recorded {stored.get(k)!r}, now {meta.get(k)!r}" for k in changed)
            raise ValueError(f"the existing records of run {run_id} were made with other inputs ({details}); "
                             f"choose another results path")
        return path
    if write:
        writer.write_results_file(results_dir, path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def open_run_store(results_dir: str | os.PathLike, run_id: str, key_fields: Sequence[str], meta: dict[str, Any], *,
                   resume: bool, info: Any, supersede_field: str | None = None) -> RecordStore:
    """This rank's ``RecordStore`` of run ``run_id``, after pinning ``meta`` (see ``check_run_meta``).

    Existing records without ``resume`` are an error. ``info`` is the ``DistInfo``: rank 0 writes the meta, and
    every rank lists the earlier sessions' files before any rank creates its own (a barrier).
    """
    from .distributed import barrier

    existing = run_record_paths(results_dir, run_id)
    if existing and not resume:
        raise RecordsExistError(f"records of this run already exist ({', '.join(map(str, existing))}): pass "
                                f"--resume to continue it, or choose another results path")
    check_run_meta(results_dir, run_id, meta, fresh=not existing, write=info.is_main)
    barrier(info)
    return RecordStore(record_path(results_dir, run_id, info.rank), key_fields, resume=resume,
                       other_paths=existing, supersede_field=supersede_field, root=results_dir)

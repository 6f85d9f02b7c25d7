"""One run at a time per results folder and run: a lock file ``<results>/.<run_id>.lock``.

Two processes that evaluate the same run (same run id, e.g. two ``--resume`` of one job) into one results folder
would both append the same records and leave the folder unresumable. ``acquire_run_lock`` makes the second one
fail with one line naming the folder and the run that holds it (pid, host, start time, command).

The lock file is created with ``O_CREAT | O_EXCL`` (atomic, also on NFS; through ``eval.common.writer``, so a link
planted at its name is refused, never followed) and holds the owner's pid, host, start time and command line as
JSON. While the run lasts, the owner also holds an ``fcntl.flock`` on it, which the kernel releases when the owner
dies however it dies. A lock file left behind by a dead run is therefore taken over
(with a note on stderr) when its flock is free; on a filesystem without flock support, when its owner ran on this
host and its pid is gone. A lock file owned by a live run on another host of such a filesystem cannot be judged:
the message says to delete it if that run is gone. ``RunLock.release`` (called on exit, exceptions included)
deletes the file.

Different runs (another split, budget or method: another run id) may share a results folder concurrently: their
records, predictions and scores are separate files, and ``stats.json`` has its own lock.

Multi-process runs (torchrun / deepspeed): ``results_session`` lets rank 0 prepare the folder (and refuse symbolic
links on the paths the run writes, ``writer.check_no_links``) and take the lock, and sends its outcome to every rank,
so a refused run ends on every rank with the same error.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .files import prepare_results_dir
from .writer import check_no_links, open_results_fd, write_all

__all__ = ["ResultsInUseError", "RunLock", "lock_path", "acquire_run_lock", "run_lock", "results_session"]

_STARTING_GRACE_S = 60.0  # a lock file still empty after this long is a crash between creating and writing it


class ResultsInUseError(FileExistsError):
    """Another live run holds the results folder's lock for this run."""


def lock_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    """The lock file of run ``run_id`` in ``results_dir``."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        raise ValueError(f"run id must be a plain name, got {run_id!r}")
    return Path(results_dir) / f".{run_id}.lock"


@dataclass
class RunLock:
    """A held lock; ``release`` (idempotent) deletes the lock file and drops the flock."""

    path: Path
    fd: int | None
    owner: dict

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if _same_file(self.path, self.fd):
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _owner(run_id: str) -> dict:
    command = " ".join(sys.argv).replace("\n", " ")
    return {"pid": os.getpid(), "host": socket.gethostname(), "run_id": run_id,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "command": command[:300]}


def _read_owner(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        owner = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return owner if isinstance(owner, dict) else None


def _describe(owner: dict | None) -> str:
    if not owner:
        return "a run that is still starting (its lock file is empty)"
    command = f", command: {owner['command']}" if owner.get("command") else ""
    return f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}{command}"


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True  # exists (another user's) or unreadable: assume alive
    return True


def _try_flock(fd: int) -> bool | None:
    """True: flock taken; False: held by another process; None: this filesystem does not support flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None
    return True


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def _probe_existing(path: Path, results_dir: Path, run_id: str) -> str:
    """Look at an existing lock file: ``"gone"`` (vanished, retry), ``"taken over"`` (it was stale and has been
    removed, retry) or raise ``ResultsInUseError``."""
    try:
        fd = open_results_fd(results_dir, path, os.O_RDWR)
    except FileNotFoundError:
        return "gone"
    try:
        locked = _try_flock(fd)
        owner = _read_owner(fd)
        if locked is False:
            raise _in_use(results_dir, run_id, path, owner)
        if locked is None:  # no flock here: judge by pid on this host
            here = owner is not None and owner.get("host") == socket.gethostname()
            if not (here and not _pid_alive(owner.get("pid"))):
                raise _in_use(results_dir, run_id, path, owner, unsure=owner is not None and not here)
        elif owner is None and time.time() - os.fstat(fd).st_mtime < _STARTING_GRACE_S:
            raise _in_use(results_dir, run_id, path, owner)  # created an instant ago, being filled in
        if not _same_file(path, fd):
            return "gone"  # released (and maybe re-created) meanwhile
        here = owner is not None and owner.get("host") == socket.gethostname()
        why = ("its pid is gone" if here and not _pid_alive(owner.get("pid")) else
               "its process no longer holds the lock")
        left_by = _describe(owner) if owner else "a run that never wrote its details"
        _note(f"results folder {results_dir}: taking over the stale lock of run {run_id} left by {left_by} ({why})")
        path.unlink()
        return "taken over"
    finally:
        os.close(fd)


def _in_use(results_dir: Path, run_id: str, path: Path, owner: dict | None, unsure: bool = False) -> ResultsInUseError:
    gone = (f"; if that run is no longer running (it ran on another host), delete {path}" if unsure else
            f" (lock file {path})")
    return ResultsInUseError(f"results folder {results_dir} is in use by another run of {run_id}: {_describe(owner)}; "
                             f"wait for it to finish or pass another --results_path{gone}")


def acquire_run_lock(results_dir: str | os.PathLike, run_id: str) -> RunLock:
    """Take the lock of run ``run_id`` in the (existing) folder ``results_dir``; ``ResultsInUseError`` when a live
    run holds it. A stale lock is taken over with a note on stderr."""
    results_dir = Path(results_dir)
    path = lock_path(results_dir, run_id)
    for _ in range(10):
        try:
            fd = open_results_fd(results_dir, path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            _probe_existing(path, results_dir, run_id)
            continue
        try:
            _try_flock(fd)  # None (unsupported) is fine: the file alone still excludes others
            owner = _owner(run_id)
            write_all(fd, (json.dumps(owner) + "\n").encode("utf-8"), path)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return RunLock(path, fd, owner)
    raise ResultsInUseError(f"results folder {results_dir}: could not take the lock {path} of run {run_id} (other "
                            f"runs keep creating it); retry")


@contextmanager
def run_lock(results_dir: str | os.PathLike, run_id: str) -> Iterator[RunLock]:
    """``acquire_run_lock`` for a ``with`` block; released on exit, exceptions included."""
    lock = acquire_run_lock(results_dir, run_id)
    try:
        yield lock
    finally:
        lock.release()


def _run_files(results_dir: str | os.PathLike, run_id: str, world_size: int) -> list[Path]:
    """What every run writes (relative to ``results_dir``): its lock, stats.json and its lock, the run meta and
    the records of every rank (this session's and earlier sessions')."""
    from .records import meta_path, record_path, run_record_paths
    from .stats import STATS_FILE

    root = Path(results_dir)
    records = [record_path(root, run_id, rank) for rank in range(world_size)] + run_record_paths(root, run_id)
    return [lock_path(root, run_id).relative_to(root), Path(STATS_FILE), Path(f".{STATS_FILE}.lock"),
            *(path.relative_to(root) for path in [meta_path(root, run_id), *records])]


@contextmanager
def results_session(results_dir: str | os.PathLike, run_id: str, info: Any, subdirs: tuple[str, ...] = (),
                    writes: Iterable[str | os.PathLike] = ()) -> Iterator[RunLock | None]:
    """For the whole run: rank 0 checks the results folder (``prepare_results_dir``), refuses a symbolic link on the
    way to any file the run writes (its lock, stats.json, records and meta, and ``writes``: further paths relative to
    the folder, e.g. scores) and takes the run's lock; every rank gets rank 0's outcome (a refusal is raised on every
    rank). Yields the lock on rank 0, None elsewhere; rank 0 releases it on exit, exceptions included."""
    from .distributed import gather_objects

    lock, error = None, None
    if info.is_main:
        try:
            prepare_results_dir(results_dir, subdirs=subdirs)
            check_no_links(results_dir, [*_run_files(results_dir, run_id, info.world_size), *writes])
            lock = acquire_run_lock(results_dir, run_id)
        except Exception as err:  # sent to the other ranks, then raised everywhere
            error = err
    if info.distributed:
        shared = gather_objects(error, info)[0]
        error = error if info.is_main else shared
    if error is not None:
        raise error
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()

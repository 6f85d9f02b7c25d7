"""Every file a run writes goes through here: inside the results folder, never through a symbolic link.

A results folder may hold links someone planted (``records -> ~/work``, ``scores/<run>.json -> ~/.bashrc``);
writing through one would put the run's output, or truncate a file, outside the folder. So the harnesses' writes
(records, run meta, locks, stats.json, predicted masks, scores, submission zips) walk from the results folder down
one name at a time with ``O_NOFOLLOW`` on directory descriptors, create missing folders themselves and open the
final file with ``O_NOFOLLOW`` too: a link below the results folder, or a file with other hard links, is refused
with one line naming it (``ResultsLinkError``). The results folder itself may be a link: the user chose it. New
files get the mode the umask gives (0644 under umask 022). A failed write (disk full, read-only) raises
``ResultsWriteError`` naming the file and the fix, so a run stops at its first failed write; what it finished is
kept (records are appended one complete line per write) and ``--resume`` continues it.

* ``check_no_links(root, paths)``: refuse a link on the way to any of ``paths`` (a run calls it before any work).
* ``results_folder(root, path)``: make sure the folder ``path`` under ``root`` exists, with no link on the way.
* ``open_results_fd(root, path, flags)``: an ``os.open`` descriptor of a regular file under ``root``.
* ``write_results_file(root, path, data)`` / ``atomic_results_file(root, path)``: a whole new version of a file,
  written to a temporary file and renamed over ``path``.
* ``write_all(fd, data, path)``: write every byte or raise ``ResultsWriteError``.
* ``remove_results_tree(root, path)``: delete a file, link or folder tree under ``root`` without following links.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator

from .files import DataFileError

__all__ = ["ResultsLinkError", "ResultsWriteError", "RESULTS_ERRORS", "check_no_links", "results_folder",
           "open_results_fd", "write_all", "write_results_file", "atomic_results_file", "remove_results_tree"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class ResultsLinkError(DataFileError):
    """A symbolic link (or a hard-linked file, or a non-file) where a run writes inside its results folder."""


class ResultsWriteError(OSError):
    """A write into the results folder failed (disk full, read-only, no permission); the message names the file."""


RESULTS_ERRORS = (ResultsLinkError, ResultsWriteError)  # end a run at once: never a per-sample failure


def _write_error(path: Path, err: OSError) -> ResultsWriteError:
    if err.errno in _FULL:
        fix = "free space on its disk (or pass another --results_path)"
    else:
        fix = "make the results folder writable (or pass another --results_path)"
    return ResultsWriteError(f"cannot write {path} ({err.strerror or err}); the run stopped here, keeping what it "
                             f"finished: {fix}, then rerun the same command with --resume to continue a model run")


def _link_error(root: Path, path: Path, target: str) -> ResultsLinkError:
    return ResultsLinkError(f"{path} is a symbolic link (to {target}) inside the results folder {root}; a run never "
                            f"writes through a link: remove the link or pass another --results_path")


def _refusal(root: Path, path: Path, err: OSError, dir_fd: int, name: str) -> Exception:
    """Why opening ``name`` (``path``) in ``dir_fd`` failed: a link, a non-folder / non-file, or a failed write."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return _write_error(path, err)
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            target = "?"
        return _link_error(root, path, target)
    if err.errno in (errno.ENOTDIR, errno.ENXIO, errno.EISDIR, errno.ELOOP):
        return ResultsLinkError(f"{path} in the results folder {root} is not a {_kind(err)}; move it away or pass "
                                f"another --results_path")
    return _write_error(path, err)


def _kind(err: OSError) -> str:
    return "folder" if err.errno == errno.ENOTDIR else "regular file"


def _parts(root: Path, path: Path) -> tuple[str, ...]:
    parts = Path(path).relative_to(root).parts
    if not parts or any(part in ("..", ".") for part in parts):
        raise ValueError(f"{path} is not a path inside {root}")
    return parts


def _open_root(root: Path, create: bool) -> int:
    try:
        if create:
            root.mkdir(parents=True, exist_ok=True)
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the user's folder: may be a link
    except FileNotFoundError:
        if create:
            raise _write_error(root, FileNotFoundError(errno.ENOENT, "cannot be created")) from None
        raise
    except OSError as err:
        raise _write_error(root, err) from None


@contextmanager
def _folder_fd(root: Path, names: Iterable[str], create: bool) -> Iterator[int]:
    """A descriptor of ``root/names...``, each name opened without following a link (created when ``create``).
    ``FileNotFoundError`` when a folder is missing and not ``create``."""
    fd = _open_root(root, create)
    path = root
    try:
        for name in names:
            path = path / name
            try:
                child = _open_folder(fd, name, create)
            except FileNotFoundError:
                if create:
                    raise _write_error(path, FileNotFoundError(errno.ENOENT, "folder removed meanwhile")) from None
                raise
            except OSError as err:
                raise _refusal(root, path, err, fd, name) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _open_folder(dir_fd: int, name: str, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, 0o777, dir_fd=dir_fd)
    except FileExistsError:
        pass  # made meanwhile by another process: open it (a link is still refused)
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def check_no_links(root: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> None:
    """``ResultsLinkError`` naming the first symbolic link on the way from ``root`` to any of ``paths`` (relative
    to ``root``), the paths themselves included; missing parts are fine (the run creates them)."""
    root = Path(root)
    for path in paths:
        *folders, name = _parts(root, root / path)
        try:
            with _folder_fd(root, folders, create=False) as fd:
                if stat.S_ISLNK(os.lstat(name, dir_fd=fd).st_mode):
                    raise _refusal(root, root / path, OSError(errno.ELOOP, "link"), fd, name)
        except (FileNotFoundError, NotADirectoryError, ResultsWriteError):
            continue  # missing: made by the run; unreadable: the write itself will say why


def results_folder(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Create the folder ``path`` under ``root`` (and the folders between) where missing; a link or a file on the
    way is refused. Returns ``path``."""
    root, path = Path(root), Path(path)
    if path != root:
        with _folder_fd(root, _parts(root, path), create=True):
            pass
    return path


def _check_plain_file(fd: int, root: Path, path: Path) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ResultsLinkError(f"{path} in the results folder {root} is not a regular file; move it away or pass "
                               f"another --results_path")
    if st.st_nlink > 1:
        raise ResultsLinkError(f"{path} in the results folder {root} has {st.st_nlink} hard links (another name "
                               f"shares its content); remove it or pass another --results_path")


def open_results_fd(root: str | os.PathLike, path: str | os.PathLike, flags: int) -> int:
    """``os.open(path, flags)`` for a file under ``root``: no link followed on the way or at the end, a regular file
    with no other hard link, folders created when ``flags`` has ``O_CREAT``, mode 0666 minus the umask.
    ``FileExistsError`` (``O_EXCL``) and ``FileNotFoundError`` (no ``O_CREAT``) pass through unchanged."""
    root, path = Path(root), Path(path)
    *folders, name = _parts(root, path)
    with _folder_fd(root, folders, create=bool(flags & os.O_CREAT)) as dir_fd:
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o666, dir_fd=dir_fd)
        except (FileExistsError, FileNotFoundError):
            raise
        except OSError as err:
            raise _refusal(root, path, err, dir_fd, name) from None
    try:
        _check_plain_file(fd, root, path)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes, path: str | os.PathLike) -> None:
    """Write all of ``data`` to ``fd``; an OS error (disk full, ...) becomes ``ResultsWriteError`` naming ``path``."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as err:
        raise _write_error(Path(path), err) from None


@contextmanager
def atomic_results_file(root: str | os.PathLike, path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file to write the new content of ``path`` into; on success it is flushed to disk and renamed over
    ``path`` (a link at ``path`` is refused, never followed), on an error it is removed."""
    root, path = Path(root), Path(path)
    *folders, name = _parts(root, path)
    with _folder_fd(root, folders, create=True) as dir_fd:
        temp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                         dir_fd=dir_fd)
        except OSError as err:
            raise _write_error(path, err) from None
        try:
            try:
                with open(fd, "wb") as handle:
                    yield handle
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as err:
                raise err if isinstance(err, ResultsWriteError) else _write_error(path, err) from None
            _refuse_link_at(root, path, dir_fd, name)
            try:
                os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as err:
                raise _write_error(path, err) from None
        except BaseException:
            try:
                os.unlink(temp, dir_fd=dir_fd)
            except OSError:
                pass
            raise


def _refuse_link_at(root: Path, path: Path, dir_fd: int, name: str) -> None:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _refusal(root, path, OSError(errno.ELOOP, "link"), dir_fd, name)


def write_results_file(root: str | os.PathLike, path: str | os.PathLike, data: bytes | str) -> Path:
    """Replace ``path`` under ``root`` by ``data`` (str: UTF-8) atomically (``atomic_results_file``)."""
    with atomic_results_file(root, path) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def remove_results_tree(root: str | os.PathLike, path: str | os.PathLike) -> None:
    """Delete ``path`` under ``root``: a file or link is unlinked (a link is never followed), a folder removed with
    its content; nothing happens when it is missing. A link on the way to it is refused."""
    root, path = Path(root), Path(path)
    *folders, name = _parts(root, path)
    try:
        with _folder_fd(root, folders, create=False) as dir_fd:
            try:
                st = os.lstat(name, dir_fd=dir_fd)
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(name, dir_fd=dir_fd)
                else:
                    os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                return
            except OSError as err:
                raise _write_error(path, err) from None
    except (FileNotFoundError, NotADirectoryError):
        return

"""Checkpoints named by a local path or a Hugging Face Hub id, one resolution for every loader.

A local folder (or file) is used as is. Anything shaped like a Hub id (``owner/name``, optionally
``owner/name@revision``; for one file ``owner/name/path/in/repo.pt``) is resolved with ``huggingface_hub``:
the standard cache (``HF_HOME`` / ``HF_HUB_CACHE``), ``HF_HUB_OFFLINE``, revisions, and ``allow_patterns`` so
only the files a loader needs are fetched. Offline with nothing cached, one line names the id and how to get
it. Nothing is downloaded when the id is already cached.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["HubNotAvailable", "is_hub_id", "split_revision", "resolve_folder", "resolve_file", "PATTERNS"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Files each loader reads (``allow_patterns``): weights in either format, configs, tokenizer files.
PATTERNS = {
    "glamm": ["*.json", "tokenizer.model", "*.bin", "*.safetensors"],
    "videoglamm": ["*.json", "tokenizer.model", "*.bin", "*.safetensors"],
    "clip": ["*.json", "*.txt", "*.safetensors"],
}


class HubNotAvailable(FileNotFoundError):
    """A Hub id that is neither cached nor downloadable right now (the message says how to get it)."""


def split_revision(name: str) -> tuple[str, str | None]:
    """``owner/name@rev`` -> (``owner/name``, ``rev``); without ``@``, (name, None)."""
    if "@" in name:
        repo, revision = name.rsplit("@", 1)
        if repo and revision:
            return repo, revision
    return name, None


def is_hub_id(name: str | Path) -> bool:
    """Whether ``name`` is shaped like ``owner/name[@revision]`` and is not an existing local path."""
    text = str(name)
    if Path(text).expanduser().exists() or text.startswith((".", "/", "~")):
        return False
    return bool(_ID.match(split_revision(text)[0]))


def _download_hint(repo_id: str, revision: str | None, patterns, filename: str | None = None) -> str:
    rev = f" --revision {revision}" if revision else ""
    if filename:
        return f"hf download {repo_id} {filename}{rev}"
    include = "".join(f" --include '{p}'" for p in patterns or [])
    return f"hf download {repo_id}{include}{rev}"


def _hub_error(what: str, repo_id: str, revision: str | None, err: Exception, hint: str) -> Exception:
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(err, RevisionNotFoundError):
        return HubNotAvailable(f"{what} {repo_id}: revision {revision!r} does not exist on the Hub")
    if isinstance(err, RepositoryNotFoundError):
        return HubNotAvailable(f"{what} {repo_id} is not a Hub repository you can access (wrong id, or private/gated: "
                               f"log in with `hf auth login`), and not a local path")
    if isinstance(err, LocalEntryNotFoundError):
        from huggingface_hub.constants import HF_HUB_CACHE

        return HubNotAvailable(f"{what} {repo_id}{'@' + revision if revision else ''} is not in the Hugging Face cache "
                               f"({HF_HUB_CACHE}) and the Hub cannot be reached (offline or HF_HUB_OFFLINE=1): on a "
                               f"connected machine run `{hint}` (same HF_HOME), or pass a local folder")
    return HubNotAvailable(f"{what} {repo_id}: the Hub request failed ({type(err).__name__}: {err}); retry, or pass a local folder")


def resolve_folder(name_or_path: str | Path, what: str, *, patterns=None, revision: str | None = None,
                   must_contain: tuple[str, ...] = ("config.json",)) -> Path:
    """A local checkpoint folder for ``name_or_path`` (a local folder, or a Hub id fetched into / read from the
    cache); raises one clear error naming it, the missing files, or how to download it."""
    text = str(name_or_path)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise FileNotFoundError(f"{what} {local} is a file: pass the checkpoint folder (or a Hub id)")
        folder = local
    elif is_hub_id(text):
        from huggingface_hub import snapshot_download

        repo_id, at = split_revision(text)
        revision = revision or at
        try:
            folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
        except Exception as err:  # huggingface_hub raises several types: each becomes one line
            raise _hub_error(what, repo_id, revision, err, _download_hint(repo_id, revision, patterns)) from None
    else:
        raise FileNotFoundError(f"{what} directory not found: {text} (pass a local folder, or a Hugging Face Hub id such as owner/name)")
    missing = [name for name in must_contain if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a {what} directory: missing {', '.join(missing)}")
    return folder


def resolve_file(name_or_path: str | Path, what: str, *, revision: str | None = None) -> Path:
    """A local file for ``name_or_path``: a local file, or ``owner/name/path/in/repo`` on the Hub (cached)."""
    text = str(name_or_path)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_file():
            raise FileNotFoundError(f"{what} {local} is a folder: pass the file itself")
        return local
    parts = text.split("/")
    repo_id, at = split_revision("/".join(parts[:2]))
    if len(parts) >= 3 and not text.startswith((".", "/", "~")) and _ID.match(repo_id):
        from huggingface_hub import hf_hub_download

        filename = "/".join(parts[2:])
        revision = revision or at
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision))
        except Exception as err:
            raise _hub_error(what, f"{repo_id}/{filename}", revision, err,
                             _download_hint(repo_id, revision, None, filename)) from None
    raise FileNotFoundError(f"{what} not found: {text} (pass a local file, or owner/name/path/in/repo on the Hub)")

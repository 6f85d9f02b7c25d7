"""A Hugging Face Hub cache written by hand in the Hub's on-disk layout, so Hub ids resolve offline in tests.

``<cache>/models--<owner>--<name>/blobs/<sha256>``, ``snapshots/<commit>/<path>`` as relative symlinks to
the blobs, and ``refs/<revision>`` holding the commit hash: what ``huggingface_hub`` writes when it downloads.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["write_hub_cache"]


def write_hub_cache(cache_dir: str | Path, repo_id: str, source: str | Path, *, revision: str = "main",
                    commit: str | None = None) -> Path:
    """Copy ``source`` (a folder, or one file) into the cache as ``repo_id`` at ``revision``; returns the snapshot folder."""
    source = Path(source)
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    base = source if source.is_dir() else source.parent
    commit = commit or hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for file in files:
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / file.relative_to(base)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot

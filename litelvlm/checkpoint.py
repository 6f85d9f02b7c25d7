"""Lazy, shard-by-shard reading of local Hugging Face style checkpoint folders.

A folder holds one of: ``model.safetensors.index.json`` (+ shards), ``model.safetensors``,
``pytorch_model.bin.index.json`` (+ shards) or ``pytorch_model.bin``. Tensors are read only when
asked for: safetensors through ``safe_open``, ``.bin`` shards memory-mapped, so a 7B checkpoint is
never held twice in memory.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from .jsonfile import read_json_object

__all__ = ["CheckpointDir", "WEIGHT_FILES", "LoadSummary", "ROTARY_BUFFER_KEY", "split_rotary_buffers", "weight_file_errors"]

WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin")


# transformers 4.28-4.31 saved every LLaMA layer's rotary inverse frequencies as a persistent buffer;
# transformers 5 recomputes them (one non-persistent buffer), so such keys are checked and ignored.
ROTARY_BUFFER_KEY = re.compile(r"^model\.layers\.(\d+)\.self_attn\.rotary_emb\.inv_freq$")


def split_rotary_buffers(keys: list[str]) -> tuple[list[str], list[str]]:
    """(keys, rotary ``inv_freq`` buffer keys) of a checkpoint's key list."""
    buffers = [k for k in keys if ROTARY_BUFFER_KEY.match(k)]
    return [k for k in keys if not ROTARY_BUFFER_KEY.match(k)], buffers


@dataclass
class LoadSummary:
    """What loading a checkpoint folder did: tensors read per group (with their stored dtypes), groups
    skipped as unused, and buffer keys ignored (checked, then recomputed by the model)."""

    path: Path
    loaded: dict[str, int] = field(default_factory=dict)
    stored_dtypes: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    ignored_buffers: list[str] = field(default_factory=list)

    def add_loaded(self, group: str, tensors: dict[str, torch.Tensor], stored: dict[str, torch.dtype] | None = None) -> None:
        self.loaded[group] = self.loaded.get(group, 0) + len(tensors)
        if stored:
            self.stored_dtypes[group] = sorted({str(d).replace("torch.", "") for d in stored.values()})

    def __str__(self) -> str:
        loaded = ", ".join(f"{g} {n}" + (f" ({'/'.join(self.stored_dtypes[g])})" if g in self.stored_dtypes else "")
                           for g, n in self.loaded.items())
        parts = [f"loaded {sum(self.loaded.values())} tensors from {self.path}: {loaded}"]
        if self.skipped:
            parts.append("skipped as unused: " + ", ".join(f"{g} ({n} keys)" for g, n in self.skipped.items()))
        if self.ignored_buffers:
            parts.append(f"ignored {len(self.ignored_buffers)} rotary inv_freq buffers (transformers-4 checkpoints store them; "
                         "they matched the config and are recomputed)")
        return "; ".join(parts)


def _read_weight_map(index: Path) -> dict[str, str]:
    """The ``weight_map`` of a shard index JSON, with errors naming the file (and the position of a syntax error)."""
    data = read_json_object(index, "checkpoint index")
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"checkpoint index {index} has no \"weight_map\" object (tensor name -> shard file): "
                         "the file is corrupt or not a shard index; re-download it")
    return weight_map


def _shard_path(folder: Path, name: str, index: Path) -> Path:
    """``folder / name`` for a shard file an index names, refused unless the name stays inside ``folder``: a plain
    relative name, no ``..``. A symbolic link in the folder is followed (the Hugging Face cache links every snapshot
    file into its blobs, and a user may link weights kept on another disk): the folder's owner placed it there."""
    candidate = Path(name)
    if candidate.is_absolute() or ".." in candidate.parts or name.strip() in ("", "."):
        shown = repr(name) if len(name) <= 80 else repr(name[:77] + "...")
        raise ValueError(f"checkpoint index {index} names the shard {shown}, which is not a file inside {folder} "
                         "(absolute paths and '..' are refused): the index is corrupt or tampered with; re-download it")
    return folder / candidate


def _load_bin(file: Path) -> dict:
    """A ``pytorch_model*.bin`` shard, memory-mapped (torch's zip format, as ``save_pretrained`` writes it)."""
    if not zipfile.is_zipfile(file):
        raise ValueError("not a PyTorch checkpoint in torch.save's zip format")
    shard = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
    if not isinstance(shard, dict):
        raise ValueError(f"holds a {type(shard).__name__}, not a dict of tensors")
    return shard


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def _unreadable(file: Path, what: str, err: Exception) -> str:
    """One line naming ``file``, its size and what the reader said (at most about 200 characters of it)."""
    reason = " ".join(str(err).split()) or type(err).__name__
    reason = reason[:200] + "..." if len(reason) > 200 else reason
    size = file.stat().st_size if file.is_file() else 0
    return f"cannot load {what} {file} ({size} bytes): {reason}; the file is corrupt or incomplete: re-download it"


@contextmanager
def weight_file_errors(file: Path, what: str = "checkpoint shard",
                       refusal_fix: str = "use safetensors weights or a copy from a source you trust"):
    """Turn whatever torch / safetensors raise for an unreadable weights file into one
    ``ValueError`` naming ``what`` and the file; a pickle naming a Python global (code a load could run) is refused
    as such, with ``refusal_fix``."""
    try:
        yield
    except MemoryError:
        raise
    except PermissionError:
        raise ValueError(f"cannot read {what} {file}: permission denied") from None
    except pickle.UnpicklingError as err:
        found = _UNSUPPORTED_GLOBAL.search(str(err))
        if found is None:
            raise ValueError(_unreadable(file, what, err)) from None
        raise ValueError(f"refused to load {what} {file}: it names the Python global {found.group(1)}, and loading "
                         f"globals could run code (only tensors are read): {refusal_fix}") from None
    except Exception as err:  # torch raises RuntimeError / EOFError, safetensors its own type
        raise ValueError(_unreadable(file, what, err)) from None


def _shard_errors(file: Path, tensor: str | None = None):
    """``weight_file_errors`` for a shard (or one of its tensors)."""
    return weight_file_errors(file, f"tensor {tensor!r} of checkpoint shard" if tensor else "checkpoint shard")


class CheckpointDir:
    """Key-to-file map of a checkpoint folder, with lazy loading of chosen keys."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"checkpoint directory not found: {self.path}")
        self.key_to_file = self._index()

    def _index(self) -> dict[str, Path]:
        for name in WEIGHT_FILES:
            candidate = self.path / name
            if not candidate.exists():
                continue
            if name.endswith(".index.json"):
                weight_map = _read_weight_map(candidate)
                files = {f: _shard_path(self.path, f, candidate) for f in set(weight_map.values())}
                absent = sorted(str(p) for p in files.values() if not p.exists())
                if absent:
                    raise FileNotFoundError(f"{candidate} lists shards that are missing: {', '.join(absent)}")
                return {k: files[f] for k, f in weight_map.items()}
            return {k: candidate for k in self._keys_of(candidate)}
        raise FileNotFoundError(f"no weights in {self.path}: expected one of {', '.join(WEIGHT_FILES)}")

    @staticmethod
    def _keys_of(file: Path) -> list[str]:
        with _shard_errors(file):
            if file.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(file), framework="pt") as f:
                    return list(f.keys())
            return list(_load_bin(file).keys())

    def keys(self) -> list[str]:
        return list(self.key_to_file)

    def iter_tensors(self, keys: Iterable[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield ``(key, tensor)`` for ``keys``, one shard at a time."""
        by_file: dict[Path, list[str]] = defaultdict(list)
        for key in keys:
            if key not in self.key_to_file:
                raise KeyError(f"{key!r} is not in the checkpoint {self.path}")
            by_file[self.key_to_file[key]].append(key)
        for file, names in by_file.items():
            if file.suffix == ".safetensors":
                from safetensors import safe_open

                with _shard_errors(file):
                    handle = safe_open(str(file), framework="pt")
                with handle as f:
                    for name in names:
                        with _shard_errors(file, name):
                            tensor = f.get_tensor(name)
                        yield name, tensor
            else:
                with _shard_errors(file):
                    shard = _load_bin(file)
                for name in names:
                    if name not in shard:
                        raise ValueError(f"checkpoint shard {file} has no tensor {name!r} although {self.path} lists it there: "
                                         "the shard is stale or incomplete; re-download it")
                    yield name, shard[name]
                del shard

    def load(self, keys: Iterable[str], transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             stored_dtypes: dict[str, torch.dtype] | None = None) -> dict[str, torch.Tensor]:
        """The tensors of ``keys``; ``transform`` (e.g. a dtype cast) is applied as each is read;
        ``stored_dtypes``, when given, receives each tensor's dtype as stored."""
        out = {}
        for k, t in self.iter_tensors(keys):
            if stored_dtypes is not None:
                stored_dtypes[k] = t.dtype
            out[k] = transform(t) if transform else t
        return out

    def with_prefix(self, prefix: str) -> list[str]:
        return [k for k in self.key_to_file if k.startswith(prefix)]

    def load_prefix(self, prefix: str, transform=None, stored_dtypes: dict[str, torch.dtype] | None = None) -> dict[str, torch.Tensor]:
        """Tensors under ``prefix`` with the prefix stripped from their names."""
        return {k[len(prefix):]: t for k, t in self.load(self.with_prefix(prefix), transform, stored_dtypes).items()}

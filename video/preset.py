"""VideoGLaMM presets: how the model is built (dtype, attention) and how it segments (``VideoSegmenterConfig``).

Presets ship with the package in ``video/presets/*.yaml``: ``released`` (the released evaluation protocol,
per benchmark; the default of ``python -m eval.rvos``) and ``default`` (litelvlm's own settings; the default
of ``litelvlm segment-video``). A preset file has three sections: ``model`` (``dtype``: a name, ``auto``, or
``{cuda: ..., cpu: ...}``; ``attn_implementation``; ``clip_attn_implementation``), ``segmenter`` (every
``VideoSegmenterConfig`` field) and ``benchmarks`` (per-benchmark overrides of segmenter fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch

__all__ = ["PRESET_DIR", "PRESET_NAMES", "VideoPreset", "load_preset", "preset_path"]

PRESET_DIR = Path(__file__).parent / "presets"
PRESET_NAMES = ("released", "default")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_MODEL_KEYS = ("dtype", "attn_implementation", "clip_attn_implementation")


@dataclass
class VideoPreset:
    """A loaded preset: the segmenter config (benchmark overrides applied) and the model build options."""

    name: str
    segmenter: object  # VideoSegmenterConfig
    model: dict = field(default_factory=dict)

    def dtype(self, device: str | torch.device) -> torch.dtype | None:
        """The preset's dtype on ``device`` (None: the model's default for the device)."""
        value = self.model.get("dtype", "auto")
        if isinstance(value, dict):
            value = value.get(torch.device(device).type, "auto")
        return None if value in (None, "auto") else _DTYPES[value]

    def attn_implementation(self) -> str | None:
        """The LLM's attention implementation (None: the device's default)."""
        value = self.model.get("attn_implementation", "auto")
        return None if value in (None, "auto") else value

    def clip_attn_implementation(self) -> str | None:
        value = self.model.get("clip_attn_implementation", "auto")
        return None if value in (None, "auto") else value


def preset_path(name_or_path: str | Path) -> Path:
    """The YAML file of a preset name (``released``, ``default``) or of a path; raises naming both choices."""
    if str(name_or_path) in PRESET_NAMES:
        return PRESET_DIR / f"{name_or_path}.yaml"
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"preset not found: {name_or_path} (use one of {', '.join(PRESET_NAMES)} or a YAML file path)")
    return path


def _check_dtype(value, where: str) -> None:
    values = value.values() if isinstance(value, dict) else [value]
    bad = [v for v in values if v not in (None, "auto", *_DTYPES)]
    if bad or (isinstance(value, dict) and set(value) - {"cuda", "cpu"}):
        raise ValueError(f"{where}: model.dtype must be auto, one of {sorted(_DTYPES)} or {{cuda: ..., cpu: ...}}, got {value!r}")


def load_preset(name_or_path: str | Path, benchmark: str | None = None) -> VideoPreset:
    """Read a preset; ``benchmark`` (davis / ytvos / mevis) applies its overrides to the segmenter fields."""
    import yaml

    from .segmenter import VideoSegmenterConfig

    path = preset_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict) or not set(raw) <= {"model", "segmenter", "benchmarks"}:
        raise ValueError(f"{path}: a preset has the sections model, segmenter and benchmarks; found {sorted(raw) if isinstance(raw, dict) else raw!r}")
    model = raw.get("model") or {}
    unknown_model = sorted(set(model) - set(_MODEL_KEYS))
    if unknown_model:
        raise ValueError(f"{path}: unknown model options {unknown_model}; known: {list(_MODEL_KEYS)}")
    _check_dtype(model.get("dtype", "auto"), str(path))
    known = {f.name for f in fields(VideoSegmenterConfig)}
    segmenter_fields = raw.get("segmenter") or {}
    overrides = (raw.get("benchmarks") or {}).get(benchmark, {}) if benchmark else {}
    for where, values in (("segmenter", segmenter_fields), (f"benchmarks.{benchmark}", overrides)):
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown {where} fields {unknown}; known: {sorted(known)}")
    segmenter = replace(VideoSegmenterConfig(**segmenter_fields), **overrides)
    return VideoPreset(name=path.stem if str(name_or_path) not in PRESET_NAMES else str(name_or_path), segmenter=segmenter, model=model)

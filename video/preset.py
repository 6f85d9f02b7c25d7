"""VideoGLaMM presets: how the model is built (dtype, attention) and how it segments (``VideoSegmenterConfig``).

Presets ship with the package in ``video/presets/*.yaml``: ``released`` (the released evaluation protocol,
per benchmark; the default of ``python -m eval.rvos``) and ``default`` (litelvlm's own settings; the default
of ``litelvlm segment-video``). A preset file has four sections: ``model`` (``dtype``: a name, ``auto``, or
``{cuda: ..., cpu: ...}``; ``autocast``: null, float16 / bfloat16, or ``{cuda: ..., cpu: ...}``, the
``torch.autocast`` region around every ``segment`` call, see ``litelvlm.precision_context``;
``attn_implementation``; ``clip_attn_implementation``), ``segmenter`` (every ``VideoSegmenterConfig`` field),
``predictions`` (``no_seg``: how ``eval.rvos`` writes an expression whose answer has no ``[SEG]``, one of
``NO_SEG_RULES``) and ``benchmarks`` (per-benchmark overrides of segmenter fields and of ``no_seg``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch

__all__ = ["NO_SEG_RULES", "PRESET_DIR", "PRESET_NAMES", "VideoPreset", "load_preset", "preset_path"]

PRESET_DIR = Path(__file__).parent / "presets"
PRESET_NAMES = ("released", "default")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_MODEL_KEYS = ("dtype", "autocast", "attn_implementation", "clip_attn_implementation")
_SECTIONS = {"model", "segmenter", "predictions", "benchmarks"}
# an answer without [SEG]: empty masks written (litelvlm), nothing written (released MeViS / Ref-YouTube-VOS
# scripts), or the video refused and recorded as failed (the released Ref-DAVIS17 script stops with KeyError)
NO_SEG_RULES = ("empty", "skip", "refuse")


@dataclass
class VideoPreset:
    """A loaded preset: the segmenter config (benchmark overrides applied) and the model build options."""

    name: str
    segmenter: object  # VideoSegmenterConfig
    model: dict = field(default_factory=dict)
    no_seg: str = "empty"  # one of NO_SEG_RULES (benchmark override applied)

    def dtype(self, device: str | torch.device) -> torch.dtype | None:
        """The preset's dtype on ``device`` (None: the model's default for the device)."""
        value = _on_device(self.model.get("dtype", "auto"), device, "auto")
        return None if value in (None, "auto") else _DTYPES[value]

    def autocast(self, device: str | torch.device) -> torch.dtype | None:
        """The ``torch.autocast`` dtype around the segment calls on ``device`` (None: no autocast)."""
        value = _on_device(self.model.get("autocast"), device, None)
        return None if value is None else _DTYPES[value]

    def precision(self, device: str | torch.device, dtype: torch.dtype | None = None) -> tuple[torch.dtype | None, torch.dtype | None]:
        """(weights dtype, autocast dtype) on ``device``: the preset's pair, or for an explicit ``dtype`` (``--dtype``)
        that dtype without autocast (an explicit dtype replaces the preset's precision, autocast included)."""
        if dtype is not None:
            return dtype, None
        return self.dtype(device), self.autocast(device)

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


def _on_device(value, device: str | torch.device, missing):
    """A model option's value on ``device``: the value itself, or its ``{cuda: ..., cpu: ...}`` entry."""
    if isinstance(value, dict):
        return value.get(torch.device(device).type, missing)
    return value


def _check_dtype(value, where: str) -> None:
    values = value.values() if isinstance(value, dict) else [value]
    bad = [v for v in values if v not in (None, "auto", *_DTYPES)]
    if bad or (isinstance(value, dict) and set(value) - {"cuda", "cpu"}):
        raise ValueError(f"{where}: model.dtype must be auto, one of {sorted(_DTYPES)} or {{cuda: ..., cpu: ...}}, got {value!r}")


def _check_autocast(value, where: str) -> None:
    from litelvlm.precision_context import AUTOCAST_DTYPES, check_autocast

    entries = value.items() if isinstance(value, dict) else [("cuda", value), ("cpu", value)]
    bad = (isinstance(value, dict) and set(value) - {"cuda", "cpu"}) or any(v not in (None, *AUTOCAST_DTYPES) for _, v in entries)
    if bad:
        raise ValueError(f"{where}: model.autocast must be null, one of {sorted(AUTOCAST_DTYPES)} or {{cuda: ..., cpu: ...}}, "
                         f"got {value!r}")
    for device, name in entries:
        try:
            check_autocast(device, None if name is None else AUTOCAST_DTYPES[name])
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None


def _check_no_seg(value, where: str) -> str:
    if value not in NO_SEG_RULES:
        raise ValueError(f"{where}: no_seg must be one of {list(NO_SEG_RULES)}, got {value!r}")
    return value


def load_preset(name_or_path: str | Path, benchmark: str | None = None) -> VideoPreset:
    """Read a preset; ``benchmark`` (davis / ytvos / mevis) applies its overrides to the segmenter fields."""
    import yaml

    from .segmenter import VideoSegmenterConfig

    path = preset_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict) or not set(raw) <= _SECTIONS:
        raise ValueError(f"{path}: a preset has the sections {sorted(_SECTIONS)}; found {sorted(raw) if isinstance(raw, dict) else raw!r}")
    model = raw.get("model") or {}
    unknown_model = sorted(set(model) - set(_MODEL_KEYS))
    if unknown_model:
        raise ValueError(f"{path}: unknown model options {unknown_model}; known: {list(_MODEL_KEYS)}")
    _check_dtype(model.get("dtype", "auto"), str(path))
    _check_autocast(model.get("autocast"), str(path))
    predictions = raw.get("predictions") or {}
    if set(predictions) - {"no_seg"}:
        raise ValueError(f"{path}: unknown predictions options {sorted(set(predictions) - {'no_seg'})}; known: ['no_seg']")
    known = {f.name for f in fields(VideoSegmenterConfig)}
    segmenter_fields = raw.get("segmenter") or {}
    overrides = dict((raw.get("benchmarks") or {}).get(benchmark, {})) if benchmark else {}
    no_seg = _check_no_seg(overrides.pop("no_seg", predictions.get("no_seg", "empty")), f"{path} ({benchmark or 'predictions'})")
    for where, values, extra in (("segmenter", segmenter_fields, set()), (f"benchmarks.{benchmark}", overrides, {"no_seg"})):
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown {where} fields {unknown}; known: {sorted(known | extra)}")
    segmenter = replace(VideoSegmenterConfig(**segmenter_fields), **overrides)
    return VideoPreset(name=path.stem if str(name_or_path) not in PRESET_NAMES else str(name_or_path), segmenter=segmenter,
                       model=model, no_seg=no_seg)

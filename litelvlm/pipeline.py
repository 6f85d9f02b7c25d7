"""``litelvlm.load``: one call from a model name to masks, for images and videos alike.

    import litelvlm
    seg = litelvlm.load("glamm", budget=192)                 # MBZUAI/GLaMM-RefSeg via the Hub cache
    result = seg("photo.jpg", ["the man on the left"])         # path, PIL image or (H, W, 3) uint8 array
    result.masks, result.kept, result.timings                  # GLaMMSegmenter's SegmentationResult

    video = litelvlm.load("videoglamm", "checkpoints/VideoGLaMM", video_tower=PT, budget=81)
    video("clip.mp4", ["the dog"]).masks                       # mp4, frame folder, (T, H, W, 3) array or frames

``checkpoint="tiny"`` builds the embedded tiny checkpoint with RANDOM weights (written once to the litelvlm
cache folder): it runs anywhere in seconds and shows the mechanics, its masks mean nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["MODELS", "TINY", "TINY_WEIGHTS", "Pipeline", "load", "as_image", "as_frames", "cache_dir", "tiny_checkpoint",
           "is_tiny", "weights_label", "locate_checkpoints", "checkpoint_paths"]

MODELS = ("glamm", "videoglamm")
DEFAULT_CHECKPOINTS = {"glamm": "MBZUAI/GLaMM-RefSeg", "videoglamm": None}  # VideoGLaMM's weights are not on the Hub
TINY = "tiny"  # the checkpoint name of the embedded tiny checkpoints
TINY_WEIGHTS = "RANDOM weights (embedded tiny checkpoint): the masks are meaningless, the pruning mechanics are real"
TINY_VERSION = "2"  # bump when the tiny writers change, so cached tiny checkpoints are rewritten
# What each checkpoint is called in errors, and its huggingface_hub download patterns (litelvlm.hub.PATTERNS)
_CHECKPOINT_NAMES = {"glamm": ("GLaMM checkpoint", "glamm"), "videoglamm": ("VideoGLaMM checkpoint", "videoglamm")}


def cache_dir() -> Path:
    """``$LITELVLM_CACHE``, else ``$XDG_CACHE_HOME/litelvlm``, else ``~/.cache/litelvlm``."""
    if os.environ.get("LITELVLM_CACHE"):
        return Path(os.environ["LITELVLM_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "litelvlm"


def tiny_checkpoint(model: str) -> dict[str, Path]:
    """The embedded tiny random checkpoint of ``model``, written once to ``cache_dir()``; returns its paths
    (``glamm``: ``{"glamm", "clip"}``; ``videoglamm``: ``{"checkpoint", "vision_tower", "video_tower"}``)."""
    import json

    root = cache_dir() / f"tiny-{model}-v{TINY_VERSION}"
    manifest = root / "paths.json"
    if manifest.exists():
        return {k: Path(v) for k, v in json.loads(manifest.read_text()).items()}
    partial = root.with_name(root.name + f".partial-{os.getpid()}")
    if model == "glamm":
        from .tiny_glamm import make_tiny_glamm

        paths = make_tiny_glamm(partial)
    else:
        from video.tiny import make_tiny_videoglamm

        paths = make_tiny_videoglamm(partial)
    final = {k: root / Path(v).relative_to(partial) for k, v in paths.items()}
    (partial / "paths.json").write_text(json.dumps({k: str(v) for k, v in final.items()}))
    try:
        partial.rename(root)  # atomic: a crash never leaves a half-written tiny checkpoint in use
    except OSError:  # another process finished first: use its copy
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
    return {k: Path(v) for k, v in json.loads(manifest.read_text()).items()}


def is_tiny(checkpoint: str | Path | None) -> bool:
    """Whether ``checkpoint`` names the embedded tiny checkpoint (``"tiny"``)."""
    return str(checkpoint) == TINY


def weights_label(checkpoint: str | Path) -> str:
    """What a run's weights are, for its outputs: ``TINY_WEIGHTS`` for ``tiny``, else the checkpoint's name."""
    return TINY_WEIGHTS if is_tiny(checkpoint) else str(checkpoint)


def locate_checkpoints(model: str, checkpoint: str | Path, vision_tower=None, video_tower=None) -> dict[str, Any]:
    """``checkpoint`` and the named towers as local paths, without importing torch: a missing folder or file, or a Hub
    id neither cached nor downloadable, is one error naming it; ``tiny`` is left for ``checkpoint_paths``."""
    from .hub import PATTERNS, HubNotAvailable, resolve_file, resolve_folder

    what, patterns = _CHECKPOINT_NAMES[model]
    if not is_tiny(checkpoint):
        try:
            checkpoint = resolve_folder(checkpoint, what, patterns=PATTERNS[patterns])
        except HubNotAvailable as err:
            raise HubNotAvailable(f"{err}; '{TINY}' (the embedded checkpoint, RANDOM weights) runs offline") from None
    if vision_tower is not None:
        vision_tower = resolve_folder(vision_tower, "CLIP vision tower", patterns=PATTERNS["clip"])
    if video_tower is not None:
        video_tower = resolve_file(video_tower, "InternVideo2 video tower (.pt)")
    return {"checkpoint": checkpoint, "vision_tower": vision_tower, "video_tower": video_tower}


def checkpoint_paths(model: str, checkpoint: str | Path, vision_tower=None, video_tower=None) -> dict[str, Any]:
    """The ``checkpoint`` / ``vision_tower`` / ``video_tower`` a loader reads: ``locate_checkpoints``, and for ``tiny``
    the embedded tiny checkpoint (written once), whose matching tiny towers replace the towers not named."""
    paths = locate_checkpoints(model, checkpoint, vision_tower, video_tower)
    if not is_tiny(checkpoint):
        return paths
    tiny = tiny_checkpoint(model)
    if model == "glamm":
        return {**paths, "checkpoint": tiny["glamm"], "vision_tower": paths["vision_tower"] or tiny["clip"]}
    return {"checkpoint": tiny["checkpoint"], "vision_tower": paths["vision_tower"] or tiny["vision_tower"],
            "video_tower": paths["video_tower"] or tiny["video_tower"]}


def as_image(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 from a path, a PIL image, or an array ((H, W) grey, (H, W, 4) RGBA, (H, W, 3))."""
    from .viz import load_rgb, to_rgb8

    if isinstance(image, (str, Path)):
        return load_rgb(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL: decoded as load_rgb decodes files
        return to_rgb8(image)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"an image array must be uint8, got {array.dtype} (scale to 0..255 first)")
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return np.ascontiguousarray(array[..., :3])
    raise ValueError(f"an image must be (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")


def as_frames(video: Any) -> np.ndarray:
    """(T, H, W, 3) uint8 from an mp4 / frame-folder path, an array, or a list of images (same size)."""
    if isinstance(video, (str, Path)):
        from video.io import read_video

        return read_video(video)[0]
    if isinstance(video, np.ndarray) and video.ndim == 4:
        if video.dtype != np.uint8 or video.shape[-1] != 3:
            raise ValueError(f"a video array must be (T, H, W, 3) uint8, got shape {video.shape} dtype {video.dtype}")
        return video
    frames = [as_image(f) for f in video]
    if not frames:
        raise ValueError("no frames given")
    if len({f.shape for f in frames}) != 1:
        raise ValueError(f"frames differ in size: {sorted({f.shape for f in frames})}")
    return np.stack(frames)


_DEFAULT = object()  # a call without budget=: the pipeline's own


@dataclass
class Pipeline:
    """A loaded segmenter and its defaults; call it with an image (or video) and expressions."""

    model: str
    segmenter: Any
    budget: int | None
    method: str
    weights: str
    options: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "video" if self.model == "videoglamm" else "image"

    def __call__(self, inputs: Any, expressions: str | Sequence[str], *, budget: Any = _DEFAULT, method: str | None = None,
                 **options):
        """Masks of ``expressions`` in ``inputs``; ``budget`` / ``method`` / segmenter options override the defaults
        (checked as ``load`` checks them: one ``ValueError`` before any work)."""
        from .run_options import check_frame_budget, check_method_runs_on

        budget = self.budget if budget is _DEFAULT else budget
        method = method or self.method
        if budget != self.budget or method != self.method:
            check_frame_budget(budget, "budget")
            check_method_runs_on(method, self.kind, "method")
        expressions = [expressions] if isinstance(expressions, str) else list(expressions)
        if self.kind == "video":
            return self.segmenter.segment(as_frames(inputs), expressions, budget=budget, method=method, **{**self.options, **options})
        return self.segmenter.segment(as_image(inputs), expressions, budget=budget, method=method, **{**self.options, **options})


def load(model: str = "glamm", checkpoint: str | Path | None = None, *, vision_tower: str | Path | None = None,
         video_tower: str | Path | None = None, budget: int | None = 192, method: str = "litelvlm", device: str = "cpu",
         dtype=None, preset: str | None = None, **options) -> Pipeline:
    """A ``Pipeline`` for ``model`` (``glamm`` or ``videoglamm``).

    ``checkpoint``: a local folder, a Hub id, or ``"tiny"`` (the embedded tiny random checkpoint); default
    ``MBZUAI/GLaMM-RefSeg`` for GLaMM (VideoGLaMM has none on the Hub). ``budget``: visual tokens kept per image
    or per frame (None: all 576); ``budget`` and ``method`` are checked here, before anything loads (one
    ``ValueError``: a budget outside 1..576 or not an int, an unknown method or one that does not run on the
    model's media). ``preset`` (video): ``default`` or ``released`` (video/presets/). ``options``
    go to every call (e.g. ``prune_scope="image"``)."""
    from .run_options import check_device, check_frame_budget, check_method_runs_on

    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    # the options fail before any weight is read
    check_frame_budget(budget, "budget")
    check_method_runs_on(method, "video" if model == "videoglamm" else "image", "method")
    check_device(device, "device")
    checkpoint = checkpoint or DEFAULT_CHECKPOINTS[model]
    if checkpoint is None:
        raise ValueError("VideoGLaMM's weights are not on the Hugging Face Hub: pass checkpoint= its local folder (or 'tiny')")
    if model == "glamm":
        segmenter = _load_glamm(checkpoint, vision_tower, device, dtype)
    else:
        planned = (budget, method, options.get("layout"))  # the per-call layout override wins over the preset's
        segmenter = _load_videoglamm(checkpoint, vision_tower, video_tower, device, dtype, preset, planned)
    return Pipeline(model, segmenter, budget, method, weights_label(checkpoint), options)


def _load_glamm(checkpoint, vision_tower, device, dtype):
    paths = checkpoint_paths("glamm", checkpoint, vision_tower)
    from .glamm import GLaMMSegmenter

    return GLaMMSegmenter.from_pretrained(paths["checkpoint"], vision_tower=paths["vision_tower"], device=device, dtype=dtype)


def _load_videoglamm(checkpoint, vision_tower, video_tower, device, dtype, preset, planned):
    from dataclasses import asdict

    from video.layout import check_layout_budget
    from video.preset import load_preset
    from video.segmenter import VideoSegmenter

    chosen = load_preset(preset or "default")
    budget, method, layout = planned
    check_layout_budget(layout or chosen.segmenter.layout, budget, method, "budget")  # before any weight is read
    paths = checkpoint_paths("videoglamm", checkpoint, vision_tower, video_tower)
    dtype, autocast = chosen.precision(device, dtype)
    return VideoSegmenter.from_pretrained(**paths, device=device, dtype=dtype, autocast=autocast,
                                          attn_implementation=chosen.attn_implementation(),
                                          clip_attn_implementation=chosen.clip_attn_implementation(), **asdict(chosen.segmenter))

"""Tiny synthetic RVOS datasets in the real MeViS / Ref-YouTube-VOS / Ref-DAVIS17 layouts (for tests and demos).

Each writer draws moving elliptic objects per video, writes small JPEG frames, the meta_expressions.json files and
the GT in the format of the benchmark (COCO RLE mask_dict.json / DAVIS palette PNGs), and returns a
:class:`SyntheticRVOS` that knows which objects every expression refers to (also for splits without public GT).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .davis_protocol import VOID_LABEL, save_label_map
from .predictions import write_mask_sequence

__all__ = [
    "SyntheticRVOSConfig",
    "SyntheticRVOS",
    "make_label_tracks",
    "write_synthetic_mevis",
    "write_synthetic_ref_ytvos",
    "write_synthetic_ref_davis17",
    "write_synthetic_predictions",
]

_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")


@dataclass(frozen=True)
class SyntheticRVOSConfig:
    """Size of a synthetic dataset. Frame names are ``f"{i * frame_step:05d}"``."""

    num_videos: int = 2
    num_frames: int = 5
    height: int = 24
    width: int = 32
    num_objects: int = 2
    frame_step: int = 1
    seed: int = 0


@dataclass
class SyntheticRVOS:
    """What a synthetic writer produced: label maps per video and the objects of every expression."""

    dataset: str
    root: Path
    split: str
    frames: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # (T, H, W) uint8 object ids, void excluded
    expressions: dict[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)

    def oracle_masks(self, video_id: str, exp_id: str) -> np.ndarray:
        """(T, H, W) bool GT of an expression: union of its objects."""
        return np.isin(self.labels[video_id], self.expressions[(video_id, exp_id)])


def make_label_tracks(cfg: SyntheticRVOSConfig, rng: np.random.Generator) -> np.ndarray:
    """(T, H, W) uint8 label map of ``cfg.num_objects`` drifting ellipses; all objects are visible in frame 0,
    the last object leaves in the final frame when there are 3+ frames."""
    h, w, t = cfg.height, cfg.width, cfg.num_frames
    yy, xx = np.mgrid[:h, :w]
    labels = np.zeros((t, h, w), dtype=np.uint8)
    for k in range(cfg.num_objects):
        cx, cy = (k + 0.5) * w / cfg.num_objects, rng.uniform(0.3, 0.7) * h
        rx, ry = rng.uniform(0.25, 0.45) * w / cfg.num_objects, rng.uniform(0.15, 0.3) * h
        vx, vy = rng.uniform(-1, 1, size=2)
        for i in range(t):
            if k == cfg.num_objects - 1 and i == t - 1 and t >= 3:
                continue
            inside = ((xx - cx - vx * i) / rx) ** 2 + ((yy - cy - vy * i) / ry) ** 2 <= 1
            labels[i][inside & (labels[i] == 0)] = k + 1
    return labels


def _frame_names(cfg: SyntheticRVOSConfig) -> list[str]:
    return [f"{i * cfg.frame_step:05d}" for i in range(cfg.num_frames)]


def _write_jpegs(folder: Path, frames: list[str], labels: np.ndarray, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    palette = rng.integers(40, 255, size=(256, 3))
    palette[0] = (20, 20, 20)
    for name, lab in zip(frames, labels):
        noise = rng.integers(0, 20, size=(*lab.shape, 3))
        rgb = np.clip(palette[lab] + noise, 0, 255).astype(np.uint8)
        Image.fromarray(rgb, mode="RGB").save(folder / f"{name}.jpg", quality=90)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _draw_videos(synth: SyntheticRVOS, cfg: SyntheticRVOSConfig, image_root: Path, rng, prefix: str = "video"):
    for v in range(cfg.num_videos):
        vid = f"{prefix}{v:02d}"
        synth.frames[vid] = _frame_names(cfg)
        synth.labels[vid] = make_label_tracks(cfg, rng)
        _write_jpegs(image_root / vid, synth.frames[vid], synth.labels[vid], rng)


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_synthetic_mevis(root: str | Path, cfg: SyntheticRVOSConfig = SyntheticRVOSConfig(),
                          split: str = "valid_u") -> SyntheticRVOS:
    """MeViS split: one expression per object plus one for all objects; mask_dict.json unless split == 'valid'."""
    rng = np.random.default_rng(cfg.seed)
    base = Path(root) / split
    synth = SyntheticRVOS("mevis", Path(root), split)
    _draw_videos(synth, cfg, base / "JPEGImages", rng)
    videos, mask_dict = {}, {}
    for vid, labels in synth.labels.items():
        anno_of = {}
        for k in range(1, cfg.num_objects + 1):
            anno_of[k] = str(len(mask_dict))
            mask_dict[anno_of[k]] = [_rle(m) if m.any() else None for m in labels == k]
        groups = [(k,) for k in range(1, cfg.num_objects + 1)] + [tuple(range(1, cfg.num_objects + 1))]
        exps = {}
        for e, objs in enumerate(groups):
            exps[str(e)] = {"exp": " and ".join(f"the {_COLOURS[(o - 1) % 6]} blob" for o in objs),
                            "obj_id": list(objs), "anno_id": [int(anno_of[o]) for o in objs]}
            synth.expressions[(vid, str(e))] = objs
        videos[vid] = {"expressions": exps, "frames": synth.frames[vid]}
    _write_json(base / "meta_expressions.json", {"videos": videos})
    if split != "valid":
        _write_json(base / "mask_dict.json", mask_dict)
    return synth


def write_synthetic_ref_ytvos(root: str | Path, cfg: SyntheticRVOSConfig = SyntheticRVOSConfig(frame_step=5),
                              num_test_videos: int = 1) -> SyntheticRVOS:
    """Ref-YouTube-VOS valid: meta lists valid + test videos (as the real file does); test meta lists the latter."""
    rng = np.random.default_rng(cfg.seed)
    root = Path(root)
    synth = SyntheticRVOS("ref_ytvos", root, "valid")
    _draw_videos(synth, cfg, root / "valid" / "JPEGImages", rng)
    test_frames = _frame_names(cfg)
    valid_meta, test_meta = {}, {}
    for vid in synth.labels:
        exps = {str(k - 1): {"exp": f"a {_COLOURS[(k - 1) % 6]} blob moving"} for k in range(1, cfg.num_objects + 1)}
        synth.expressions.update({(vid, str(k - 1)): (k,) for k in range(1, cfg.num_objects + 1)})
        valid_meta[vid] = {"expressions": exps, "frames": synth.frames[vid]}
    for t in range(num_test_videos):
        test_meta[f"test{t:02d}"] = {"expressions": {"0": {"exp": "a hidden test blob"}}, "frames": test_frames}
    _write_json(root / "meta_expressions" / "valid" / "meta_expressions.json", {"videos": {**valid_meta, **test_meta}})
    _write_json(root / "meta_expressions" / "test" / "meta_expressions.json", {"videos": test_meta})
    return synth


def write_synthetic_ref_davis17(root: str | Path, cfg: SyntheticRVOSConfig = SyntheticRVOSConfig(),
                                void: bool = True) -> SyntheticRVOS:
    """Ref-DAVIS17 valid: 4 expressions per object (object-major) and palette PNG annotations with a void patch."""
    rng = np.random.default_rng(cfg.seed)
    root = Path(root)
    synth = SyntheticRVOS("ref_davis17", root, "valid")
    _draw_videos(synth, cfg, root / "valid" / "JPEGImages", rng)
    videos = {}
    for vid, labels in synth.labels.items():
        gt = labels.copy()
        if void:
            gt[:, : max(1, cfg.height // 8), : max(1, cfg.width // 8)] = VOID_LABEL
        for name, lab in zip(synth.frames[vid], gt):
            save_label_map(root / "valid" / "Annotations" / vid / f"{name}.png", lab)
        exps = {}
        for k in range(1, cfg.num_objects + 1):
            for a in range(4):
                exp_id = str(4 * (k - 1) + a)
                exps[exp_id] = {"exp": f"annotator {a} says the {_COLOURS[(k - 1) % 6]} blob", "obj_id": str(k)}
                synth.expressions[(vid, exp_id)] = (k,)
        videos[vid] = {"expressions": exps, "frames": synth.frames[vid]}
    _write_json(root / "meta_expressions" / "valid" / "meta_expressions.json", {"videos": videos})
    return synth


def write_synthetic_predictions(synth: SyntheticRVOS, pred_dir: str | Path, flip_prob: float = 0.0,
                                seed: int = 0) -> Path:
    """Write oracle masks of every expression as 0/255 PNGs, each pixel flipped with probability ``flip_prob``."""
    rng = np.random.default_rng(seed)
    for (vid, exp_id) in synth.expressions:
        if vid not in synth.labels:
            continue
        masks = synth.oracle_masks(vid, exp_id)
        if flip_prob > 0:
            masks = masks ^ (rng.random(masks.shape) < flip_prob)
        write_mask_sequence(pred_dir, vid, exp_id, synth.frames[vid], masks)
    return Path(pred_dir)

"""Tiny REFER-format datasets and a deterministic fake segmenter, for tests, demos and benchmarks.

``write_synthetic_refer(root)`` writes ``root/Refer_Segm/{refcoco,refcoco+,refcocog}/refs(unc|umd).p`` +
``instances.json`` and small JPEGs in ``root/Refer_Segm/coco_2014/train2014/``, in the real layouts.
Annotations cycle through polygon, multi-polygon, uncompressed-RLE (list counts) and compressed-RLE
(string counts) segmentations; optionally one annotation has an empty segmentation. With
``overlapping_polygons=True`` the polygon annotations have parts that overlap (two shifted copies of a
polygon, three polygons around one centre, and a "stack" of 255 copies of a corner triangle plus a square
across it), so the union of the parts and the released summed-polygon ground truth differ: values 2 and 3,
the ignore label 255, and 256 wrapping to 0. ``SyntheticSegmenter``
has ``GLaMMSegmenter.segment``'s interface and returns masks that depend deterministically on the image, the
question (and, for ``prune_scope="image"``, all questions of the image), the budget and the method.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .dataset import SPLIT_BY

__all__ = ["SPLITS", "SyntheticRefer", "write_synthetic_refer", "SyntheticResult", "SyntheticSegmenter"]

SPLITS = {"unc": ("train", "val", "testA", "testB"), "umd": ("train", "val", "test")}
_SEG_KINDS = ("polygon", "rle_list", "polygon_multi", "rle_str")
_OVERLAP_SEG_KINDS = ("polygon_overlap", "rle_list", "polygon_stack", "polygon", "polygon_triple", "rle_str")
_STACK_DEPTH = 255  # copies of the stacked triangle: the released ground truth holds 255 (its ignore label) there
_WORDS = (("red", "blue", "small", "left", "tall", "striped"), ("car", "man", "dog", "cup", "chair", "kite"),
          ("on the left", "in front", "near the window", "at the back", "Right", ""))


@dataclass
class SyntheticRefer:
    """Where a synthetic dataset was written and which images each split holds."""

    dataset_dir: Path
    datasets: dict[str, dict[str, list[int]]] = field(default_factory=dict)


def _random_polygon(rng: np.random.Generator, h: int, w: int) -> list[float]:
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(3, 7))))
    radii = rng.uniform(0.15, 0.4, size=angles.size) * min(h, w)
    xs = np.clip(cx + radii * np.cos(angles), 0, w - 1)
    ys = np.clip(cy + radii * np.sin(angles), 0, h - 1)
    return [round(float(v), 2) for xy in zip(xs, ys) for v in xy]


def _random_blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(0.15, 0.45) * h, rng.uniform(0.15, 0.45) * w
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return counts if flat[0] == 0 else [0] + counts


def _shifted(poly: list[float], dx: float, dy: float, h: int, w: int) -> list[float]:
    xs = np.clip(np.asarray(poly[0::2]) + dx, 0, w - 1)
    ys = np.clip(np.asarray(poly[1::2]) + dy, 0, h - 1)
    return [round(float(v), 2) for xy in zip(xs, ys) for v in xy]


def _overlapping_polygons(kind: str, rng: np.random.Generator, h: int, w: int) -> list[list[float]]:
    if kind == "polygon_overlap":  # a polygon and a copy shifted by a few pixels: a large area covered twice
        first = _random_polygon(rng, h, w)
        return [first, _shifted(first, float(rng.integers(1, 4)), float(rng.integers(1, 4)), h, w)]
    if kind == "polygon_triple":  # three polygons around one centre: values 1, 2 and 3
        centre = _random_polygon(rng, h, w)
        return [centre] + [_shifted(centre, float(rng.integers(-4, 5)), float(rng.integers(-4, 5)), h, w)
                           for _ in range(2)]
    # "polygon_stack": 255 copies of a corner triangle (value 255) and a square across it (256 -> 0, and 1)
    triangle = [0.0, 0.0, 10.0, 0.0, 0.0, 10.0]
    square = [3.0, 3.0, 12.0, 3.0, 12.0, 12.0, 3.0, 12.0]
    return [list(triangle) for _ in range(_STACK_DEPTH)] + [square]


def _segmentation(kind: str, rng: np.random.Generator, h: int, w: int) -> Any:
    if kind in ("polygon_overlap", "polygon_triple", "polygon_stack"):
        return _overlapping_polygons(kind, rng, h, w)
    if kind == "polygon":
        return [_random_polygon(rng, h, w)]
    if kind == "polygon_multi":
        return [_random_polygon(rng, h, w), _random_polygon(rng, h, w)]
    blob = _random_blob(rng, h, w)
    if kind == "rle_list":
        return {"size": [h, w], "counts": _uncompressed_counts(blob)}
    rle = mask_utils.encode(np.asfortranarray(blob.astype(np.uint8)))
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def _sentence(rng: np.random.Generator) -> str:
    words = [str(rng.choice(group)) for group in _WORDS]
    return " ".join(w for w in words if w)


def _write_images(image_dir: Path, n_images: int, rng: np.random.Generator) -> list[dict]:
    image_dir.mkdir(parents=True, exist_ok=True)
    infos = []
    for k in range(n_images):
        image_id = 101 + 37 * k
        h, w = int(rng.integers(20, 37)), int(rng.integers(24, 41))
        name = f"COCO_train2014_{image_id:012d}.jpg"
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / name, quality=90)
        infos.append({"id": image_id, "file_name": name, "height": h, "width": w})
    return infos


def _annotations(infos: list[dict], rng: np.random.Generator, empty_annotation: bool,
                 overlapping_polygons: bool = False) -> list[dict]:
    kinds = _OVERLAP_SEG_KINDS if overlapping_polygons else _SEG_KINDS
    anns, kind_index = [], 0
    for info in infos:
        for _ in range(int(rng.integers(1, 4))):
            kind = kinds[kind_index % len(kinds)]
            kind_index += 1
            seg = _segmentation(kind, rng, info["height"], info["width"])
            anns.append({"id": 5000 + len(anns), "image_id": info["id"], "category_id": 1, "iscrowd": 0,
                         "segmentation": seg, "area": 0.0, "bbox": [0.0, 0.0, 1.0, 1.0]})
    if empty_annotation:
        anns[0]["segmentation"] = []
    return anns


def _refs(anns: list[dict], image_split: dict[int, str], rng: np.random.Generator, sent_base: int) -> list[dict]:
    refs = []
    for ann in anns:
        ref_id = 900 + len(refs)
        sentences = []
        for j in range(int(rng.integers(1, 4))):
            text = _sentence(rng)
            sent_id = sent_base + 10 * ref_id + j
            sentences.append({"sent": text, "raw": text, "tokens": text.split(), "sent_id": sent_id})
        refs.append({"ref_id": ref_id, "ann_id": ann["id"], "image_id": ann["image_id"], "category_id": 1,
                     "split": image_split[ann["image_id"]], "sentences": sentences,
                     "sent_ids": [s["sent_id"] for s in sentences], "file_name": f"ref_{ref_id}.jpg"})
    order = rng.permutation(len(refs))  # refs files are not sorted by id
    return [refs[i] for i in order]


def write_synthetic_refer(root: str | Path, datasets: Sequence[str] = ("refcoco", "refcocog"),
                          images_per_split: int = 2, seed: int = 0, empty_annotation: bool = True,
                          overlapping_polygons: bool = False) -> SyntheticRefer:
    """Write a tiny REFER-format dataset under ``root`` (the ``--dataset_dir``); returns what went where.

    ``overlapping_polygons``: polygon annotations with overlapping parts (see the module docstring); the
    default datasets are unchanged by this option's existence (same draws, same files).
    """
    unknown = [d for d in datasets if d not in SPLIT_BY]
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; choose from {sorted(SPLIT_BY)}")
    rng = np.random.default_rng(seed)
    refer_root = Path(root) / "Refer_Segm"
    n_images = images_per_split * max(len(SPLITS[SPLIT_BY[d]]) for d in datasets)
    infos = _write_images(refer_root / "coco_2014" / "train2014", n_images, rng)
    anns = _annotations(infos, rng, empty_annotation, overlapping_polygons)
    result = SyntheticRefer(dataset_dir=Path(root))
    for d_index, dataset in enumerate(datasets):
        splits = SPLITS[SPLIT_BY[dataset]]
        shuffled = [infos[i]["id"] for i in rng.permutation(len(infos))]
        image_split = {image_id: splits[k % len(splits)] for k, image_id in enumerate(shuffled)}
        folder = refer_root / dataset
        folder.mkdir(parents=True, exist_ok=True)
        instances = {"images": infos, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
        (folder / "instances.json").write_text(json.dumps(instances), encoding="utf-8")
        refs = _refs(anns, image_split, rng, sent_base=100000 * (d_index + 1))
        with open(folder / f"refs({SPLIT_BY[dataset]}).p", "wb") as handle:
            pickle.dump(refs, handle, protocol=2)
        result.datasets[dataset] = {s: sorted(i for i, sp in image_split.items() if sp == s) for s in splits}
    return result


@dataclass
class SyntheticResult:
    """What ``GLaMMSegmenter.segment`` returns."""

    masks: np.ndarray
    kept: list
    num_visual_tokens: int
    timings: dict[str, float]


class SyntheticSegmenter:
    """A stand-in for ``GLaMMSegmenter``: deterministic pseudo-random box masks, no model."""

    num_patches = 576

    def __init__(self, config: Any = None):
        self.config = config
        self.calls = 0

    def segment(self, image: np.ndarray, expressions: list[str], budget: int | None = None, method: str = "litelvlm",
                *, questions: list[str] | None = None, answers: list[str] | None = None,
                prune_scope: str = "expression", conversation: str = "separate") -> SyntheticResult:
        import torch

        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8, got {image.dtype} {image.shape}")
        if prune_scope not in ("expression", "image") or conversation not in ("separate", "multi_turn"):
            raise ValueError(f"bad prune_scope/conversation: {prune_scope!r}, {conversation!r}")
        questions = questions or [f"Can you segment the {e} in this image?" for e in expressions]
        if len(questions) != len(expressions):
            raise ValueError("questions and expressions must have the same length")
        self.calls += 1
        tokens = self.num_patches if budget is None else min(int(budget), self.num_patches)
        shared = "|".join(questions) if prune_scope == "image" else ""
        image_digest = hashlib.sha256(image.tobytes()).hexdigest()
        masks = np.stack([self._mask(image.shape[:2], f"{image_digest}/{q}/{shared}/{tokens}/{method}")
                          for q in questions])
        kept = [torch.arange(tokens, dtype=torch.long) for _ in questions]
        return SyntheticResult(masks=masks, kept=kept, num_visual_tokens=tokens, timings={"segment": 0.001})

    @staticmethod
    def _mask(shape: tuple[int, int], text: str) -> np.ndarray:
        h, w = shape
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))
        mask = np.zeros((h, w), dtype=bool)
        if rng.random() < 0.1:
            return mask  # sometimes predict nothing
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        y1, x1 = int(rng.integers(y0 + 1, h + 1)), int(rng.integers(x0 + 1, w + 1))
        mask[y0:y1, x0:x1] = True
        return mask

"""The DAVIS-2017 unsupervised protocol as Ref-DAVIS17 uses it (ReferFormer / VideoGLaMM evaluation).

Per video and annotator setting, the binary masks predicted for the setting's expressions (object order of the
meta file) are merged into one label map: label k + 1 for the k-th expression; where masks overlap, the earliest
expression wins (the released inference thresholds scores at 0.5 and takes an argmax over
[0.1 background, object masks], which for binary masks picks the first). Then, as davis2017-evaluation does with
``--task unsupervised``:

- GT objects: ids 1..max id of the FIRST annotation frame (void 255 removed first); void pixels are excluded from J
  and from both boundaries; ALL frames are scored (only the semi-supervised task drops the first and last frame).
- Proposals: label maps split into labels 1..max label over all frames (at most 20), padded with empty proposals
  up to the number of GT objects.
- J and F per (proposal, object, frame); each GT object is matched to one proposal by maximising the summed
  (mean J + mean F) / 2 (Hungarian); an object's J / F = mean over frames of its matched proposal.
- A setting's J (F) = mean over all objects of all videos; J&F = (J + F) / 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from eval.metrics.davis import DEFAULT_BOUND_TH, BoundarySet, f_from_boundaries, jaccard_sequence, sequence_boundaries

from .assignment import max_weight_assignment

__all__ = [
    "MAX_PROPOSALS",
    "VOID_LABEL",
    "DavisVideoGT",
    "davis_palette",
    "merge_object_masks",
    "split_proposals",
    "score_unsupervised_video",
    "save_label_map",
]

MAX_PROPOSALS = 20
VOID_LABEL = 255


def davis_palette() -> list[int]:
    """The PASCAL VOC / DAVIS 256-colour palette, flat [r, g, b, ...]."""
    out = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        out += [r, g, b]
    return out


def save_label_map(path: Path, labels: np.ndarray) -> None:
    """Write a (H, W) uint8 label map as a DAVIS palette PNG."""
    img = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    img.putpalette(davis_palette())
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def merge_object_masks(object_masks: list[np.ndarray]) -> np.ndarray:
    """(T, H, W) uint8 label map from per-object (T, H, W) masks: label k + 1 for mask k, earliest wins overlaps."""
    if not object_masks:
        raise ValueError("merge_object_masks needs at least one object mask")
    if len(object_masks) > 254:
        raise ValueError(f"too many objects to merge into a uint8 label map: {len(object_masks)}")
    labels = np.zeros(np.asarray(object_masks[0]).shape, dtype=np.uint8)
    for k in range(len(object_masks) - 1, -1, -1):
        labels[np.asarray(object_masks[k]) != 0] = k + 1
    return labels


def split_proposals(labels: np.ndarray) -> np.ndarray:
    """(N, T, H, W) bool proposals for labels 1..max(labels); at most MAX_PROPOSALS."""
    n = int(labels.max()) if labels.size else 0
    if n > MAX_PROPOSALS:
        raise ValueError(f"label maps hold {n} proposals; the DAVIS unsupervised protocol allows {MAX_PROPOSALS}")
    return np.stack([labels == k for k in range(1, n + 1)]) if n else np.zeros((0, *labels.shape), dtype=bool)


@dataclass
class DavisVideoGT:
    """A video's DAVIS ground truth split into objects, with void pixels and cached boundaries."""

    objects: np.ndarray  # (N, T, H, W) bool
    void: np.ndarray  # (T, H, W) bool
    boundaries: list[BoundarySet]

    @classmethod
    def from_label_maps(cls, label_maps: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> "DavisVideoGT":
        maps = np.asarray(label_maps)
        if maps.ndim != 3 or len(maps) == 0:
            raise ValueError(f"label maps must be (T, H, W) with T >= 1, got shape {maps.shape}")
        void = maps == VOID_LABEL
        clean = np.where(void, 0, maps)
        n_objects = int(clean[0].max())
        objects = np.stack([clean == k for k in range(1, n_objects + 1)]) if n_objects else \
            np.zeros((0, *maps.shape), dtype=bool)
        return cls(objects, void, [sequence_boundaries(o, void, bound_th) for o in objects])


def _pair_scores(gt: DavisVideoGT, proposals: np.ndarray, bound_th: float) -> tuple[np.ndarray, np.ndarray]:
    n_prop, n_gt, n_frames = len(proposals), len(gt.objects), gt.void.shape[0]
    j = np.zeros((n_prop, n_gt, n_frames))
    f = np.zeros((n_prop, n_gt, n_frames))
    for p, proposal in enumerate(proposals):
        prop_bounds = sequence_boundaries(proposal, gt.void, bound_th)
        for g, obj in enumerate(gt.objects):
            j[p, g] = jaccard_sequence(obj, proposal, gt.void)
            f[p, g] = f_from_boundaries(prop_bounds, gt.boundaries[g])
    return j, f


def score_unsupervised_video(gt: DavisVideoGT, labels: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> list[dict]:
    """Per GT object: {"object_id", "proposal" (0-based label - 1), "J", "F"} (means over all frames)."""
    if labels.shape != gt.void.shape:
        raise ValueError(f"prediction label maps {labels.shape} and GT {gt.void.shape} differ in shape")
    proposals = split_proposals(labels)
    if len(proposals) < len(gt.objects):
        pad = np.zeros((len(gt.objects) - len(proposals), *labels.shape), dtype=bool)
        proposals = np.concatenate([proposals, pad])
    j, f = _pair_scores(gt, proposals, bound_th)
    score = (j.mean(axis=2) + f.mean(axis=2)) / 2
    matches = max_weight_assignment(score)
    out = [{"object_id": g + 1, "proposal": p, "J": float(j[p, g].mean()), "F": float(f[p, g].mean())}
           for p, g in matches]
    return sorted(out, key=lambda r: r["object_id"])

"""Restatements of the released RefCOCO evaluation pieces (GLaMM's ``RefCOCO_Segm_ds.py`` and
``tools/utils.py``), line for line, for the tests that hold the harness to them."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

__all__ = ["refer_split", "released_ground_truth", "intersection_and_union_gpu"]


def refer_split(dataset_dir: str | Path, dataset: str, split: str) -> Iterator[tuple[dict, int, int, object]]:
    """(ref, height, width, segmentation) of every ref of ``split`` (plain REFER ``split ==`` selection), read
    straight from ``Refer_Segm/<dataset>``'s refs pickle and instances.json."""
    folder = Path(dataset_dir) / "Refer_Segm" / dataset
    refs = pickle.loads((folder / ("refs(umd).p" if dataset == "refcocog" else "refs(unc).p")).read_bytes())
    inst = json.loads((folder / "instances.json").read_text())
    sizes = {i["id"]: (i["height"], i["width"]) for i in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    for ref in refs:
        if ref["split"] == split:
            h, w = sizes[ref["image_id"]]
            yield ref, h, w, anns[ref["ann_id"]]["segmentation"]


def released_ground_truth(segmentation, h: int, w: int) -> np.ndarray:
    """RefCOCO_Segm_ds.py: frPyObjects + decode + ``np.sum(axis=2)`` + ``astype(uint8)`` (overlapping polygons
    sum, so values above 1 occur); an RLE dict decoded as is; an empty list -> zeros."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, dict):
        rle = mask_utils.frPyObjects(segmentation, h, w) if isinstance(segmentation["counts"], list) else \
            {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
        return mask_utils.decode(rle).astype(np.uint8)
    if len(segmentation) == 0:
        return np.zeros((h, w)).astype(np.uint8)
    return np.sum(mask_utils.decode(mask_utils.frPyObjects(segmentation, h, w)), axis=2).astype(np.uint8)


def intersection_and_union_gpu(output: torch.Tensor, target: torch.Tensor, K: int = 2, ignore_index: int = 255):  # noqa: N803
    """tools/utils.py ``intersectionAndUnionGPU``, line for line (CPU ``torch.histc`` needs float inputs)."""
    output = output.view(-1)
    target = target.view(-1)
    output[target == ignore_index] = ignore_index
    intersection = output[output == target]
    area_intersection = torch.histc(intersection, bins=K, min=0, max=K - 1)
    area_output = torch.histc(output, bins=K, min=0, max=K - 1)
    area_target = torch.histc(target, bins=K, min=0, max=K - 1)
    area_union = area_output + area_target - area_intersection
    return area_intersection, area_union, area_target

"""Reading RefCOCO / RefCOCO+ / RefCOCOg in the REFER layout used by the released GLaMM evaluation.

``<dataset_dir>/Refer_Segm/<dataset>/refs(<splitBy>).p`` (pickled list of refs) and ``instances.json``
(COCO images + annotations); images in ``<dataset_dir>/Refer_Segm/coco_2014/train2014/``. splitBy is
``unc`` for refcoco and refcoco+, ``umd`` for refcocog. Split selection follows the REFER API:
``val``/``train`` exact, ``testA``/``testB``/``testC`` any split containing that letter, ``test`` any
split containing "test", ``testAB``/``testBC``/``testAC`` exact.

Ground truth of an expression (its ref's annotation), by two rules: ``ReferSplit.gt_mask`` is the union of the
annotation's polygons (bool), ``ReferSplit.gt_counts`` the released GLaMM/LISA uint8 sum of the polygons
(see ``masks.segmentation_to_counts``).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .masks import segmentation_to_counts, segmentation_to_mask

__all__ = [
    "SPLIT_BY",
    "ReferExpression",
    "ReferImage",
    "ReferSplit",
    "parse_refer_seg_data",
    "refer_files",
    "split_matches",
    "load_refer_split",
]

SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
_EXACT_SPLITS = {"train", "val", "testAB", "testBC", "testAC"}
_LETTER_SPLITS = {"testA", "testB", "testC"}


@dataclass(frozen=True)
class ReferExpression:
    """One referring sentence and the annotation it refers to."""

    ref_id: int
    sent_id: int
    image_id: int
    ann_id: int
    sentence: str

    @property
    def key(self) -> tuple[int, int]:
        """Record key: (ref_id, sent_id)."""
        return (self.ref_id, self.sent_id)


@dataclass
class ReferImage:
    """A COCO image of the split with its sentences, in the refs file's order."""

    image_id: int
    file_name: str
    height: int
    width: int
    expressions: list[ReferExpression] = field(default_factory=list)


@dataclass
class ReferSplit:
    """One split of one dataset: images sorted by id, and the COCO annotations by id."""

    dataset: str
    split: str
    split_by: str
    image_dir: Path
    images: list[ReferImage]
    annotations: dict[int, dict]

    @property
    def n_expressions(self) -> int:
        """Number of sentences over all refs of the split."""
        return sum(len(img.expressions) for img in self.images)

    def image_path(self, image: ReferImage) -> Path:
        """Path of the image's JPEG."""
        return self.image_dir / image.file_name

    def load_image(self, image: ReferImage) -> np.ndarray:
        """(H, W, 3) uint8 RGB pixels, decoded with OpenCV as in the released code."""
        import cv2

        path = self.image_path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path} (COCO train2014 images belong in {self.image_dir})")
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"could not decode image {path}")
        if bgr.shape[:2] != (image.height, image.width):
            raise ValueError(f"image {path} is {bgr.shape[1]}x{bgr.shape[0]} but instances.json says "
                             f"{image.width}x{image.height}")
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def annotation(self, expression: ReferExpression) -> dict:
        """The COCO annotation the expression refers to."""
        ann = self.annotations.get(expression.ann_id)
        if ann is None:
            raise KeyError(f"annotation {expression.ann_id} of ref {expression.ref_id} is not in instances.json")
        return ann

    def gt_mask(self, expression: ReferExpression, image: ReferImage) -> np.ndarray:
        """(H, W) bool ground-truth mask of the annotation the expression refers to: union of its polygons."""
        return segmentation_to_mask(self.annotation(expression)["segmentation"], image.height, image.width)

    def gt_counts(self, expression: ReferExpression, image: ReferImage) -> np.ndarray:
        """(H, W) uint8 ground truth as the released code builds it: the sum of the polygons (wraps at 256)."""
        return segmentation_to_counts(self.annotation(expression)["segmentation"], image.height, image.width)


def parse_refer_seg_data(spec: str) -> tuple[str, str]:
    """``'refcoco|val'`` -> ``('refcoco', 'val')`` with the dataset name checked."""
    parts = spec.split("|")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"--refer_seg_data must look like 'refcoco|val', got {spec!r}")
    dataset, split = parts
    if dataset not in SPLIT_BY:
        raise ValueError(f"unknown dataset {dataset!r} in --refer_seg_data; choose one of {sorted(SPLIT_BY)}")
    if split not in _EXACT_SPLITS | _LETTER_SPLITS | {"test"}:
        raise ValueError(f"unknown split {split!r} in --refer_seg_data; REFER splits are val, testA, testB, test, "
                         f"train")
    return dataset, split


def refer_files(dataset_dir: str | Path, dataset: str) -> tuple[Path, Path, Path]:
    """(refs pickle, instances.json, image folder) of ``dataset`` under ``dataset_dir``."""
    root = Path(dataset_dir) / "Refer_Segm"
    folder = root / dataset
    return folder / f"refs({SPLIT_BY[dataset]}).p", folder / "instances.json", root / "coco_2014" / "train2014"


def split_matches(ref_split: str, split: str) -> bool:
    """REFER's rule for whether a ref whose split is ``ref_split`` belongs to the requested ``split``."""
    if split in _LETTER_SPLITS:
        return split[-1] in ref_split
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path} (expected layout: <dataset_dir>/Refer_Segm/"
                                f"{{refcoco,refcoco+,refcocog}}/refs(unc|umd).p + instances.json, images in "
                                f"<dataset_dir>/Refer_Segm/coco_2014/train2014/)")


def _load_refs(path: Path) -> list[dict]:
    _require_file(path, "refs file")
    with open(path, "rb") as handle:
        refs = pickle.load(handle)
    if not isinstance(refs, list):
        raise ValueError(f"{path} must hold a pickled list of refs, found {type(refs).__name__}")
    return refs


def _load_instances(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    _require_file(path, "instances.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    images = {int(img["id"]): img for img in data["images"]}
    annotations = {int(ann["id"]): ann for ann in data["annotations"]}
    return images, annotations


def _image_entry(info: dict) -> ReferImage:
    image_id = int(info["id"])
    file_name = info.get("file_name") or f"COCO_train2014_{image_id:012d}.jpg"
    return ReferImage(image_id=image_id, file_name=file_name, height=int(info["height"]), width=int(info["width"]))


def _split_images(chosen: list[dict], image_infos: dict[int, dict], instances_path: Path) -> list[ReferImage]:
    images: dict[int, ReferImage] = {}
    for ref in chosen:
        image_id = int(ref["image_id"])
        if image_id not in image_infos:
            raise ValueError(f"image {image_id} of ref {ref['ref_id']} is missing from {instances_path}")
        image = images.setdefault(image_id, _image_entry(image_infos[image_id]))
        for sent in ref["sentences"]:
            image.expressions.append(ReferExpression(
                ref_id=int(ref["ref_id"]), sent_id=int(sent["sent_id"]), image_id=image_id,
                ann_id=int(ref["ann_id"]), sentence=str(sent["sent"])))
    return [images[i] for i in sorted(images)]


def load_refer_split(dataset_dir: str | Path, dataset: str, split: str) -> ReferSplit:
    """All sentences of all refs of ``dataset``/``split``, grouped by image (images sorted by id)."""
    refs_path, instances_path, image_dir = refer_files(dataset_dir, dataset)
    refs = _load_refs(refs_path)
    try:
        image_infos, annotations = _load_instances(instances_path)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{instances_path} is not COCO instances data (missing field {err})") from None
    try:
        chosen = [ref for ref in refs if split_matches(str(ref["split"]), split)]
        if not chosen:
            found = sorted({str(ref.get("split")) for ref in refs})
            raise ValueError(f"split {split!r} of {dataset} has no refs in {refs_path} (splits found: {found})")
        images = _split_images(chosen, image_infos, instances_path)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{refs_path} holds a ref without the REFER field {err} (ref_id, ann_id, image_id, split, "
                         f"sentences[].sent / sent_id)") from None
    return ReferSplit(dataset=dataset, split=split, split_by=SPLIT_BY[dataset], image_dir=image_dir,
                      images=images, annotations=annotations)

"""Reading RefCOCO / RefCOCO+ / RefCOCOg in the REFER layout used by the released GLaMM evaluation.

``<dataset_dir>/Refer_Segm/<dataset>/refs(<splitBy>).p`` (pickled list of refs) and ``instances.json``
(COCO images + annotations); images in ``<dataset_dir>/Refer_Segm/coco_2014/train2014/``. splitBy is
``unc`` for refcoco and refcoco+, ``umd`` for refcocog. Split selection follows the REFER API:
``val``/``train`` exact, ``testA``/``testB``/``testC`` any split containing that letter, ``test`` any
split containing "test", ``testAB``/``testBC``/``testAC`` exact.

Ground truth of an expression (its ref's annotation), by two rules: ``ReferSplit.gt_mask`` is the union of the
annotation's polygons (bool), ``ReferSplit.gt_counts`` the released GLaMM/LISA uint8 sum of the polygons
(see ``masks.segmentation_to_counts``).

Inputs are checked when the split is read: the refs pickle is read without allowing any Python global (a crafted
file cannot run code) nor shared references that expand it beyond its size, JSON errors name the file and position,
ids, sizes and coordinates must be integers / finite numbers (``1e999`` or ``NaN`` is an error naming the file), image
file names must be plain names (``eval.common.names.safe_name``; an image that is a symbolic link is read through
it), and every ref of the split must point at an annotation of ``instances.json`` with a polygon-list or RLE
segmentation. ``check_images`` checks the images of the tasks to run (existence,
header, completeness, size) before a model loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from eval.common.files import (DataFileError, as_int, first_problems, read_json, read_plain_pickle,
                               require_regular_file)
from eval.common.images import check_image_file
from eval.common.names import name_problem, safe_path

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
    "check_images",
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
        """Path of the image's JPEG (its file name checked to be a plain name inside the image folder)."""
        return safe_path(self.image_dir, image.file_name, what="image file name")

    def load_image(self, image: ReferImage, allow_truncated: bool = False) -> np.ndarray:
        """(H, W, 3) uint8 RGB pixels, decoded with OpenCV as in the released code (16-bit images keep their high
        byte). The file is checked first (``check_image_file``): a truncated JPEG, which OpenCV would decode in part
        without an error, is refused naming the file unless ``allow_truncated`` (then warned about)."""
        import cv2

        path = self.image_path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path} (COCO train2014 images belong in {self.image_dir})")
        check_image_file(path, "image", allow_truncated=allow_truncated)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"could not decode image {path}; re-download it")
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


_LAYOUT_HINT = ("expected layout: <dataset_dir>/Refer_Segm/{refcoco,refcoco+,refcocog}/refs(unc|umd).p + "
                "instances.json, images in <dataset_dir>/Refer_Segm/coco_2014/train2014/")


def _load_refs(path: Path) -> list[dict]:
    require_regular_file(path, "refs file", _LAYOUT_HINT)  # a missing file: the layout; a corrupt one: re-download
    refs = read_plain_pickle(path, "refs file", "re-download the REFER refs file")
    if not isinstance(refs, list):
        raise ValueError(f"{path} must hold a pickled list of refs, found {type(refs).__name__}")
    return refs


def _int(value: Any, field: str, where: str, source: Path, minimum: int | None = None) -> int:
    """``value`` as an int, else a ``DataFileError`` naming ``source``, ``where`` and ``field`` (``NaN``, ``1e999``,
    ``1.5``, text and ``True`` are not integers); at least ``minimum`` when given."""
    number = as_int(value)
    if number is None or (minimum is not None and number < minimum):
        wanted = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise DataFileError(f"{source}: {where} has the {field} {value!r:.40}, not {wanted}; fix or re-download "
                            f"the file")
    return number


def _load_instances(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    data = read_json(path, "instances.json", _LAYOUT_HINT)
    images = {_int(img["id"], "id", "an image", path): img for img in data["images"]}
    annotations = {_int(ann["id"], "id", "an annotation", path): ann for ann in data["annotations"]}
    return images, annotations


def _image_entry(image_id: int, info: dict, instances_path: Path) -> ReferImage:
    file_name = info.get("file_name") or f"COCO_train2014_{image_id:012d}.jpg"
    problem = name_problem(file_name)
    if problem is not None:
        raise DataFileError(f"{instances_path}: image {image_id} has the file_name {file_name!r}, which {problem}; "
                            f"image file names must be plain names inside {{dataset_dir}}/Refer_Segm/coco_2014/"
                            f"train2014: fix instances.json")
    height, width = (_int(info[k], k, f"image {image_id}", instances_path, minimum=1) for k in ("height", "width"))
    return ReferImage(image_id=image_id, file_name=file_name, height=height, width=width)


def _split_images(chosen: list[dict], image_infos: dict[int, dict], refs_path: Path,
                  instances_path: Path) -> list[ReferImage]:
    images: dict[int, ReferImage] = {}
    for ref in chosen:
        ref_id = _int(ref["ref_id"], "ref_id", "a ref", refs_path)
        image_id = _int(ref["image_id"], "image_id", f"ref {ref_id}", refs_path)
        ann_id = _int(ref["ann_id"], "ann_id", f"ref {ref_id}", refs_path)
        if image_id not in image_infos:
            raise ValueError(f"image {image_id} of ref {ref_id} is missing from {instances_path}")
        if image_id not in images:
            images[image_id] = _image_entry(image_id, image_infos[image_id], instances_path)
        for sent in ref["sentences"]:
            images[image_id].expressions.append(ReferExpression(
                ref_id=ref_id, sent_id=_int(sent["sent_id"], "sent_id", f"a sentence of ref {ref_id}", refs_path),
                image_id=image_id, ann_id=ann_id, sentence=str(sent["sent"])))
    return [images[i] for i in sorted(images)]


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    number = as_int(value)
    return number is not None and number >= 0


def _rle_problem(rle: dict, image: ReferImage) -> str | None:
    if "size" not in rle or "counts" not in rle:
        return "is an RLE dict without size/counts"
    size, counts = rle["size"], rle["counts"]
    if not (isinstance(size, list) and len(size) == 2 and all(map(_count, size))):
        return f"is an RLE whose size {size!r:.40} is not [height, width]"
    if [as_int(v) for v in size] != [image.height, image.width]:
        return f"is an RLE of size {size} on image {image.image_id} of size [{image.height}, {image.width}]"
    if isinstance(counts, list):
        return None if all(map(_count, counts)) else "is an RLE whose counts are not non-negative integers"
    return None if isinstance(counts, (str, bytes)) else f"is an RLE whose counts are a {type(counts).__name__}"


def _segmentation_problem(segmentation: Any, image: ReferImage) -> str | None:
    """Why a COCO segmentation cannot be decoded (None when it looks decodable: a polygon list of finite numbers or
    an RLE dict with integer counts and the image's size)."""
    if isinstance(segmentation, list):
        bad = [p for p in segmentation if not (isinstance(p, (list, tuple)) and len(p) >= 6)]
        if bad:
            return "has a polygon with fewer than 3 points"
        if not all(_finite_number(v) for polygon in segmentation for v in polygon):
            return "has a polygon coordinate that is not a finite number"
        return None
    if isinstance(segmentation, dict):
        return _rle_problem(segmentation, image)
    return f"is a {type(segmentation).__name__}, not a polygon list or an RLE dict"


def _check_annotations(images: list[ReferImage], annotations: dict[int, dict], instances_path: Path) -> None:
    """Every expression's annotation exists and has a decodable-looking segmentation (all problems in one line)."""
    problems: list[str] = []
    seen: set[int] = set()
    for image in images:
        for expr in image.expressions:
            if expr.ann_id in seen:
                continue
            seen.add(expr.ann_id)
            ann = annotations.get(expr.ann_id)
            if ann is None:
                problems.append(f"annotation {expr.ann_id} of ref {expr.ref_id} is not in instances.json")
                continue
            problem = _segmentation_problem(ann.get("segmentation"), image)
            if problem:
                problems.append(f"the segmentation of annotation {expr.ann_id} (ref {expr.ref_id}) {problem}")
    if problems:
        raise DataFileError(f"{instances_path}: {len(problems)} problem(s) with the annotations of this split: "
                            f"{first_problems(problems)}; fix or re-download the file")


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
        images = _split_images(chosen, image_infos, refs_path, instances_path)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{refs_path} holds a ref without the REFER field {err} (ref_id, ann_id, image_id, split, "
                         f"sentences[].sent / sent_id)") from None
    _check_annotations(images, annotations, instances_path)
    return ReferSplit(dataset=dataset, split=split, split_by=SPLIT_BY[dataset], image_dir=image_dir,
                      images=images, annotations=annotations)


def check_images(split: ReferSplit, images: Iterable[ReferImage], allow_truncated: bool = False) -> None:
    """Before a model loads: every image exists, its header decodes, it is complete (``check_image_file``) and
    its size is the one instances.json gives. All problems are reported in one line (count and first few)."""
    problems: list[str] = []
    for image in images:
        try:
            info = check_image_file(split.image_path(image), "image", allow_truncated=allow_truncated)
        except (FileNotFoundError, ValueError) as err:
            problems.append(str(err.args[0] if err.args else err))
            continue
        if info.shape != (image.height, image.width):
            problems.append(f"image {info.path} is {info.width}x{info.height} but instances.json says "
                            f"{image.width}x{image.height}")
    if problems:
        raise DataFileError(f"{len(problems)} image problem(s) in {split.dataset}|{split.split}, found before the run: "
                            f"{first_problems(problems)}; fix or re-download these images"
                            + (" (or pass --allow-truncated-images to decode truncated JPEGs in part, as the released "
                               "code does)" if not allow_truncated and any("truncated" in p for p in problems) else ""))

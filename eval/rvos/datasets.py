"""Readers for referring video object segmentation benchmarks: MeViS, Ref-YouTube-VOS, Ref-DAVIS17.

Every reader yields :class:`RVOSSample` (one expression of one video) and loads ground truth as a (T, H, W)
bool array over the sample's frames. Layouts (``root`` is the dataset folder):

- MeViS (henghuiding/MeViS): ``root/<split>/meta_expressions.json``, ``root/<split>/JPEGImages/<video>/<frame>.jpg``
  and, for train / valid_u, ``root/<split>/mask_dict.json`` = {anno_id: [COCO RLE or null per frame]}. The GT of an
  expression on frame i is the union of ``mask_dict[anno_id][i]`` over its anno_ids (null = empty), frame i being
  the i-th entry of the video's ``frames`` list (the official tools/eval_mevis.py order).
- Ref-YouTube-VOS: ``root/meta_expressions/<split>/meta_expressions.json`` and ``root/<split>/JPEGImages/<video>/``.
  No public GT. The valid meta file also lists the 305 test videos; like ReferFormer's inference_ytvos.py the
  reader drops the videos of ``root/meta_expressions/test/meta_expressions.json`` (202 videos remain).
- Ref-DAVIS17 in the converted layout of ReferFormer / VideoGLaMM: ``root/meta_expressions/valid/meta_expressions.json``,
  ``root/valid/JPEGImages/<video>/`` and ``root/valid/Annotations/<video>/<frame>.png`` (DAVIS-2017
  ``Annotations_unsupervised`` palette PNGs: pixel = object id, 255 = void). Each video lists 4 expressions per
  object, object-major: position 4k + a is object k as described by annotator setting a (0: annotator 1 first
  frame, 1: annotator 1 full video, 2: annotator 2 first frame, 3: annotator 2 full video).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "RVOSSample",
    "RVOSDataset",
    "MevisDataset",
    "RefYtvosDataset",
    "RefDavis17Dataset",
    "DAVIS_ANNOTATOR_SETTINGS",
    "DATASET_NAMES",
    "open_rvos_dataset",
    "read_frames",
    "read_label_png",
    "require_file",
]

DAVIS_ANNOTATOR_SETTINGS = (
    "Davis17_annot1",
    "Davis17_annot1_full_video",
    "Davis17_annot2",
    "Davis17_annot2_full_video",
)
DATASET_NAMES = ("mevis", "ref_ytvos", "ref_davis17")


def require_file(path: Path, what: str, hint: str = "") -> Path:
    """Return ``path`` if it exists, else raise FileNotFoundError naming it."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}" + (f". {hint}" if hint else ""))
    return path


@dataclass(frozen=True)
class RVOSSample:
    """One referring expression of one video, with everything needed to run a model and find its GT."""

    dataset: str
    video_id: str
    exp_id: str
    expression: str
    frames: tuple[str, ...]
    frame_dir: Path
    obj_ids: tuple[int, ...] = ()
    anno_ids: tuple[str, ...] = ()
    annotator: int | None = None  # Ref-DAVIS17 annotator setting 0..3
    object_index: int | None = None  # Ref-DAVIS17 position of the object in the video's expression list

    @property
    def key(self) -> str:
        return f"{self.video_id}/{self.exp_id}"

    def frame_paths(self) -> list[Path]:
        return [self.frame_dir / f"{frame}.jpg" for frame in self.frames]


def read_frames(sample: RVOSSample) -> list[np.ndarray]:
    """The sample's frames as RGB uint8 arrays (H, W, 3); a missing JPEG raises naming its path."""
    out = []
    for path in sample.frame_paths():
        with Image.open(require_file(path, "frame image")) as img:
            out.append(np.asarray(img.convert("RGB")))
    return out


def read_label_png(path: Path) -> np.ndarray:
    """A single-channel PNG (palette indices, or grey values) as a (H, W) uint8 array."""
    with Image.open(require_file(path, "mask PNG")) as img:
        if img.mode not in ("P", "L", "1"):
            raise ValueError(f"{path}: expected a palette or greyscale PNG, got mode {img.mode}")
        return np.asarray(img, dtype=np.uint8)


def _load_meta(path: Path) -> dict:
    hint = "Pass the dataset root that holds it (see eval/rvos/datasets.py for the layout)"
    with open(require_file(path, "meta_expressions.json", hint)) as f:
        data = json.load(f)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        raise ValueError(f"{path}: expected {{'videos': {{video_id: ...}}}}")
    for vid, entry in videos.items():
        if not isinstance(entry.get("expressions"), dict) or not isinstance(entry.get("frames"), list):
            raise ValueError(f"{path}: video {vid} lacks an 'expressions' dict or a 'frames' list")
    return videos


def _id_tuple(value, cast) -> tuple:
    if value is None:
        return ()
    return tuple(cast(v) for v in (value if isinstance(value, list) else [value]))


class RVOSDataset:
    """Common reader: subclasses set ``name``, the meta / image paths and the GT loader."""

    name = ""

    def __init__(self, root: str | Path, split: str, meta_path: Path, image_root: Path):
        self.root = Path(root).expanduser()
        require_file(self.root, f"{self.name} dataset root")
        self.split = split
        self.meta_path = meta_path
        self._videos = _load_meta(meta_path)
        self.image_root = require_file(image_root, f"{self.name} JPEGImages folder")

    @property
    def has_gt(self) -> bool:
        return False

    def video_ids(self) -> list[str]:
        return list(self._videos)

    def subset(self, video_ids: list[str]) -> "RVOSDataset":
        """A view of this split holding only ``video_ids`` (e.g. the first N videos); unknown ids are an error."""
        known = set(self.video_ids())
        unknown = [v for v in video_ids if v not in known]
        if unknown:
            raise KeyError(f"video(s) {unknown[:5]} are not in {self.meta_path}")
        view = copy.copy(self)
        view._videos = {v: self._videos[v] for v in video_ids}
        return view

    def frame_paths(self, video_id: str) -> list[Path]:
        """JPEG paths of the video's frames, in the order the meta file lists them."""
        return [self.image_root / video_id / f"{frame}.jpg" for frame in self.frames(video_id)]

    def frames(self, video_id: str) -> tuple[str, ...]:
        return tuple(self._video(video_id)["frames"])

    def _video(self, video_id: str) -> dict:
        if video_id not in self._videos:
            raise KeyError(f"video {video_id!r} is not in {self.meta_path}")
        return self._videos[video_id]

    def video_samples(self, video_id: str) -> list[RVOSSample]:
        entry = self._video(video_id)
        return [self._sample(video_id, i, exp_id, exp) for i, (exp_id, exp) in enumerate(entry["expressions"].items())]

    def samples(self, video_ids: list[str] | None = None) -> Iterator[RVOSSample]:
        for vid in self.video_ids() if video_ids is None else video_ids:
            yield from self.video_samples(vid)

    def __len__(self) -> int:
        return sum(len(self._videos[v]["expressions"]) for v in self.video_ids())

    def _sample(self, video_id: str, position: int, exp_id: str, exp: dict) -> RVOSSample:
        return RVOSSample(
            dataset=self.name,
            video_id=video_id,
            exp_id=str(exp_id),
            expression=str(exp["exp"]),
            frames=self.frames(video_id),
            frame_dir=self.image_root / video_id,
            obj_ids=_id_tuple(exp.get("obj_id"), int),
            anno_ids=_id_tuple(exp.get("anno_id"), str),
        )

    def load_gt_masks(self, sample: RVOSSample) -> np.ndarray:
        raise ValueError(f"{self.name} split {self.split!r} has no public ground truth; write a submission zip")


class MevisDataset(RVOSDataset):
    """MeViS: ``root/<split>/{meta_expressions.json, mask_dict.json, JPEGImages}``; GT for train and valid_u."""

    name = "mevis"

    def __init__(self, root: str | Path, split: str = "valid_u"):
        base = Path(root).expanduser() / split
        super().__init__(root, split, base / "meta_expressions.json", base / "JPEGImages")
        self.mask_dict_path = base / "mask_dict.json"
        self._mask_dict: dict | None = None

    @property
    def has_gt(self) -> bool:
        return self.mask_dict_path.exists()

    def mask_dict(self) -> dict:
        if self._mask_dict is None:
            hint = f"MeViS split {self.split!r} ships no GT (only train and valid_u do)"
            with open(require_file(self.mask_dict_path, "MeViS mask_dict.json", hint)) as f:
                self._mask_dict = json.load(f)
        return self._mask_dict

    def _frame_size(self, sample: RVOSSample, rle: dict | None) -> tuple[int, int]:
        if rle is not None:
            h, w = rle["size"]
            return int(h), int(w)
        with Image.open(require_file(sample.frame_paths()[0], "frame image")) as img:
            return img.size[1], img.size[0]

    def load_gt_masks(self, sample: RVOSSample) -> np.ndarray:
        """Union over the expression's anno_ids of the decoded RLEs, per frame (null = empty)."""
        from pycocotools import mask as mask_utils

        masks = self.mask_dict()
        if not sample.anno_ids:
            raise ValueError(f"MeViS expression {sample.key} has no anno_id list in {self.meta_path}")
        tracks = []
        for anno in sample.anno_ids:
            if anno not in masks:
                raise KeyError(f"anno_id {anno} of expression {sample.key} is missing from {self.mask_dict_path}")
            if len(masks[anno]) < len(sample.frames):
                raise ValueError(f"{self.mask_dict_path}: anno_id {anno} has {len(masks[anno])} entries "
                                 f"for {len(sample.frames)} frames of video {sample.video_id}")
            tracks.append(masks[anno])
        first = next((t[i] for t in tracks for i in range(len(sample.frames)) if t[i]), None)
        h, w = self._frame_size(sample, first)
        gt = np.zeros((len(sample.frames), h, w), dtype=bool)
        with warnings.catch_warnings():  # pycocotools' numpy-2 copy= notice, harmless
            warnings.simplefilter("ignore", DeprecationWarning)
            for track in tracks:
                for i in range(len(sample.frames)):
                    if track[i]:
                        gt[i] |= mask_utils.decode(track[i]).astype(bool)
        return gt


class RefYtvosDataset(RVOSDataset):
    """Ref-YouTube-VOS: ``root/meta_expressions/<split>/meta_expressions.json`` + ``root/<split>/JPEGImages``."""

    name = "ref_ytvos"

    def __init__(self, root: str | Path, split: str = "valid", exclude_test_videos: bool = True):
        base = Path(root).expanduser()
        super().__init__(root, split, base / "meta_expressions" / split / "meta_expressions.json",
                         base / split / "JPEGImages")
        self.excluded: set[str] = set()
        if split == "valid" and exclude_test_videos:
            test_meta = base / "meta_expressions" / "test" / "meta_expressions.json"
            hint = "It lists the test videos to drop from valid; pass exclude_test_videos=False to keep them"
            self.excluded = set(_load_meta(require_file(test_meta, "Ref-YouTube-VOS test meta", hint)))

    def video_ids(self) -> list[str]:
        return sorted(v for v in self._videos if v not in self.excluded)


class RefDavis17Dataset(RVOSDataset):
    """Ref-DAVIS17 (ReferFormer layout): 4 expressions per object, GT from DAVIS-2017 palette PNGs."""

    name = "ref_davis17"

    def __init__(self, root: str | Path, split: str = "valid", annotations_dir: str | Path | None = None):
        base = Path(root).expanduser()
        super().__init__(root, split, base / "meta_expressions" / split / "meta_expressions.json",
                         base / split / "JPEGImages")
        self.annotations_root = Path(annotations_dir) if annotations_dir else base / split / "Annotations"
        for vid, entry in self._videos.items():
            if len(entry["expressions"]) % 4:
                raise ValueError(f"{self.meta_path}: video {vid} has {len(entry['expressions'])} expressions; "
                                 "Ref-DAVIS17 needs 4 per object (2 annotators x first-frame / full-video)")

    @property
    def has_gt(self) -> bool:
        return self.annotations_root.is_dir()

    def _sample(self, video_id: str, position: int, exp_id: str, exp: dict) -> RVOSSample:
        base = super()._sample(video_id, position, exp_id, exp)
        return dataclasses.replace(base, annotator=position % 4, object_index=position // 4)

    def annotator_samples(self, video_id: str, annotator: int) -> list[RVOSSample]:
        """The video's expressions of one annotator setting, ordered by object position."""
        if annotator not in range(4):
            raise ValueError(f"annotator must be 0..3, got {annotator}")
        return [s for s in self.video_samples(video_id) if s.annotator == annotator]

    def load_label_maps(self, video_id: str) -> np.ndarray:
        """(T, H, W) uint8 DAVIS label maps of the video's frames: object ids, 0 background, 255 void."""
        folder = require_file(self.annotations_root / video_id, "DAVIS annotation folder",
                              "Ref-DAVIS17 GT are the DAVIS-2017 Annotations_unsupervised PNGs")
        maps = [read_label_png(folder / f"{frame}.png") for frame in self.frames(video_id)]
        if len({m.shape for m in maps}) != 1:
            raise ValueError(f"annotation PNGs under {folder} differ in size")
        return np.stack(maps)

    def load_gt_masks(self, sample: RVOSSample) -> np.ndarray:
        """Mask of the expression's object id(s) in every frame (void pixels count as background)."""
        if not sample.obj_ids:
            raise ValueError(f"Ref-DAVIS17 expression {sample.key} has no obj_id in {self.meta_path}")
        return np.isin(self.load_label_maps(sample.video_id), sample.obj_ids)


def open_rvos_dataset(name: str, root: str | Path, split: str | None = None, **options) -> RVOSDataset:
    """Build the reader for ``name`` in DATASET_NAMES (default splits valid_u / valid / valid); ``options`` go to
    the reader (``exclude_test_videos`` for ref_ytvos, ``annotations_dir`` for ref_davis17)."""
    readers = {"mevis": (MevisDataset, "valid_u"), "ref_ytvos": (RefYtvosDataset, "valid"),
               "ref_davis17": (RefDavis17Dataset, "valid")}
    if name not in readers:
        raise ValueError(f"unknown RVOS dataset {name!r}; choose one of {DATASET_NAMES}")
    cls, default_split = readers[name]
    return cls(root, split or default_split, **options)

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

Checks. Opening a reader validates its meta file (``read_json`` names the file and position of a JSON error):
video ids, expression ids and frame names must be plain names (``eval.common.names.safe_name``: they become
folder and file names of the predictions and zips), every expression needs a non-empty ``exp`` text, and
``obj_id`` / ``anno_id`` must be integers (Ref-DAVIS17: object ids 1..254). All bad entries are reported in one
line (count and first few). ``check_inputs(dataset, videos, frames=...)`` is the cheap pass a run makes over the
selected videos before a model loads: every frame JPEG exists, decodes its header, is complete and has the
video's size (model runs); and the ground truth: Ref-DAVIS17 annotation PNGs exist, are complete palette /
greyscale (8 or 16 bit) PNGs of the frames' size and the expressions' obj_ids are objects of the first annotation
frame (decoded, one per video); MeViS mask_dict entries exist for every anno_id and frame and are COCO RLE dicts
(compressed, or uncompressed with list counts) or null, of one size (the frames' in model runs). Only the first
annotation frame of each Ref-DAVIS17 video is decoded up front; a PNG that is complete but holds bad values is
reported (naming it) when it is scored. Symbolic links in a dataset (a video folder, a frame, an annotation folder)
are read through, wherever they point: a dataset may be laid out with links; a link loop or a link to nothing is an
error naming it. Nothing here writes.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eval.common.files import DataFileError, first_problems, read_json
from eval.common.images import check_label_image, check_rgb_image, read_label_image, read_rgb_image
from eval.common.names import name_problem, safe_name, safe_path

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
    "check_inputs",
    "mevis_rle",
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
        return [safe_path(self.frame_dir, f"{safe_name(frame, 'frame name')}.jpg", what="frame file")
                for frame in self.frames]


def read_frames(sample: RVOSSample) -> list[np.ndarray]:
    """The sample's frames as RGB uint8 arrays (H, W, 3); a missing, truncated or corrupt JPEG raises naming its
    path (16-bit images keep their high byte, see ``eval.common.images.read_rgb_image``)."""
    return [read_rgb_image(path, "frame image") for path in sample.frame_paths()]


def read_label_png(path: Path) -> np.ndarray:
    """A single-channel PNG (palette indices, or 8/16-bit grey values <= 255) as a (H, W) uint8 array."""
    return read_label_image(path, "mask PNG")


_META_HINT = "Pass the dataset root that holds it (see eval/rvos/datasets.py for the layout)"


def _int_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().isdigit()


def _id_problem(value: Any, field: str) -> str | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not items:
        return f"'{field}' is an empty list"
    bad = [v for v in items if not _int_like(v)]
    return f"'{field}' {bad[0]!r} is not an integer" if bad else None


def _expression_problems(vid: str, exp_id: str, exp: Any) -> list[str]:
    where = f"{vid}/{exp_id}"
    if not isinstance(exp, dict):
        return [f"{where}: the expression entry is a {type(exp).__name__}, not an object"]
    problems = []
    text = exp.get("exp")
    if not isinstance(text, str) or not text.strip():
        state = "missing" if text is None else "empty" if isinstance(text, str) else "not text"
        problems.append(f"{where}: 'exp' is {state}")
    for field in ("obj_id", "anno_id"):
        problem = _id_problem(exp.get(field), field)
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


def _meta_problems(videos: dict) -> list[str]:
    problems = []
    for vid, entry in videos.items():
        problem = name_problem(vid)
        if problem:
            problems.append(f"video id {vid!r} {problem}")
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("expressions"), dict) \
                or not isinstance(entry.get("frames"), list):
            problems.append(f"video {vid} lacks an 'expressions' dict or a 'frames' list")
            continue
        for frame in entry["frames"]:
            problem = name_problem(frame)
            if problem:
                problems.append(f"video {vid}: frame name {frame!r} {problem}")
        for exp_id, exp in entry["expressions"].items():
            problem = name_problem(exp_id)
            if problem:
                problems.append(f"video {vid}: expression id {exp_id!r} {problem}")
                continue
            problems += _expression_problems(vid, exp_id, exp)
    return problems


def _refuse(path: Path, problems: list[str], fix: str) -> None:
    """One line naming ``path``, how many problems it has and the first few."""
    if problems:
        raise DataFileError(f"{path}: {len(problems)} bad entr{'y' if len(problems) == 1 else 'ies'}: "
                            f"{first_problems(problems)}; {fix}")


def _load_meta(path: Path) -> dict:
    data = read_json(path, "meta_expressions.json", _META_HINT)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        raise ValueError(f"{path}: expected {{'videos': {{video_id: ...}}}}")
    _refuse(path, _meta_problems(videos),
            "ids and frame names must be plain names (no '/', '\\', '..'), every expression needs a non-empty 'exp' "
            "text and integer obj_id / anno_id values: fix or remove these entries")
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
        return [safe_path(self.image_root, video_id, f"{safe_name(frame, 'frame name')}.jpg", what="frame file")
                for frame in self.frames(video_id)]

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
            frame_dir=safe_path(self.image_root, video_id, what="video id"),
            obj_ids=_id_tuple(exp.get("obj_id"), int),
            anno_ids=_id_tuple(exp.get("anno_id"), str),
        )

    def load_gt_masks(self, sample: RVOSSample) -> np.ndarray:
        raise ValueError(f"{self.name} split {self.split!r} has no public ground truth; write a submission zip")

    def check_gt(self, video_ids: list[str], frame_shapes: dict[str, tuple[int, int]]) -> list[str]:
        """Problems of the ground truth of ``video_ids`` (cheap, before a run); ``frame_shapes`` gives the frames'
        (H, W) per video when known. None here (no public GT)."""
        return []


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
            data = read_json(self.mask_dict_path, "MeViS mask_dict.json", hint)
            if not isinstance(data, dict):
                raise DataFileError(f"MeViS mask_dict.json {self.mask_dict_path} must hold {{anno_id: [RLE or null per "
                                    f"frame]}}, found a {type(data).__name__}; fix or re-download it")
            self._mask_dict = data
        return self._mask_dict

    def _frame_size(self, sample: RVOSSample) -> tuple[int, int]:
        return check_rgb_image(sample.frame_paths()[0], "frame image").shape

    def _entry_error(self, anno: str, index: int, sample_frames: tuple[str, ...], video: str, reason: str) -> str:
        return (f"MeViS mask_dict.json {self.mask_dict_path}: anno_id {anno}, frame {index} ({sample_frames[index]}) "
                f"of video {video}: {reason}")

    def _track(self, anno: str, n_frames: int, where: str) -> list:
        masks = self.mask_dict()
        if anno not in masks:
            raise KeyError(f"anno_id {anno} of {where} is missing from {self.mask_dict_path}")
        track = masks[anno]
        if not isinstance(track, list) or len(track) < n_frames:
            found = f"{len(track)} entries" if isinstance(track, list) else f"a {type(track).__name__}"
            raise DataFileError(f"MeViS mask_dict.json {self.mask_dict_path}: anno_id {anno} has {found} for the "
                                f"{n_frames} frames of {where}; it needs one RLE or null per frame")
        return track

    def load_gt_masks(self, sample: RVOSSample) -> np.ndarray:
        """Union over the expression's anno_ids of the decoded RLEs, per frame (null = empty); an entry that is not
        a COCO RLE dict or null (e.g. a polygon list) is an error naming the anno_id and frame."""
        from pycocotools import mask as mask_utils

        if not sample.anno_ids:
            raise ValueError(f"MeViS expression {sample.key} has no anno_id list in {self.meta_path}")
        n = len(sample.frames)
        rles = []
        for anno in sample.anno_ids:
            track = self._track(anno, n, f"expression {sample.key}")
            for i in range(n):
                try:
                    rle = mevis_rle(track[i])
                except ValueError as err:
                    raise DataFileError(self._entry_error(anno, i, sample.frames, sample.video_id, str(err))) from None
                if rle is not None:
                    rles.append((i, rle))
        sizes = sorted({tuple(rle["size"]) for _, rle in rles})
        if len(sizes) > 1:
            raise DataFileError(f"MeViS mask_dict.json {self.mask_dict_path}: the RLEs of expression {sample.key} "
                                f"differ in size: {[list(s) for s in sizes]}; fix or re-download it")
        h, w = sizes[0] if sizes else self._frame_size(sample)
        gt = np.zeros((n, h, w), dtype=bool)
        with warnings.catch_warnings():  # pycocotools' numpy-2 copy= notice, harmless
            warnings.simplefilter("ignore", DeprecationWarning)
            for i, rle in rles:
                try:
                    gt[i] |= mask_utils.decode(rle).astype(bool)
                except ValueError as err:  # counts that do not fill size x size (pycocotools checks)
                    raise DataFileError(f"MeViS mask_dict.json {self.mask_dict_path}: an RLE of expression {sample.key}"
                                        f", frame {i} ({sample.frames[i]}) cannot be decoded ({err}); fix or "
                                        f"re-download it") from None
        return gt

    def check_gt(self, video_ids: list[str], frame_shapes: dict[str, tuple[int, int]]) -> list[str]:
        """Every anno_id of the videos' expressions has an entry per frame, each a COCO RLE or null, all of one size
        (the frames' size when ``frame_shapes`` knows it); nothing is decoded."""
        self.mask_dict()  # an unreadable file is one error of its own
        problems: list[str] = []
        for vid in video_ids:
            frames = self.frames(vid)
            expected = frame_shapes.get(vid)
            source = "the frames'"
            seen: set[str] = set()
            for sample in self.video_samples(vid):
                if not sample.anno_ids:
                    problems.append(f"MeViS expression {sample.key} has no anno_id list in {self.meta_path}")
                    continue
                for anno in sample.anno_ids:
                    if anno in seen:
                        continue
                    seen.add(anno)
                    try:
                        track = self._track(anno, len(frames), f"expression {sample.key}")
                    except (KeyError, ValueError) as err:
                        problems.append(str(err.args[0]))
                        continue
                    for i in range(len(frames)):
                        try:
                            rle = mevis_rle(track[i], convert=False)
                        except ValueError as err:
                            problems.append(self._entry_error(anno, i, frames, vid, str(err)))
                            continue
                        if rle is None:
                            continue
                        size = tuple(rle["size"])
                        if expected is None:
                            expected, source = size, "the video's other RLEs'"
                        elif size != expected:
                            problems.append(self._entry_error(anno, i, frames, vid, f"RLE size {list(size)} differs "
                                                              f"from {source} size {list(expected)}"))
        return problems


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def mevis_rle(entry: Any, convert: bool = True) -> dict | None:
    """A MeViS ``mask_dict`` frame entry as pycocotools decodes it, or None for null (an empty frame).

    Accepted, as pycocotools does for MeViS: a compressed COCO RLE ``{"size": [h, w], "counts": "<string>"}``
    and an uncompressed one with ``counts`` a list of run lengths summing to h * w (converted with
    ``frPyObjects`` when ``convert``). Anything else (a polygon list, a number, a dict without size / counts) raises
    ValueError saying what it is."""
    if entry is None:
        return None
    expected = "MeViS mask_dict entries must be COCO RLE dicts {size, counts} or null"
    if isinstance(entry, list):
        raise ValueError(f"a list (a polygon?), not an RLE; {expected}")
    if not isinstance(entry, dict):
        raise ValueError(f"the {type(entry).__name__} {entry!r:.40}; {expected}")
    size, counts = entry.get("size"), entry.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_plain_int(v) and v >= 0 for v in size)):
        raise ValueError(f"an RLE whose size {size!r} is not [height, width]; {expected}")
    h, w = int(size[0]), int(size[1])
    if isinstance(counts, (str, bytes)):
        try:
            data = counts.encode("ascii") if isinstance(counts, str) else counts
        except UnicodeEncodeError:
            raise ValueError(f"an RLE whose counts string is not ASCII; {expected}")
        return {"size": [h, w], "counts": data}
    if isinstance(counts, list):
        if not all(_plain_int(c) and c >= 0 for c in counts):
            raise ValueError(f"an uncompressed RLE whose counts are not non-negative integers; {expected}")
        if sum(counts) != h * w:
            raise ValueError(f"an uncompressed RLE whose counts sum to {sum(counts)}, not {h} x {w} = {h * w}")
        if not convert:
            return {"size": [h, w], "counts": counts}
        from pycocotools import mask as mask_utils

        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    kind = "missing" if counts is None else type(counts).__name__
    raise ValueError(f"an RLE whose counts are {kind}; {expected}")


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
        problems = []
        for vid, entry in self._videos.items():
            for exp_id, exp in entry["expressions"].items():
                obj = exp.get("obj_id")
                if obj is None or isinstance(obj, list):
                    problems.append(f"{vid}/{exp_id}: 'obj_id' is {'missing' if obj is None else 'a list'}; "
                                    f"Ref-DAVIS17 gives one object id per expression")
                elif not 1 <= int(obj) <= 254:
                    problems.append(f"{vid}/{exp_id}: 'obj_id' {obj!r} is not a DAVIS object id (1..254)")
        _refuse(self.meta_path, problems, "fix or remove these expressions")

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

    def annotation_path(self, video_id: str, frame: str) -> Path:
        """The DAVIS annotation PNG of one frame (video id and frame name checked to be plain names)."""
        return safe_path(self.annotations_root, video_id, f"{safe_name(frame, 'frame name')}.png", what="annotation")

    def load_label_maps(self, video_id: str) -> np.ndarray:
        """(T, H, W) uint8 DAVIS label maps of the video's frames: object ids, 0 background, 255 void."""
        folder = require_file(safe_path(self.annotations_root, video_id, what="video id"), "DAVIS annotation folder",
                              "Ref-DAVIS17 GT are the DAVIS-2017 Annotations_unsupervised PNGs")
        maps = [read_label_png(self.annotation_path(video_id, frame)) for frame in self.frames(video_id)]
        if len({m.shape for m in maps}) != 1:
            raise ValueError(f"annotation PNGs under {folder} differ in size")
        return np.stack(maps)

    def load_gt_masks(self, sample: RVOSSample) -> np.ndarray:
        """Mask of the expression's object id(s) in every frame (void pixels count as background)."""
        if not sample.obj_ids:
            raise ValueError(f"Ref-DAVIS17 expression {sample.key} has no obj_id in {self.meta_path}")
        return np.isin(self.load_label_maps(sample.video_id), sample.obj_ids)

    def check_gt(self, video_ids: list[str], frame_shapes: dict[str, tuple[int, int]]) -> list[str]:
        """Every annotation PNG of the videos exists and is a complete single-channel PNG (header and end checked,
        not decoded) of one size, the frames' size when ``frame_shapes`` knows it; the first frame's PNG is decoded
        and every obj_id must be one of its objects (1..its largest id, void 255 aside: the DAVIS objects)."""
        problems: list[str] = []
        for vid in video_ids:
            folder = safe_path(self.annotations_root, vid, what="video id")
            if not folder.is_dir():
                problems.append(f"DAVIS annotation folder not found: {folder}")
                continue
            expected, source = frame_shapes.get(vid), "the frames"
            first_ok = True
            for i, frame in enumerate(self.frames(vid)):
                path = self.annotation_path(vid, frame)
                try:
                    info = check_label_image(path, "DAVIS annotation PNG")
                except (FileNotFoundError, ValueError) as err:
                    problems.append(str(err.args[0]))
                    first_ok = first_ok and i > 0
                    continue
                if expected is None:
                    expected, source = info.shape, "the first annotation"
                elif info.shape != expected:
                    problems.append(f"DAVIS annotation PNG {path} is {info.width}x{info.height} but {source} "
                                    f"{'are' if source == 'the frames' else 'is'} {expected[1]}x{expected[0]}")
            if first_ok:
                problems += self._object_problems(vid)
        return problems

    def _object_problems(self, video_id: str) -> list[str]:
        first = self.annotation_path(video_id, self.frames(video_id)[0])
        try:
            labels = read_label_png(first)
        except (FileNotFoundError, ValueError) as err:
            return [str(err.args[0])]
        n_objects = int(np.where(labels == 255, 0, labels).max())
        problems = []
        for sample in self.video_samples(video_id):
            bad = [o for o in sample.obj_ids if not 1 <= o <= n_objects]
            if bad:
                problems.append(f"Ref-DAVIS17 expression {sample.key} in {self.meta_path}: obj_id {bad[0]} is not an "
                                f"object of the video's first annotation frame {first} (objects 1..{n_objects})")
        return problems


def _problem_text(err: BaseException) -> str:
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def check_inputs(dataset: RVOSDataset, video_ids: list[str], frames: bool = True) -> None:
    """The cheap pass over the inputs of ``video_ids`` before a run (see the module docstring): with ``frames``
    every frame JPEG (exists, header, complete, one size per video), and the ground truth when the split has it.
    All problems are reported in one line: how many, and the first few."""
    problems: list[str] = []
    shapes: dict[str, tuple[int, int]] = {}
    with_frames = []
    for vid in video_ids:
        if not dataset.frames(vid):
            problems.append(f"video {vid} lists no frames in {dataset.meta_path}")
            continue
        with_frames.append(vid)
        if not frames:
            continue
        sizes: dict[tuple[int, int], Path] = {}
        for path in dataset.frame_paths(vid):
            try:
                info = check_rgb_image(path, "frame image")
            except (FileNotFoundError, ValueError) as err:
                problems.append(_problem_text(err))
                continue
            sizes.setdefault(info.shape, path)
        if len(sizes) > 1:
            problems.append(f"frames of video {vid} differ in size: "
                            + ", ".join(f"{w}x{h} ({p.name})" for (h, w), p in sizes.items()))
        elif sizes:
            shapes[vid] = next(iter(sizes))
    if dataset.has_gt:
        problems += dataset.check_gt(with_frames, shapes)
    if problems:
        raise DataFileError(f"{len(problems)} problem(s) with the inputs of the {len(video_ids)} selected video(s), "
                            f"found before the run: {first_problems(problems)}; fix or re-download these files")


def open_rvos_dataset(name: str, root: str | Path, split: str | None = None, **options) -> RVOSDataset:
    """Build the reader for ``name`` in DATASET_NAMES (default splits valid_u / valid / valid); ``options`` go to
    the reader (``exclude_test_videos`` for ref_ytvos, ``annotations_dir`` for ref_davis17)."""
    readers = {"mevis": (MevisDataset, "valid_u"), "ref_ytvos": (RefYtvosDataset, "valid"),
               "ref_davis17": (RefDavis17Dataset, "valid")}
    if name not in readers:
        raise ValueError(f"unknown RVOS dataset {name!r}; choose one of {DATASET_NAMES}")
    cls, default_split = readers[name]
    return cls(root, split or default_split, **options)

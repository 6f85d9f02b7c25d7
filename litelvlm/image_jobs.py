"""What ``litelvlm segment`` segments, checked before any model loads: one ``--image``, or many with ``--images``
(a FOLDER of images, each with the ``--text`` expressions, or a LIST.json of ``{"image": path, "expressions": [...]}``
entries, relative paths read from the list's folder). Many images write one folder each inside ``--out``; an image
is finished once its ``result.json`` exists, and a rerun skips it (``pending_jobs``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .jsonfile import read_json, read_json_object

__all__ = ["IMAGE_SUFFIXES", "ImageJob", "check_texts", "image_jobs", "pending_jobs", "record_settings", "RUN_FILE", "RESULT_FILE"]

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
RESULT_FILE = "result.json"  # written last: an image folder holding it is finished
RUN_FILE = "run.json"  # the settings of a many-image run: a rerun into the same --out must repeat them
_ENTRY_KEYS = ("image", "expressions")


@dataclass(frozen=True)
class ImageJob:
    """One image and its expressions; ``folder``: where its results go inside ``--out`` ("" = ``--out`` itself)."""

    image: Path
    texts: tuple[str, ...]
    folder: str = ""


def check_texts(texts: Sequence[Any] | None, where: str = "--text") -> tuple[str, ...]:
    """Referring expressions: at least one, each a non-blank string."""
    if not texts:
        raise ValueError(f"{where}: give at least one referring expression")
    if any(not isinstance(t, str) or not t.strip() for t in texts):
        raise ValueError(f"{where} must not be empty: give a referring expression")
    return tuple(texts)


def image_jobs(image: str | None, images: str | None, texts: Sequence[str] | None) -> list[ImageJob]:
    """The jobs of ``--image`` (one, results in ``--out``) or ``--images FOLDER|LIST.json`` (one folder each)."""
    if image is not None:
        return [ImageJob(Path(image), check_texts(texts))]
    source = Path(images)
    if source.is_dir():
        return _folder_jobs(source, check_texts(texts, "--text (the expressions of every image in --images FOLDER)"))
    if source.suffix.lower() != ".json":
        raise ValueError(f"--images {source}: pass a folder of images or a LIST.json file")
    if texts:
        raise ValueError(f"--images {source} gives each image its expressions: drop --text (it applies to --image and "
                         "--images FOLDER)")
    if not source.is_file():
        raise FileNotFoundError(f"--images {source}: list file not found")
    return _list_jobs(source)


def _folder_jobs(folder: Path, texts: tuple[str, ...]) -> list[ImageJob]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"--images {folder} holds no image files ({' '.join(IMAGE_SUFFIXES)}); subfolders are not read")
    return [ImageJob(p.absolute(), texts, f"{p.stem}_{p.suffix[1:]}") for p in files]


def _list_jobs(path: Path) -> list[ImageJob]:
    entries = read_json(path, "--images list")
    shape = 'a JSON list of {"image": path, "expressions": ["...", ...]} objects'
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"--images {path} must hold {shape}")
    return [_list_job(path, i, entry, len(entries)) for i, entry in enumerate(entries)]


def _list_job(path: Path, i: int, entry: Any, count: int) -> ImageJob:
    where = f"--images {path}: entry {i + 1} of {count}"
    if not isinstance(entry, dict):
        raise ValueError(f'{where} is a JSON {type(entry).__name__}, not an object {{"image": path, "expressions": [...]}}')
    unknown = sorted(set(entry) - set(_ENTRY_KEYS))
    if unknown or "image" not in entry or "expressions" not in entry:
        raise ValueError(f"{where} has the keys {sorted(entry)}: give exactly 'image' (a path) and 'expressions' (a list)")
    if not isinstance(entry["image"], str) or not entry["image"].strip():
        raise ValueError(f"{where}: 'image' must be a path (a non-empty string), got {entry['image']!r}")
    image = path.parent / entry["image"]
    if not image.is_file():
        raise FileNotFoundError(f"{where}: image not found: {image} (relative paths are read from the list's folder)")
    if not isinstance(entry["expressions"], list):
        raise ValueError(f"{where} ({entry['image']}): 'expressions' must be a list of referring expressions")
    texts = check_texts(entry["expressions"], f"{where} ({entry['image']}): 'expressions'")
    return ImageJob(image.absolute(), texts, f"{i + 1:05d}_{image.stem}_{image.suffix[1:] or 'image'}")


def pending_jobs(jobs: list[ImageJob], out: Path, settings: dict) -> list[ImageJob]:
    """The many-image jobs still to do in ``out``: those without a ``result.json``. ``settings`` (method, budget,
    weights, format) must equal those ``out``'s earlier run recorded (``record_settings``), and a finished folder must
    hold the result of the same image and expressions: otherwise one error, before any model loads."""
    recorded = out / RUN_FILE
    if recorded.exists():
        before = read_json_object(recorded, "run settings")
        changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
        if changed:
            what = ", ".join(f"{k} {old!r} there, {new!r} now" for k, (old, new) in changed.items())
            raise ValueError(f"--out {out} holds the results of another run ({what}): rerun with its settings to resume, "
                             "or pass another --out")
    return [job for job in jobs if not _finished(job, out)]


def record_settings(out: Path, settings: dict) -> None:
    """Write ``run.json`` (once, with the run's first result) for ``pending_jobs`` of a later run to compare."""
    if not (out / RUN_FILE).exists():
        (out / RUN_FILE).write_text(json.dumps(settings, indent=2))


def _finished(job: ImageJob, out: Path) -> bool:
    result = out / job.folder / RESULT_FILE
    if not result.exists():
        return False
    record = read_json_object(result, "result")
    done = (record.get("image"), [row.get("text") for row in record.get("expressions", [])])
    if done != (str(job.image), list(job.texts)):
        raise ValueError(f"--out {out / job.folder} holds the result of {done[0]} with {done[1]}, not of {job.image} with "
                         f"{list(job.texts)}: pass another --out, or delete that folder to segment it again")
    return True

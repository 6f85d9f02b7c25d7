"""``litelvlm segment``: images and their expressions (``litelvlm.image_jobs``), masks and pictures written to a folder.

Per image: mask PNGs (0/255) and / or COCO RLEs in ``result.json`` (``--format``), the overlay, the kept-token maps,
and ``result.json`` last (written whole or not at all: its presence marks the image finished)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from .image_jobs import RESULT_FILE, ImageJob, record_settings
from .progress import progress_bar
from .rle import mask_to_rle
from .viz import DROPPED_COLOUR, KEPT_COLOUR, PALETTE, PALETTE_NAMES, Figure, kept_token_map, load_rgb, mask_overlay, save_png

__all__ = ["FORMATS", "segment_image", "segment_images", "result_pictures", "slug", "budget_phrase"]

FORMATS = ("png", "rle", "both")  # masks as 0/255 PNG files, as COCO RLE in result.json, or both


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of ``text``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "expr"


def budget_phrase(method: str, kept: int, total: int, unit: str = "tokens") -> str:
    """'method litelvlm: 64 of 576 visual tokens kept' / 'no pruning: all 576 visual tokens'."""
    if method == "none":
        return f"no pruning (method none): all {total} visual {unit}"
    return f"method {method}: {kept} of {total} visual {unit} kept"


def result_pictures(image: np.ndarray, result, texts, clip_config, source: str = "the image",
                    note: str | None = None) -> tuple[Figure, list[Figure], list[dict]]:
    """The titled figures of one ``GLaMMSegmenter`` result: the mask overlay (legend: colour per expression),
    one kept-token map per expression (legend: kept / dropped), and a summary row per expression. ``note``: a last
    title line of every figure (e.g. that the weights are random)."""
    from .pruning import get_method  # torch: imported once a result exists

    side, crop = clip_config.image_size // clip_config.patch_size, clip_config.image_size
    total = side * side
    pruning = budget_phrase(result.method, result.num_visual_tokens, total)
    kept_what = (f"kept by {result.method} inside the LLM (all tokens enter it)" if get_method(result.method).stage == "llm"
                 else "kept: reaches the LLM")
    maps, rows = [], []
    for i, (text, mask, kept) in enumerate(zip(texts, result.masks, result.kept)):
        maps.append(Figure(
            kept_token_map(image, (side, side), kept.numpy(), crop=crop),
            [f"Kept visual tokens, expression {i + 1} of {len(texts)}", f"'{text}'", pruning,
             f"CLIP's view of the image ({crop}x{crop} centre crop), one cell per token", *([note] if note else [])],
            [(KEPT_COLOUR, f"{kept_what} ({len(kept)} tokens, framed blue)"),
             (DROPPED_COLOUR, f"dropped: never seen by the LLM ({total - len(kept)} tokens, dimmed)")]))
        rows.append({"text": text, "mask_pixels": int(mask.sum()), "overlay_colour": PALETTE_NAMES[i % len(PALETTE_NAMES)],
                     "kept": kept.tolist()})
    legend = [(PALETTE[i % len(PALETTE)], f"'{row['text']}': {row['mask_pixels']} mask pixels"
               + ("" if row["mask_pixels"] else " (empty mask)")) for i, row in enumerate(rows)]
    overlay = Figure(mask_overlay(image, result.masks), [f"Masks of {len(texts)} expression(s) on {source}", pruning,
                                                         *([note] if note else [])], legend)
    return overlay, maps, rows


def segment_images(segmenter, jobs: list[ImageJob], out: Path, *, settings: dict, note: str | None = None,
                   done: int = 0) -> list[dict]:
    """Segment and write each job in turn (``segment_image``), with a progress bar over all ``done + len(jobs)``
    images; the run's ``settings`` are recorded with the first result (``image_jobs.record_settings``)."""
    reports = []
    with progress_bar(done + len(jobs), "litelvlm segment", "image", initial=done) as bar:
        for job in jobs:
            reports.append(segment_image(segmenter, job, load_rgb(job.image), out, settings=settings, note=note))
            record_settings(out, settings)
            bar.update(1)
    return reports


def segment_image(segmenter, job: ImageJob, image: np.ndarray, out: Path, *, settings: dict, note: str | None = None) -> dict:
    """Segment ``job.texts`` in ``image``; write into ``out / job.folder`` the masks (``settings["format"]``), the
    overlay and kept-token maps (titled, with a legend; ``note`` added to their titles), and ``result.json``."""
    budget, method, mask_format = settings["budget"], settings["method"], settings["format"]
    result = segmenter.segment(image, list(job.texts), budget=budget, method=method)
    folder = out / job.folder
    overlay, maps, rows = result_pictures(image, result, job.texts, segmenter.clip.vision.config, job.image.name, note)
    for i, (text, mask, picture, row) in enumerate(zip(job.texts, result.masks, maps, rows)):
        stem = f"{i:02d}_{slug(text)}"
        if mask_format in ("png", "both"):
            row["mask"] = str(save_png(mask.astype(np.uint8) * 255, folder / f"mask_{stem}.png"))
        if mask_format in ("rle", "both"):
            row["rle"] = mask_to_rle(mask)
        row["kept_map"] = str(picture.save(folder / f"kept_{stem}.png"))
    report = {"image": str(job.image), "weights": settings["weights"], "method": result.method, "budget": budget,
              "num_visual_tokens": result.num_visual_tokens, "format": mask_format, "timings": result.timings,
              "overlay": str(overlay.save(folder / "overlay.png")), "expressions": rows}
    _write_json_whole(folder / RESULT_FILE, report)
    return report


def _write_json_whole(path: Path, data: dict) -> None:
    """``path`` holds all of ``data`` or is absent: written beside it, then renamed over it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2))
    os.replace(partial, path)


def run_segment(args) -> int:
    """``litelvlm segment``: every check that needs no model runs before torch is imported (options, images, the
    LIST.json entries, --out, checkpoint names and Hub ids); then one model load for all images. A run that fails
    before writing anything removes the --out folder it created (``litelvlm.outputs.output_dir``)."""
    from .image_jobs import image_jobs, pending_jobs
    from .outputs import output_dir
    from .pipeline import TINY_WEIGHTS, is_tiny, locate_checkpoints, weights_label
    from .run_options import check_device_name, check_dtype_name, check_method

    check_device_name(args.device)
    check_dtype_name(args.dtype)
    method = check_method(args.method, args.budget)
    jobs = image_jobs(args.image, args.images, args.text)
    image = load_rgb(jobs[0].image) if args.image is not None else None  # decoded now: a bad image fails before the model
    paths = locate_checkpoints("glamm", args.checkpoint, args.vision_tower)
    settings = {"weights": weights_label(args.checkpoint), "vision_tower": args.vision_tower, "method": method,
                "budget": args.budget, "format": args.format}
    note = TINY_WEIGHTS if is_tiny(args.checkpoint) else None
    with output_dir(args.out) as out:
        if image is not None:
            segmenter = _load_segmenter(paths, args.device, args.dtype)
            _print_image_report(segment_image(segmenter, jobs[0], image, out, settings=settings, note=note), out)
            return 0
        todo = pending_jobs(jobs, out, settings)
        segmenter = _load_segmenter(paths, args.device, args.dtype) if todo else None
        reports = segment_images(segmenter, todo, out, settings=settings, note=note, done=len(jobs) - len(todo))
    _print_images_report(reports, len(jobs), out, settings)
    return 0


def _load_segmenter(paths: dict, device: str, dtype: str | None):
    """GLaMM from ``locate_checkpoints``' paths (``tiny``: the embedded tiny checkpoint and its CLIP), on a device
    this machine has (the first torch import of the run)."""
    from .glamm import GLaMMSegmenter
    from .pipeline import checkpoint_paths
    from .run_options import check_device, torch_dtype

    check_device(device)
    paths = checkpoint_paths("glamm", paths["checkpoint"], paths["vision_tower"])
    return GLaMMSegmenter.from_pretrained(paths["checkpoint"], vision_tower=paths["vision_tower"], device=device,
                                          dtype=torch_dtype(dtype))


def _pruning_words(report: dict) -> str:
    tokens = f"{report['num_visual_tokens']} visual tokens per expression"
    return f"no pruning (method none): all {tokens}" if report["method"] == "none" else f"method {report['method']}: {tokens}"


def _print_image_report(report: dict, out: Path) -> None:
    from .table import print_table

    print(f"segmented {len(report['expressions'])} expression(s) in {report['image']}; {_pruning_words(report)}; "
          f"{report['timings']['total'] * 1000:.0f} ms")
    print(f"weights: {report['weights']}")
    columns = ["expression", "mask pixels", "overlay colour", *(["mask (0/255 PNG)"] if "mask" in report["expressions"][0] else []),
               "kept-token map"]
    rows = [{"expression": repr(r["text"]), "mask pixels": r["mask_pixels"], "overlay colour": r["overlay_colour"],
             "mask (0/255 PNG)": r.get("mask"), "kept-token map": r["kept_map"]} for r in report["expressions"]]
    print_table(rows, columns, align="auto")
    print(f"overlay: {report['overlay']}")
    print(f"result:  {out / RESULT_FILE}" + (" (masks as COCO RLE: 'rle' of each expression)" if report["format"] != "png" else ""))


def _print_images_report(reports: list[dict], total: int, out: Path, settings: dict) -> None:
    if not reports:
        print(f"nothing to do: all {total} image(s) are done in {out}")
    else:
        skipped = f" ({total - len(reports)} finished before in {out}, skipped)" if len(reports) < total else ""
        print(f"segmented {len(reports)} of {total} image(s){skipped}; {_pruning_words(reports[0])}")
    print(f"weights: {settings['weights']}")
    print(f"results: {out}/<image>/{RESULT_FILE} (masks, overlay.png, kept-token maps beside it), one folder per image")

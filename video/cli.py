"""``litelvlm segment-video``: one video, several expressions, per-frame mask PNGs and an overlay mp4.

Every check that needs no model runs before torch is imported (options, --out, checkpoint names and Hub ids, the
video itself); a run that fails before writing anything removes the --out folder it created. A progress bar on
stderr (when it is a terminal) steps through the model load, each clip (naming its current stage) and the writing."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from litelvlm.image_jobs import check_texts
from litelvlm.outputs import output_dir
from litelvlm.segment_cli import slug
from litelvlm.viz import PALETTE_NAMES, save_png

from .io import TooManyFrames, read_video, split_clips, write_overlay_mp4

__all__ = ["run_segment_video", "segment_video_to_folder"]


def run_segment_video(args) -> int:
    """The ``litelvlm segment-video`` command: checks, then ``segment_video_to_folder``, then its report on stdout."""
    from litelvlm.pipeline import locate_checkpoints
    from litelvlm.run_options import check_device_name, check_dtype_name, check_method

    check_device_name(args.device)
    check_dtype_name(args.dtype)
    method = check_method(args.method, args.budget, args.clip_budget, media="video")
    check_texts(args.text)
    if args.max_frames < 1:
        raise ValueError(f"--max-frames {args.max_frames}: give a positive number of frames")
    paths = locate_checkpoints("videoglamm", args.checkpoint, args.vision_tower, args.video_tower)
    with output_dir(args.out) as out:
        video = _read_bounded(args.video, args.max_frames)  # fail on a bad video before loading the model
        report = segment_video_to_folder(video, args, paths, method, out)
    _print_report(report, args)
    return 0


def segment_video_to_folder(video, args, paths: dict, method: str, out: Path) -> dict:
    """Segment ``args.text`` in ``video`` (frames, names, fps); write ``<expr>/<frame>.png`` masks (0/255),
    ``overlay.mp4``, ``result.json``, and with ``--kept-pictures`` ``<expr>/kept_tokens[_clipNN].png``
    (``video.kept_pictures``). The whole video is held in memory (every frame is segmented)."""
    from litelvlm.pipeline import weights_label
    from litelvlm.progress import progress_bar

    frames, names, fps = video
    texts = list(args.text)
    settings = _settings(args, method)
    clips = len(split_clips(len(frames), settings["options"]["clip_length"]))
    with progress_bar(clips + 2, "litelvlm segment-video", "step") as bar:
        bar.set_postfix_str("loading the model")
        segmenter = _load_segmenter(paths, args.device, settings)
        bar.update(1)
        result = segmenter.segment(frames, texts, budget=args.budget, method=method, clip_budget=args.clip_budget,
                                   timer=_clip_progress_timer(bar, args.device))
        bar.set_postfix_str("writing masks")
        pictures = _kept_pictures(frames, result, texts, segmenter.stream_geometry()) if args.kept_pictures else {}
        rows = [_write_expression(out, i, text, result, names, pictures) for i, text in enumerate(texts)]
        overlay = write_overlay_mp4(frames, result.masks, out / "overlay.mp4", fps or 10.0)
        bar.update(bar.total - bar.n)
    report = {"video": str(args.video), "weights": weights_label(args.checkpoint), "frames": len(frames),
              "method": result.method, "budget": args.budget, "clip_budget": args.clip_budget,
              "sampled_frames": result.sampled_frames,
              "visual_tokens_per_frame": result.visual_tokens_per_frame, "clip_tokens_per_frame": result.clip_tokens_per_frame,
              "timings": result.timings, "overlay": str(overlay), "expressions": rows}
    (out / "result.json").write_text(json.dumps(report, indent=2))
    return report


def _settings(args, method: str) -> dict:
    """The preset with the command line's overrides: segmenter options, dtype and attention; the layout's budget
    rule checked (``video.layout.check_layout_budget``), and the method's own clip-budget limits."""
    from dataclasses import asdict

    from litelvlm.run_options import check_clip_budget_of, torch_dtype
    from video.layout import check_layout_budget
    from video.preset import load_preset
    from video.segmenter import VideoSegmenterConfig

    preset = load_preset(args.preset)
    options = asdict(preset.segmenter)
    options.update({k: v for k, v in (("layout", args.layout), ("answer", args.answer), ("mask_mode", args.mask_mode),
                                      ("memory_budget", args.memory_budget), ("memory_selector", args.memory_selector))
                    if v is not None})
    check_layout_budget(options["layout"], args.budget, method)
    check_clip_budget_of(method, args.clip_budget)
    VideoSegmenterConfig(**options)  # every field checked (memory budget and selector included) before the model loads
    dtype, autocast = preset.precision(args.device, torch_dtype(args.dtype) if args.dtype else None)
    return {"options": options, "dtype": dtype, "autocast": autocast, "attn_implementation": preset.attn_implementation(), "clip_attn_implementation": preset.clip_attn_implementation()}


def _load_segmenter(paths: dict, device: str, settings: dict):
    """VideoGLaMM from ``locate_checkpoints``' paths (``tiny``: the embedded tiny checkpoint and its towers)."""
    from litelvlm.pipeline import checkpoint_paths
    from litelvlm.run_options import check_device

    from .segmenter import VideoSegmenter

    check_device(device)
    paths = checkpoint_paths("videoglamm", **paths)
    return VideoSegmenter.from_pretrained(**paths, device=device, dtype=settings["dtype"], autocast=settings["autocast"],
                                          attn_implementation=settings["attn_implementation"],
                                          clip_attn_implementation=settings["clip_attn_implementation"], **settings["options"])


def _clip_progress_timer(bar, device: str):
    """A ``StageTimer`` that shows each stage on ``bar`` and steps it once per clip (a clip ends with its mask decoding)."""
    from litelvlm.timing import StageTimer

    class ClipProgress(StageTimer):
        @contextlib.contextmanager
        def __call__(self, stage: str):
            bar.set_postfix_str(stage)
            with super().__call__(stage):
                yield
            if stage == "mask_decoder":
                bar.update(1)

    return ClipProgress(device)


def _write_expression(out: Path, i: int, text: str, result, names: list[str], pictures: dict) -> dict:
    folder = out / f"{i:02d}_{slug(text)}"
    masks = result.masks[i]
    for name, mask in zip(names, masks):
        save_png(mask.astype(np.uint8) * 255, folder / f"{name}.png")
    row = {"text": text, "masks": str(folder), "has_seg": result.has_seg[i], "answers": result.answers[i],
           "overlay_colour": PALETTE_NAMES[i % len(PALETTE_NAMES)],
           "mask_pixels_per_frame": [int(m.sum()) for m in masks], "llm_visual_tokens": result.llm_visual_tokens[i]}
    if i in pictures:
        row["kept_pictures"] = [str(figure.save(folder / name)) for name, figure in pictures[i]]
    return row


def _print_report(report: dict, args) -> None:
    from litelvlm.table import print_table

    pruning = ("no pruning (method none)" if report["method"] == "none"
               else f"method {report['method']}, budget {report['budget']} CLIP tokens per sampled frame"
               + (f", clip budget {args.clip_budget} LLM visual tokens" if args.clip_budget is not None else ""))
    print(f"segmented {len(report['expressions'])} expression(s) in {report['frames']} frames of {args.video}; {pruning}; "
          f"{report['visual_tokens_per_frame']:.1f} LLM visual tokens per frame ({report['clip_tokens_per_frame']:.1f} from CLIP)")
    print(f"weights: {report['weights']}")
    print_table([{"expression": repr(r["text"]), "[SEG] emitted": "yes" if r["has_seg"] else "no: empty masks",
                  "overlay colour": r["overlay_colour"], "mask PNGs (one 0/255 PNG per frame)": r["masks"]}
                 for r in report["expressions"]], align="auto")
    print(f"overlay: {report['overlay']}")
    for row in report["expressions"]:
        for picture in row.get("kept_pictures", []):
            print(f"kept tokens of {row['text']!r}: {picture}")
    print(f"result:  {Path(args.out) / 'result.json'}")


def _read_bounded(video_path, max_frames: int):
    """``read_video`` refusing more than ``max_frames`` frames, in the words of ``--max-frames``."""
    try:
        return read_video(video_path, max_frames=max_frames)
    except TooManyFrames as err:
        raise ValueError(f"{err.what} has {err.counted}, more than --max-frames {max_frames}: raise --max-frames (memory: "
                         f"width x height x 3 bytes a frame) or cut the video, e.g. ffmpeg -i IN -frames:v {max_frames} OUT.mp4") from None


def _kept_pictures(frames, result, texts, geometry) -> dict[int, list]:
    """Per expression, (file name, titled figure) of each clip's kept-token sheet."""
    from .kept_pictures import kept_token_figures

    out: dict[int, list] = {i: [] for i in range(len(texts))}
    figures = kept_token_figures(frames, result, texts, geometry)
    several = len(result.sampled_frames) > 1
    for e, c, figure in figures:
        out[e].append((f"kept_tokens_clip{c:02d}.png" if several else "kept_tokens.png", figure))
    return out

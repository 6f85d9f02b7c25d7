"""The ``litelvlm`` command line: one sub-command per job, each a thin wrapper over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .run_options import check_device, check_frame_budget, check_method, method_names, torch_dtype

__all__ = ["main", "build_parser", "check_device", "check_method"]

DEFAULT_MAX_FRAMES = 1000  # segment-video holds every frame in memory: 1000 frames of 1280x720 take 2.8 GB


def _print_table(columns: list[str], rows: list[list]) -> None:
    """An aligned plain-text table with a header row: numbers right-aligned, text left-aligned."""
    from .table import print_table

    print_table([dict(zip(columns, row)) for row in rows], columns, align="auto")


def _default(text: str) -> str:
    return f"{text} (default: %(default)s)"


def _demo(args) -> int:
    from .demo import run_demo

    summary = run_demo(args.out, args.text, args.budget, clip_dir=args.vision_tower, seed=args.seed)
    print(f"weights: {summary['weights']}; {summary['num_tokens']} visual tokens; texts: "
          + " | ".join(repr(t) for t in summary["texts"]))
    _print_table(["budget", "similarity tokens (red)", "context tokens (blue)", "picture"],
                 [[row["budget"], row["similarity_tokens"], row["context_tokens"], row["picture"]] for row in summary["budgets"]])
    print(f"summary: {Path(args.out) / 'summary.json'}")
    return 0


DEMO_TEXTS = ["Can you segment the red car in this image?", "Can you segment the man on the right in this image?"]
DEMO_BUDGETS = [576, 192, 64]


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="prune the bundled sample image with a tiny random CLIP and draw the kept tokens")
    p.add_argument("--out", default="out/demo", help=_default("output folder, created if missing"))
    p.add_argument("--text", action="append", default=None,
                   help="text to prune against (repeatable; default: " + " and ".join(repr(t) for t in DEMO_TEXTS) + ")")
    p.add_argument("--budget", type=int, action="append", default=None,
                   help="token budget, one picture each (repeatable; default: " + " ".join(map(str, DEMO_BUDGETS)) + ")")
    p.add_argument("--vision-tower", default=None, help="a local CLIP folder (default: a tiny CLIP with random weights)")
    p.add_argument("--seed", type=int, default=0, help=_default("seed of the random CLIP weights"))
    p.set_defaults(func=_demo, defaults={"text": DEMO_TEXTS, "budget": DEMO_BUDGETS})


def _segment(args) -> int:
    from .segment_cli import run_segment

    return run_segment(args)


def _add_model_args(p, *, media: str, checkpoint_help: str, checkpoint_aliases: tuple[str, ...] = (), budget_help: str,
                    default_checkpoint: str | None = None, tiny_towers: str) -> None:
    p.add_argument("--checkpoint", *checkpoint_aliases, dest="checkpoint", required=default_checkpoint is None,
                   default=default_checkpoint, help=checkpoint_help)
    p.add_argument("--vision-tower", default=None,
                   help="CLIP ViT-L/14-336: a local folder or a Hugging Face Hub id (default: the one the checkpoint's "
                        f"config names, openai/clip-vit-large-patch14-336; {tiny_towers})")
    p.add_argument("--budget", "--num-retain-tokens", "--num_retain_tokens", dest="budget", type=int, default=None, help=budget_help)
    p.add_argument("--method", default=None,
                   help=f"pruning method: {', '.join(method_names(media))}; needs --budget, except 'none' (default: "
                        "litelvlm with --budget, none = all tokens without)")
    p.add_argument("--device", default="cpu", help=_default("cpu, cuda, cuda:N or mps"))
    p.add_argument("--dtype", default=None, help="fp32 | bf16 | fp16 (default: fp32 on CPU, bf16 on GPU)")


def _add_segment(sub) -> None:
    from .segment_cli import FORMATS

    p = sub.add_parser("segment", help="segment referring expressions in an image (or many) with GLaMM")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="the image file (JPEG, PNG, ...; 16-bit and grayscale are converted to 8-bit RGB)")
    source.add_argument("--images", metavar="FOLDER|LIST.json",
                        help="many images, one model load: a folder of images (each segmented with the --text expressions) "
                             'or a JSON list of {"image": path, "expressions": [...]} (paths relative to the list\'s '
                             "folder); one result folder per image in --out, and a rerun skips the finished ones")
    p.add_argument("--text", action="append", help="referring expression (repeatable; with --image or --images FOLDER)")
    _add_model_args(p, media="image", checkpoint_aliases=("--glamm",), default_checkpoint="MBZUAI/GLaMM-RefSeg",
                    checkpoint_help="GLaMM-RefSeg: a local folder, a Hugging Face Hub id resolved through the huggingface_hub "
                                    "cache, or 'tiny' (embedded, RANDOM weights: runs offline, the masks mean nothing) "
                                    "(default: %(default)s)",
                    tiny_towers="with --checkpoint tiny, its tiny CLIP",
                    budget_help="visual tokens kept per expression (default: all 576, no pruning)")
    p.add_argument("--format", default="png", choices=FORMATS,
                   help="masks as 0/255 PNG files, as COCO RLE ({'size': [h, w], 'counts': str}) in result.json, or both "
                        "(default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder, created if missing (masks, overlay.png, kept-token maps, "
                   "result.json; with --images one such folder per image)")
    p.set_defaults(func=_segment)


def _bench(args) -> int:
    from .bench import ImageBenchSettings, run_bench
    from .lvlm import default_dtype

    from .bench.video import split_methods
    from .pruning import method_from_spec

    scale = "quick" if args.quick else args.scale
    check_device(args.device)
    for spec in args.method or ():
        method_from_spec(spec)  # unknown names and bad options fail here, before any model is built
    budgets = [*(args.budget or ()), *(args.video_budget or ()), *(args.clip_budget or ())]
    if any(b < 1 for b in budgets):
        raise ValueError(f"budgets must be positive numbers of tokens, got {min(budgets)}")
    for option, values in (("--budget", args.budget), ("--video-budget", args.video_budget)):
        for budget in values or ():
            check_frame_budget(budget, option)
    image_methods, video_methods, notes = split_methods(args.method) if args.method else (("litelvlm",), None, [])
    if args.method and not image_methods:
        if args.no_video:
            raise ValueError(f"--method {' '.join(args.method)} runs only in the video section: drop --no-video")
        notes.append("note: none of the --method values runs on images: the image section is skipped")
    if args.method and not video_methods and not args.no_video:
        notes.append("note: none of the --method values runs in the video section: it measures per-frame litelvlm only")
    defaults = ImageBenchSettings()
    settings = ImageBenchSettings(
        scale=scale, device=args.device, dtype=torch_dtype(args.dtype) or default_dtype(args.device),
        budgets=tuple(args.budget or defaults.budgets), methods=image_methods,
        video_methods=defaults.video_methods if video_methods is None else video_methods,
        video_budgets=tuple(args.video_budget or defaults.video_budgets), clip_budgets=tuple(args.clip_budget or ()),
        expressions=args.expressions, repeats=args.repeats, warmup=args.warmup, seed=args.seed, video_masks=args.video_masks,
    )
    if args.clip_budget and not any(method_from_spec(m).stage == "clip" for m in settings.video_methods):
        raise ValueError("--clip-budget needs a clip-level --method in the video section (e.g. litelvlm-time)")
    _set_sam2_options(args, settings)
    settings.multi_expression = _multi_expression(args)
    for note in notes:
        print(note)
    run_bench(settings, video=not args.no_video, out_dir=args.out, json_path=args.json)
    return 0


def _set_sam2_options(args, settings) -> None:
    """``--memory-budget`` and ``--sam2-long-clip`` into the bench settings, checked before any work."""
    from .bench.video import SAM2_MEMORY_TOKENS

    if (args.memory_budget or args.sam2_long_clip is not None) and (not args.video_masks or args.no_video):
        raise ValueError(f"{'--memory-budget' if args.memory_budget else '--sam2-long-clip'} sets SAM2 rows of --video-masks: "
                         "add --video-masks")
    if args.sam2_long_clip is not None:
        if args.sam2_long_clip < 0:
            raise ValueError(f"--sam2-long-clip must be a number of frames (0: no long-clip row), got {args.sam2_long_clip}")
        settings.sam2_long_frames = args.sam2_long_clip or None
    if args.memory_budget:
        largest = max(b or 0 for b in args.memory_budget)
        if largest > SAM2_MEMORY_TOKENS:
            raise ValueError(f"--memory-budget goes up to {SAM2_MEMORY_TOKENS} (every SAM2 memory token of a frame: 'all'), "
                             f"got {largest}")
        settings.memory_budgets = tuple(dict.fromkeys([None, *args.memory_budget]))  # all: the reference of the agreement


def _multi_expression(args) -> tuple[int, ...]:
    """``--multi-expression`` checked before any work: expression counts of the multi-expression section."""
    if not args.multi_expression:
        return ()
    if args.no_video:
        raise ValueError("--multi-expression runs VideoGLaMM on a clip: drop --no-video")
    from video.bench_prefix import PREFIX_METHODS, prefix_cases

    prefix_cases(PREFIX_METHODS, args.multi_expression)  # counts outside 1..16 fail here
    return tuple(sorted(set(args.multi_expression)))


def _memory_budget(value: str) -> int | None:
    """``--memory-budget``: 'all' (None) or a positive number of tokens."""
    if value == "all":
        return None
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of tokens or 'all', got {value!r}")
    return int(value)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency, activation memory and FLOPs per stage and budget (random weights)")
    p.add_argument("--scale", default="default", choices=["quick", "default", "full"],
                   help=_default("full = real shapes (GPU); default = every component shrunk by the same factors; quick = smaller"))
    p.add_argument("--quick", action="store_true", help="same as --scale quick (well under a minute on a CPU)")
    p.add_argument("--device", default="cpu", help=_default("cpu, cuda, cuda:N or mps"))
    p.add_argument("--dtype", default=None, help="fp32 | bf16 | fp16 (default: fp32 on CPU, bf16 on GPU)")
    p.add_argument("--budget", type=int, action="append", help="token budget (repeatable; default: 576 192 128 64)")
    p.add_argument("--method", action="append",
                   help="pruning method, or name:key=value,... with options (e.g. litelvlm-time:reuse_threshold=2); "
                        "repeatable; default: litelvlm for images, litelvlm and litelvlm-time for video. Clip-level methods "
                        "run only in the video section, where per-frame litelvlm always runs as the reference of the ratios; "
                        "NAME:released=True runs a video baseline at its paper's setting (its own table)")
    p.add_argument("--video-budget", type=int, action="append",
                   help="video: CLIP tokens kept per frame (repeatable; default: 576 196 81; 576 = the unpruned model)")
    p.add_argument("--clip-budget", type=int, action="append",
                   help="video: the equal-token table: every method at this total of LLM visual tokens per clip (clip-level "
                        "ones through their clip budget, per-frame ones through their CLIP budget; repeatable; default: none)")
    p.add_argument("--expressions", type=int, default=7, help=_default("expressions per image (RefCOCO-like workload)"))
    p.add_argument("--repeats", type=int, default=3, help=_default("timed runs per setting (median reported)"))
    p.add_argument("--warmup", type=int, default=1, help=_default("untimed runs before the timed ones"))
    p.add_argument("--seed", type=int, default=0, help=_default("seed of the random weights and inputs"))
    p.add_argument("--no-video", action="store_true", help="skip the video section")
    p.add_argument("--video-masks", action="store_true",
                   help="also profile SAM2 mask propagation per stage, objects, clip length and memory budget (each "
                        "propagation is minutes of CPU time at 1024 px, at every scale; docs/benchmarks.md lists the cost)")
    p.add_argument("--memory-budget", type=_memory_budget, nargs="+", action="extend", metavar="N|all",
                   help="with --video-masks: SAM2 spatial memory tokens kept per memory frame, 'all' = every one (default: "
                        "all 1024 512 256; 'all' always runs as the reference)")
    p.add_argument("--sam2-long-clip", type=int, default=None, metavar="FRAMES",
                   help="with --video-masks: frames of the long-clip SAM2 row (default: 64, Ref-DAVIS17's clips; 0: none)")
    p.add_argument("--multi-expression", type=int, nargs="+", metavar="E",
                   help="video: also time one clip with E expressions (1 to 16; e.g. 1 4 16): the unpruned model and the "
                        "query-agnostic methods sharing one prefill of the visual prefix, against the query-dependent ones "
                        "per expression (litelvlm, prunevid, holitom's in-LLM merge); LLM time in total and per expression "
                        "(default: off, as it costs more than the rest of --quick: 21 calls of up to 16 expressions per "
                        "round, 2.5 to 3.4 min of CPU time at --quick for 1 4 16)")
    p.add_argument("--json", default=None, help="write the results as JSON here (default: not written)")
    p.add_argument("--out", default=None, help="folder for report.md, bench.png and bench.json (default: none written)")
    p.set_defaults(func=_bench)


def _precision(args) -> int:
    from .bench.precision_cli import run_precision

    return run_precision(args)


def _add_precision(sub) -> None:
    p = sub.add_parser("precision", help="how many kept tokens change between fp32, bf16-eager (released) and bf16-SDPA CLIP")
    p.add_argument("--vision-tower", default=None, help="a local CLIP folder (default: the tiny random CLIP, or --scale)")
    p.add_argument("--scale", default="tiny", choices=["tiny", "quick", "default", "full"],
                   help="random CLIP towers when no --vision-tower: the tiny test CLIP or GLaMM's CLIP at a bench scale "
                        "(default: %(default)s)")
    p.add_argument("--image", action="append", default=None, help="image file (repeatable; default: the bundled sample scene "
                   "and 7 crops/flips of it)")
    p.add_argument("--text", action="append", default=None, help="text scored jointly, as the released image-scope pruning "
                   "(repeatable; default: 3 GLaMM questions)")
    p.add_argument("--budget", type=int, action="append", default=None, help="token budget (repeatable; default: 64 192)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random towers (default: %(default)s)")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file (default: not written)")
    p.set_defaults(func=_precision)


def _serve(args) -> int:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise ValueError("litelvlm serve needs Gradio: pip install 'litelvlm[demo]' (or pip install gradio)")
    from .serve import DemoModels, serve

    video = None if args.video_checkpoint == "none" else args.video_checkpoint
    models = DemoModels(args.checkpoint, video, args.vision_tower, args.video_tower, check_device(args.device))
    print(f"litelvlm demo on http://{args.host}:{args.port} (image model: {models.weights('image')}); Ctrl-C stops it", flush=True)
    serve(models, args.host, args.port)
    return 0


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="web demo (Gradio): upload an image or a short video, see masks, kept tokens and timings")
    p.add_argument("--checkpoint", default="tiny", help="GLaMM: 'tiny' (embedded, random weights), a folder or a Hub id such as "
                   "MBZUAI/GLaMM-RefSeg (default: %(default)s)")
    p.add_argument("--video-checkpoint", default="tiny", help="VideoGLaMM: 'tiny', a folder, or 'none' for an image-only page "
                   "(default: %(default)s)")
    p.add_argument("--vision-tower", default=None, help="CLIP folder or Hub id (default: the one the checkpoint names)")
    p.add_argument("--video-tower", default=None, help="InternVideo2 .pt: a file or owner/name/file.pt (default: the copy in the checkpoint)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default: %(default)s)")
    p.set_defaults(func=_serve)


def _segment_video(args) -> int:
    from video.cli import run_segment_video

    return run_segment_video(args)


def _add_segment_video(sub) -> None:
    p = sub.add_parser("segment-video", help="segment referring expressions in a video with VideoGLaMM")
    p.add_argument("--video", required=True, help="a video file (mp4, or anything ffmpeg decodes) or a folder of JPEG/PNG frames")
    p.add_argument("--text", action="append", required=True, help="referring expression (repeatable)")
    _add_model_args(p, media="video",
                    checkpoint_help="VideoGLaMM checkpoint: a local folder (its weights are not on the Hub), a Hugging Face "
                                    "Hub id, or 'tiny' (embedded, RANDOM weights: runs offline, the masks mean nothing)",
                    tiny_towers="with --checkpoint tiny, its tiny CLIP",
                    budget_help="CLIP tokens kept per sampled frame (default: all 576, no pruning)")
    p.add_argument("--video-tower", default=None,
                   help="InternVideo2-Stage2 .pt: a local file or owner/name/file.pt on the Hub, e.g. "
                        "OpenGVLab/InternVideo2-Stage2_1B-224p-f4/InternVideo2-stage2_1b-224p-f4.pt (default: the copy "
                        "inside the checkpoint; with --checkpoint tiny, its tiny InternVideo2)")
    p.add_argument("--preset", "--config", dest="preset", default="default",
                   help="settings: 'default' (litelvlm's), 'released' (the released protocol) or a preset YAML path "
                        "(video/presets/*.yaml; default: %(default)s)")
    p.add_argument("--layout", default=None, choices=["cells", "regrid", "unpooled"],
                   help="how kept tokens reach the LLM (default: the preset's)")
    p.add_argument("--answer", default=None,
                   help="teacher-force this answer instead of generating, e.g. 'Sure, [SEG].' (default: the preset's; generate)")
    p.add_argument("--mask-mode", default=None, choices=["propagate", "framewise"],
                   help="SAM2: propagate the first frame's mask through the clip, or decode every frame (default: the preset's)")
    p.add_argument("--memory-budget", type=int, default=None, metavar="N",
                   help="SAM2 spatial memory tokens kept per memory frame and object, 1 to 4096 at 1024 px (default: the "
                        "preset's; all, as released)")
    p.add_argument("--memory-selector", default=None, metavar="NAME",
                   help="which memory tokens --memory-budget keeps: mask (the object's mask and its surroundings) or grid "
                        "(default: the preset's; mask)")
    p.add_argument("--clip-budget", type=int, default=None, metavar="N",
                   help="total LLM visual tokens per clip, both streams together, for a clip-level --method such as "
                        "litelvlm-time (default: none; --budget then optional)")
    p.add_argument("--kept-pictures", action="store_true",
                   help="also write, per expression and clip, a picture of the tokens every sampled frame sends to the LLM "
                        "(CLIP and video streams; reused tokens marked): <expression folder>/kept_tokens*.png")
    p.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, metavar="N",
                   help="refuse a video of more than N frames, counted from its container before decoding: every frame is "
                        "held in memory, width x height x 3 bytes each (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder, created if missing (mask PNGs per expression, overlay.mp4, "
                   "result.json)")
    p.set_defaults(func=_segment_video)


def _sweep(args) -> int:
    from eval.sweep.cli import run

    return run(args)


def _add_sweep(sub) -> None:
    from eval.sweep.cli import add_arguments  # argparse and run_options only: no model code

    p = sub.add_parser("sweep", help="compare pruning methods: every --method at every --budget on one benchmark, one model "
                                     "load, resumable; leaderboard.md/json and pareto.png")
    add_arguments(p)
    p.set_defaults(func=_sweep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="litelvlm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="run `litelvlm COMMAND --help` for its options")
    _add_demo(sub)
    _add_segment(sub)
    _add_segment_video(sub)
    _add_bench(sub)
    _add_precision(sub)
    _add_serve(sub)
    _add_sweep(sub)
    return parser


def _one_line(err: BaseException) -> str:
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in getattr(args, "defaults", {}).items():
        if getattr(args, key) is None:
            setattr(args, key, list(value))
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"litelvlm {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

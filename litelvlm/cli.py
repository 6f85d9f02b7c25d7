"""The ``litelvlm`` command line: one sub-command per job, each a thin wrapper over the library."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def _demo(args) -> int:
    from .demo import run_demo

    summary = run_demo(args.out, args.text, args.budget, clip_dir=args.vision_tower, seed=args.seed)
    print(f"weights: {summary['weights']}; {summary['num_tokens']} tokens; texts: {summary['texts']}")
    for row in summary["budgets"]:
        print(f"  budget {row['budget']:>3}: {row['similarity_tokens']} similarity + {row['context_tokens']} context -> {row['picture']}")
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="prune the bundled sample image with a tiny random CLIP and draw the kept tokens")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--text", action="append", default=None, help="text(s) to prune against (repeatable)")
    p.add_argument("--budget", type=int, action="append", default=None, help="token budget(s) (repeatable)")
    p.add_argument("--vision-tower", default=None, help="a local CLIP directory instead of the tiny random one")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo, defaults={
        "text": ["Can you segment the red car in this image?", "Can you segment the man on the right in this image?"],
        "budget": [576, 192, 64],
    })


def _dtype(name: str | None):
    import torch

    if name is None:
        return None
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"unknown dtype {name!r}: choose fp32, bf16 or fp16")
    return table[name]


def _segment(args) -> int:
    from .segment_cli import segment_image_to_folder

    report = segment_image_to_folder(
        args.image, args.text, budget=args.budget, glamm_dir=args.glamm, vision_tower=args.vision_tower, out_dir=args.out,
        method=args.method, device=args.device, dtype=_dtype(args.dtype),
    )
    for row in report["expressions"]:
        print(f"{row['text']!r}: {row['mask_pixels']} mask pixels -> {row['mask']}")
    print(f"{report['num_visual_tokens']} visual tokens per expression; {report['timings']['total'] * 1000:.0f} ms; overlay: {report['overlay']}")
    return 0


def _add_model_args(p, *, checkpoint_flag: str, checkpoint_help: str) -> None:
    p.add_argument(checkpoint_flag, required=True, help=checkpoint_help)
    p.add_argument("--vision-tower", default=None, help="local CLIP ViT-L/14-336 folder (default: the path in the checkpoint config)")
    p.add_argument("--method", default="litelvlm", help="pruning method (see litelvlm.pruning.available_methods())")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="fp32 | bf16 | fp16 (default: fp32 on CPU, bf16 on GPU)")


def _add_segment(sub) -> None:
    p = sub.add_parser("segment", help="segment referring expressions in an image with GLaMM")
    p.add_argument("--image", required=True)
    p.add_argument("--text", action="append", required=True, help="referring expression (repeatable)")
    p.add_argument("--budget", type=int, default=None, help="visual tokens per expression (default: all 576)")
    _add_model_args(p, checkpoint_flag="--glamm", checkpoint_help="local GLaMM-RefSeg checkpoint folder")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_segment)


def _bench(args) -> int:
    from .bench import ImageBenchSettings, run_bench
    from .lvlm import default_dtype

    scale = "quick" if args.quick else args.scale
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but no CUDA device is available")
    settings = ImageBenchSettings(
        scale=scale, device=args.device, dtype=_dtype(args.dtype) or default_dtype(args.device),
        budgets=tuple(args.budget or (576, 192, 128, 64)), methods=tuple(args.method or ("litelvlm",)),
        expressions=args.expressions, repeats=args.repeats, warmup=args.warmup, seed=args.seed, video_masks=args.video_masks,
    )
    run_bench(settings, video=not args.no_video, out_dir=args.out, json_path=args.json)
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency, activation memory and FLOPs per stage and budget (random weights)")
    p.add_argument("--scale", default="default", choices=["quick", "default", "full"],
                   help="full = real shapes (GPU); default = every component shrunk by the same factors; quick = smaller")
    p.add_argument("--quick", action="store_true", help="same as --scale quick (well under a minute on a CPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="fp32 | bf16 | fp16 (default: fp32 on CPU, bf16 on GPU)")
    p.add_argument("--budget", type=int, action="append", help="token budget (repeatable; default 576 192 128 64)")
    p.add_argument("--method", action="append", help="pruning method (repeatable; default litelvlm)")
    p.add_argument("--expressions", type=int, default=7, help="expressions per image (RefCOCO-like workload)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-video", action="store_true", help="skip the video section")
    p.add_argument("--video-masks", action="store_true",
                   help="also time SAM2 mask propagation over the 16 frames once (budget-independent; minutes on a CPU)")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--out", default=None, help="folder for report.md, bench.png and bench.json")
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
    p.add_argument("--seed", type=int, default=0, help="seed of the random towers (default: 0)")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    p.set_defaults(func=_precision)


def _segment_video(args) -> int:
    from video.cli import segment_video_to_folder

    from dataclasses import asdict

    from video.preset import load_preset

    preset = load_preset(args.preset)
    options = asdict(preset.segmenter)
    options.update({k: v for k, v in (("layout", args.layout), ("answer", args.answer), ("mask_mode", args.mask_mode)) if v is not None})
    dtype = _dtype(args.dtype) if args.dtype else preset.dtype(args.device)
    report = segment_video_to_folder(
        args.video, args.text, budget=args.budget, checkpoint=args.checkpoint, vision_tower=args.vision_tower,
        video_tower=args.video_tower, out_dir=args.out, method=args.method, device=args.device, dtype=dtype,
        attn_implementation=preset.attn_implementation(), clip_attn_implementation=preset.clip_attn_implementation(), **options,
    )
    for row in report["expressions"]:
        status = "masks" if row["has_seg"] else "no [SEG] emitted: empty masks"
        print(f"{row['text']!r}: {status} -> {row['masks']}")
    print(f"{report['visual_tokens_per_frame']:.1f} LLM visual tokens per frame; overlay: {report['overlay']}")
    return 0


def _add_segment_video(sub) -> None:
    p = sub.add_parser("segment-video", help="segment referring expressions in a video with VideoGLaMM")
    p.add_argument("--video", required=True, help="an mp4 file or a folder of JPEG frames")
    p.add_argument("--text", action="append", required=True, help="referring expression (repeatable)")
    p.add_argument("--budget", type=int, default=None, help="CLIP tokens kept per frame (default: all 576)")
    _add_model_args(p, checkpoint_flag="--checkpoint", checkpoint_help="local VideoGLaMM checkpoint folder")
    p.add_argument("--video-tower", default=None, help="InternVideo2-Stage2 .pt (default: the copy inside the checkpoint)")
    p.add_argument("--preset", "--config", dest="preset", default="default",
                   help="settings: 'default' (litelvlm's), 'released' (the released protocol) or a preset YAML path "
                        "(video/presets/*.yaml; default: %(default)s)")
    p.add_argument("--layout", default=None, choices=["cells", "regrid", "unpooled"], help="how kept tokens reach the LLM")
    p.add_argument("--answer", default=None, help="teacher-force this answer instead of generating (e.g. 'Sure, [SEG].')")
    p.add_argument("--mask-mode", default=None, choices=["propagate", "framewise"])
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_segment_video)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="litelvlm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo(sub)
    _add_segment(sub)
    _add_segment_video(sub)
    _add_bench(sub)
    _add_precision(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in getattr(args, "defaults", {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"litelvlm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

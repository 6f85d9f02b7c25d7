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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="litelvlm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo(sub)
    _add_segment(sub)
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

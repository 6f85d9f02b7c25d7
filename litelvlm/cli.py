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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="litelvlm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo(sub)
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

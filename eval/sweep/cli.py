"""``litelvlm sweep``: the options, the checks in order (cheap ones first, all before the model loads), the runs and
the leaderboard. Only ``argparse`` and ``litelvlm.run_options`` are imported with this module, so ``litelvlm``'s
parser stays light."""

from __future__ import annotations

import argparse
from pathlib import Path

from litelvlm.run_options import check_device_name, method_names

__all__ = ["add_arguments", "run"]

# What a sweep writes in --out: the harnesses' records, the run logs, the synthetic data, the leaderboard and picture.
OUTPUTS = ("runs", "logs", "data", "leaderboard.md", "leaderboard.json", "pareto.png")

DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The sweep's options on the sub-command's parser ``p``."""
    p.add_argument("--benchmark", required=True,
                   help="a RefCOCO-family split 'dataset|split' (e.g. 'refcoco|val', read from --dataset-dir as "
                        "python -m eval.refseg does), an RVOS benchmark davis, mevis or ytvos (python -m eval.rvos), or "
                        "an offline one: synthetic (a tiny refcoco|val) or synthetic-video (a tiny Ref-DAVIS17), written "
                        "under --out")
    p.add_argument("--method", action="append", required=True,
                   help=f"pruning method (repeatable): images: {', '.join(method_names('image'))}; video: "
                        f"{', '.join(method_names('video'))}; 'none' runs once with all 576 tokens")
    p.add_argument("--budget", "--num-retain-tokens", "--num_retain_tokens", dest="budget", type=int, action="append",
                   help="visual tokens kept per image or frame (repeatable; each method runs at each budget)")
    p.add_argument("--out", required=True,
                   help="output folder, created if missing: leaderboard.md, leaderboard.json, pareto.png, runs/ (the "
                        "harnesses' records: a rerun skips finished runs), logs/ (one per run)")
    p.add_argument("--checkpoint", required=True,
                   help="GLaMM (images) or VideoGLaMM (video): a local folder, a Hugging Face Hub id, or 'tiny' "
                        "(embedded, RANDOM weights: runs offline, the scores mean nothing)")
    p.add_argument("--vision-tower", default=None,
                   help="CLIP ViT-L/14-336: a folder or Hub id (default: openai/clip-vit-large-patch14-336; with "
                        "--checkpoint tiny, its tiny CLIP)")
    p.add_argument("--video-tower", default=None,
                   help="video: InternVideo2 .pt, a file or owner/name/file.pt (default: the copy in the checkpoint; "
                        "with --checkpoint tiny, its tiny InternVideo2)")
    p.add_argument("--dataset-dir", "--dataset_dir", dest="dataset_dir", default=None,
                   help="the benchmark's data folder, as the harnesses read it (default: ./data; not for synthetic)")
    p.add_argument("--split", default=None, help="video: split folder (default: the benchmark's, e.g. valid)")
    p.add_argument("--protocol", default=None,
                   help="images: all (every sentence) or glamm (the released procedure) (default: all)")
    p.add_argument("--preset", default=None,
                   help="video: VideoGLaMM settings, released, default or a YAML path (default: released; default on "
                        "synthetic-video)")
    p.add_argument("--device", default="auto", help="'auto' (cuda if available, else cpu) or a device (default: %(default)s)")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="model dtype (default: %(default)s, as the harnesses)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images or videos (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the harnesses' draws (default: %(default)s)")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None,
                   help="the times' clock: cpu (process CPU time, torch on one thread, as litelvlm bench: a busy machine "
                        "barely changes it) or wall (CUDA synchronised) (default: cpu on a CPU, wall on CUDA); an --out "
                        "holding runs of the other clock is refused")


def _plan(args):
    from .plan import SweepPlan, parse_benchmark

    if args.device != "auto":
        check_device_name(args.device)  # the spelling; whether this machine has it is the harness config's check
    return SweepPlan(parse_benchmark(args.benchmark), tuple(args.method or ()), tuple(args.budget or ()),
                     Path(args.out), args.checkpoint, vision_tower=args.vision_tower, video_tower=args.video_tower,
                     dataset_dir=args.dataset_dir, split=args.split, protocol=args.protocol, preset=args.preset,
                     device=args.device, dtype=args.dtype, limit=args.limit, seed=args.seed, clock=args.clock)


def _header(plan, configs: list, loads: int, timing: str) -> dict:
    from eval.common.model import resolve_device

    family = "GLaMM" if plan.benchmark.media == "image" else "VideoGLaMM"
    model = f"{family} tiny" if plan.random_weights else f"{family} {Path(plan.checkpoint).name or plan.checkpoint}"
    data = plan.benchmark.data if plan.benchmark.media == "image" else f"{plan.benchmark.data} {configs[0].split_name}"
    data = f"synthetic {data}" if plan.benchmark.synthetic else data
    if plan.limit:
        data += f" (first {plan.limit} {'images' if plan.benchmark.media == 'image' else 'videos'})"
    return {"benchmark": plan.benchmark.name, "media": plan.benchmark.media, "model": model, "checkpoint": plan.checkpoint,
            "data": data, "random_weights": plan.random_weights, "device": resolve_device(plan.device),
            "model_loads": loads, "clock": plan.clock, "timing": timing}


def _sweep(plan) -> int:
    from litelvlm.outputs import output_dir
    from litelvlm.pipeline import TINY_WEIGHTS
    from litelvlm.table import print_table

    from eval.common.model import resolve_device

    from eval.common.writer import check_no_links

    from .checks import check_runs
    from .clock import clock_setup
    from .leaderboard import leaderboard_rows, write_leaderboard
    from .pareto import write_pareto
    from .runner import run_sweep
    from .synthetic import write_synthetic_data

    device = resolve_device(plan.device)
    plan = plan.with_clock(device)
    with output_dir(plan.out, "--out") as out:
        check_no_links(out, OUTPUTS)  # a link planted in --out is refused before any work, never written through
        if plan.random_weights:
            print(f"--checkpoint tiny: {TINY_WEIGHTS}", flush=True)
        resolved = plan.with_checkpoint_paths()
        if plan.benchmark.synthetic:
            write_synthetic_data(plan.benchmark.name, plan.data_dir)
        configs = check_runs(resolved)
        with clock_setup(plan.clock, device) as timing:
            results, factory = run_sweep(configs, plan.benchmark.media, out / "logs")
        header = _header(plan, configs, factory.loads, timing)
        rows = leaderboard_rows(results, plan.benchmark.media)
        paths = write_leaderboard(rows, header, out) + [write_pareto(rows, header, out)]
    print_table([{k: r[k] for k in ("method", "budget", "visual_tokens", *_scores(header), "prefill_ms", "e2e_ms", "gflops")}
                 for r in rows], float_digits=2, title=f"{header['model']} on {header['data']} (ms: {header['timing']})")
    print(f"model loaded {factory.loads} time(s) for {len(rows)} runs ({len(rows) - _finished_now(results)} finished before)")
    print("written: " + ", ".join(str(p) for p in paths))
    return 1 if any(r.error for r in results) else 0


def _scores(header: dict) -> tuple[str, ...]:
    from .leaderboard import ACCURACY

    return ACCURACY[header["media"]]


def _finished_now(results: list) -> int:
    """Runs that segmented something in this invocation."""
    fields = ("images_segmented_this_run", "videos_segmented_this_run")
    return sum(1 for r in results if r.entry and any(r.entry.get(f) for f in fields))


def run(args: argparse.Namespace) -> int:
    """The sub-command: 0 done, 1 some run failed (reported; a rerun retries it); bad input raises ValueError /
    FileNotFoundError (one line, before the model loads)."""
    from eval.common.cli import BAD_INPUT_ERRORS
    from eval.common.writer import ResultsWriteError

    plan = _plan(args)
    try:
        return _sweep(plan)
    except BAD_INPUT_ERRORS + (ResultsWriteError,) as err:
        if isinstance(err, (ValueError, FileNotFoundError)):
            raise
        raise ValueError(err.args[0] if isinstance(err, KeyError) and err.args else str(err)) from None

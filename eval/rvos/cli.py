"""``python -m eval.rvos``: Ref-DAVIS17 / Ref-YouTube-VOS / MeViS evaluation of VideoGLaMM with token pruning.

Runs the video model (``--version``, ``--vision-tower``, ``--video-tower``) or scores a saved predictions folder
(``--predictions PRED_DIR/<video>/<exp_id>/<frame>.png``). Splits without public GT (Ref-YouTube-VOS valid, MeViS
valid) get the upload zip. Launch several processes with torchrun or the deepspeed launcher. Exit status: 0 done,
1 some expressions failed (reported, recorded with tracebacks; --resume retries them), 2 bad input.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Sequence

from eval.common.cli import run_harness_cli
from eval.common.stats import load_stats
from eval.common.table import print_table
from litelvlm.pipeline import TINY_WEIGHTS, checkpoint_paths, is_tiny
from litelvlm.run_options import method_names

from .config import BENCHMARKS, DEFAULT_SPLITS, DEFAULT_VISION_TOWER, DTYPES, FULL_TOKENS, RVOSConfig
from .report import SampleFailuresError
from .runner import SegmenterFactory, run_rvos

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m eval.rvos",
                                description="Referring video object segmentation (J, F, J&F) of VideoGLaMM with "
                                            "visual-token pruning, or scoring of saved predictions.")
    p.add_argument("--benchmark", choices=sorted(BENCHMARKS), help="davis (Ref-DAVIS17), ytvos (Ref-YouTube-VOS) "
                   "or mevis (default: none, required)")
    p.add_argument("--dataset_dir", "--dataset-dir", dest="dataset_dir", default="./data",
                   help="the benchmark's root folder (layouts in eval/rvos/datasets.py; default: %(default)s)")
    p.add_argument("--split", help=f"split folder (default: the benchmark's, {DEFAULT_SPLITS})")
    p.add_argument("--results_path", "--results-path", dest="results_path", default="runs/rvos",
                   help="results folder: stats.json, records/, predictions/, submissions/; created if missing, must be "
                        "writable; one run of a run id at a time (default: %(default)s)")
    p.add_argument("--version", help="VideoGLaMM checkpoint: a local folder, a Hugging Face Hub id, or 'tiny' (embedded, "
                                     "RANDOM weights: the harness runs offline, the scores mean nothing) (default: none; "
                                     "required unless --predictions is given)")
    p.add_argument("--vision-tower", "--vision_tower", dest="vision_tower", default=None,
                   help="CLIP ViT-L/14-336: a local folder or a Hugging Face Hub id (default: "
                        f"{DEFAULT_VISION_TOWER}; with --version tiny, its tiny CLIP)")
    p.add_argument("--video-tower", "--video_tower", dest="video_tower",
                   help="InternVideo2-Stage2 1B .pt: a local file or owner/name/file.pt on the Hub (default: the copy "
                        "inside the VideoGLaMM checkpoint; with --version tiny, its tiny InternVideo2)")
    p.add_argument("--num_retain_tokens", "--num-retain-tokens", dest="budget", type=int, default=FULL_TOKENS,
                   metavar="N", help="CLIP tokens kept per frame (default: %(default)s = all, no pruning)")
    p.add_argument("--clip-budget", "--clip_budget", dest="clip_budget", type=int, default=None, metavar="N",
                   help="total LLM visual tokens per clip, both streams together, for clip-level methods such as "
                        "litelvlm-time (default: none, the per-frame budget decides)")
    p.add_argument("--memory-budget", "--memory_budget", dest="memory_budget", type=int, default=None, metavar="N",
                   help="SAM2 spatial memory tokens kept per memory frame and object, 1 to 4096 at 1024 px; in the run id "
                        "(default: the preset's; all, as released)")
    p.add_argument("--memory-selector", "--memory_selector", dest="memory_selector", default=None, metavar="NAME",
                   help="which memory tokens --memory-budget keeps: mask (the object's mask and its surroundings) or grid "
                        "(default: the preset's; mask)")
    p.add_argument("--method", default="litelvlm",
                   help=f"token-pruning method: {', '.join(method_names('video'))} (default: %(default)s)")
    p.add_argument("--preset", default="released",
                   help="VideoGLaMM settings: 'released' (the released protocol per benchmark: whole videos for mevis/ytvos, "
                        "64-frame clips for davis, object 0, 512 sampled new tokens, fp16 eager on GPU), 'default' "
                        "(litelvlm's own, see README) or a YAML path (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random generators, per video (default: %(default)s)")
    p.add_argument("--limit", type=int, help="evaluate only the first N videos, dataset order (default: all videos)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run from its records; retries failed ones (default: %(default)s: existing "
                        "records are an error)")
    p.add_argument("--device", default="auto",
                   help="'auto' (cuda:LOCAL_RANK if available, else cpu) or a device (default: %(default)s)")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="model dtype (auto: the preset's dtype and autocast, e.g. released: fp16 weights under fp16 "
                        "autocast on GPU; an explicit dtype runs without autocast) (default: %(default)s)")
    p.add_argument("--predictions", metavar="PRED_DIR",
                   help="score PRED_DIR/<video>/<exp_id>/<frame>.png (nonzero = object) instead of running a model "
                        "(default: none, run the model)")
    p.add_argument("--allow-missing", "--allow_missing", dest="allow_missing", action="store_true",
                   help="score despite missing videos / expressions / frames (failed ones included), by the "
                        "official scorers' rules: mevis: each expression with a missing video, expression folder or "
                        "frame gets J = F = 0 (eval_mevis.py does so for a missing video and crashes on the others); "
                        "davis: a missing expression or frame is an empty proposal, but a video without any "
                        "prediction is still an error (the DAVIS scorer stops on missing sequences); splits without "
                        "GT (ytvos, mevis valid): missing frames go into the upload zip as empty masks "
                        "(default: %(default)s: missing predictions are an error)")
    p.add_argument("--davis-annotations", "--davis_annotations", dest="davis_annotations",
                   help="DAVIS-2017 Annotations_unsupervised folder (default: DATASET_DIR/valid/Annotations)")
    p.add_argument("--segmenter-factory", "--segmenter_factory", dest="segmenter_factory",
                   help="'module:callable' called with the run config to build the segmenter (default: none, "
                        "VideoGLaMM)")
    p.add_argument("--dist-backend", "--dist_backend", dest="dist_backend", choices=["nccl", "gloo"],
                   help="torch.distributed backend when launched with WORLD_SIZE > 1 (default: nccl if CUDA, else "
                        "gloo)")
    p.add_argument("--show-stats", "--show_stats", dest="show_stats", action="store_true",
                   help="print the results folder's stats.json as a table and exit (default: %(default)s)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return p


def config_from_args(args: argparse.Namespace) -> RVOSConfig:
    """A validated ``RVOSConfig`` from parsed arguments; ``--version tiny``: the embedded tiny checkpoint's paths."""
    if args.benchmark is None:
        raise ValueError(f"--benchmark is required: one of {sorted(BENCHMARKS)}")
    config = RVOSConfig(
        benchmark=args.benchmark, dataset_dir=args.dataset_dir, split=args.split, results_path=args.results_path,
        checkpoint=args.version, vision_tower=args.vision_tower or DEFAULT_VISION_TOWER, video_tower=args.video_tower,
        budget=args.budget,
        method=args.method, seed=args.seed, limit=args.limit, resume=args.resume, device=args.device,
        dtype=args.dtype, predictions=args.predictions, allow_missing=args.allow_missing,
        davis_annotations=args.davis_annotations, segmenter_factory=args.segmenter_factory,
        dist_backend=args.dist_backend, preset=args.preset, clip_budget=args.clip_budget,
        memory_budget=args.memory_budget, memory_selector=args.memory_selector)
    if config.predictions is not None or not is_tiny(config.checkpoint):
        return config
    paths = checkpoint_paths("videoglamm", config.checkpoint, args.vision_tower, args.video_tower)  # after the checks above
    print(f"--version tiny: {TINY_WEIGHTS}", flush=True)
    return replace(config, checkpoint=str(paths["checkpoint"]), vision_tower=str(paths["vision_tower"]),
                   video_tower=str(paths["video_tower"]))


def _percent(value) -> float | None:
    return None if value is None else 100 * float(value)


def show_stats(results_path: str) -> None:
    """Print every entry of ``<results_path>/stats.json`` as one table row."""
    entries = load_stats(results_path)
    if not entries:
        raise FileNotFoundError(f"no stats.json entries in {results_path}")
    rows = [{"benchmark": e.get("benchmark"), "split": e.get("split"), "method": e.get("method"),
             "budget": e.get("budget"), "expressions": e.get("n_expressions"), "J %": _percent(e.get("J")),
             "F %": _percent(e.get("F")), "J&F %": _percent(e.get("J&F")), "failed": e.get("n_failed"),
             "timestamp": e.get("timestamp")} for e in entries]
    print_table(rows, float_digits=2, title=f"{results_path}/stats.json")


def main(argv: Sequence[str] | None = None, segmenter_factory: SegmenterFactory | None = None) -> int:
    """Run the CLI; returns the exit status (1 when expressions failed, 2 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    return run_harness_cli(args.show_stats, lambda: show_stats(args.results_path),
                           lambda: run_rvos(config_from_args(args), segmenter_factory=segmenter_factory),
                           failure_errors=(SampleFailuresError,))

"""``python -m eval.refseg``: RefCOCO / RefCOCO+ / RefCOCOg cIoU / gIoU evaluation.

Accepts the released LiteLVLM/GLaMM script's arguments (--version, --vision-tower, --dataset_dir,
--refer_seg_data, --results_path, --num_retain_tokens; --pretrained and --local_rank are accepted and
ignored) plus this harness's own. Launch several processes with torchrun or the deepspeed launcher.
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

from .config import ATTN_IMPLEMENTATIONS, DEFAULT_VISION_TOWER, DTYPES, RefSegConfig
from .protocols import PROTOCOLS
from .runner import SegmenterFactory, run_refseg

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="python -m eval.refseg",
                                description="RefCOCO / RefCOCO+ / RefCOCOg referring segmentation (cIoU, gIoU) "
                                            "of GLaMM with visual-token pruning.")
    p.add_argument("--version", help="GLaMM checkpoint: a local folder (e.g. checkpoints/GLaMM-RefSeg), a Hugging Face Hub "
                                     "id (MBZUAI/GLaMM-RefSeg), or 'tiny' (embedded, RANDOM weights: the harness runs "
                                     "offline, the scores mean nothing) (default: none; required unless --predictions is "
                                     "given)")
    p.add_argument("--vision-tower", "--vision_tower", dest="vision_tower", default=None,
                   help="CLIP ViT-L/14-336: a local folder or a Hugging Face Hub id (default: "
                        f"{DEFAULT_VISION_TOWER}; with --version tiny, its tiny CLIP)")
    p.add_argument("--dataset_dir", "--dataset-dir", dest="dataset_dir", default="./data",
                   help="folder holding Refer_Segm/ (default: %(default)s)")
    p.add_argument("--refer_seg_data", "--refer-seg-data", dest="refer_seg_data", default="refcocog|val",
                   help="'dataset|split', e.g. 'refcoco|testA' (default: %(default)s)")
    p.add_argument("--results_path", "--results-path", dest="results_path", default="runs/refseg",
                   help="results folder: stats.json and records/; created if missing, must be writable; one run of a "
                        "run id at a time (default: %(default)s)")
    p.add_argument("--num_retain_tokens", "--num-retain-tokens", dest="budget", type=int, default=576, metavar="N",
                   help="visual tokens kept per image (default: %(default)s = all)")
    p.add_argument("--method", default="litelvlm",
                   help=f"token-pruning method: {', '.join(method_names('image'))} (default: %(default)s)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="all",
                   help="all: every sentence, fixed template, union ground truth; glamm: the released procedure (up to 3 "
                        "sampled sentences per image in one conversation, seeded; summed-polygon ground truth and the "
                        "released gIoU; bf16 with eager attention unless --dtype / --attn-implementation say otherwise) "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the glamm protocol's draws (default: %(default)s)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images, sorted by id (default: all images)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run from its records files (default: %(default)s: existing records are an error)")
    p.add_argument("--device", default="auto",
                   help="'auto' (cuda:LOCAL_RANK if available, else cpu) or a device (default: %(default)s)")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="model dtype (auto: bfloat16 for --protocol glamm as released, else fp32 on CPU / bf16 on GPU) "
                        "(default: %(default)s)")
    p.add_argument("--attn-implementation", "--attn_implementation", dest="attn_implementation",
                   choices=ATTN_IMPLEMENTATIONS, default="auto",
                   help="attention of CLIP and the LLM (auto: eager for --protocol glamm, the released transformers 4 "
                        "path whose bf16 rounding decides ties among kept tokens; else SDPA / flash-attn) "
                        "(default: %(default)s)")
    p.add_argument("--predictions", help="score saved predictions (JSONL of ref_id, sent_id, rle) instead of a model "
                                         "(default: none, run the model)")
    p.add_argument("--allow-missing", "--allow_missing", dest="allow_missing", action="store_true",
                   help="with --predictions: score expressions without a prediction as empty masks "
                        "(default: %(default)s: missing predictions are an error)")
    p.add_argument("--allow-truncated-images", "--allow_truncated_images", dest="allow_truncated_images",
                   action="store_true",
                   help="decode truncated / incomplete JPEGs in part as the released code does (OpenCV), with a "
                        "warning naming each (default: %(default)s: such an image is an error naming it)")
    p.add_argument("--save-masks", "--save_masks", dest="save_masks", action="store_true",
                   help="store each predicted mask (COCO RLE) in the records (default: %(default)s)")
    p.add_argument("--segmenter-factory", "--segmenter_factory", dest="segmenter_factory",
                   help="'module:callable' called with the run config to build the segmenter (default: none, GLaMM)")
    p.add_argument("--dist-backend", "--dist_backend", dest="dist_backend", choices=["nccl", "gloo"],
                   help="torch.distributed backend when launched with WORLD_SIZE > 1 (default: nccl if CUDA, else "
                        "gloo)")
    p.add_argument("--show-stats", "--show_stats", dest="show_stats", action="store_true",
                   help="print the results folder's stats.json as a table and exit (default: %(default)s)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--pretrained", action="store_true", help=argparse.SUPPRESS)
    return p


def config_from_args(args: argparse.Namespace) -> RefSegConfig:
    """A validated ``RefSegConfig`` from parsed arguments; ``--version tiny``: the embedded tiny checkpoint's paths."""
    config = RefSegConfig(
        refer_seg_data=args.refer_seg_data, dataset_dir=args.dataset_dir, results_path=args.results_path,
        checkpoint=args.version, vision_tower=args.vision_tower or DEFAULT_VISION_TOWER, budget=args.budget, method=args.method,
        protocol=args.protocol, seed=args.seed, limit=args.limit, resume=args.resume, device=args.device,
        dtype=args.dtype, predictions=args.predictions, allow_missing=args.allow_missing,
        save_masks=args.save_masks, segmenter_factory=args.segmenter_factory, dist_backend=args.dist_backend,
        attn_implementation=args.attn_implementation, allow_truncated_images=args.allow_truncated_images)
    if config.predictions is not None or not is_tiny(config.checkpoint):
        return config
    paths = checkpoint_paths("glamm", config.checkpoint, args.vision_tower)  # written once, after the checks above
    print(f"--version tiny: {TINY_WEIGHTS}", flush=True)
    return replace(config, checkpoint=str(paths["checkpoint"]), vision_tower=str(paths["vision_tower"]))


def show_stats(results_path: str) -> None:
    """Print every entry of ``<results_path>/stats.json`` as one table row."""
    entries = load_stats(results_path)
    if not entries:
        raise FileNotFoundError(f"no stats.json entries in {results_path}")
    rows = [{"dataset": e.get("dataset"), "split": e.get("split"), "protocol": e.get("protocol"),
             "method": e.get("method"), "budget": e.get("budget"), "expressions": e.get("n_expressions"),
             "gIoU %": 100 * float(e["giou"]), "cIoU %": 100 * float(e["ciou"]), "timestamp": e.get("timestamp")}
            for e in entries]
    print_table(rows, float_digits=2, title=f"{results_path}/stats.json")


def main(argv: Sequence[str] | None = None, segmenter_factory: SegmenterFactory | None = None) -> int:
    """Run the CLI; returns the exit status (2 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    return run_harness_cli(args.show_stats, lambda: show_stats(args.results_path),
                           lambda: run_refseg(config_from_args(args), segmenter_factory=segmenter_factory))

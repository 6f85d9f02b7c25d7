"""The evaluation loop: shard images, segment, record per-expression I/U, merge ranks, score, report.

Every process handles a strided shard of the image list and appends one record per expression to its own
JSONL file. Scores are computed on rank 0 from the merged records in canonical (image, sentence) order, with
exact integer sums and ``math.fsum``, so one process, several processes and resumed runs give identical
numbers. The protocol's ``Scoring`` (``protocols.SCORING``) decides the ground truth and the per-expression
(I, U) rule of the records (``all``: union of polygons; ``glamm``: the released summed polygons and
``intersectionAndUnionGPU``) and the gIoU denominator; stats.json names both, and ``records_digest`` of the merged
records, so that a ``--resume`` of a finished run does not append its entry twice. A symbolic link on the way to any
file the run writes is refused before any work (``eval.common.lock.results_session``). A model run's records also
carry the image's stage timings (``timings``: seconds of its one ``segment`` call of ``call_expressions``
expressions), as the video harness's do, so that a resumed run keeps its costs (``litelvlm sweep`` reads them).
"""

from __future__ import annotations

import datetime
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from eval.common.distributed import DistInfo, barrier, distributed_session, gather_objects, shard
from eval.common.lock import results_session
from eval.common.progress import progress_bar
from eval.common.records import RecordStore, open_run_store
from eval.common.stats import append_stats, records_digest
from eval.common.table import print_table

from .config import RefSegConfig
from .dataset import ReferSplit, check_images, load_refer_split
from .masks import mask_to_rle
from .model import build_segmenter
from .protocols import SCORING, UNION_SCORING, ImageTask, Scoring, build_tasks
from .sources import MaskSource, ModelSource, PredictionSource, load_predictions, missing_predictions

__all__ = ["KEY_FIELDS", "SegmenterFactory", "ShardWork", "run_meta", "run_refseg", "make_source", "evaluate_shard"]

KEY_FIELDS = ("ref_id", "sent_id")
SegmenterFactory = Callable[[RefSegConfig], Any]


@dataclass
class ShardWork:
    """What one process segmented in this session: image count and summed model stage timings (seconds)."""

    images: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def make_source(config: RefSegConfig, tasks: list[ImageTask], factory: SegmenterFactory) -> MaskSource:
    """Saved predictions (checked to cover ``tasks`` unless --allow-missing) or the model from ``factory``."""
    if config.predictions:
        predictions = load_predictions(config.predictions)
        missing = missing_predictions(predictions, tasks)
        if missing and not config.allow_missing:
            examples = ", ".join(f"(ref_id={r}, sent_id={s})" for r, s in missing[:5])
            total = sum(len(t.expressions) for t in tasks)
            raise ValueError(f"{len(missing)} of {total} expressions have no prediction in {config.predictions}, "
                             f"e.g. {examples}; add them or pass --allow-missing to score them as empty masks")
        return PredictionSource(predictions, allow_missing=config.allow_missing, source=config.predictions)
    return ModelSource(factory(config), method=config.method, budget=config.budget)


def _task_records(split: ReferSplit, task: ImageTask, masks: np.ndarray, visual_tokens: int | None,
                  save_masks: bool, scoring: Scoring, timings: dict[str, float] | None = None) -> list[dict]:
    """One record per expression of ``task``; ``timings`` (the model's seconds per stage for the whole image, one
    ``segment`` call of ``call_expressions`` expressions) go on each, as the video harness records them."""
    records = []
    for expr, question, mask in zip(task.expressions, task.questions, masks):
        inter, union = scoring.intersection_union(split, expr, task.image, mask)
        record = {"ref_id": expr.ref_id, "sent_id": expr.sent_id, "image_id": expr.image_id,
                  "ann_id": expr.ann_id, "sentence": expr.sentence, "question": question,
                  "intersection": inter, "union": union}
        if visual_tokens is not None:
            record["visual_tokens"] = visual_tokens
        if timings:
            record.update(call_expressions=len(task.expressions), timings=timings)
        if save_masks:
            record["rle"] = mask_to_rle(mask)
        records.append(record)
    return records


def evaluate_shard(tasks: list[ImageTask], split: ReferSplit, store: RecordStore,
                   source_fn: Callable[[], MaskSource], info: DistInfo, save_masks: bool = False,
                   scoring: Scoring = UNION_SCORING, allow_truncated: bool = False) -> ShardWork:
    """Segment the tasks not yet fully recorded and append their (I, U) records under ``scoring``
    (``allow_truncated``: decode truncated JPEGs in part, see ``ReferSplit.load_image``)."""
    todo = [t for t in tasks if not all(store.has(k) for k in t.keys)]
    work = ShardWork()
    if not todo:
        return work
    source = source_fn()
    desc = f"{split.dataset}|{split.split}" + (f" rank {info.rank}/{info.world_size}" if info.distributed else "")
    with progress_bar(total=len(tasks), initial=len(tasks) - len(todo), desc=desc, enabled=info.is_main,
                      unit="img") as bar:
        for task in todo:
            image = split.load_image(task.image, allow_truncated) if source.needs_image else None
            pred = source.predict(task, image)
            for record in _task_records(split, task, pred.masks, pred.num_visual_tokens, save_masks, scoring,
                                        pred.timings):
                if not store.has(store.key(record)):
                    store.add(record)
            for stage, seconds in pred.timings.items():
                work.timings[stage] = work.timings.get(stage, 0.0) + seconds
            work.images += 1
            bar.update(1)
    return work


def run_meta(config: RefSegConfig) -> dict:
    """The inputs pinned for --resume: the config's, plus the ground-truth rule when it is not the union rule
    (so records of a glamm run made before glamm scored against the released summed polygons are refused)."""
    meta = config.run_meta()
    scoring = SCORING[config.protocol]
    if scoring.released_gt:
        meta["ground_truth"] = scoring.ground_truth
    return meta


def _open_store(config: RefSegConfig, info: DistInfo) -> RecordStore:
    return open_run_store(config.results_path, config.run_id, KEY_FIELDS, run_meta(config), resume=config.resume,
                          info=info)


def _local_values(store: RecordStore, tasks: list[ImageTask]) -> dict[tuple, tuple]:
    values = {}
    for task in tasks:
        for key in task.keys:
            record = store.get(key)
            values[key] = (record["intersection"], record["union"], record.get("visual_tokens"))
    return values


def _keys(tasks: list[ImageTask]) -> list[tuple]:
    """Record keys of all tasks in canonical (image, sentence) order."""
    return [key for task in tasks for key in task.keys]


def _merge(parts: list[dict], tasks: list[ImageTask]) -> list[tuple]:
    merged: dict[tuple, tuple] = {}
    for part in parts:
        merged.update(part)
    ordered_keys = _keys(tasks)
    missing = [k for k in ordered_keys if k not in merged]
    if missing:
        raise RuntimeError(f"{len(missing)} expressions have no record after merging the ranks, e.g. {missing[:3]}")
    return [merged[k] for k in ordered_keys]


def _sum_work(parts: list[ShardWork]) -> ShardWork:
    total = ShardWork()
    for part in parts:
        total.images += part.images
        for stage, seconds in part.timings.items():
            total.timings[stage] = total.timings.get(stage, 0.0) + seconds
    return total


def _stats_entry(config: RefSegConfig, tasks: list[ImageTask], values: list[tuple], work: ShardWork,
                 info: DistInfo, seconds: float) -> dict:
    scoring = SCORING[config.protocol]
    summary = scoring.summarize((i, u) for i, u, _ in values)
    tokens = [t for _, _, t in values if t is not None]
    images = work.images
    entry = {
        "dataset": config.dataset, "split": config.split, "method": config.method, "budget": config.budget,
        "protocol": config.protocol, "seed": config.seed if config.protocol == "glamm" else None,
        "giou": summary.giou, "ciou": summary.ciou,
        "ground_truth": scoring.ground_truth, "giou_denominator": scoring.giou_denominator,
        "n_expressions": summary.n_expressions, "n_images": len(tasks),
        "sum_intersection": summary.sum_intersection, "sum_union": summary.sum_union,
        "seconds": round(seconds, 3), "images_segmented_this_run": images,
        "mean_visual_tokens": float(np.mean(tokens)) if tokens else None,
        "timings_per_image_s": {k: v / images for k, v in sorted(work.timings.items())} if images else {},
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": config.checkpoint, "vision_tower": config.vision_tower, "predictions": config.predictions,
        "allow_missing": config.allow_missing, "limit": config.limit, "world_size": info.world_size,
        "run_id": config.run_id, "model": config.results_path, "refer_seg_data": config.refer_seg_data,
        "records_digest": records_digest([[list(key), list(value)] for key, value in zip(_keys(tasks), values)]),
    }
    return entry


def _report(config: RefSegConfig, entry: dict) -> None:
    if not append_stats(config.results_path, entry, same_run=("run_id", "records_digest")):
        print(f"note: {config.results_path}/stats.json already holds this finished run's entry (run {config.run_id}, "
              f"same records); not appended again", file=sys.stderr, flush=True)
    row = {"dataset": entry["dataset"], "split": entry["split"], "protocol": entry["protocol"],
           "method": entry["method"], "budget": entry["budget"], "images": entry["n_images"],
           "expressions": entry["n_expressions"], "gIoU %": 100 * entry["giou"], "cIoU %": 100 * entry["ciou"],
           "seconds": float(entry["seconds"])}
    print_table([row], float_digits=2, title=f"results -> {config.results_path}/stats.json")


def run_refseg(config: RefSegConfig, segmenter_factory: SegmenterFactory | None = None) -> dict | None:
    """Evaluate one dataset split; returns the stats entry on rank 0 (None on other ranks).

    ``segmenter_factory(config)`` builds the model (default ``build_segmenter``); it is only called when
    some image still needs segmenting, and never when scoring saved predictions. Before any work rank 0 checks
    that the results folder is writable and takes the run's lock (``eval.common.lock``: a second run of the same
    run id into the same folder is refused); the dataset, and for a model run every image, is checked up front.
    """
    started = time.perf_counter()
    with distributed_session(config.dist_backend) as info, \
            results_session(config.results_path, config.run_id, info, subdirs=("records",)):
        split = load_refer_split(config.dataset_dir, config.dataset, config.split)
        tasks = build_tasks(split, config.protocol, config.seed, config.limit)
        mine = shard(tasks, info.rank, info.world_size)
        factory = segmenter_factory or build_segmenter
        saved = make_source(config, tasks, factory) if config.predictions else None
        if saved is None:  # the model reads the images: check them all before it loads
            check_images(split, [t.image for t in tasks], config.allow_truncated_images)
        from litelvlm.timing import use_clock

        with _open_store(config, info) as store, use_clock(config.clock):
            work = evaluate_shard(mine, split, store, lambda: saved or make_source(config, tasks, factory), info,
                                  config.save_masks, SCORING[config.protocol], config.allow_truncated_images)
            local = _local_values(store, mine)
        parts = gather_objects((local, work), info)
        entry = None
        if info.is_main:
            values = _merge([p[0] for p in parts], tasks)
            entry = _stats_entry(config, tasks, values, _sum_work([p[1] for p in parts]), info,
                                 time.perf_counter() - started)
            _report(config, entry)
        barrier(info)
        return entry

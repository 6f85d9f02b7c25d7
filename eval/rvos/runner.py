"""The evaluation loop: shard videos, segment all expressions of a video in one call, write masks and records,
merge ranks, score (or zip), report.

Every process handles a strided shard of the video list. Per video it loads the frames once, calls
``segmenter.segment(frames, expressions)`` with every expression of the video, writes each expression's masks as
PNGs under ``OUT/predictions/<run_id>/<video>/<exp_id>/`` and then appends one JSONL record per expression
(status ok / no_seg / failed). An answer without ``[SEG]`` is handled as the preset's ``no_seg`` says
(eval/rvos/no_seg.py: empty masks, nothing written, or the video refused). A failing video is logged with its
traceback and recorded as failed; the loop goes on. ``--resume`` skips recorded expressions and retries failed ones
(a new record with a larger ``attempt``).
Rank 0 scores the predictions folder after a completeness check, so results do not depend on the number of
processes or on interruptions.

Every write goes through ``eval.common.writer`` below the results folder: a symbolic link on the way to any file the
run writes is refused before any work, and a failed write (disk full, read-only) or a link met later ends the run at
once (``RESULTS_ERRORS`` are never recorded as a video's failure); ``--resume`` continues it.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from eval.common.distributed import DistInfo, distributed_session, gather_objects, shard
from eval.common.images import read_rgb_image
from eval.common.lock import results_session
from eval.common.model import derive_seed, seed_everything
from eval.common.progress import progress_bar
from eval.common.records import RecordStore, open_run_store, run_record_paths
from eval.common.writer import RESULTS_ERRORS, remove_results_tree, results_folder

from .config import RVOSConfig
from .datasets import RefDavis17Dataset, RVOSDataset, RVOSSample, check_inputs, open_rvos_dataset
from .model import VideoPrediction, build_video_segmenter, check_model_inputs, check_segment_result, run_preset
from .no_seg import NoSegRefusal, record_fields, refuse_without_seg, writes_masks
from .predictions import expression_dir, write_prediction_masks
from .report import RunOutcome, finish_model_run, finish_predictions_run

__all__ = ["KEY_FIELDS", "ModelBuildError", "SegmenterFactory", "ShardWork", "open_dataset", "select_videos", "load_video_frames",
           "evaluate_shard", "run_rvos"]

KEY_FIELDS = ("video", "exp_id")
SegmenterFactory = Callable[[RVOSConfig], Any]


class ModelBuildError(RuntimeError):
    """The segmenter factory raised; the cause (with its traceback) is chained."""


@dataclass
class ShardWork:
    """What one process segmented in this session: videos, failed videos and summed stage timings (seconds)."""

    videos: int = 0
    failed_videos: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, other: "ShardWork") -> None:
        """Accumulate ``other`` into this one."""
        self.videos += other.videos
        self.failed_videos += other.failed_videos
        for stage, seconds in other.timings.items():
            self.timings[stage] = self.timings.get(stage, 0.0) + seconds


def open_dataset(config: RVOSConfig) -> RVOSDataset:
    """The benchmark's reader for ``--dataset_dir`` / ``--split`` (Ref-DAVIS17: its annotations must exist)."""
    options = {"annotations_dir": config.davis_annotations} if config.davis_annotations else {}
    dataset = open_rvos_dataset(config.dataset_name, config.dataset_dir, config.split_name, **options)
    if isinstance(dataset, RefDavis17Dataset) and not dataset.has_gt:
        raise FileNotFoundError(f"Ref-DAVIS17 annotations folder not found: {dataset.annotations_root} (the DAVIS-2017 "
                                f"Annotations_unsupervised PNGs; pass --davis-annotations)")
    return dataset


def select_videos(dataset: RVOSDataset, limit: int | None) -> list[str]:
    """The videos evaluated, in dataset order: all, or the first ``limit``."""
    videos = dataset.video_ids()
    if not videos:
        raise ValueError(f"{dataset.meta_path} lists no videos to evaluate")
    return videos[:limit] if limit else videos


def load_video_frames(dataset: RVOSDataset, video: str) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of ``video`` in the order the dataset lists them; a missing, truncated or corrupt
    frame raises naming its file, 16-bit frames keep their high byte (``eval.common.images.read_rgb_image``)."""
    frames = [read_rgb_image(path, "frame image") for path in dataset.frame_paths(video)]
    if not frames:
        raise ValueError(f"video {video} lists no frames in {dataset.meta_path}")
    sizes = sorted({f.shape for f in frames})
    if len(sizes) > 1:
        raise ValueError(f"frames of video {video} differ in size: {sizes}")
    return np.stack(frames)


def _needs_work(store: RecordStore, sample: RVOSSample) -> bool:
    key = (sample.video_id, sample.exp_id)
    return not store.has(key) or store.get(key)["status"] == "failed"


def _base_record(store: RecordStore, sample: RVOSSample, status: str, info: DistInfo) -> dict:
    key = (sample.video_id, sample.exp_id)
    attempt = store.get(key)["attempt"] + 1 if store.has(key) else 1
    return {"video": sample.video_id, "exp_id": sample.exp_id, "expression": sample.expression, "status": status,
            "attempt": attempt, "n_frames": len(sample.frames), "rank": info.rank}


def _segment(segmenter: Any, dataset: RVOSDataset, video: str, samples: list[RVOSSample],
             config: RVOSConfig) -> VideoPrediction:
    frames = load_video_frames(dataset, video)
    seed_everything(derive_seed(config.seed, video))  # the same draws whichever rank segments the video
    extra = {"clip_budget": config.clip_budget} if config.clip_budget is not None else {}
    result = segmenter.segment(frames, [s.expression for s in samples], budget=config.model_budget, **extra,
                               method=config.method)
    return check_segment_result(result, len(samples), frames.shape, video)


def _record_failure(store: RecordStore, todo: list[RVOSSample], config: RVOSConfig, text: str,
                    info: DistInfo, clips_without_seg: dict[str, list[int]] | None = None) -> None:
    from tqdm import tqdm

    video = todo[0].video_id
    tqdm.write(f"[rank {info.rank}] video {video} failed ({len(todo)} expressions):\n{text}", file=sys.stderr)
    error = text.strip().splitlines()[-1]
    for sample in todo:
        _remove_masks(config.predictions_dir, sample, config.results_path)  # no partial masks
        extra = {} if clips_without_seg is None else {"clips_without_seg": clips_without_seg.get(sample.exp_id, [])}
        store.add({**_base_record(store, sample, "failed", info), "error": error, "traceback": text, **extra})


def _remove_masks(pred_dir: Path, sample: RVOSSample, root: str | Path | None = None) -> None:
    """Delete the expression's mask folder ``pred_dir/<video>/<exp_id>`` (names checked by ``expression_dir``)
    through ``eval.common.writer`` below ``root`` (default ``pred_dir``): a link there is removed, not followed, and a
    link on the way to it is refused."""
    remove_results_tree(pred_dir if root is None else root, expression_dir(pred_dir, sample.video_id, sample.exp_id))


def _record_video(store: RecordStore, samples: list[RVOSSample], todo: list[RVOSSample], pred: VideoPrediction,
                  config: RVOSConfig, seconds: float, info: DistInfo, no_seg: str = "empty") -> None:
    for index, sample in enumerate(samples):
        if sample not in todo:
            continue
        if writes_masks(no_seg, pred, index):
            write_prediction_masks(config.predictions_dir, sample, pred.masks[index], root=config.results_path)
        else:  # no_seg: skip, as released: no folder for this expression
            _remove_masks(config.predictions_dir, sample, config.results_path)
        status = "ok" if pred.has_seg[index] else "no_seg"
        store.add({**_base_record(store, sample, status, info), **record_fields(no_seg, pred, index),
                   "visual_tokens_per_frame": pred.visual_tokens_per_frame, "call_expressions": len(samples),
                   "call_seconds": round(seconds, 6), "timings": pred.timings})


def process_video(segmenter: Any, dataset: RVOSDataset, video: str, store: RecordStore, config: RVOSConfig,
                  info: DistInfo, no_seg: str = "empty") -> ShardWork:
    """Segment every expression of ``video`` in one call and record the pending ones; failures are recorded.
    ``no_seg``: the preset's rule for answers without [SEG] (eval/rvos/no_seg.py)."""
    samples = dataset.video_samples(video)
    todo = [s for s in samples if _needs_work(store, s)]
    started = time.perf_counter()
    try:
        pred = _segment(segmenter, dataset, video, samples, config)
        refuse_without_seg(no_seg, video, samples, pred)
        _record_video(store, samples, todo, pred, config, time.perf_counter() - started, info, no_seg)
    except RESULTS_ERRORS:
        raise  # the results folder cannot take more (disk full, read-only, a link): stop the run here
    except NoSegRefusal as refusal:  # one line, no traceback: the protocol's refusal, not a crash
        _record_failure(store, todo, config, str(refusal), info, refusal.clips_without_seg)
        return ShardWork(videos=1, failed_videos=1)
    except Exception:  # one video's failure must not end the run: record it with its traceback
        pending = [s for s in todo if _needs_work(store, s)]
        if not pending:
            raise  # every expression was recorded before the error: not a sample failure
        _record_failure(store, pending, config, traceback.format_exc(), info)
        return ShardWork(videos=1, failed_videos=1)
    return ShardWork(videos=1, timings=dict(pred.timings))


def evaluate_shard(videos: list[str], dataset: RVOSDataset, store: RecordStore,
                   make_segmenter: Callable[[], Any], config: RVOSConfig, info: DistInfo) -> ShardWork:
    """Segment the videos that still have unrecorded or failed expressions; returns what was done."""
    todo = [v for v in videos if any(_needs_work(store, s) for s in dataset.video_samples(v))]
    work = ShardWork()
    if not todo:
        return work
    try:
        segmenter = make_segmenter()
    except Exception as err:  # a model that cannot be built is not bad command-line input: keep the traceback
        raise ModelBuildError(f"building the segmenter failed: {type(err).__name__}: {err}") from err
    no_seg = run_preset(config).no_seg
    desc = f"{config.benchmark}|{config.split_name}" + (f" rank {info.rank}/{info.world_size}"
                                                        if info.distributed else "")
    with progress_bar(total=len(videos), initial=len(videos) - len(todo), desc=desc, enabled=info.is_main,
                      unit="video") as bar:
        for video in todo:
            work.add(process_video(segmenter, dataset, video, store, config, info, no_seg))
            bar.set_postfix(failed=work.failed_videos, refresh=False)
            bar.update(1)
    return work


def _check_fresh_predictions_dir(config: RVOSConfig) -> None:
    folder = config.predictions_dir
    if not run_record_paths(config.results_path, config.run_id) and folder.is_dir() and any(folder.iterdir()):
        raise FileExistsError(f"predictions folder {folder} already holds masks but the run has no records; move it "
                              f"away or choose another results path")


def _local_records(store: RecordStore, dataset: RVOSDataset, videos: list[str]) -> dict[tuple, dict]:
    return {key: store.get(key) for v in videos for s in dataset.video_samples(v)
            if store.has(key := (s.video_id, s.exp_id))}


def _model_run(config: RVOSConfig, dataset: RVOSDataset, videos: list[str], factory: SegmenterFactory,
               info: DistInfo) -> tuple[dict, ShardWork]:
    from litelvlm.timing import use_clock

    mine = shard(videos, info.rank, info.world_size)
    _check_fresh_predictions_dir(config)
    results_folder(config.results_path, config.predictions_dir)  # exists even when no_seg: skip writes nothing
    with open_run_store(config.results_path, config.run_id, KEY_FIELDS, config.run_meta(), resume=config.resume,
                        info=info, supersede_field="attempt") as store, use_clock(config.clock):
        work = evaluate_shard(mine, dataset, store, lambda: factory(config), config, info)
        return _local_records(store, dataset, mine), work


def _merge_parts(parts: list[tuple[dict, ShardWork]]) -> tuple[dict[tuple, dict], ShardWork]:
    """Every rank's records in one dict, and the summed work."""
    total = ShardWork()
    for _, work in parts:
        total.add(work)
    return {key: record for records, _ in parts for key, record in records.items()}, total


def results_writes(config: RVOSConfig) -> list[Path]:
    """What a run writes besides records and stats (relative to the results folder), checked for symbolic links
    before any work: scores, the submission zip and, for a model run, its predictions folder."""
    root = Path(config.results_path)
    writes = [config.submission_path, root / "scores" / f"{config.run_id}.json"]
    if not config.predictions:
        writes.append(config.predictions_dir)
    return [path.relative_to(root) for path in writes]


def _broadcast_outcome(outcome: RunOutcome | None, info: DistInfo) -> RunOutcome:
    """Rank 0's outcome on every rank, so that every process ends the same way (result or error)."""
    return gather_objects(outcome, info)[0]


def run_rvos(config: RVOSConfig, segmenter_factory: SegmenterFactory | None = None) -> dict | None:
    """Evaluate one benchmark split; returns the stats entry on rank 0 (None on other ranks).

    ``segmenter_factory(config)`` builds the model (default ``build_video_segmenter``); it is only called when some
    video still needs segmenting, and never with ``--predictions``. Raises ``SampleFailuresError`` (after
    reporting) when expressions failed, ``MissingPredictionsError`` / ValueError for incomplete predictions.

    Before any work: rank 0 checks that the results folder is writable and takes the run's lock
    (``eval.common.lock``: a second run of the same run id into the same folder is refused), and the inputs of the
    selected videos are checked (``check_inputs``: frames for a model run, ground truth where the split has it).
    """
    started = time.perf_counter()
    subdirs = ("records", "predictions", "scores", "submissions")
    with distributed_session(config.dist_backend) as info, \
            results_session(config.results_path, config.run_id, info, subdirs=subdirs,
                            writes=results_writes(config)):
        dataset = open_dataset(config)
        videos = select_videos(dataset, config.limit)
        check_inputs(dataset, videos, frames=not config.predictions)  # before any model loads
        outcome = None
        if config.predictions:
            if info.is_main:
                outcome = RunOutcome.capture(finish_predictions_run, config, dataset, videos, info, started)
        else:
            if segmenter_factory is None:
                check_model_inputs(config)
            local, work = _model_run(config, dataset, videos, segmenter_factory or build_video_segmenter, info)
            parts = gather_objects((local, work), info)
            if info.is_main:
                records, total = _merge_parts(parts)
                outcome = RunOutcome.capture(finish_model_run, config, dataset, videos, records, total, info,
                                             started)
        return _broadcast_outcome(outcome, info).result(info)

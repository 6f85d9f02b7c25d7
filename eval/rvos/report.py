"""The end of an RVOS run on rank 0: merge records, report failures, check completeness, score or zip, write stats.

``stats.json`` gets one entry per run with benchmark, split, method, budget, J, F, J&F (fractions; None for splits
without public GT, whose upload zip path is under ``submission``), n_expressions, visual tokens per frame, counts of
ok / no_seg / failed expressions, the preset's ``no_seg`` rule with the count and ids (``<video>/<exp_id>``) of the
expressions answered without ``[SEG]`` (in some clip), seconds, timestamp and the checkpoint paths. Expressions left
unwritten under ``no_seg: skip`` are expected to be missing: they are scored (or left out of the zip) as missing
predictions without --allow-missing (eval/rvos/no_seg.py). Per-expression (and, for Ref-DAVIS17,
per-setting) scores go to ``OUT/scores/<run_id>.json``. A model run's entry carries ``records_digest`` (of its merged
records): a ``--resume`` of a finished run (or of one killed after writing its entry) finds the same entry and does
not append it again. Every file is written through ``eval.common.writer`` (no symbolic link followed).
"""

from __future__ import annotations

import datetime
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from eval.common.stats import append_stats, records_digest
from eval.common.table import format_table, print_table
from eval.common.writer import write_results_file

from .config import RVOSConfig
from .datasets import RVOSDataset
from .model import run_preset
from .predictions import MissingPredictions, MissingPredictionsError, find_missing_predictions
from .scoring import check_scorable, missing_rule, score_rvos
from .submission import write_submission_zip

__all__ = ["RunOutcome", "SampleFailuresError", "check_complete", "score_or_zip", "finish_model_run",
           "finish_predictions_run"]


class SampleFailuresError(RuntimeError):
    """Some expressions failed to segment; ``entry`` is the stats entry when they were scored anyway under
    --allow-missing (as missing predictions: the benchmark's rule in eval/rvos/scoring.py)."""

    def __init__(self, message: str, entry: dict | None = None):
        super().__init__(message)
        self.entry = entry


@dataclass
class RunOutcome:
    """Rank 0's result or error, sent to every rank so that all processes end the same way."""

    entry: dict | None = None
    error: BaseException | None = None

    @classmethod
    def capture(cls, fn: Callable[..., dict], *args: Any) -> "RunOutcome":
        """Run ``fn(*args)`` and keep its result or its exception."""
        try:
            return cls(entry=fn(*args))
        except Exception as err:  # re-raised by result() on every rank
            return cls(error=err)

    def result(self, info: Any) -> dict | None:
        """Raise the captured error, else return the entry on rank 0 (None elsewhere)."""
        if self.error is not None:
            raise self.error
        return self.entry if info.is_main else None


def check_complete(dataset: RVOSDataset, pred_dir: Path, allow_missing: bool,
                   skipped: frozenset[str] = frozenset()) -> MissingPredictions:
    """Find the videos / expressions / frames ``pred_dir`` lacks; an error unless ``allow_missing``, then warned
    with the benchmark's rule (``missing_rule``). ``skipped``: keys ``<video>/<exp_id>`` left unwritten under
    ``no_seg: skip``, expected to be missing (noted, never an error). Ref-DAVIS17 videos without any prediction are an
    error even with ``allow_missing`` (``check_scorable``: the official DAVIS scorer stops on missing sequences)."""
    samples = list(dataset.samples())
    missing = find_missing_predictions(pred_dir, samples)
    unexpected = find_missing_predictions(pred_dir, [s for s in samples if s.key not in skipped]) if skipped else missing
    if unexpected and not allow_missing:
        raise MissingPredictionsError(f"{unexpected.summary()}; pass --allow-missing to score them "
                                      f"({missing_rule(dataset)})")
    if missing:
        check_scorable(dataset, missing)
    if unexpected:
        print(f"warning: {unexpected.summary()}; --allow-missing: {missing_rule(dataset)}", file=sys.stderr, flush=True)
    if skipped:
        print(f"note: {len(skipped)} expression(s) answered without [SEG] were not written (no_seg: skip, as the "
              f"released eval_mevis.py); {missing_rule(dataset)}", file=sys.stderr, flush=True)
    return missing


def score_or_zip(config: RVOSConfig, dataset: RVOSDataset, pred_dir: Path, skipped: frozenset[str] = frozenset()) -> dict:
    """Scores with the benchmark's protocol when the split has GT, else the upload zip (J, F, J&F None). ``skipped``
    expressions (``no_seg: skip``) are scored as missing predictions, or left out of the zip."""
    if dataset.has_gt:
        result = score_rvos(dataset, pred_dir, allow_missing=config.allow_missing or bool(skipped))
        settings = {name: {k: s[k] for k in ("name", "J", "F", "J&F", "n_objects")}
                    for name, s in result.get("settings", {}).items()}
        return {"J": result["J"], "F": result["F"], "J&F": result["J&F"], "n_expressions": result["n_expressions"],
                "protocol": result["protocol"], "settings": settings or None, "submission": None,
                "expressions": result["expressions"]}
    out = write_submission_zip(dataset, pred_dir, config.submission_path, allow_missing=config.allow_missing,
                               root=config.results_path, omit=skipped)
    return {"J": None, "F": None, "J&F": None, "n_expressions": out["n_expressions"], "protocol": "submission zip",
            "settings": None, "submission": out["zip"], "expressions": []}


def _write_details(config: RVOSConfig, scores: dict) -> Path:
    path = Path(config.results_path) / "scores" / f"{config.run_id}.json"
    details = {k: scores[k] for k in ("J", "F", "J&F", "protocol", "settings", "expressions")}
    return write_results_file(config.results_path, path, json.dumps(details, indent=1) + "\n")


def _entry(config: RVOSConfig, dataset: RVOSDataset, scores: dict, missing: MissingPredictions, world_size: int,
           started: float) -> dict:
    return {
        "benchmark": config.benchmark, "dataset": dataset.name, "split": config.split_name, "method": config.method,
        "budget": config.budget, "J": scores["J"], "F": scores["F"], "J&F": scores["J&F"],
        "n_expressions": scores["n_expressions"], "n_videos": len(dataset.video_ids()),
        "protocol": scores["protocol"], "settings": scores["settings"], "submission": scores["submission"],
        "missing": missing.as_dict(), "predictions": str(config.predictions_dir),
        "allow_missing": config.allow_missing, "limit": config.limit, "seed": config.seed, "world_size": world_size,
        "run_id": config.run_id, "seconds": round(time.perf_counter() - started, 3),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": config.checkpoint, "vision_tower": config.vision_tower, "video_tower": config.video_tower,
        "results_path": config.results_path,
        "preset": None if config.predictions else config.preset, "clip_budget": config.clip_budget,
        "memory_budget": config.memory_budget, "memory_selector": config.memory_selector,
    }


def _without_seg(record: dict) -> bool:
    """Whether the record's answer lacked [SEG] in some clip (records written before clips were recorded: has_seg)."""
    return bool(record.get("clips_without_seg")) or record.get("has_seg") is False


def _skipped(records: list[dict]) -> frozenset[str]:
    """Keys ``<video>/<exp_id>`` of the expressions left unwritten under ``no_seg: skip``."""
    return frozenset(f"{r['video']}/{r['exp_id']}" for r in records if r.get("masks_written") is False)


def _model_fields(config: RVOSConfig, records: list[dict], work: Any) -> dict:
    tokens = [r["visual_tokens_per_frame"] for r in records if r["status"] != "failed"]
    count = {s: sum(r["status"] == s for r in records) for s in ("ok", "failed")}
    no_seg = [f"{r['video']}/{r['exp_id']}" for r in records if _without_seg(r)]
    return {"visual_tokens_per_frame": math.fsum(tokens) / len(tokens) if tokens else None,
            "n_ok": count["ok"], "n_no_seg": len(no_seg), "n_failed": count["failed"],
            "no_seg_rule": run_preset(config).no_seg, "no_seg_expressions": no_seg,
            "videos_segmented_this_run": work.videos, "videos_failed_this_run": work.failed_videos,
            "timings_per_video_s": {k: v / work.videos for k, v in sorted(work.timings.items())} if work.videos else {}}


def _report(config: RVOSConfig, entry: dict) -> None:
    same_run = ("run_id", "records_digest") if "records_digest" in entry else ()  # a model run's records
    if not append_stats(config.results_path, entry, same_run=same_run):
        print(f"note: {config.results_path}/stats.json already holds this finished run's entry (run {config.run_id}, "
              f"same records); not appended again", file=sys.stderr, flush=True)
    percent = {k: None if entry[k] is None else 100 * entry[k] for k in ("J", "F", "J&F")}
    row = {"benchmark": entry["benchmark"], "split": entry["split"], "method": entry["method"],
           "budget": entry["budget"], "videos": entry["n_videos"], "expressions": entry["n_expressions"],
           "J %": percent["J"], "F %": percent["F"], "J&F %": percent["J&F"], "failed": entry.get("n_failed"),
           "seconds": float(entry["seconds"])}
    print_table([row], float_digits=2, title=f"results -> {config.results_path}/stats.json")
    if entry["submission"]:
        print(f"submission zip -> {entry['submission']}", flush=True)


def _ordered_records(records: dict[tuple, dict], dataset: RVOSDataset) -> list[dict]:
    keys = [(s.video_id, s.exp_id) for s in dataset.samples()]
    absent = [f"{v}/{e}" for v, e in keys if (v, e) not in records]
    if absent:
        raise RuntimeError(f"{len(absent)} expressions have no record after merging the ranks, e.g. {absent[:3]}")
    return [records[k] for k in keys]


def _failure_message(failed: list[dict], total: int, config: RVOSConfig) -> str:
    videos = sorted({r["video"] for r in failed})
    names = ", ".join(f"{r['video']}/{r['exp_id']}" for r in failed[:5]) + (", ..." if len(failed) > 5 else "")
    hint = "" if config.allow_missing else " or add --allow-missing to score them as missing predictions"
    return (f"{len(failed)} of {total} expressions failed in {len(videos)} video(s) ({names}); first error: "
            f"{failed[0]['error']}; tracebacks are in {Path(config.results_path) / 'records'}; rerun with --resume "
            f"to retry them{hint}")


def _print_failures(failed: list[dict]) -> None:
    rows = [{"video": r["video"], "exp_id": r["exp_id"], "attempt": r["attempt"], "error": r["error"][:100]}
            for r in failed]
    print(format_table(rows, title=f"{len(failed)} failed expressions"), file=sys.stderr, flush=True)


def finish_model_run(config: RVOSConfig, dataset: RVOSDataset, videos: list[str], records: dict[tuple, dict],
                     work: Any, info: Any, started: float) -> dict:
    """Rank 0 after a model run: failures, completeness, scores or zip, stats entry and table."""
    subset = dataset.subset(videos)
    ordered = _ordered_records(records, subset)
    failed = [r for r in ordered if r["status"] == "failed"]
    if failed:
        _print_failures(failed)
        if not config.allow_missing:
            raise SampleFailuresError(_failure_message(failed, len(ordered), config))
    skipped = _skipped(ordered)
    missing = check_complete(subset, config.predictions_dir, config.allow_missing, skipped)
    scores = score_or_zip(config, subset, config.predictions_dir, skipped)
    _write_details(config, scores)
    entry = {**_entry(config, subset, scores, missing, info.world_size, started), **_model_fields(config, ordered, work),
             "records_digest": records_digest(ordered)}
    _report(config, entry)
    if failed:
        raise SampleFailuresError(_failure_message(failed, len(ordered), config), entry)
    return entry


def finish_predictions_run(config: RVOSConfig, dataset: RVOSDataset, videos: list[str], info: Any,
                           started: float) -> dict:
    """Score (or zip) a saved predictions folder: completeness check, scores, stats entry and table."""
    subset = dataset.subset(videos)
    missing = check_complete(subset, config.predictions_dir, config.allow_missing)
    scores = score_or_zip(config, subset, config.predictions_dir)
    _write_details(config, scores)
    entry = {**_entry(config, subset, scores, missing, info.world_size, started), "visual_tokens_per_frame": None}
    _report(config, entry)
    return entry

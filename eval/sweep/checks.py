"""Every check of a sweep before its model loads: the data, the checkpoints, each run's config, and the records an
earlier sweep left in ``--out`` (made from the same inputs and timed with the same clock, or refused).

Each failure is one ValueError / FileNotFoundError line naming the input and the fix; nothing here loads weights.
"""

from __future__ import annotations

from eval.common.files import read_json
from eval.common.model import resolve_checkpoint
from eval.common.records import check_run_meta, meta_path, run_record_paths

from .plan import SweepPlan

__all__ = ["check_runs"]

_CHECKPOINTS = {"glamm": "GLaMM checkpoint", "videoglamm": "VideoGLaMM checkpoint"}


def _check_image_data(plan: SweepPlan) -> None:
    from eval.refseg.dataset import load_refer_split, parse_refer_seg_data

    load_refer_split(plan.data_dir, *parse_refer_seg_data(plan.benchmark.data))


def _check_video_data(config) -> None:
    from eval.rvos.runner import open_dataset, select_videos

    dataset = open_dataset(config)
    select_videos(dataset, config.limit)
    if not dataset.has_gt:
        raise ValueError(f"split {config.split_name} of --benchmark {config.benchmark} has no public ground truth "
                         f"(its scores come from the benchmark's server): the leaderboard needs J and F; choose a split "
                         f"with ground truth (--split)")


def _check_checkpoints(plan: SweepPlan, config) -> None:
    model = plan.benchmark.model
    resolve_checkpoint(config.checkpoint, _CHECKPOINTS[model], "--checkpoint", model)
    resolve_checkpoint(config.vision_tower, "CLIP vision tower", "--vision-tower", "clip")
    if model == "videoglamm":
        from eval.rvos.model import run_preset

        run_preset(config)  # a bad preset fails here
        if config.video_tower is not None:
            resolve_checkpoint(config.video_tower, "InternVideo2 video tower (.pt)", "--video-tower")


def _pinned_meta(config) -> dict:
    if hasattr(config, "refer_seg_data"):
        from eval.refseg.runner import run_meta

        return run_meta(config)
    return config.run_meta()


def _check_same_clock(config, out) -> None:
    """Records of this run already in --out must be timed with this sweep's clock (named, with the fix)."""
    stored = read_json(meta_path(config.results_path, config.run_id), "run meta file", "pass another --out")
    recorded = stored.get("clock") if isinstance(stored, dict) else config.clock  # not an object: check_run_meta's
    if recorded != config.clock:
        fix = f"pass --clock {recorded} or another --out" if recorded else "pass another --out"
        raise ValueError(f"--out {out} holds runs timed with {f'--clock {recorded}' if recorded else 'no recorded clock'} "
                         f"(run {config.run_id}), this sweep times with --clock {config.clock}: one leaderboard cannot "
                         f"mix clocks; {fix}")


def _check_earlier_records(config, out) -> None:
    """Records of this run already in --out must come from the same inputs (clock, checkpoint, data, dtype, ...)."""
    if run_record_paths(config.results_path, config.run_id):
        if meta_path(config.results_path, config.run_id).exists():
            _check_same_clock(config, out)
        try:
            check_run_meta(config.results_path, config.run_id, _pinned_meta(config), fresh=False, write=False)
        except ValueError as err:
            raise ValueError(f"{err} (--out holds an earlier sweep of other inputs: pass another --out)") from None


def check_runs(plan: SweepPlan) -> list:
    """The harness config of every run of ``plan`` (checkpoint paths resolved), after checking all of them."""
    configs = [plan.run_config(method, budget) for method, budget in plan.runs]
    if plan.benchmark.media == "image":
        _check_image_data(plan)
    else:
        _check_video_data(configs[0])
    _check_checkpoints(plan, configs[0])
    for config in configs:
        _check_earlier_records(config, plan.out)
    return configs

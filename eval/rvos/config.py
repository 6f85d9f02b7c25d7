"""The settings of one referring-video-segmentation evaluation run (built from the command line or directly)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from litelvlm.config_bounds import SAM2_MEMORY_TOKENS
from litelvlm.run_options import (CLIP_TOKENS_PER_FRAME, check_clock, check_device, check_method_runs_on, check_method_spec,
                                    check_unpruned_budget, method_file_name)

__all__ = ["BENCHMARKS", "DEFAULT_SPLITS", "DEFAULT_VISION_TOWER", "DTYPES", "FULL_TOKENS", "RVOSConfig"]

BENCHMARKS = {"davis": "ref_davis17", "ytvos": "ref_ytvos", "mevis": "mevis"}  # --benchmark -> dataset reader
DEFAULT_SPLITS = {"davis": "valid", "ytvos": "valid", "mevis": "valid_u"}
DEFAULT_VISION_TOWER = "openai/clip-vit-large-patch14-336"
DTYPES = ("auto", "float32", "bfloat16", "float16")
FULL_TOKENS = CLIP_TOKENS_PER_FRAME  # CLIP patch tokens per frame: --num_retain_tokens 576 keeps all (no pruning)


@dataclass(frozen=True)
class RVOSConfig:
    """One evaluation run: benchmark data, model (or saved predictions), budget, output. Validated on construction."""

    benchmark: str = "davis"
    dataset_dir: str = "./data"
    split: str | None = None
    results_path: str = "runs/rvos"
    checkpoint: str | None = None
    vision_tower: str = DEFAULT_VISION_TOWER
    video_tower: str | None = None
    budget: int = FULL_TOKENS
    method: str = "litelvlm"
    seed: int = 0
    limit: int | None = None
    resume: bool = False
    device: str = "auto"
    dtype: str = "auto"
    predictions: str | None = None
    allow_missing: bool = False
    davis_annotations: str | None = None
    segmenter_factory: str | None = None
    dist_backend: str | None = None
    preset: str = "released"
    clip_budget: int | None = None
    clock: str | None = None  # the stage timings' clock (litelvlm.timing: wall / cpu), pinned; None: the default
    memory_budget: int | None = None  # SAM2 spatial memory tokens kept per memory frame and object (None: all)
    memory_selector: str | None = None  # which ones (video/sam2/memory_select.py); None: the preset's

    def __post_init__(self) -> None:
        check_clock(self.clock, "clock")
        if self.benchmark not in BENCHMARKS:
            raise ValueError(f"--benchmark must be one of {sorted(BENCHMARKS)}, got {self.benchmark!r}")
        if self.split is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.split):
            raise ValueError(f"--split must be a split folder name such as 'valid', got {self.split!r}")
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or not 1 <= self.budget <= FULL_TOKENS:
            raise ValueError(f"--num_retain_tokens must be a number of CLIP tokens per frame in 1..{FULL_TOKENS} "
                             f"({FULL_TOKENS} keeps all), got {self.budget}")
        check_method_spec(self.method)
        if self.clip_budget is not None:
            from litelvlm.pruning import check_clip_budget

            check_clip_budget(self.method, self.clip_budget)  # before any model loads
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be a positive number of videos, got {self.limit}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not self.preset or not re.fullmatch(r"[A-Za-z0-9_./~-]+", self.preset):
            raise ValueError(f"--preset must be a preset name (released, default) or a YAML path, got {self.preset!r}")
        if self.davis_annotations and self.benchmark != "davis":
            raise ValueError("--davis-annotations only applies to --benchmark davis")
        if self.predictions is None:
            self._check_model_arguments()
        elif self.memory_budget is not None or self.memory_selector is not None:
            raise ValueError("--memory-budget / --memory-selector set a model run; scoring --predictions runs no model")
        elif self.resume:
            raise ValueError("--resume continues a model run; scoring --predictions keeps no records to resume")

    def _check_model_arguments(self) -> None:
        """What a model run needs, checked before any model is built: a checkpoint, a method that runs on videos (and,
        with a budget, fits the preset's layout), a device this machine has."""
        if self.checkpoint is None:
            raise ValueError("--version (the VideoGLaMM checkpoint folder) is required unless --predictions is given")
        check_method_runs_on(self.method, "video")
        check_unpruned_budget(self.method, self.budget)
        if self.model_budget is not None and not self.segmenter_factory:
            from video.layout import check_layout_budget
            from video.preset import load_preset

            layout = load_preset(self.preset, self.benchmark).segmenter.layout
            check_layout_budget(layout, self.budget, self.method, "--num_retain_tokens")
        self._check_memory_options()
        if self.device != "auto":
            check_device(self.device)

    def _check_memory_options(self) -> None:
        """``--memory-budget`` a positive number of SAM2 memory tokens, ``--memory-selector`` a registered selector that
        comes with a budget; with the preset's settings (e.g. propagate mode) checked by ``VideoSegmenterConfig``."""
        budget, selector = self.memory_budget, self.memory_selector
        in_range = isinstance(budget, int) and not isinstance(budget, bool) and 1 <= budget <= SAM2_MEMORY_TOKENS
        if budget is not None and not in_range:
            raise ValueError(f"--memory-budget must be a number of SAM2 memory tokens per frame in 1..{SAM2_MEMORY_TOKENS} "
                             f"(all of them at 1024 px), got {budget!r}")
        if selector is not None and budget is None:
            raise ValueError("--memory-selector chooses the memory tokens --memory-budget keeps: give --memory-budget too")
        if budget is not None and not self.segmenter_factory:
            self.segmenter_config()  # every field checked (budget, selector, mask mode) before the model loads
        elif selector is not None:
            from video.sam2.memory_select import get_memory_selector

            get_memory_selector(selector)

    def segmenter_config(self):
        """The preset's ``VideoSegmenterConfig`` for this benchmark with ``--memory-budget`` / ``--memory-selector``."""
        from dataclasses import replace

        from video.preset import load_preset

        config = load_preset(self.preset, self.benchmark).segmenter
        overrides = {k: v for k, v in (("memory_budget", self.memory_budget), ("memory_selector", self.memory_selector))
                     if v is not None}
        return replace(config, **overrides) if overrides else config

    @property
    def memory_label(self) -> str:
        """The run id's part for memory pruning: ``_mb<N>`` (and ``-<selector>`` when one is named), empty without."""
        if self.memory_budget is None:
            return ""
        return f"_mb{self.memory_budget}" + (f"-{self.memory_selector}" if self.memory_selector else "")

    @property
    def dataset_name(self) -> str:
        """Reader name in eval.rvos.datasets, e.g. 'ref_davis17'."""
        return BENCHMARKS[self.benchmark]

    @property
    def split_name(self) -> str:
        """The split evaluated: --split, or the benchmark's default (valid, or valid_u for MeViS)."""
        return self.split or DEFAULT_SPLITS[self.benchmark]

    @property
    def model_budget(self) -> int | None:
        """The ``budget`` passed to ``VideoSegmenter.segment``: None (keep all) for FULL_TOKENS, unless a clip-level
        method spends it (``--clip-budget``)."""
        return None if self.budget >= FULL_TOKENS and self.clip_budget is None else self.budget

    @property
    def run_id(self) -> str:
        """Name of this run's records and predictions folder: what it evaluates and how (not --limit)."""
        run_id = f"{self.benchmark}_{self.split_name}_{method_file_name(self.method)}_b{self.budget}"
        if self.clip_budget is not None:
            run_id += f"_cb{self.clip_budget}"
        run_id += self.memory_label
        if self.preset != "released" and not self.predictions:  # the released protocol keeps the plain name
            run_id += "_" + Path(self.preset).stem
        return run_id + "_pred" if self.predictions else run_id

    @property
    def predictions_dir(self) -> Path:
        """Where masks are read from: --predictions, or the run's ``OUT/predictions/<run_id>`` folder."""
        if self.predictions:
            return Path(self.predictions)
        return Path(self.results_path) / "predictions" / self.run_id

    @property
    def submission_path(self) -> Path:
        """Upload zip of a split without public ground truth: ``OUT/submissions/<run_id>.zip``."""
        return Path(self.results_path) / "submissions" / f"{self.run_id}.zip"

    def run_meta(self) -> dict:
        """Inputs that must not change when a run is resumed."""
        def absolute(p: str | None) -> str | None:
            return None if p is None else str(Path(p).resolve())

        return {"checkpoint": absolute(self.checkpoint), "vision_tower": self.vision_tower,
                "video_tower": absolute(self.video_tower), "dataset_dir": absolute(self.dataset_dir),
                "davis_annotations": absolute(self.davis_annotations), "dtype": self.dtype, "seed": self.seed,
                "segmenter_factory": self.segmenter_factory, "preset": self.preset,
                "clip_budget": self.clip_budget, **({"clock": self.clock} if self.clock else {}),
                **({"memory_budget": self.memory_budget, "memory_selector": self.memory_selector}
                   if self.memory_budget is not None or self.memory_selector is not None else {})}

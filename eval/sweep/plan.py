"""What a sweep runs: the benchmark, its (method, budget) runs and each run's harness config, all checked before the
model loads.

``--benchmark`` is a RefCOCO-family split (``refcoco|val``, as ``eval.refseg``'s --refer_seg_data), an RVOS benchmark
(``davis``, ``ytvos``, ``mevis``, as ``eval.rvos``'s --benchmark) or an offline one: ``synthetic`` (a tiny
REFER-format refcoco|val, ``eval.refseg.synthetic``) or ``synthetic-video`` (a tiny Ref-DAVIS17,
``eval.rvos.synthetic``). The method ``none`` (every token) runs once, at the full 576 tokens, whatever the budgets.
Every run goes to the harness with ``resume=True``: records a sweep already wrote are its finished work.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from litelvlm.run_options import CLIP_TOKENS_PER_FRAME, check_clock, check_frame_budget, check_method_runs_on

__all__ = ["RVOS_BENCHMARKS", "SYNTHETIC_BENCHMARKS", "Benchmark", "SweepPlan", "parse_benchmark", "benchmark_names"]

RVOS_BENCHMARKS = ("davis", "mevis", "ytvos")  # eval.rvos.config.BENCHMARKS, listed without importing the harness
SYNTHETIC_BENCHMARKS = {"synthetic": ("image", "refcoco|val"), "synthetic-video": ("video", "davis")}
FULL = CLIP_TOKENS_PER_FRAME


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: ``media`` (image / video), ``data`` (the harness's 'refcoco|val' or RVOS benchmark name)."""

    name: str
    media: str
    data: str
    synthetic: bool = False

    @property
    def model(self) -> str:
        """The checkpoint family its harness loads."""
        return "glamm" if self.media == "image" else "videoglamm"


def benchmark_names() -> str:
    """The --benchmark choices, for help and errors."""
    return f"'dataset|split' (e.g. refcoco|val), {', '.join(RVOS_BENCHMARKS)}, {', '.join(SYNTHETIC_BENCHMARKS)}"


def parse_benchmark(spec: str) -> Benchmark:
    """``--benchmark`` -> ``Benchmark``; an unknown one is one ValueError naming the choices."""
    if spec in SYNTHETIC_BENCHMARKS:
        media, data = SYNTHETIC_BENCHMARKS[spec]
        return Benchmark(spec, media, data, synthetic=True)
    if spec in RVOS_BENCHMARKS:
        return Benchmark(spec, "video", spec)
    if "|" in spec:
        from eval.refseg.dataset import parse_refer_seg_data

        try:
            parse_refer_seg_data(spec)
        except ValueError as err:
            raise ValueError(str(err).replace("--refer_seg_data", "--benchmark")) from None
        return Benchmark(spec, "image", spec)
    raise ValueError(f"--benchmark {spec!r} is not a benchmark: choose {benchmark_names()}")


def _unique(values) -> tuple:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class SweepPlan:
    """The sweep's options, checked on construction (no torch import)."""

    benchmark: Benchmark
    methods: tuple[str, ...]
    budgets: tuple[int, ...]
    out: Path
    checkpoint: str
    vision_tower: str | None = None
    video_tower: str | None = None
    dataset_dir: str | None = None
    split: str | None = None
    protocol: str | None = None
    preset: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    limit: int | None = None
    seed: int = 0
    clock: str | None = None  # the runs' timing clock (eval.sweep.clock); None until resolved for the device

    def __post_init__(self) -> None:
        check_clock(self.clock)
        object.__setattr__(self, "methods", _unique(self.methods))
        object.__setattr__(self, "budgets", _unique(self.budgets))
        self._check_methods()
        self._check_budgets()
        self._check_media_options()
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be a positive number of images or videos, got {self.limit}")

    def _check_methods(self) -> None:
        if not self.methods:
            raise ValueError("give at least one --method (repeatable), e.g. --method litelvlm --method fastv")
        for method in self.methods:
            check_method_runs_on(method, self.benchmark.media)

    def _check_budgets(self) -> None:
        if not self.budgets and any(m != "none" for m in self.methods):
            raise ValueError("give at least one --budget N (repeatable: visual tokens kept per image or frame)")
        for budget in self.budgets:
            check_frame_budget(budget, "--budget")

    def _check_media_options(self) -> None:
        image = self.benchmark.media == "image"
        for option, value, applies in (("--split", self.split, not image and not self.benchmark.synthetic),
                                       ("--video-tower", self.video_tower, not image),
                                       ("--preset", self.preset, not image), ("--protocol", self.protocol, image),
                                       ("--dataset-dir", self.dataset_dir, not self.benchmark.synthetic)):
            if value is not None and not applies:
                raise ValueError(f"{option} does not apply to --benchmark {self.benchmark.name}: drop it")

    @property
    def runs(self) -> list[tuple[str, int]]:
        """(method, budget) of every run, in option order; ``none`` once, at the full 576 tokens."""
        runs = [(m, FULL) if m == "none" else (m, b) for m in self.methods for b in (self.budgets if m != "none" else (FULL,))]
        return list(dict.fromkeys(runs))

    @property
    def results_path(self) -> Path:
        """The harnesses' results folder: records, stats.json (and, for videos, predictions)."""
        return self.out / "runs"

    @property
    def data_dir(self) -> str:
        """The dataset folder the harness reads: --dataset-dir, or the synthetic data under --out."""
        if self.benchmark.synthetic:
            return str(self.out / "data" / self.benchmark.name)
        return self.dataset_dir or "./data"

    @property
    def random_weights(self) -> bool:
        """Whether the model is the embedded tiny checkpoint (random weights: scores mean nothing)."""
        from litelvlm.pipeline import is_tiny

        return is_tiny(self.checkpoint)

    def with_checkpoint_paths(self) -> "SweepPlan":
        """For ``tiny``, the embedded tiny checkpoint's paths (written once); any other checkpoint unchanged."""
        if not self.random_weights:
            return self
        from litelvlm.pipeline import checkpoint_paths

        paths = checkpoint_paths(self.benchmark.model, self.checkpoint, self.vision_tower, self.video_tower)
        return replace(self, checkpoint=str(paths["checkpoint"]), vision_tower=str(paths["vision_tower"]),
                       video_tower=str(paths["video_tower"]) if paths.get("video_tower") else None)

    def with_clock(self, device: str) -> "SweepPlan":
        """The plan with its clock resolved for the (resolved) ``device``: --clock, or cpu on a CPU, wall on CUDA."""
        from .clock import resolve_clock

        return replace(self, clock=resolve_clock(self.clock, device))

    def run_config(self, method: str, budget: int):
        """The harness config of one run (``RefSegConfig`` / ``RVOSConfig``), validated, resuming its records."""
        common = dict(dataset_dir=self.data_dir, results_path=str(self.results_path), checkpoint=self.checkpoint,
                      budget=budget, method=method, seed=self.seed, limit=self.limit, resume=True, device=self.device,
                      dtype=self.dtype, clock=self.clock)
        if self.benchmark.media == "image":
            from eval.refseg.config import DEFAULT_VISION_TOWER, RefSegConfig

            return RefSegConfig(refer_seg_data=self.benchmark.data, vision_tower=self.vision_tower or DEFAULT_VISION_TOWER,
                                protocol=self.protocol or "all", **common)
        from eval.rvos.config import DEFAULT_VISION_TOWER, RVOSConfig

        return RVOSConfig(benchmark=self.benchmark.data, split=self.split, video_tower=self.video_tower,
                          vision_tower=self.vision_tower or DEFAULT_VISION_TOWER, preset=self.video_preset, **common)

    @property
    def video_preset(self) -> str:
        """VideoGLaMM's settings: --preset, else 'released' (the harness's default), or on the synthetic clips 'default'
        (litelvlm's own: an answer without [SEG] scores as empty masks, where the released Ref-DAVIS17 rule refuses the
        video, as random weights' answers would be)."""
        return self.preset or ("default" if self.benchmark.synthetic else "released")

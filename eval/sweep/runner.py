"""The runs of a sweep, one after the other, through the harnesses' own runners with one shared model.

Each (method, budget) is one ``eval.refseg.run_refseg`` / ``eval.rvos.run_rvos`` call resuming its records in
``--out/runs``: an image or video already recorded is not segmented again, so a rerun skips finished runs and a crash
loses nothing finished. The harnesses build their model only when some item still needs it, through the factory they
are given; ``SharedSegmenter`` builds it on the first such call and hands the same model to every later run, so a
sweep loads the model at most once (and not at all when every run is finished). The model's first call is preceded by
an untimed warm-up call on the same input, so the first run does not pay the first call's one-off costs. A run's own
output (its table, its progress bar, notes) goes to ``--out/logs/<run_id>.log``; the terminal shows one progress bar
over the runs.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from eval.common.progress import progress_bar

__all__ = ["SharedSegmenter", "WarmedUp", "RunResult", "run_sweep"]


@contextlib.contextmanager
def _random_states_kept():
    """Python's, NumPy's and torch's random states (all devices) as they were before the block."""
    import random

    import numpy as np
    import torch

    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []):
        yield
    random.setstate(python)
    np.random.set_state(numpy)


class WarmedUp:
    """The model, whose first ``segment`` call is made twice: once untimed, its result dropped (the warm-up that pays
    the first call's one-off costs), then for real, with the random states as they were before the warm-up, so that
    no run's times include the warm-up and its draws are those of a model that was not warmed up. Every other
    attribute is the model's."""

    def __init__(self, model: Any):
        self.model = model
        self.warm = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def segment(self, *args, **kwargs) -> Any:
        if not self.warm:
            with _random_states_kept():
                self.model.segment(*args, **kwargs)
            self.warm = True
        return self.model.segment(*args, **kwargs)


class SharedSegmenter:
    """A harness ``segmenter_factory`` that builds the model once (``build(config)``), warmed up by its first call
    (``WarmedUp``), and returns it on every call."""

    def __init__(self, build: Callable[[Any], Any]):
        self._build = build
        self.model = None
        self.loads = 0

    def __call__(self, config: Any) -> Any:
        if self.model is None:
            self.model = WarmedUp(self._build(config))
            self.loads += 1
        return self.model


@dataclass
class RunResult:
    """One run: its harness config, its stats entry (None when it failed before scoring) and its error line."""

    config: Any
    entry: dict | None
    error: str | None = None


def _harness(media: str) -> tuple[Callable, Callable, tuple[type[BaseException], ...]]:
    """(run function, default model builder, errors that end one run but not the sweep) of ``media``."""
    if media == "image":
        from eval.refseg.model import build_segmenter
        from eval.refseg.runner import run_refseg

        return run_refseg, build_segmenter, ()
    from eval.rvos.model import build_video_segmenter
    from eval.rvos.report import SampleFailuresError
    from eval.rvos.runner import run_rvos

    return run_rvos, build_video_segmenter, (SampleFailuresError,)


def _log_path(logs: Path, config: Any) -> Path:
    return logs / f"{config.run_id}.log"


def _open_log(logs: Path, config: Any):
    """The run's log, appended to, under ``logs``'s parent (--out) without following a link (``eval.common.writer``)."""
    import os

    from eval.common.writer import open_results_fd

    fd = open_results_fd(logs.parent, _log_path(logs, config), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    return open(fd, "a", encoding="utf-8")


def _one_run(run: Callable, config: Any, factory: SharedSegmenter, logs: Path,
             run_errors: tuple[type[BaseException], ...]) -> RunResult:
    """``run(config)`` with its stdout and stderr in its log; a sample failure ends this run only."""
    with _open_log(logs, config) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            return RunResult(config, run(config, segmenter_factory=factory))
        except run_errors as err:
            print(f"error: {err}", flush=True)
            return RunResult(config, getattr(err, "entry", None), str(err).splitlines()[0])


def run_sweep(configs: list, media: str, logs: Path, build: Callable | None = None) -> tuple[list[RunResult], SharedSegmenter]:
    """Every run of ``configs`` (one harness config each) with one shared model (``build``: the harness's builder by
    default); returns the results in order and the factory (``loads``: how often the model was built)."""
    run, default_build, run_errors = _harness(media)
    factory = SharedSegmenter(build or default_build)
    results = []
    with progress_bar(total=len(configs), desc="sweep", unit="run") as bar:
        for config in configs:
            bar.set_postfix_str(f"{config.method} @ {config.budget}", refresh=True)
            result = _one_run(run, config, factory, logs, run_errors)
            if result.error:
                bar.write(f"run {config.run_id} failed: {result.error} (log: {_log_path(logs, config)})", file=sys.stderr)
            results.append(result)
            bar.update(1)
    return results, factory

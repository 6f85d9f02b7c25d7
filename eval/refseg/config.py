"""The settings of one RefCOCO-family evaluation run (built from the command line or directly)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from litelvlm.run_options import (check_clock, check_device, check_frame_budget, check_method_runs_on, check_method_spec,
                                    check_unpruned_budget, method_file_name)

from .dataset import parse_refer_seg_data
from .protocols import PROTOCOLS

__all__ = ["DEFAULT_VISION_TOWER", "DTYPES", "ATTN_IMPLEMENTATIONS", "RefSegConfig"]

DEFAULT_VISION_TOWER = "openai/clip-vit-large-patch14-336"
DTYPES = ("auto", "float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa", "flash_attention_2")


@dataclass(frozen=True)
class RefSegConfig:
    """One evaluation run: data, model, protocol, output. Validated on construction."""

    refer_seg_data: str = "refcocog|val"
    dataset_dir: str = "./data"
    results_path: str = "runs/refseg"
    checkpoint: str | None = None
    vision_tower: str = DEFAULT_VISION_TOWER
    budget: int = 576
    method: str = "litelvlm"
    protocol: str = "all"
    seed: int = 0
    limit: int | None = None
    resume: bool = False
    device: str = "auto"
    dtype: str = "auto"
    predictions: str | None = None
    allow_missing: bool = False
    save_masks: bool = False
    segmenter_factory: str | None = None
    dist_backend: str | None = None
    attn_implementation: str = "auto"
    allow_truncated_images: bool = False
    clock: str | None = None  # the stage timings' clock (litelvlm.timing: wall / cpu), pinned; None: the default

    def __post_init__(self) -> None:
        parse_refer_seg_data(self.refer_seg_data)
        check_clock(self.clock, "clock")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"--protocol must be one of {sorted(PROTOCOLS)}, got {self.protocol!r}")
        check_frame_budget(self.budget, "--num_retain_tokens")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be a positive number of images, got {self.limit}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"--attn-implementation must be one of {ATTN_IMPLEMENTATIONS}, got {self.attn_implementation!r}")
        check_method_spec(self.method)
        if self.allow_missing and not self.predictions:
            raise ValueError("--allow-missing only applies when scoring saved --predictions")
        if self.predictions is None:
            self._check_model_arguments()

    def _check_model_arguments(self) -> None:
        """What a model run needs, checked before any model is built: a checkpoint, a method that runs on images,
        a device this machine has."""
        if self.checkpoint is None:
            raise ValueError("--version (the GLaMM checkpoint folder) is required unless --predictions is given")
        check_method_runs_on(self.method, "image")
        check_unpruned_budget(self.method, self.budget)
        if self.device != "auto":
            check_device(self.device)

    @property
    def dataset(self) -> str:
        """Dataset name, e.g. 'refcoco+'."""
        return parse_refer_seg_data(self.refer_seg_data)[0]

    @property
    def split(self) -> str:
        """Split name, e.g. 'testA'."""
        return parse_refer_seg_data(self.refer_seg_data)[1]

    @property
    def run_id(self) -> str:
        """File-name stem of this run's records: what it scores and how, not how far it got (no --limit)."""
        parts = [self.dataset, self.split, method_file_name(self.method), f"b{self.budget}", self.protocol]
        if self.protocol == "glamm":
            parts.append(f"seed{self.seed}")
        if self.predictions:
            parts.append("pred")
        return "_".join(parts)

    @property
    def model_dtype(self) -> str:
        """The dtype the model runs in: --dtype, or for ``auto`` bfloat16 under the released glamm protocol."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if self.protocol == "glamm" else "auto"

    @property
    def model_attn_implementation(self) -> str | None:
        """CLIP's and the LLM's attention: --attn-implementation, or for ``auto`` eager under glamm (released)."""
        if self.attn_implementation != "auto":
            return self.attn_implementation
        return "eager" if self.protocol == "glamm" else None

    def run_meta(self) -> dict:
        """Inputs that must not change when a run is resumed."""
        def absolute(p: str | None) -> str | None:
            return None if p is None else str(Path(p).resolve())

        return {"checkpoint": absolute(self.checkpoint), "vision_tower": self.vision_tower,
                "dataset_dir": absolute(self.dataset_dir), "predictions": absolute(self.predictions),
                "allow_missing": self.allow_missing, "dtype": self.model_dtype,
                "attn_implementation": self.model_attn_implementation,
                "segmenter_factory": self.segmenter_factory, **({"clock": self.clock} if self.clock else {})}

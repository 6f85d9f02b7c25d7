"""Checks of run options that need no model, shared by the ``litelvlm`` CLI and the evaluation harnesses.

The device, the pruning method (a registered name that runs on images, or on videos) and the per-frame budget
(at most the CLIP tokens a frame has) are checked here, before any model is built; each failure is one
``ValueError`` naming the option and the fix. Video layouts add their own rule (``video.layout.check_layout_budget``).
"""

from __future__ import annotations

import re

__all__ = ["CLIP_TOKENS_PER_FRAME", "check_device", "check_frame_budget", "check_method_runs_on", "check_method"]

CLIP_TOKENS_PER_FRAME = 576  # CLIP ViT-L/14-336: a 24x24 grid of patch tokens per image or video frame
MEDIA = ("image", "video")

_DEVICE = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")


def check_device(device: str, option: str = "--device") -> str:
    """``device`` if this machine can run on it, else a ``ValueError`` naming the device and the fix
    (``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    match = _DEVICE.match(device)
    if not match or (match.group(1) != "cuda" and match.group(2) not in (None, "0")):
        raise ValueError(f"unknown device {device!r}: choose cpu, cuda, cuda:N (N = a GPU index) or mps")
    import torch

    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda} but finds no GPU"
            raise ValueError(f"{option} {device}: no CUDA device available (torch {torch.__version__} is {build}): "
                             "use --device cpu, or install a CUDA build of torch and check the driver / CUDA_VISIBLE_DEVICES")
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise ValueError(f"{option} {device}: only {count} CUDA device(s) visible (cuda:0 to cuda:{count - 1}): "
                             "pick one of those or check CUDA_VISIBLE_DEVICES")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ValueError(f"{option} {device}: the MPS backend is not available (Apple silicon with a macOS build of torch "
                         "only): use --device cpu")
    return device


def check_frame_budget(budget: int | None, option: str = "--budget", tokens: int = CLIP_TOKENS_PER_FRAME) -> None:
    """A per-image / per-frame budget of CLIP tokens: None (keep all) or an int from 1 to ``tokens``."""
    if budget is None:
        return
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"{option} {budget}: give a positive number of visual tokens to keep")
    if budget > tokens:
        raise ValueError(f"{option} {budget}: an image or frame has only {tokens} CLIP tokens (CLIP ViT-L/14-336, "
                         f"24x24 patches): choose 1 to {tokens} ({tokens} keeps them all)")


def check_method_runs_on(method: str, media: str, option: str = "--method") -> None:
    """``method`` is registered and its stage runs on ``media`` (``image``: per-image methods and FastV; ``video``:
    per-frame and clip-level methods and FastV)."""
    from .pruning import available_methods, get_method
    from .pruning.methods import FastVSelector

    if media not in MEDIA:
        raise ValueError(f"media must be one of {MEDIA}, got {media!r}")
    if method not in available_methods():
        raise ValueError(f"unknown pruning method {method!r}; choose one of: {', '.join(available_methods())}")
    selector = get_method(method)
    stages = ("pre_llm",) if media == "image" else ("pre_llm", "clip")
    if selector.stage in stages or isinstance(selector, FastVSelector):
        return
    usable = [m for m in available_methods() if get_method(m).stage in stages or isinstance(get_method(m), FastVSelector)]
    why = "selects tokens over a whole video clip" if selector.stage == "clip" else "prunes inside the LLM"
    raise ValueError(f"{option} {method} {why} and does not run on {media}s: choose one of: {', '.join(usable)}")


def check_method(method: str | None, budget: int | None, clip_budget: int | None = None, media: str = "image") -> str:
    """The pruning method to run: ``method`` checked against the registry, ``media`` and ``budget`` (None:
    ``litelvlm`` with a budget, ``none`` (the unpruned model) without; at most the CLIP tokens of a frame) and
    ``clip_budget`` (video: a clip-level method named with --method, the per-frame budget then optional)."""
    from .pruning import check_clip_budget, clip_level_methods

    check_frame_budget(budget)
    if method is not None:
        check_method_runs_on(method, media)
    if clip_budget is not None:
        if method is None:
            raise ValueError(f"--clip-budget {clip_budget} needs a clip-level --method: {', '.join(clip_level_methods())}")
        check_clip_budget(method, clip_budget)
        return method
    if method is None:
        return "litelvlm" if budget is not None else "none"
    if method == "none" and budget is not None:
        raise ValueError(f"--method none keeps every visual token: drop --budget {budget}, or pick a pruning method")
    if method != "none" and budget is None:
        raise ValueError(f"--method {method} prunes to a token budget: give --budget N (visual tokens kept), "
                         "or use --method none for the unpruned model")
    return method

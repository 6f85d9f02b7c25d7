"""Checks of run options that need no model, shared by the ``litelvlm`` CLI and the evaluation harnesses.

The device, the pruning method (a registered name that runs on images, or on videos) and the per-frame budget
(at most the CLIP tokens a frame has) are checked here, before any model is built; each failure is one
``ValueError`` naming the option and the fix. Video layouts add their own rule (``video.layout.check_layout_budget``).

A method is a registered name or a spec with options, ``name:key=value,...`` (``split_method_spec``); a spec's
options are checked by building the method (``litelvlm.pruning.method_from_spec``, which imports torch), still
before any model. Method names, budgets and the device's spelling are checked without importing torch (``BUILTIN_METHODS`` lists
the registry's methods; once ``litelvlm.pruning`` is imported its registry, with any method registered since, is
used instead), so a mistake there costs no torch import; whether the device exists needs torch.
"""

from __future__ import annotations

import re
import sys

__all__ = ["CLIP_TOKENS_PER_FRAME", "BUILTIN_METHODS", "split_method_spec", "check_method_spec", "method_file_name",
           "method_stages", "method_names", "check_device_name", "check_device", "check_frame_budget", "check_method_runs_on",
           "check_method", "check_unpruned_budget", "check_clip_budget_of", "DTYPE_NAMES", "check_dtype_name", "torch_dtype", "CLOCKS", "check_clock"]

CLIP_TOKENS_PER_FRAME = 576  # CLIP ViT-L/14-336: a 24x24 grid of patch tokens per image or video frame
MEDIA = ("image", "video")
CLOCKS = ("wall", "cpu")  # litelvlm.timing's clocks: wall time, or the process's CPU time

# Where each registered method prunes: "pre_llm" (each image / frame, before the LLM), "clip" (over a video clip),
# "llm" (inside the LLM: FastV and IVC-Prune, run by both segmenters, per frame on videos).
BUILTIN_METHODS = {
    "cdpruner": "pre_llm", "divprune": "pre_llm", "evtp": "pre_llm", "grid": "pre_llm", "litelvlm": "pre_llm",
    "none": "pre_llm", "prumerge": "pre_llm", "prumerge+": "pre_llm", "random": "pre_llm", "trim": "pre_llm",
    "visionzip": "pre_llm", "vispruner": "pre_llm",
    "dycoke": "clip", "fastvid": "clip", "holitom": "clip", "litelvlm-time": "clip", "prunevid": "clip", "sttm": "clip",
    "fastv": "llm", "ivcprune": "llm",
}
_STAGES_ON = {"image": ("pre_llm", "llm"), "video": ("pre_llm", "clip", "llm")}

_DEVICE = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")
_FILE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]")
MAX_METHOD_SPEC = 200  # characters of a method spec (it becomes part of run ids, hence file names)


def split_method_spec(spec: str) -> tuple[str, dict]:
    """``"name"`` or ``"name:key=value,key=value"`` (values as Python literals, else strings) -> (name, options),
    e.g. ``"litelvlm-time:reuse_threshold=2,video_tokens=16"``. No torch; the name is not checked (``check_method_runs_on``
    and ``litelvlm.pruning.parse_method_spec`` check it)."""
    import ast

    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a pruning method is a name or name:key=value,..., got {spec!r}")
    if len(spec) > MAX_METHOD_SPEC:
        raise ValueError(f"method {spec[:40]!r}...: a method spec holds at most {MAX_METHOD_SPEC} characters, got {len(spec)}")
    name, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"method {spec!r}: options are key=value pairs separated by commas, got {item!r}")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()
    return name, options


def check_method_spec(spec, option: str = "--method") -> None:
    """``spec`` is spelled as a method name (letters, digits, ``_ . + -``) with optional ``:key=value,...`` options;
    no registry check (a harness scoring saved predictions takes any method's name as a label)."""
    name, _ = split_method_spec(spec)  # its errors name the spec
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ValueError(f"{option} must be a method name (letters, digits, _ . + -) or name:key=value,..., got {spec!r}")


def method_file_name(spec: str) -> str:
    """``spec`` as a plain file-name part for run ids: the name, then ``@key=value`` per option in key order (so
    the same options in another order name the same run); characters other than letters, digits and ``_ . + = -``
    become ``_``."""
    name, options = split_method_spec(spec)
    plain = lambda text: _FILE_NAME_UNSAFE.sub("_", str(text))  # noqa: E731
    return plain(name) + "".join(f"@{key}={plain(value)}" for key, value in sorted(options.items()))


def method_stages() -> dict[str, str]:
    """Method name -> where it prunes (``BUILTIN_METHODS``' words): the live registry once ``litelvlm.pruning`` is
    imported, else ``BUILTIN_METHODS`` (no torch import)."""
    if "litelvlm.pruning" not in sys.modules:
        return dict(BUILTIN_METHODS)
    from .pruning import available_methods, get_method

    return {name: get_method(name).stage for name in available_methods()}


def method_names(media: str | None = None, stage: str | None = None) -> list[str]:
    """The method names, sorted: all, those that run on ``media`` (``image`` / ``video``), or those of ``stage``."""
    stages = method_stages()
    return sorted(name for name, where in stages.items()
                  if (media is None or where in _STAGES_ON[media]) and (stage is None or where == stage))


def check_device_name(device: str) -> re.Match:
    """``device`` spelled as ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (no torch import), else one ``ValueError``."""
    match = _DEVICE.match(device)
    if not match or (match.group(1) != "cuda" and match.group(2) not in (None, "0")):
        raise ValueError(f"unknown device {device!r}: choose cpu, cuda, cuda:N (N = a GPU index) or mps")
    return match


def check_device(device: str, option: str = "--device") -> str:
    """``device`` if this machine can run on it, else a ``ValueError`` naming the device and the fix
    (``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    match = check_device_name(device)
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
    """``method`` (a name or ``name:key=value,...``) is registered, its stage runs on ``media`` (``image``: per-image
    methods, FastV and IVC-Prune; ``video``: per-frame and clip-level methods, FastV and IVC-Prune) and a spec's options
    build the method. No torch import for a bare name unless ``litelvlm.pruning`` already is."""
    if media not in MEDIA:
        raise ValueError(f"media must be one of {MEDIA}, got {media!r}")
    name, options = split_method_spec(method) if isinstance(method, str) else (method, {})
    stages = method_stages()
    if not isinstance(name, str) or name not in stages:
        raise ValueError(f"unknown pruning method {name!r}; choose one of: {', '.join(sorted(stages))}")
    if stages[name] not in _STAGES_ON[media]:
        why = "selects tokens over a whole video clip" if stages[name] == "clip" else "prunes inside the LLM"
        raise ValueError(f"{option} {method} {why} and does not run on {media}s: choose one of: {', '.join(method_names(media))}")
    if options:
        from .pruning import method_from_spec

        try:
            method_from_spec(method)
        except ValueError as err:
            raise ValueError(f"{option} {method}: {err}") from None


def check_unpruned_budget(method: str, budget: int, option: str = "--num_retain_tokens") -> None:
    """The harnesses always take a budget: with ``--method none`` (the unpruned model) it must keep every CLIP token
    of an image or frame, or each segment call would fail later on."""
    if split_method_spec(method)[0] == "none" and budget != CLIP_TOKENS_PER_FRAME:
        raise ValueError(f"--method none keeps all {CLIP_TOKENS_PER_FRAME} CLIP tokens: pass {option} "
                         f"{CLIP_TOKENS_PER_FRAME}, or a pruning method for {option} {budget}")


def check_method(method: str | None, budget: int | None, clip_budget: int | None = None, media: str = "image") -> str:
    """The pruning method to run: ``method`` checked against the registry, ``media`` and ``budget`` (None:
    ``litelvlm`` with a budget, ``none`` (the unpruned model) without; at most the CLIP tokens of a frame) and
    ``clip_budget`` (video: a clip-level method named with --method, the per-frame budget then optional). No torch
    import: a method's own limits on a clip budget are ``check_clip_budget_of``'s."""
    check_frame_budget(budget)
    if method is not None:
        check_method_runs_on(method, media)
    if clip_budget is not None:
        _check_clip_budget_method(method, clip_budget)
        return method
    if method is None:
        return "litelvlm" if budget is not None else "none"
    name = split_method_spec(method)[0]
    if name == "none" and budget is not None:
        raise ValueError(f"--method none keeps every visual token: drop --budget {budget}, or pick a pruning method")
    if name != "none" and budget is None:
        raise ValueError(f"--method {method} prunes to a token budget: give --budget N (visual tokens kept), "
                         "or use --method none for the unpruned model")
    return method


def _check_clip_budget_method(method: str | None, clip_budget) -> None:
    clip_level = ", ".join(method_names(stage="clip"))
    if method is None:
        raise ValueError(f"--clip-budget {clip_budget} needs a clip-level --method: {clip_level}")
    if isinstance(clip_budget, bool) or not isinstance(clip_budget, int) or clip_budget < 1:
        raise ValueError(f"the clip budget must be a positive number of LLM visual tokens per clip, got {clip_budget!r}")
    if method_stages()[split_method_spec(method)[0]] != "clip":
        raise ValueError(f"a clip budget needs a clip-level method ({clip_level}); {method!r} prunes each frame on its own")


def check_clip_budget_of(method: str, clip_budget: int | None) -> None:
    """What ``method`` itself refuses of a ``clip_budget`` (e.g. a method run at its paper's settings); imports torch."""
    if clip_budget is not None:
        from .pruning import check_clip_budget

        check_clip_budget(method, clip_budget)


DTYPE_NAMES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
               "fp16": "float16", "float16": "float16"}


def check_dtype_name(name: str | None) -> str | None:
    """A ``--dtype`` name (fp32 | bf16 | fp16, or the torch spelling), or None for the device's default; no torch."""
    if name is not None and name not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {name!r}: choose fp32, bf16 or fp16")
    return name


def torch_dtype(name: str | None):
    """The torch dtype of a ``check_dtype_name`` name (None stays None)."""
    if check_dtype_name(name) is None:
        return None
    import torch

    return getattr(torch, DTYPE_NAMES[name])


def check_clock(clock: str | None, option: str = "--clock") -> None:
    """A timing clock (``CLOCKS``) or None (the timer's default)."""
    if clock is not None and clock not in CLOCKS:
        raise ValueError(f"{option} must be one of {', '.join(CLOCKS)}, got {clock!r}")

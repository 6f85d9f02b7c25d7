"""Mixed precision around a segmenter's model forwards: ``torch.autocast`` or nothing.

The released VideoGLaMM evaluation casts the model to fp16 AND runs ``model.inference`` under
``torch.cuda.amp.autocast()`` (dtype float16). ATen's CUDA autocast lists decide each op's dtype there:
matmul-like ops (``linear``, ``matmul``, ``mm``, ``bmm``, ``baddbmm``, ``addmm``, conv, ``prelu``,
``scaled_dot_product_attention``) run in fp16; ``softmax``, ``log_softmax``, ``layer_norm``, ``group_norm``,
``sum``, ``prod``, ``cumsum``, ``exp``, ``log``, ``pow``, ``rsqrt``, ``reciprocal``, ``softplus``, ``norm`` (so
``F.normalize``), ``cosine_similarity``, ``cdist`` and ``logsumexp`` run in fp32 whatever their inputs and return
fp32; ``addcmul``, ``addcdiv``, ``index_put``, ``scatter_add``, ``grid_sampler``, ``dot`` promote to the widest
input type; every other op (``add``, ``mul``, ``mean``, ``gelu``, ``silu``, ...) runs in its inputs' dtype. An op
called with an explicit ``dtype=`` (transformers' eager attention softmax, ``dtype=torch.float32``) is left alone.
Plain fp16 without autocast keeps every one of these in fp16, hence different rounding on a GPU. CPU autocast
uses other lists (``softmax`` and ``layer_norm`` stay in the low precision there), so a CPU run under autocast
checks the mechanism, not the GPU's numbers. The released GLaMM evaluation runs plain bf16 (its DeepSpeed engine
casts the module with ``.bfloat16()`` and enters no autocast), so it needs no region here.

``inference_autocast(device, dtype)`` is that region: ``torch.autocast(device.type, dtype)`` for a dtype, a
no-op for None. A device type or dtype autocast does not support is an error naming both, never torch's
warning that silently disables it.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["AUTOCAST_DTYPES", "check_autocast", "inference_autocast"]

AUTOCAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_SUPPORTED = {"cuda": (torch.float16, torch.bfloat16), "cpu": (torch.float16, torch.bfloat16)}


def check_autocast(device: str | torch.device, dtype: torch.dtype | None) -> None:
    """Raise ValueError when autocast cannot run ``dtype`` on ``device`` (None: no autocast, always fine)."""
    if dtype is None:
        return
    kind = torch.device(device).type
    allowed = _SUPPORTED.get(kind, ())
    if dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed) or "none"
        raise ValueError(f"autocast {str(dtype).removeprefix('torch.')} is not available on {kind} (supported: {names}); "
                         f"set the preset's model.autocast for {kind} to null or one of those")


def inference_autocast(device: str | torch.device, dtype: torch.dtype | None):
    """A context manager: ``torch.autocast`` on ``device``'s type in ``dtype``, or a no-op when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    check_autocast(device, dtype)
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)

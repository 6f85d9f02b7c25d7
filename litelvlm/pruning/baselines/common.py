"""Scores and small selection helpers shared by the pre-LLM baselines.

All scores are computed in at least float32 (``upcast``) from ``ClipFrameFeatures``. The attention
inputs are the last CLIP layer's q/k projections (computed on ``layer_norm1`` of the select-layer
states): the attention that reads the very features the LLM consumes.
"""

from __future__ import annotations

import torch

from ..features import ClipFrameFeatures

__all__ = [
    "check_attention_inputs",
    "multihead_cls_attention",
    "fullwidth_cls_attention",
    "head_mean_keys",
    "iqr_outlier_mask",
    "strided_positions",
    "ranked",
    "complement",
    "upcast",
    "max_min_order",
    "released_settings",
]


def released_settings(method: str, released, settings: dict, release: dict) -> dict:
    """``settings`` (option name -> value) for a video baseline's ``released`` flag: unchanged when it is False; when
    True, an option left at None takes the ``release``'s value and any other must equal it (else a one-line
    ``ValueError`` naming the option)."""
    if not isinstance(released, bool):
        raise ValueError(f"{method}: released must be True or False, got {released!r}")
    if not released:
        return dict(settings)
    out = dict(settings)
    for name, value in release.items():
        if out[name] is None:
            out[name] = value
        elif out[name] != value:
            raise ValueError(f"{method}: released=True runs the release's {name}={value!r}; got {name}={out[name]!r} "
                             "(drop one of the two)")
    return out


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in at least float32 (half types are promoted, float64 stays float64)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def check_attention_inputs(features: ClipFrameFeatures) -> None:
    """Raise a ``ValueError`` when q/k do not line up with the states or the heads do not split the width."""
    frames, seq, width = features.states.shape
    for name in ("query", "key"):
        tensor = getattr(features, name)
        if tensor.dim() != 3 or tensor.shape[:2] != (frames, seq):
            raise ValueError(
                f"features.{name} must be (F, 1+N, D) = ({frames}, {seq}, D) like features.states, "
                f"got {tuple(tensor.shape)}"
            )
    if features.query.shape != features.key.shape:
        raise ValueError(f"features.query {tuple(features.query.shape)} and features.key {tuple(features.key.shape)} differ")
    dim = features.key.shape[-1]
    if not isinstance(features.num_heads, int) or features.num_heads < 1 or dim % features.num_heads:
        raise ValueError(f"features.num_heads={features.num_heads!r} must be a positive divisor of the attention width={dim}")


def _split_heads(tensor: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(F, S, D) -> (F, H, S, D/H), in CLIP's head layout (head h owns columns h*D/H:(h+1)*D/H)."""
    frames, seq, dim = tensor.shape
    return tensor.reshape(frames, seq, num_heads, dim // num_heads).transpose(1, 2)


def multihead_cls_attention(query: torch.Tensor, key: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(F, H, N): per head, the CLS row of ``softmax(q k^T / sqrt(D/H))`` over all 1+N keys, patch columns."""
    q = _split_heads(upcast(query[:, :1]), num_heads)
    k = _split_heads(upcast(key), num_heads)
    weights = torch.softmax(q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5), dim=-1)  # (F, H, 1, 1+N)
    return weights[:, :, 0, 1:]


def fullwidth_cls_attention(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """(F, N): the CLS row of a single-head ``softmax(q k^T / sqrt(D))`` over all 1+N keys, patch columns."""
    q, k = upcast(query[:, :1]), upcast(key)
    weights = torch.softmax(q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5), dim=-1)  # (F, 1, 1+N)
    return weights[:, 0, 1:]


def head_mean_keys(key: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(F, 1+N, D/H): the keys averaged over heads."""
    return _split_heads(upcast(key), num_heads).mean(dim=1)


def iqr_outlier_mask(scores: torch.Tensor) -> torch.Tensor:
    """(N,) bool: ``scores > Q3 + 1.5 * (Q3 - Q1)``, quartiles linearly interpolated (numpy's default)."""
    values = upcast(scores)
    q1, q3 = torch.quantile(values, torch.tensor([0.25, 0.75], dtype=values.dtype, device=values.device)).unbind()
    return values > q3 + 1.5 * (q3 - q1)


def strided_positions(count: int, length: int, device=None) -> torch.Tensor:
    """``count`` positions ``floor(i * length / count)`` in ``[0, length)``: a uniform stride from 0, unique
    whenever ``count <= length``."""
    if count > length:
        raise ValueError(f"cannot take {count} distinct strided positions out of {length}")
    return torch.arange(count, device=device) * length // count


def ranked(scores: torch.Tensor) -> torch.Tensor:
    """Indices of ``scores`` (.., N) from highest to lowest; ties keep the lower index first."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices


def complement(indices: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """The token indices in ``[0, num_tokens)`` not in ``indices``, ascending."""
    keep = torch.ones(num_tokens, dtype=torch.bool, device=indices.device)
    keep[indices] = False
    return keep.nonzero().squeeze(1)


def max_min_order(distances: torch.Tensor, first: int, count: int) -> torch.Tensor:
    """(count,) greedy max-min (farthest-point) order over a symmetric (N, N) ``distances``: ``first``, then
    repeatedly the token whose distance to its nearest chosen token is largest (lowest index on ties). A chosen
    token is never chosen again, so ``count <= N`` distinct indices come back."""
    chosen = torch.empty(count, dtype=torch.long, device=distances.device)
    chosen[0] = first
    nearest = distances[first].clone()
    nearest[first] = float("-inf")
    for i in range(1, count):
        pick = torch.argmax(nearest)
        chosen[i] = pick
        nearest = torch.minimum(nearest, distances[pick])  # chosen tokens stay at -inf
        nearest[pick] = float("-inf")
    return chosen


def producing_layer_qk(features) -> tuple[torch.Tensor, torch.Tensor]:
    """q and k (F, 1+N, D) inside the CLIP layer that produces the select-layer states."""
    if features.select_query is None or features.select_key is None:
        raise ValueError(
            "these ClipFrameFeatures lack select_query/select_key (the projections of the layer that produces the "
            "selected states): build them with litelvlm.pruning.encode_frames / ClipTokenPruner.encode"
        )
    return features.select_query, features.select_key

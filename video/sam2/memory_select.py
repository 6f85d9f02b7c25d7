"""Training-free pruning of SAM2's spatial memory: which memory tokens of a frame later frames attend to.

A selector is called once per memory frame (the prompted frame 0 included, pruned by the same rule) with

* ``logits`` (E, h, w): the frame's mask logits per object at the memory grid (``memory_grid_logits``),
* ``features`` (h*w, E, C): the frame's memory features, as memory attention reads them,
* ``budget``: spatial tokens to keep per object (the same for every object, so objects stay one batch),

and returns the kept raster indices (E, budget) long. Object pointers are always kept. New rules are a function
and a line: ``@register_memory_selector("name")``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "MASK_DILATION",
    "register_memory_selector",
    "get_memory_selector",
    "available_memory_selectors",
    "check_memory_budget",
    "memory_grid_logits",
    "select_memory_tokens",
]

MASK_DILATION = 2  # memory cells (16 px each at 1024 px) kept around the object's mask
_SELECTORS: dict[str, Callable] = {}


def register_memory_selector(name: str):
    """Function decorator: make ``fn(logits, features, budget) -> (E, budget)`` available as ``name``."""

    def decorator(fn):
        if name in _SELECTORS:
            raise ValueError(f"memory selector {name!r} is already registered")
        _SELECTORS[name] = fn
        return fn

    return decorator


def available_memory_selectors() -> list[str]:
    """Names accepted by ``get_memory_selector``."""
    return sorted(_SELECTORS)


def get_memory_selector(name: str) -> Callable:
    """The selector registered under ``name``."""
    if name not in _SELECTORS:
        raise ValueError(f"unknown memory selector {name!r}; choose one of: {', '.join(available_memory_selectors())}")
    return _SELECTORS[name]


def check_memory_budget(budget: int | None, tokens: int) -> int | None:
    """``budget`` if None (every token) or an int in [1, tokens], else a one-line ValueError naming the range."""
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= tokens):
        raise ValueError(f"memory_budget must be an int in [1, {tokens}] (spatial memory tokens kept per frame) "
                         f"or None (all), got {budget!r}")
    return budget


def memory_grid_logits(low_res: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Low-res mask logits (E, H, W) -> (E, h, w) at the memory grid: each cell's highest logit, so a cell is in the
    mask (> 0) when any of its pixels is."""
    return F.adaptive_max_pool2d(low_res.float()[:, None], grid)[:, 0]


def select_memory_tokens(name: str, logits: torch.Tensor, features: torch.Tensor, budget: int) -> torch.Tensor:
    """Kept indices (E, budget) of selector ``name``, sorted (raster order), checked for shape, range and repeats."""
    num_objects, tokens = logits.shape[0], logits.shape[1] * logits.shape[2]
    rows = get_memory_selector(name)(logits, features, budget)
    if not isinstance(rows, torch.Tensor) or rows.dtype != torch.long or tuple(rows.shape) != (num_objects, budget):
        got = (rows.dtype, tuple(rows.shape)) if isinstance(rows, torch.Tensor) else type(rows)
        raise ValueError(f"memory selector {name!r} must return (E, budget) = ({num_objects}, {budget}) long indices, got {got}")
    rows = rows.sort(dim=1).values
    if rows.numel() and (rows[:, 0].min() < 0 or rows[:, -1].max() >= tokens or (rows.diff(dim=1) == 0).any()):
        raise ValueError(f"memory selector {name!r} must return distinct indices in [0, {tokens})")
    return rows


def _grid_first(grid: tuple[int, int], budget: int, device) -> torch.Tensor:
    """Every raster index once, the ``grid`` selector's ``budget`` tokens first: the order in which ties are broken."""
    from litelvlm.pruning import grid_indices

    first = grid_indices(grid, budget).to(device)
    rest = torch.ones(grid[0] * grid[1], dtype=torch.bool, device=device)
    rest[first] = False
    return torch.cat([first, rest.nonzero()[:, 0]])


@register_memory_selector("mask")
def mask_memory_tokens(logits: torch.Tensor, features: torch.Tensor, budget: int) -> torch.Tensor:
    """The object's own cells, then its context, by what the tracker already predicted on that frame.

    First every cell of the object's mask (logit > 0) dilated by ``MASK_DILATION`` cells: the object and its
    immediate surroundings (its boundary and what it moves against), which is what the next frames look for.
    The rest of the budget is refilled by the highest mask logit, i.e. the highest sigmoid probability of being
    the object: outside the mask these are the cells just beyond its boundary and look-alike regions, the
    tokens that decide whether the mask grows, shrinks or jumps. When the dilated mask alone exceeds the budget
    its most confident cells are kept. Ties (e.g. an object judged absent: every logit is SAM2's no-object score)
    go to a uniform grid (the ``grid`` selector)."""
    num_objects, h, w = logits.shape
    near = F.max_pool2d((logits > 0).float()[:, None], 2 * MASK_DILATION + 1, stride=1, padding=MASK_DILATION)
    near, score = near.flatten(1) > 0, logits.flatten(1)
    order = _grid_first((h, w), budget, logits.device).expand(num_objects, -1)
    order = order.gather(1, score.gather(1, order).sort(dim=1, descending=True, stable=True).indices)
    order = order.gather(1, near.gather(1, order).to(torch.uint8).sort(dim=1, descending=True, stable=True).indices)
    return order[:, :budget]


@register_memory_selector("grid")
def grid_memory_tokens(logits: torch.Tensor, features: torch.Tensor, budget: int) -> torch.Tensor:
    """A uniform spatial subsample, the same for every object and frame (``litelvlm.pruning.grid_indices``):
    a baseline that ignores the tracker."""
    from litelvlm.pruning import grid_indices

    num_objects, h, w = logits.shape
    return grid_indices((h, w), budget).to(logits.device).expand(num_objects, -1).clone()

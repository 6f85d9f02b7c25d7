"""Token-selection methods and their registry.

A method turns one CLIP vision forward (``ClipFrameFeatures`` of F frames) and, when it is text
guided, the text embeddings (T, P) into a ``Selection``: the (F, budget) indices of the patch tokens
that reach the LLM and, for methods that merge tokens, their merged (F, budget, D) features.
Every frame is pruned independently. New methods register with ``@register_method("name")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from .features import ClipFrameFeatures, context_scores, text_similarity
from .select import check_budget, litelvlm_select, litelvlm_select_cells

__all__ = [
    "Selection",
    "TokenSelector",
    "register_method",
    "get_method",
    "available_methods",
    "parse_method_spec",
    "method_from_spec",
    "LiteLVLMSelector",
    "AllTokens",
    "RandomSelector",
    "GridSelector",
    "InLLMSelector",
    "FastVSelector",
    "check_llm_layer",
    "grid_indices",
]


@dataclass
class Selection:
    """Kept patch indices (F, budget); ``features`` (F, budget, D) only when the method merges tokens."""

    indices: torch.Tensor
    features: torch.Tensor | None = None


class TokenSelector:
    """Base class of a selection method. ``stage`` is ``"pre_llm"`` or ``"llm"`` (inside the LLM); clip-level
    methods (``litelvlm.pruning.clip_level``) have ``"clip"`` and may add a part inside the LLM (``llm_plan``)."""

    name: ClassVar[str] = ""
    #: The selection reads the expression: it is given the CLIP text embedding of the question (or expression);
    #: methods without it are given none, so their visual tokens are the same for every expression.
    uses_text: ClassVar[bool] = False
    stage: ClassVar[str] = "pre_llm"
    #: The method's part inside the LLM reads the question, so the LLM's states over the visual tokens change with
    #: it (FastV and PruneVid rank the visual tokens by the attention the question's positions pay them in the
    #: prompt pass). None: True for every method with a part inside the LLM (stage ``"llm"``, or a clip-level
    #: method with its own ``llm_plan``), False otherwise. A method whose in-LLM part leaves the prompt pass alone
    #: (DyCoke prunes decoding steps only) sets False.
    llm_reads_question: ClassVar[bool | None] = None

    @property
    def acts_in_llm(self) -> bool:
        """Whether the method has a part inside the LLM (stage ``"llm"``, or a clip-level method's own ``llm_plan``)."""
        if self.stage == "llm":
            return True
        from .clip_level import ClipSelector  # clip_level imports this module

        return isinstance(self, ClipSelector) and type(self).llm_plan is not ClipSelector.llm_plan

    @property
    def shares_prefix(self) -> bool:
        """Whether every expression of a clip gets the same visual tokens AND the same LLM states over them: the
        selection does not read the text (``uses_text`` False) and no part inside the LLM reads the question
        (``llm_reads_question``, derived from ``acts_in_llm`` when unset). VideoGLaMM's prompt puts the system text
        and all visual tokens before the question, so for such a method that prefix can be prefilled once per clip
        and its KV cache reused by every expression (``VideoSegmenterConfig.share_prefix``)."""
        reads_question = self.acts_in_llm if self.llm_reads_question is None else self.llm_reads_question
        return not self.uses_text and not reads_question

    def select(self, features: ClipFrameFeatures, budget: int, text_embeds: torch.Tensor | None = None) -> Selection:
        raise NotImplementedError

    def check(self, features: ClipFrameFeatures, budget: int, text_embeds: torch.Tensor | None) -> None:
        """Validate the budget (and texts, for text-guided methods) before selecting."""
        if self.uses_text:
            if text_embeds is None:
                raise ValueError(f"method {self.name!r} is text guided: pass input_ids/attention_mask or text_embeds")
            if text_embeds.dim() != 2:
                raise ValueError(f"text_embeds must be (T, P), got shape {tuple(text_embeds.shape)}")
            check_budget(budget, features.num_tokens, text_embeds.shape[0])
        else:
            check_budget(budget, features.num_tokens)

    def __repr__(self) -> str:  # the settings only, not private state or the last clip's (``_...``, ``last_...``)
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith(("_", "last_")))
        return f"{type(self).__name__}({opts})"


_REGISTRY: dict[str, Callable[..., TokenSelector]] = {}


def register_method(name: str):
    """Class decorator: make a ``TokenSelector`` subclass available as ``get_method(name)``."""

    def decorator(cls):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_methods() -> list[str]:
    """Names accepted by ``get_method``."""
    return sorted(_REGISTRY)


def get_method(name: str | TokenSelector, **options) -> TokenSelector:
    """Instantiate the method registered under ``name`` (or a ``parse_method_spec`` string, its options added to
    ``options``) with its ``options``."""
    if isinstance(name, TokenSelector):
        if options:
            raise ValueError("options cannot be combined with an already built method instance")
        return name
    if isinstance(name, str) and ":" in name:
        spec = name
        name, spec_options = parse_method_spec(spec)
        twice = sorted(set(spec_options) & set(options))
        if twice:
            raise ValueError(f"method {spec!r}: option {twice[0]} is set twice")
        options = {**spec_options, **options}
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown pruning method {name!r}; choose one of: {', '.join(available_methods())}") from None
    try:
        return factory(**options)
    except TypeError as err:
        raise ValueError(f"bad options for method {name!r}: {err}") from None


def parse_method_spec(spec: str) -> tuple[str, dict]:
    """``"name"`` or ``"name:key=value,key=value"`` (values as Python literals, else strings) -> (name, options),
    e.g. ``"litelvlm-time:reuse_threshold=2,video_tokens=16"`` (``litelvlm.run_options.split_method_spec``); the name
    is checked against the registry."""
    from ..run_options import split_method_spec

    name, options = split_method_spec(spec)
    if name not in _REGISTRY:
        raise ValueError(f"unknown pruning method {name!r}; choose one of: {', '.join(available_methods())}")
    return name, options


def method_from_spec(spec: str) -> TokenSelector:
    """The method a ``parse_method_spec`` string names, built with its options (bad options: one-line error)."""
    name, options = parse_method_spec(spec)
    return get_method(name, **options)


@register_method("litelvlm")
class LiteLVLMSelector(TokenSelector):
    """LiteLVLM: lowest CLIP text similarity (the referent) + CLS-attention context refill (FACTS §1).

    ``context_share`` reserves a share of the budget for context tokens; ``raster_order`` keeps the
    tokens in image order; ``cell`` > 1 applies the rule to ``cell`` x ``cell`` blocks of tokens
    (``litelvlm_select_cells``), for models that pool blocks into one LLM token. All default to the
    released behaviour.
    """

    uses_text = True

    def __init__(self, context_share: float = 0.0, raster_order: bool = False, cell: int = 1):
        if not 0.0 <= context_share < 1.0:
            raise ValueError(f"context_share must be in [0, 1), got {context_share}")
        if int(cell) < 1:
            raise ValueError(f"cell must be >= 1, got {cell}")
        self.context_share = float(context_share)
        self.raster_order = bool(raster_order)
        self.cell = int(cell)

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        similarity = text_similarity(features.projected(), text_embeds)
        context = context_scores(features.query, features.key, features.value)
        options = {"context_share": self.context_share, "raster_order": self.raster_order}
        if self.cell > 1:
            rows = [litelvlm_select_cells(similarity[f], context[f], budget, features.grid, self.cell, **options)
                    for f in range(features.num_frames)]
        else:
            rows = [litelvlm_select(similarity[f], context[f], budget, **options) for f in range(features.num_frames)]
        return Selection(torch.stack(rows))


@register_method("none")
class AllTokens(TokenSelector):
    """No pruning: every patch token, in raster order. ``budget`` must be None or the token count."""

    def select(self, features, budget, text_embeds=None):
        if budget != features.num_tokens:
            raise ValueError(f"method 'none' keeps all {features.num_tokens} tokens; got budget={budget} (use None)")
        indices = torch.arange(features.num_tokens, device=features.states.device)
        return Selection(indices.expand(features.num_frames, -1).clone())


@register_method("random")
class RandomSelector(TokenSelector):
    """``budget`` tokens drawn uniformly without replacement, raster order; seeded, so repeatable."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        generator = torch.Generator().manual_seed(self.seed)
        rows = [torch.randperm(features.num_tokens, generator=generator)[:budget].sort().values for _ in range(features.num_frames)]
        return Selection(torch.stack(rows).to(features.states.device))


def grid_indices(grid: tuple[int, int], budget: int) -> torch.Tensor:
    """Raster indices of a uniform spatial subsample of a ``grid`` (h, w) of tokens.

    A square budget k*k (k <= h, w) takes a k x k lattice of evenly spaced rows and columns; any
    other budget takes ``budget`` evenly spaced positions along the raster order.
    """
    h, w = grid
    check_budget(budget, h * w)
    k = math.isqrt(budget)
    if k * k == budget and k <= h and k <= w:
        rows = torch.linspace(0, h - 1, k).round().long()
        cols = torch.linspace(0, w - 1, k).round().long()
        return (rows[:, None] * w + cols[None, :]).reshape(-1)
    return torch.linspace(0, h * w - 1, budget).round().long()


@register_method("grid")
class GridSelector(TokenSelector):
    """Uniform spatial subsample (see ``grid_indices``), identical for every frame."""

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        indices = grid_indices(features.grid, budget).to(features.states.device)
        return Selection(indices.expand(features.num_frames, -1).clone())


class InLLMSelector(TokenSelector):
    """Base of the methods that prune inside the LLM (``stage = "llm"``): ``select`` keeps ALL tokens in raster
    order (validating ``budget`` all the same) and ``prefill`` runs the pruning prefill.

    ``prefill(llm, batch, budget)`` takes the LLM and a right-padded ``litelvlm.lvlm.SplicedBatch`` and returns
    ``(hidden (B, L', H)`` after the final norm, ``token_ids (B, L')`` of the pruned rows, ``kept (B, budget)``
    ascending indices among each row's image tokens). ``layer`` is the decoder layer K from which it prunes.
    The video path runs the same prefill per frame (``video.fastv.VideoFastVPlan``) with the method's ``ranker()``
    and ``keep_position_ids``.
    """

    stage = "llm"
    layer: int
    keep_position_ids: bool = True

    def ranker(self):
        """The ``litelvlm.fastv.Ranker`` that scores the image tokens at layer K-1 (each group keeps its best
        ``quota``); None: FastV's own (the attention the last position pays them)."""
        return None

    def select(self, features, budget, text_embeds=None):
        self.check(features, budget, text_embeds)
        indices = torch.arange(features.num_tokens, device=features.states.device)
        return Selection(indices.expand(features.num_frames, -1).clone())

    def prefill(self, llm, batch, budget: int):
        raise NotImplementedError


def check_llm_layer(layer, method: str, ranks_by: str) -> int:
    """``layer`` when it is an int >= 1, else a ``ValueError`` saying why ``method`` needs one."""
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
        raise ValueError(f"layer must be an int >= 1 ({method} ranks image tokens by {ranks_by}), got {layer!r}")
    return layer


@register_method("fastv")
class FastVSelector(InLLMSelector):
    """FastV (FACTS §6): prunes inside the LLM, so ``select`` keeps ALL tokens in raster order.

    Nothing is pruned before the LLM; ``litelvlm.fastv.fastv_prefill`` keeps ``budget`` image tokens
    from decoder layer ``layer`` (K >= 1) on, ranked by the head-mean attention the last position
    pays them in layer K-1. ``keep_position_ids`` keeps the kept tokens' original position ids
    (released); False re-numbers them contiguously. ``select`` validates ``budget`` all the same.
    """

    def __init__(self, layer: int = 2, keep_position_ids: bool = True):
        self.layer = check_llm_layer(layer, "FastV", "layer K-1's attention")
        self.keep_position_ids = bool(keep_position_ids)

    def prefill(self, llm, batch, budget: int):
        from ..fastv import fastv_prefill  # transformers: imported when an LLM runs

        return fastv_prefill(llm, batch, budget=budget, layer=self.layer, keep_position_ids=self.keep_position_ids)

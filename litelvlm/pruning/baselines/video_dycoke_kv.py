"""DyCoke's stage 2, dynamic KV-cache pruning during decoding (the rule and its adaptation: ``video_dycoke``'s
docstring). Kept apart from stage 1 because it needs transformers, which ``litelvlm.pruning`` does not import."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import DynamicCache
from transformers.models.llama.modeling_llama import repeat_kv

from ...fastv import VISUAL_TOKEN_ID, _decoder_of, _query_key_weights, _rotary, _sliding_window
from ...hf_compat import cache_kwargs
from .video_dycoke import RELEASED_LAYER, RELEASED_PRUNE_RATIO, RELEASED_SIMILARITY_THRESHOLD

__all__ = ["DyCokeKVPlan", "DyCokePrefill", "DyCokeStep", "dycoke_kv_step"]


# ---------------------------------------------------------------------------- stage 2: dynamic KV pruning rule
def dycoke_kv_step(visual_attention: torch.Tensor, previous: torch.Tensor | None, keep: int,
                   threshold: float = RELEASED_SIMILARITY_THRESHOLD) -> tuple[torch.Tensor | None, float]:
    """One decoding step of the released rule: ``(kept, similarity)``. ``kept`` holds the ascending indices (among
    the V visual tokens) of the ``keep`` most attended, with the lower index first on ties, when the similarity to
    the previous step's visual attention is below ``threshold`` (always at the first step, where it is 0). It is
    None when the step is not pruned."""
    visual_attention = visual_attention.detach()
    similarity = 0.0 if previous is None else float(F.cosine_similarity(visual_attention.float(), previous.detach().float(), dim=0))
    if similarity < threshold:
        order = torch.sort(visual_attention, descending=True, stable=True).indices
        return order[:keep].sort().values, similarity
    return None, similarity


@dataclass
class DyCokeStep:
    """One decoding step: the position it fed, the similarity to the previous step, and the visual tokens (indices
    among the prompt's visual tokens) whose KV entries layers >= l read. ``kept`` None: all (not pruned)."""

    position: int
    similarity: float
    kept: torch.Tensor | None


@dataclass
class DyCokePrefill:
    """A teacher-forced pass: final-norm ``hidden`` (B, L, H) and ``token_ids`` (B, L), -1 at visual positions."""

    hidden: torch.Tensor
    token_ids: torch.Tensor


class _SubsetCache(DynamicCache):
    """A ``DynamicCache`` that stores every entry but hands the attention only the entries in ``view`` (as the
    release's ``PrunableDynamicCache`` gathers ``kv_cache``); the full keys of layer ``capture`` stay readable."""

    def __init__(self, capture: int):
        super().__init__()
        self.view: torch.Tensor | None = None
        self.capture = capture
        self.captured: torch.Tensor | None = None

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = super().update(key_states, value_states, layer_idx, *args, **kwargs)
        if layer_idx == self.capture:
            self.captured = keys
        if self.view is None:
            return keys, values
        return keys.index_select(2, self.view), values.index_select(2, self.view)


def _attention_rows(decoder_layer: nn.Module, hidden: torch.Tensor, rotary, queries: torch.Tensor, keys: torch.Tensor | None,
                    visible: torch.Tensor) -> torch.Tensor:
    """(Q, K) float32 head-mean softmax attention of the ``queries`` positions of ``hidden`` (1, L, H), the
    layer's input, over K keys. The keys are rotated keys (1, kv heads, K, d) when given, else they are computed
    from ``hidden``. ``visible`` (Q, K) is bool."""
    attn = decoder_layer.self_attn
    (q_weight, q_bias), (k_weight, k_bias) = _query_key_weights(attn)
    normed = decoder_layer.input_layernorm(hidden)
    cos, sin = rotary
    query = F.linear(normed[:, queries], q_weight, q_bias).view(1, queries.numel(), -1, attn.head_dim).transpose(1, 2)
    query = _rotary(query, cos[:, queries], sin[:, queries])
    if keys is None:
        keys = F.linear(normed, k_weight, k_bias).view(1, hidden.shape[1], -1, attn.head_dim).transpose(1, 2)
        keys = _rotary(keys, cos, sin)
    keys = repeat_kv(keys, attn.num_key_value_groups)
    logits = torch.einsum("bhqd,bhkd->bhqk", query.float(), keys.float()) * attn.scaling
    logits = logits.masked_fill(~visible[None, None], float("-inf"))
    return logits.softmax(-1).mean(1)[0]


def _causal_visible(length: int, window: int | None, device) -> torch.Tensor:
    """(L, L) bool: key j visible to query i (causal, and inside the sliding window: j > i - window)."""
    index = torch.arange(length, device=device)
    visible = index[None] <= index[:, None]
    if window is not None:
        visible &= index[None] > index[:, None] - window
    return visible


def _additive(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(1, 1, Q, K) additive mask: 0 where visible, the dtype's minimum elsewhere."""
    mask = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    return mask.masked_fill(~visible, torch.finfo(dtype).min)[None, None]


@dataclass
class DyCokeKVPlan:
    """DyCoke's stage 2 for one visual sequence (``image_counts`` CLIP-stream tokens per frame, then ``video_count``
    video tokens): an unpruned ``prefill`` and a ``generation_forward`` that prunes the visual KV entries of layers
    >= ``layer`` at every decoding step (module docstring). ``forward.steps`` records each step."""

    image_counts: list[int]
    video_count: int
    layer: int = RELEASED_LAYER
    prune_ratio: float = RELEASED_PRUNE_RATIO
    similarity_threshold: float = RELEASED_SIMILARITY_THRESHOLD

    @property
    def num_visual(self) -> int:
        return sum(self.image_counts) + self.video_count

    def keep_count(self, num_visual: int | None = None) -> int:
        """Visual KV entries a pruned step keeps: the release's ``int(V * (1 - p))``."""
        return int((self.num_visual if num_visual is None else num_visual) * (1 - self.prune_ratio))

    def check_layer(self, num_layers: int) -> None:
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or not 1 <= self.layer < num_layers:
            raise ValueError(f"DyCoke layer l={self.layer!r} needs 1 <= l < {num_layers} (the LLM's decoder layers): layer "
                             f"l-1's attention picks the visual KV entries that layers l.. read; the released l=3 needs "
                             f"at least 4 layers (get_method('dycoke', layer=...))")

    def usable_layer(self, num_layers: int) -> int:
        """l for an LLM of ``num_layers`` layers: ``layer``, or ``num_layers - 1`` (with a warning that says so) when
        the LLM is too shallow for it, as PruneVid does with its K; fewer than 2 layers leave nothing to prune."""
        if num_layers < 2:
            self.check_layer(num_layers)
        if self.layer < num_layers:
            return self.layer
        warnings.warn(f"dycoke: layer l={self.layer} does not fit an LLM of {num_layers} layers; pruning from layer "
                      f"{num_layers - 1} instead (choose with get_method('dycoke', layer=...))", stacklevel=3)
        return num_layers - 1

    # ------------------------------------------------------------------ teacher forced
    def prefill(self, llm, batch, prompt_lengths=None) -> DyCokePrefill:
        """The unpruned forward of ``batch`` (the release prunes decoding steps only; ``prompt_lengths`` unused)."""
        decoder = _decoder_of(llm)
        out = decoder(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, use_cache=False)
        return DyCokePrefill(out.last_hidden_state, batch.token_ids)

    # ------------------------------------------------------------------ generation
    def generation_forward(self, llm, prompt_token_ids: torch.Tensor, use_cache: bool):
        """A ``litelvlm.decoding.generate`` ``forward``. With the cache, the first call is the unpruned prefill and
        each later call is one decoding step that gathers its KV subset. Without it, every call is
        ``full_forward``."""
        decoder = _decoder_of(llm)
        layer = self.usable_layer(len(decoder.layers))
        if layer != self.layer:
            return replace(self, layer=layer).generation_forward(llm, prompt_token_ids, use_cache)
        ids = prompt_token_ids.reshape(-1)
        visual = (ids == VISUAL_TOKEN_ID).nonzero().flatten()
        if visual.numel() != self.num_visual:
            raise ValueError(f"the prompt holds {visual.numel()} visual positions, the plan expects {self.num_visual}")
        implementation = getattr(decoder.config, "_attn_implementation", None)
        if not use_cache and implementation not in ("sdpa", "eager", None):
            raise ValueError(f"DyCoke without a KV cache masks pruned keys per row (4D masks): use attn_implementation "
                             f"'sdpa' or 'eager', not {implementation!r}, or use_cache=True")
        prompt_length = ids.numel()

        def forward(inputs_embeds: torch.Tensor, state):
            if not use_cache:
                hidden, forward.steps = self.full_forward(llm, inputs_embeds, visual.to(inputs_embeds.device), prompt_length)
                return hidden, None
            if state is None:
                cache = _SubsetCache(capture=self.layer - 1)
                out = decoder(inputs_embeds=inputs_embeds, use_cache=True, **cache_kwargs(cache))
                forward.steps = []
                return out.last_hidden_state, {"cache": cache, "length": inputs_embeds.shape[1], "previous": None,
                                               "visual": visual.to(inputs_embeds.device)}
            hidden, step = self.decode_step(decoder, inputs_embeds, state)
            forward.steps.append(step)
            return hidden, state

        forward.steps = []
        return forward

    def decode_step(self, decoder: nn.Module, inputs_embeds: torch.Tensor, state: dict) -> tuple[torch.Tensor, DyCokeStep]:
        """One token (1, 1, H) through every layer with the cache in ``state``; returns its final-norm state."""
        cache: _SubsetCache = state["cache"]
        position, visual, device = state["length"], state["visual"], inputs_embeds.device
        keys = position + 1
        position_ids = torch.tensor([[position]], device=device)
        rotary = decoder.rotary_emb(inputs_embeds, position_ids=position_ids)
        window = _sliding_window(decoder.config)
        visible = torch.ones(keys, dtype=torch.bool, device=device)  # the last row of _causal_visible
        if window is not None:
            visible[: max(0, keys - window)] = False
        in_window = None if bool(visible.all()) else visible.nonzero().flatten()
        hidden, decision_input = inputs_embeds, None
        for index, decoder_layer in enumerate(decoder.layers):
            if index == self.layer:  # layer l-1 ran: its attention decides the KV subset of layers >= l
                attention = _attention_rows(decoder.layers[index - 1], decision_input, rotary, torch.tensor([0], device=device),
                                            cache.captured, visible[None])[0]
                kept, similarity = dycoke_kv_step(attention[visual], state["previous"], self.keep_count(visual.numel()),
                                                  self.similarity_threshold)
                state["previous"] = attention[visual]
                subset = visible.clone()
                if kept is not None:
                    subset[visual] = False
                    subset[visual[kept.to(device)]] = visible[visual[kept.to(device)]]
                cache.view = None if bool(subset.all()) else subset.nonzero().flatten()
            elif index < self.layer:
                cache.view = in_window
            if index == self.layer - 1:
                decision_input = hidden
            hidden = decoder_layer(hidden, attention_mask=None, position_embeddings=rotary, position_ids=position_ids,
                                   use_cache=True, **cache_kwargs(cache))
        cache.view, cache.captured = None, None
        state["length"] += 1
        return decoder.norm(hidden), DyCokeStep(position, similarity, None if kept is None else kept.cpu())

    def full_forward(self, llm, inputs_embeds: torch.Tensor, visual: torch.Tensor,
                     prompt_length: int) -> tuple[torch.Tensor, list[DyCokeStep]]:
        """The no-cache equivalent: one pass over prompt + generated tokens (1, L, H). Every position after the
        prompt is one decoding step, and its row in layers >= l masks that step's pruned visual keys."""
        decoder = _decoder_of(llm)
        self.check_layer(len(decoder.layers))
        length, device, dtype = inputs_embeds.shape[1], inputs_embeds.device, inputs_embeds.dtype
        positions = torch.arange(length, device=device)[None]
        rotary = decoder.rotary_emb(inputs_embeds, position_ids=positions)
        visible = _causal_visible(length, _sliding_window(decoder.config), device)
        full_mask = _additive(visible, dtype)
        hidden = inputs_embeds
        for decoder_layer in decoder.layers[: self.layer - 1]:
            hidden = decoder_layer(hidden, attention_mask=full_mask, position_embeddings=rotary, position_ids=positions)
        queries = torch.arange(prompt_length, length, device=device)
        rows = None
        if queries.numel():  # the decision rows: each generated position's layer-(l-1) attention
            rows = _attention_rows(decoder.layers[self.layer - 1], hidden, rotary, queries, None, visible[queries])
        hidden = decoder.layers[self.layer - 1](hidden, attention_mask=full_mask, position_embeddings=rotary, position_ids=positions)
        pruned_visible, previous, steps = visible.clone(), None, []
        keep = self.keep_count(visual.numel())
        for r, position in enumerate(queries.tolist()):
            attention = rows[r, visual]
            kept, similarity = dycoke_kv_step(attention, previous, keep, self.similarity_threshold)
            previous = attention
            if kept is not None:
                kept_positions = visual[kept.to(device)]
                pruned_visible[position, visual] = False
                pruned_visible[position, kept_positions] = visible[position, kept_positions]
            steps.append(DyCokeStep(position, similarity, None if kept is None else kept.cpu()))
        pruned_mask = _additive(pruned_visible, dtype)
        for decoder_layer in decoder.layers[self.layer :]:
            hidden = decoder_layer(hidden, attention_mask=pruned_mask, position_embeddings=rotary, position_ids=positions)
        return decoder.norm(hidden), steps

"""SAM2 speed-ups that keep the results (memory keys/values projected once, shared layer-0 work, batched image
encoder, Hiera without its unused attention matrix) and memory pruning to a budget (video/sam2/memory_select.py).

The reference is transformers' own ``Sam2VideoMemoryAttention`` (``memory_attention_impl = "module"``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from litelvlm.timing import StageTimer
from video.sam2 import (
    NO_OBJECT_SCORE,
    SAM2_STAGES,
    Sam2PixelDecoder,
    available_memory_selectors,
    get_memory_selector,
    memory_attention_flops,
    register_memory_selector,
    write_tiny_sam2_state_dict,
)
from video.sam2.decoder import _Memory, _Track
from video.sam2.memory_attention import MemoryAttentionRunner
from video.sam2.memory_select import MASK_DILATION, _SELECTORS, memory_grid_logits, select_memory_tokens

from test_video_sam2 import VARIANT_B, _frames, _prompts


@pytest.fixture(scope="module")
def decoder():
    return Sam2PixelDecoder.from_original_state_dict(write_tiny_sam2_state_dict(seed=0))


@pytest.fixture(scope="module")
def decoder_b():
    return Sam2PixelDecoder.from_original_state_dict(write_tiny_sam2_state_dict(seed=1, **VARIANT_B))


def _random_bank(dec, num_frames, num_objects, seed=0) -> dict[int, _Memory]:
    """Memories as ``_encode_memory`` stores them (bfloat16 features), random."""
    g = torch.Generator().manual_seed(seed)
    tokens, (h, w) = dec.memory_tokens, dec.config.vision_config.backbone_feature_sizes[-1]
    return {t: _Memory(torch.randn(tokens, num_objects, 64, generator=g).to(torch.bfloat16),
                       torch.randn(tokens, num_objects, 64, generator=g), torch.randn(num_objects, dec.hidden_size, generator=g),
                       torch.randn(num_objects, h, w, generator=g)) for t in range(num_frames)}


def _reference_logits(dec, pixel_values, tokens):
    dec.memory_attention_impl = "module"
    try:
        return dec.propagate_logits(pixel_values, tokens)
    finally:
        dec.memory_attention_impl = "cached"


# ----------------------------------------------------------------------------- exact speed-ups


@pytest.mark.parametrize("which", ["default", "variant_b"])
def test_cached_memory_attention_equals_transformers_module(decoder, decoder_b, which):
    """Every frame of a 10-frame bank (all temporal slots, pointer tokens), 3 objects: within 1e-5 of the module."""
    dec = {"default": decoder, "variant_b": decoder_b}[which]
    frame = dec.encode_frame(dec.preprocess(_frames(1, seed=3)))
    bank = _random_bank(dec, 10, 3)
    runner = MemoryAttentionRunner(dec.model.memory_attention, dec.dtype)
    for t in range(1, 10):
        cached = dec._memory_conditioned(frame, _Track(bank, runner, None, "mask"), t, 10)
        module = dec._memory_conditioned(frame, _Track(bank, None, None, "mask"), t, 10)
        torch.testing.assert_close(cached, module, atol=1e-5, rtol=1e-5)


def test_propagation_with_cached_memory_attention_matches_the_module(tiny_sd_double):
    """End to end: float64 logits within 1e-5 of the module's; in float32 the masks are identical (the logits differ
    by more than 1e-5 only because SAM2 stores memories in bfloat16, where a rounding difference can flip an ulp)."""
    dec = Sam2PixelDecoder.from_original_state_dict(tiny_sd_double)
    pixel_values, prompts = dec.preprocess(_frames(12, seed=5)), _prompts(dec, 3)
    tokens = dec.object_tokens(prompts.double())
    torch.testing.assert_close(dec.propagate_logits(pixel_values, tokens), _reference_logits(dec, pixel_values, tokens),
                               atol=1e-5, rtol=1e-5)
    single = Sam2PixelDecoder.from_original_state_dict({k: v.float() for k, v in tiny_sd_double.items()})
    tokens = single.object_tokens(prompts)
    cached, module = single.propagate_logits(pixel_values, tokens), _reference_logits(single, pixel_values, tokens)
    assert torch.equal(cached > 0, module > 0)
    torch.testing.assert_close(cached, module, atol=1e-3, rtol=1e-4)


@pytest.fixture(scope="module")
def tiny_sd_double():
    return {k: v.double() for k, v in write_tiny_sam2_state_dict(seed=0).items()}


def _count_rows(linear, seen):
    return linear.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[-2]))


def test_each_memory_frame_is_projected_once_per_layer(decoder, monkeypatch):
    """Keys: every memory frame through k_proj once per layer (not once per frame attending to it), pointers every
    frame; the queries' RoPE tables once per video; layer 0's self-attention once for all objects."""
    num_frames, tokens = 7, decoder.memory_tokens  # pointer tokens (2 per frame) stay below the 16 spatial ones
    layers = decoder.model.memory_attention.layers
    key_rows, self_batches, rope_calls = [], [], []
    self_attention = MemoryAttentionRunner._self_attention

    def counted(runner, index, query):
        self_batches.append(query.shape[0])
        return self_attention(runner, index, query)

    monkeypatch.setattr(MemoryAttentionRunner, "_self_attention", counted)
    handles = [_count_rows(layer.cross_attn_image.k_proj, key_rows) for layer in layers]
    handles.append(decoder.model.memory_attention.rotary_emb.register_forward_hook(lambda *a: rope_calls.append(1)))
    try:
        decoder.propagate_logits(decoder.preprocess(_frames(num_frames)), decoder.object_tokens(_prompts(decoder, 3)))
    finally:
        for handle in handles:
            handle.remove()
    spatial = [rows for rows in key_rows if rows == tokens]
    assert len(spatial) == len(layers) * (num_frames - 1)  # frames 0..T-2, each once per layer
    assert len(key_rows) - len(spatial) == len(layers) * (num_frames - 1)  # the pointer tokens of every tracked frame
    assert len(rope_calls) == 1
    assert self_batches == [1, 3] * (num_frames - 1)  # layer 0 shared by the 3 objects, layer 1 per object


def test_image_encoder_batches_frames_exactly(decoder):
    calls = []
    handle = decoder.model.vision_encoder.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    pixel_values, tokens = decoder.preprocess(_frames(5)), decoder.object_tokens(_prompts(decoder, 2))
    try:
        one_by_one = decoder.propagate_logits(pixel_values, tokens)
        decoder.image_batch = 2
        batched = decoder.propagate_logits(pixel_values, tokens)
    finally:
        decoder.image_batch = None
        handle.remove()
    assert calls == [1] * 5 + [2, 2, 1]
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-5)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="image_batch"):
            decoder.image_batch = bad


def test_hiera_attention_skips_the_unused_matrix_and_stays_bit_identical(decoder):
    from transformers.models.sam2.modeling_sam2 import Sam2MultiScaleAttention

    from video.sam2.hiera import HieraAttention

    attentions = [m for m in decoder.model.vision_encoder.modules() if isinstance(m, Sam2MultiScaleAttention)]
    assert attentions and all(type(m) is HieraAttention for m in attentions)
    generator = torch.Generator().manual_seed(0)
    pooling = [m for m in attentions if m.query_stride]
    assert pooling and len(pooling) < len(attentions)
    for module in (attentions[0], pooling[0]):
        x = torch.randn(2, 8, 8, module.dim, generator=generator)
        assert torch.equal(module(x), Sam2MultiScaleAttention.forward(module, x))


# ----------------------------------------------------------------------------- memory budget


def test_full_memory_budget_is_identical_and_a_smaller_one_attends_to_fewer_keys(decoder, monkeypatch):
    pixel_values, tokens = decoder.preprocess(_frames(6, seed=2)), decoder.object_tokens(_prompts(decoder, 2))
    unpruned = decoder.propagate_logits(pixel_values, tokens)
    for selector in available_memory_selectors():
        assert torch.equal(decoder.propagate_logits(pixel_values, tokens, memory_budget=decoder.memory_tokens,
                                                    memory_selector=selector), unpruned)
    key_counts = []
    original = MemoryAttentionRunner._memory_keys_values

    def spy(self, layer, memories, *args):
        keys, values = original(self, layer, memories, *args)
        key_counts.append((len(memories), keys.shape[2], values.shape[2]))
        return keys, values

    monkeypatch.setattr(MemoryAttentionRunner, "_memory_keys_values", spy)
    pruned = decoder.propagate_logits(pixel_values, tokens, memory_budget=5)
    pointer_tokens = decoder.hidden_size // 64
    assert pruned.shape == unpruned.shape and not torch.equal(pruned, unpruned)
    for frames, keys, values in key_counts:
        assert keys == values and keys - 5 * frames in {pointer_tokens * p for p in range(1, 7)}


def test_kept_tokens_keep_their_own_rope_row_and_position(decoder):
    """Projecting the kept tokens equals projecting all and taking the kept rows: each kept token keeps its RoPE
    position and its position encoding; different objects keep different rows."""
    runner = MemoryAttentionRunner(decoder.model.memory_attention, decoder.dtype)
    memory = _random_bank(decoder, 1, 2)[0]
    rows = torch.tensor([[0, 3, 7, 12, 15], [1, 2, 8, 9, 14]])
    full, kept = runner.project(memory.features, memory.position), runner.project(memory.features, memory.position, rows)
    for layer in range(len(decoder.model.memory_attention.layers)):
        for e in range(2):
            torch.testing.assert_close(kept.keys[layer][e], full.keys[layer][e][:, rows[e]], atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(kept.values[layer][e], full.values[layer][e][:, rows[e]], atol=1e-6, rtol=1e-6)
        temporal = runner._temporal_keys(layer, 2, decoder.model.memory_temporal_positional_encoding[2])
        assert torch.equal(runner._temporal_keys(layer, 2, None), temporal)  # computed once per (layer, slot)


def test_mask_selector_keeps_the_dilated_mask_then_the_highest_logits():
    logits = torch.full((2, 8, 8), -5.0)
    logits[0, 3:5, 3:5] = 4.0  # object 0: a 2x2 mask in the middle; its dilation (MASK_DILATION = 2) is 6x6
    logits[0, 0, 7] = -0.5  # the most object-like cell outside
    logits[1] = NO_OBJECT_SCORE  # object 1: judged absent
    assert MASK_DILATION == 2
    rows = select_memory_tokens("mask", logits, torch.zeros(64, 2, 64), 37)
    kept = set(rows[0].tolist())
    ring = {y * 8 + x for y in range(1, 7) for x in range(1, 7)}
    assert ring <= kept and 7 in kept and len(kept) == 37
    from litelvlm.pruning import grid_indices

    assert rows[1].tolist() == sorted(grid_indices((8, 8), 37).tolist())  # ties: a uniform grid
    four = select_memory_tokens("mask", logits, torch.zeros(64, 2, 64), 4)
    assert four[0].tolist() == [27, 28, 35, 36]  # over budget: the mask itself first


def test_memory_grid_logits_mark_a_cell_when_any_of_its_pixels_is_in_the_mask():
    low_res = torch.full((1, 16, 16), -3.0)
    low_res[0, 5, 9] = 2.0
    grid = memory_grid_logits(low_res, (4, 4))
    assert grid.shape == (1, 4, 4) and (grid > 0).sum() == 1 and grid[0, 1, 2] == 2.0


def test_memory_selector_registry():
    assert available_memory_selectors() == ["grid", "mask"]

    @register_memory_selector("first_tokens")
    def first_tokens(logits, features, budget):
        return torch.arange(budget).expand(logits.shape[0], -1)

    @register_memory_selector("broken")
    def broken(logits, features, budget):
        return torch.zeros(logits.shape[0], budget, dtype=torch.long)

    try:
        assert get_memory_selector("first_tokens") is first_tokens and "first_tokens" in available_memory_selectors()
        assert select_memory_tokens("first_tokens", torch.zeros(2, 4, 4), torch.zeros(16, 2, 64), 3).tolist() == [[0, 1, 2]] * 2
        with pytest.raises(ValueError, match="distinct"):
            select_memory_tokens("broken", torch.zeros(2, 4, 4), torch.zeros(16, 2, 64), 3)
        with pytest.raises(ValueError, match="already registered"):
            register_memory_selector("mask")(first_tokens)
    finally:
        _SELECTORS.pop("first_tokens"), _SELECTORS.pop("broken")
    with pytest.raises(ValueError, match=r"unknown memory selector 'nope'; choose one of: grid, mask"):
        get_memory_selector("nope")


@pytest.mark.parametrize("budget", [0, 17, 2.5, True, "8"])
def test_bad_memory_budget_is_one_line_naming_the_range(decoder, budget):
    with pytest.raises(ValueError, match=r"memory_budget must be an int in \[1, 16\]") as err:
        decoder.segment(_frames(2), _prompts(decoder, 1), memory_budget=budget)
    assert "\n" not in str(err.value)


def test_memory_options_refused_where_they_cannot_apply(decoder):
    frames, prompts = _frames(2), _prompts(decoder, 1)
    with pytest.raises(ValueError, match="unknown memory selector"):
        decoder.segment(frames, prompts, memory_budget=4, memory_selector="nope")
    with pytest.raises(ValueError, match="propagate"):
        decoder.segment(frames, prompts, mode="framewise", memory_budget=4)
    decoder.memory_attention_impl = "module"
    try:
        with pytest.raises(ValueError, match="cached"):
            decoder.segment(frames, prompts, memory_budget=4)
    finally:
        decoder.memory_attention_impl = "cached"


# ----------------------------------------------------------------------------- stages, FLOPs


@pytest.mark.parametrize("mode", ["propagate", "framewise"])
def test_segment_times_sam2_stages_inside_the_callers_stage(decoder, mode):
    timer = StageTimer()
    with timer("mask_decoder"):
        decoder.segment(_frames(3), _prompts(decoder, 2), mode=mode, timer=timer)
    expected = set(SAM2_STAGES) if mode == "propagate" else {"sam2_image_encoder", "sam2_mask_decoder"}
    assert SAM2_STAGES == ("sam2_image_encoder", "sam2_memory_attention", "sam2_memory_encoder", "sam2_mask_decoder")
    assert set(timer.seconds) == expected | {"mask_decoder"} and all(timer.seconds[s] > 0 for s in expected)
    assert timer.total == timer.seconds["mask_decoder"] >= sum(timer.seconds[s] for s in expected)


def test_memory_attention_flops_hand_count_and_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    dec = Sam2PixelDecoder.from_original_state_dict(write_tiny_sam2_state_dict(seed=0))
    flops = memory_attention_flops(16, 32, 8, dec.config)  # tiny: C = 128 (inner 128), FFN 256, 2 layers, kv 64
    hand = {"self_attention_projections": 2 * (4 * 2 * 16 * 128 * 128), "self_attention_matrix": 2 * (2 * 2 * 16 * 16 * 128),
            "cross_attention_projections": 2 * (2 * 2 * 16 * 128 * 128 + 2 * 2 * 40 * 64 * 128),
            "cross_attention_matrix": 2 * (2 * 2 * 16 * 40 * 128), "mlp": 2 * (2 * 2 * 16 * 128 * 256)}
    assert flops == {**hand, "total": sum(hand.values())} and flops["total"] == 14_024_704
    dec.config._attn_implementation = "eager"  # the counter sees eager matmuls, not the CPU flash kernel
    g = torch.Generator().manual_seed(0)
    inputs = dict(current_vision_features=torch.randn(16, 1, 128, generator=g), memory=torch.randn(40, 1, 64, generator=g),
                  current_vision_position_embeddings=torch.randn(16, 1, 128, generator=g),
                  memory_posision_embeddings=torch.randn(40, 1, 64, generator=g), num_object_pointer_tokens=8)
    with FlopCounterMode(display=False) as counter:
        dec.model.memory_attention(**inputs)
    assert counter.get_total_flops() == flops["total"]
    with pytest.raises(ValueError, match="memory_tokens"):
        memory_attention_flops(16, -1, 8, dec.config)


def test_at_1024_px_the_budget_range_is_the_64x64_memory_grid():
    from test_video_sam2 import _hiera_large

    config = _hiera_large().to_transformers()
    h, w = config.vision_config.backbone_feature_sizes[-1]
    assert h * w == 4096 == math.prod(config.memory_attention_rope_feat_sizes)
    per_frame = memory_attention_flops(4096, 7 * 4096, 64, config)
    pruned = memory_attention_flops(4096, 7 * 512, 64, config)
    assert pruned["self_attention_matrix"] == per_frame["self_attention_matrix"]
    assert 7.5 < per_frame["cross_attention_matrix"] / pruned["cross_attention_matrix"] < 8


# ----------------------------------------------------------------------------- VideoSegmenter and CLI wiring


def test_video_segmenter_passes_memory_options_and_its_timer(tiny_video_segmenter, monkeypatch):
    decoder = tiny_video_segmenter.model.pixel_decoder
    seen = {}
    original = decoder.segment

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(decoder, "segment", spy)
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 32, 40, 3), dtype=np.uint8)
    timer = StageTimer()
    result = tiny_video_segmenter.segment(frames, ["a cat"], budget=64, answer="Sure, [SEG].", memory_budget=3,
                                          memory_selector="grid", timer=timer)
    assert seen["memory_budget"] == 3 and seen["memory_selector"] == "grid" and seen["timer"] is timer
    assert set(SAM2_STAGES) <= set(result.timings)
    with pytest.raises(ValueError, match=r"memory_budget must be an int in \[1, 16\]"):
        tiny_video_segmenter.segment(frames, ["a cat"], budget=64, answer="Sure, [SEG].", memory_budget=17)


def test_video_segmenter_config_checks_memory_options():
    from video.segmenter import VideoSegmenterConfig

    assert VideoSegmenterConfig().memory_budget is None and VideoSegmenterConfig().memory_selector == "mask"
    with pytest.raises(ValueError, match="unknown memory selector"):
        VideoSegmenterConfig(memory_selector="nope")
    with pytest.raises(ValueError, match="memory_budget must be a positive"):
        VideoSegmenterConfig(memory_budget=0)
    with pytest.raises(ValueError, match="propagate"):
        VideoSegmenterConfig(memory_budget=8, mask_mode="framewise")


def test_segment_video_cli_memory_options(tmp_path, tiny_videoglamm_kwargs, capsys):
    from litelvlm.cli import build_parser, main

    help_text = build_parser()._subparsers._group_actions[0].choices["segment-video"].format_help()
    assert "--memory-budget N" in help_text and "--memory-selector NAME" in help_text
    base = ["segment-video", "--video", str(tmp_path / "frames"), "--text", "x", "--answer", "Sure, [SEG].",
            "--checkpoint", str(tiny_videoglamm_kwargs["checkpoint"]), "--vision-tower", str(tiny_videoglamm_kwargs["vision_tower"]),
            "--video-tower", str(tiny_videoglamm_kwargs["video_tower"]), "--out", str(tmp_path / "out")]
    from PIL import Image

    (tmp_path / "frames").mkdir()
    for i in range(3):
        Image.fromarray(np.full((24, 32, 3), 40 * i, dtype=np.uint8)).save(tmp_path / "frames" / f"{i:05d}.png")
    assert main(base + ["--memory-selector", "nope"]) == 2
    assert main(base + ["--memory-budget", "17"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown memory selector 'nope'" in err[0] and "[1, 16]" in err[1]
    assert main(base + ["--memory-budget", "8", "--memory-selector", "grid"]) == 0


def test_rope_as_a_complex_product_is_transformers_rope_bit_for_bit(decoder):
    """``_rotate`` with ``rope_table`` gives the same floats as transformers' ``apply_rotary_pos_emb_2d``."""
    from transformers.models.sam2_video.modeling_sam2_video import apply_rotary_pos_emb_2d

    from video.sam2.memory_attention import _rotate, rope_table

    module = decoder.model.memory_attention
    cos, sin = module.rotary_emb(module.position_ids, module.position_ids)
    x = torch.randn(3, 1, cos.shape[1], cos.shape[2], generator=torch.Generator().manual_seed(0))
    expected, _ = apply_rotary_pos_emb_2d(x, x, cos, sin)
    assert torch.equal(_rotate(x, rope_table(cos[0], sin[0])), expected)


def test_self_attention_with_stacked_projections_and_the_layer_equal_transformers(decoder):
    """One q/k/v product, complex RoPE and the in-place ReLU: each layer of the runner equals transformers' layer
    on the same queries and memory (float32, within 1e-6)."""
    module = decoder.model.memory_attention
    runner = MemoryAttentionRunner(module, decoder.dtype)
    cos, sin = module.rotary_emb(module.position_ids, module.position_ids)
    g = torch.Generator().manual_seed(1)
    queries = torch.randn(2, 1, runner.tokens, decoder.hidden_size, generator=g)
    memory = torch.randn(2, 1, runner.tokens, 64, generator=g)
    projected = runner.project(memory[:, 0].transpose(0, 1), torch.zeros(runner.tokens, 2, 64))
    for index, layer in enumerate(module.layers):
        assert runner.relu[index]
        normed = layer.layer_norm1(queries)
        expected, _ = layer.self_attn(query=normed, key=normed, value=normed, position_embeddings=(cos, sin))
        torch.testing.assert_close(runner._self_attention(index, normed), expected, atol=1e-6, rtol=1e-6)
        keys, values = projected.keys[index], projected.values[index]
        expected = layer(queries, memory, torch.zeros_like(memory), (cos, sin))
        torch.testing.assert_close(runner._layer(index, queries, keys, values), expected, atol=1e-6, rtol=1e-6)

"""VideoGLaMM as released (FACTS §3): Phi-3's window of sliding_window + 1 keys, the released evaluation
protocol as a preset per benchmark, sampling as generate() does it, and transformers-4 checkpoint keys."""

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from litelvlm.decoding import Sampling, generate
from video.io import sample_frame_indices, split_clips
from video.preset import PRESET_DIR, load_preset
from video.prompt import expression_text, video_question
from video.segmenter import VideoSegmenter, VideoSegmenterConfig

WINDOW = 23  # config.json's sliding_window for the tiny model: far shorter than its prompts


@pytest.fixture(scope="module")
def windowed_kwargs(tmp_path_factory):
    from litelvlm.testing import make_tiny_videoglamm

    return make_tiny_videoglamm(tmp_path_factory.mktemp("vg_window"), sliding_window=WINDOW, dtype=torch.float32)


@pytest.fixture(scope="module")
def windowed(windowed_kwargs):
    return VideoSegmenter.from_pretrained(**windowed_kwargs)


def _rms(x, norm):
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon) * norm.weight


def released_phi3_hidden(llm, embeds: torch.Tensor, window: int) -> torch.Tensor:
    """Phi-3 written out with eager attention and the released (transformers 4.41) mask: query i sees key j
    iff 0 <= i - j <= window (``_make_causal_mask`` with ``diagonal = -window - 1``)."""
    cfg = llm.config
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    d = cfg.hidden_size // heads
    n = embeds.shape[1]
    pos = torch.arange(n)
    theta = cfg.rope_parameters["rope_theta"]
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2).float() / d))
    angles = torch.cat([pos[:, None] * inv_freq[None]] * 2, dim=-1)
    cos, sin = angles.cos(), angles.sin()

    def rope(x):
        return x * cos + torch.cat([-x[..., d // 2:], x[..., : d // 2]], dim=-1) * sin

    gap = pos[:, None] - pos[None, :]
    allowed = (gap >= 0) & (gap <= window)
    x = embeds[0].float()
    for layer in llm.model.layers:
        attn = layer.self_attn
        q, k, v = attn.qkv_proj(_rms(x, layer.input_layernorm)).split([heads * d, kv_heads * d, kv_heads * d], dim=-1)
        q = rope(q.view(n, heads, d).transpose(0, 1))
        k = rope(k.view(n, kv_heads, d).transpose(0, 1)).repeat_interleave(heads // kv_heads, 0)
        v = v.view(n, kv_heads, d).transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
        scores = (q @ k.transpose(1, 2) / math.sqrt(d)).masked_fill(~allowed, float("-inf"))
        out = (torch.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(n, heads * d)
        x = x + attn.o_proj(out)
        gate, up = layer.mlp.gate_up_proj(_rms(x, layer.post_attention_layernorm)).chunk(2, dim=-1)
        x = x + layer.mlp.down_proj(torch.nn.functional.silu(gate) * up)
    return _rms(x, llm.model.norm)[None]


def test_phi3_sees_sliding_window_plus_one_keys_like_the_released_run(windowed):
    llm = windowed.model.llm
    assert llm.config.sliding_window == WINDOW + 1  # config.json says WINDOW
    embeds = torch.randn(1, 90, llm.config.hidden_size, generator=torch.Generator().manual_seed(0))
    ours = windowed.model.prefill_hidden(embeds, torch.ones(1, 90, dtype=torch.long))
    torch.testing.assert_close(ours, released_phi3_hidden(llm, embeds, WINDOW), rtol=1e-4, atol=1e-4)
    # the same restatement with transformers 5's window (WINDOW keys) is a different model: the test can fail
    assert (released_phi3_hidden(llm, embeds, WINDOW - 1) - ours).abs().max() > 1e-3


def test_video_seg_state_equals_the_eager_restatement(windowed):
    """Teacher-forced [SEG] state of a whole video prompt (~1,300 tokens) against the released window rule."""
    captured = {}
    original = windowed.model.prefill_hidden

    def spy(inputs_embeds, attention_mask):
        captured["embeds"], captured["hidden"] = inputs_embeds, original(inputs_embeds, attention_mask)
        return captured["hidden"]

    windowed.model.prefill_hidden = spy
    try:
        frames = np.random.default_rng(1).integers(0, 256, size=(8, 48, 64, 3), dtype=np.uint8)
        windowed.segment(frames, ["the dog"], budget=64, answer="Sure, [SEG].", mask_mode="none")
    finally:
        windowed.model.prefill_hidden = original
    embeds = captured["embeds"]
    assert embeds.shape[1] > 10 * WINDOW
    restated = released_phi3_hidden(windowed.model.llm, embeds, WINDOW)
    torch.testing.assert_close(captured["hidden"], restated, rtol=1e-4, atol=1e-4)


def test_videoglamm_loader_accepts_transformers4_rotary_buffers(tmp_path):
    from litelvlm.testing import make_tiny_videoglamm
    from video.model import VideoGLaMM

    d = 64 // 4
    good = 1.0 / (10000.0 ** (torch.arange(0, d, 2).float() / d))
    kwargs = make_tiny_videoglamm(tmp_path / "ok", extra_state={f"model.layers.{i}.self_attn.rotary_emb.inv_freq": good for i in range(2)})
    model = VideoGLaMM.from_checkpoint(kwargs["checkpoint"], video_tower=kwargs["video_tower"])
    assert model.load_summary.ignored_buffers == [f"model.layers.{i}.self_attn.rotary_emb.inv_freq" for i in range(2)]
    bad = make_tiny_videoglamm(tmp_path / "bad", extra_state={"model.layers.0.self_attn.rotary_emb.inv_freq": good * 3})
    with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn\.rotary_emb\.inv_freq"):
        VideoGLaMM.from_checkpoint(bad["checkpoint"], video_tower=bad["video_tower"])


# ---------------------------------------------------------------------------- the released protocol preset

def test_released_preset_does_what_the_release_does_per_benchmark():
    davis, ytvos, mevis = (load_preset("released", b).segmenter for b in ("davis", "ytvos", "mevis"))
    assert davis.clip_length == 64 and ytvos.clip_length is None and mevis.clip_length is None
    assert (davis.expression_text, ytvos.expression_text, mevis.expression_text) == ("lower", "lower", "collapse")
    for cfg in (davis, ytvos, mevis):
        assert (cfg.short_clip_sampling, cfg.seg_objects, cfg.max_new_tokens, cfg.decoding, cfg.use_cache, cfg.layout) == (
            "repeat_last", "first", 512, "checkpoint", False, "regrid")
    preset = load_preset("released")
    assert preset.dtype("cuda") == torch.float16 and preset.dtype("cpu") == torch.float32
    assert preset.attn_implementation() == "eager" and preset.clip_attn_implementation() == "eager"
    assert load_preset("default").segmenter == VideoSegmenterConfig()
    assert sorted(p.name for p in PRESET_DIR.glob("*.yaml")) == ["default.yaml", "released.yaml"]


def test_bad_presets_are_refused_with_their_name(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("segmenter: {clip_lenght: 3}\n")
    with pytest.raises(ValueError, match="clip_lenght"):
        load_preset(bad)
    with pytest.raises(FileNotFoundError, match="released, default"):
        load_preset("nosuch")
    bad.write_text("segmenter: {seg_objects: all}\n")
    with pytest.raises(ValueError, match="seg_objects"):
        load_preset(bad)


def test_short_clips_repeat_their_last_frame_as_released():
    assert sample_frame_indices(10, 16, "repeat_last").tolist() == list(range(10)) + [9] * 6
    assert sample_frame_indices(10, 16).tolist() == np.linspace(0, 9, 16).astype(int).tolist()
    assert sample_frame_indices(40, 16, "repeat_last").tolist() == np.linspace(0, 39, 16, dtype=int).tolist()
    assert sample_frame_indices(16, 16, "repeat_last").tolist() == list(range(16))
    assert split_clips(150, None) == [range(0, 150)] and split_clips(150, 64) == [range(0, 64), range(64, 128), range(128, 150)]


def test_expressions_are_lowercased_not_stripped_in_the_released_protocol():
    raw = "  The Dog  on the LEFT "
    assert expression_text(raw, "lower") == "  the dog  on the left "
    assert expression_text(raw, "collapse") == "the dog on the left"
    assert expression_text(raw, "strip") == "the dog  on the left"
    assert video_question(raw, mode="lower") == "What is   the dog  on the left  in this video? Please respond with segmentation masks."


def test_segmenter_follows_the_preset(tiny_video_segmenter, monkeypatch):
    """repeat_last frames reach the encoders; seg_objects=first keeps object 0 of several [SEG]; whole-video clips."""
    seen = []
    original = tiny_video_segmenter._encode_clip
    monkeypatch.setattr(tiny_video_segmenter, "_encode_clip", lambda sampled, timer: (seen.append(sampled), original(sampled, timer))[1])
    objects = {}

    def fake_segment(frames, prompts, size, mode, **memory_options):
        masks = np.zeros((prompts.shape[0], len(frames), *size), dtype=bool)
        for k in range(prompts.shape[0]):
            masks[k, :, k :: prompts.shape[0]] = True  # object k covers rows k, k + n, ...
        objects["n"] = prompts.shape[0]
        return masks

    monkeypatch.setattr(tiny_video_segmenter.model.pixel_decoder, "segment", fake_segment)
    frames = np.stack([np.full((24, 32, 3), 10 * i, dtype=np.uint8) for i in range(10)])
    two = "Sure, [SEG] and [SEG]."
    first = tiny_video_segmenter.segment(frames, ["a cat"], budget=64, answer=two, short_clip_sampling="repeat_last",
                                         seg_objects="first", clip_length=None)
    assert [int(f[0, 0, 0]) // 10 for f in seen[-1]] == list(range(10)) + [9] * 6
    assert objects["n"] == 2 and first.masks[0, :, 0::2].all() and not first.masks[0, :, 1::2].any()
    union = tiny_video_segmenter.segment(frames, ["a cat"], budget=64, answer=two)
    assert union.masks[0].all()


# ---------------------------------------------------------------------------- sampling as generate() does it

def hf_warp(logits, temperature, top_k, top_p):
    """transformers' Temperature -> TopK -> TopP warpers (min_tokens_to_keep=1), restated."""
    scores = logits.float().clone()
    if temperature != 1.0:
        scores /= temperature
    if top_k:
        threshold = scores.sort(descending=True).values[min(top_k, scores.numel()) - 1]
        scores[scores < threshold] = -float("inf")
    if top_p < 1.0:
        values, order = scores.sort()
        cumulative = values.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - top_p
        drop[-1] = False
        scores[order[drop]] = -float("inf")
    return scores


@pytest.mark.parametrize("settings", [(1.0, 50, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (0.9, 20, 0.5)])
def test_sampling_warps_logits_as_generate_does(settings):
    logits = torch.randn(300, generator=torch.Generator().manual_seed(3)) * 3
    torch.testing.assert_close(Sampling(*settings).warp(logits), hf_warp(logits, *settings))
    assert Sampling.from_generation_config({"do_sample": False}) is None
    assert Sampling.from_generation_config({"do_sample": True, "temperature": 1.0, "top_k": 50, "top_p": 1.0}) == Sampling()


def test_checkpoint_decoding_samples_reproducibly_and_greedy_stays_greedy():
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(0)
    llm = Phi3ForCausalLM(Phi3Config(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2, pad_token_id=0)).eval()
    prompt = torch.randn(1, 5, 32)
    run = lambda sampling, seed: generate(llm, lambda: prompt, max_new_tokens=12, eos_token_ids={-1}, seg_token_id=7,  # noqa: E731
                                          sampling=sampling, generator=torch.Generator().manual_seed(seed)).token_ids
    assert run(Sampling(top_k=0), 1) == run(Sampling(top_k=0), 1)
    assert len({tuple(run(Sampling(top_k=0), s)) for s in range(5)}) > 1
    assert len({tuple(run(None, s)) for s in range(3)}) == 1


def test_harness_builds_the_preset_segmenter(tmp_path, windowed_kwargs):
    from eval.rvos.config import RVOSConfig
    from eval.rvos.model import build_video_segmenter

    config = RVOSConfig(benchmark="mevis", checkpoint=str(windowed_kwargs["checkpoint"]), vision_tower=str(windowed_kwargs["vision_tower"]),
                        video_tower=str(windowed_kwargs["video_tower"]), results_path=str(tmp_path), device="cpu")
    seg = build_video_segmenter(config)
    assert asdict(seg.config) == asdict(load_preset("released", "mevis").segmenter)
    assert seg.model.llm.config._attn_implementation == "eager" and seg.clip.vision.config._attn_implementation == "eager"
    assert seg.generation_config["do_sample"] is True and seg._sampling() == Sampling()
    assert config.run_id == "mevis_valid_u_litelvlm_b576"
    assert RVOSConfig(benchmark="mevis", checkpoint="c", preset="default").run_id == "mevis_valid_u_litelvlm_b576_default"


def test_chat_is_the_released_phi3_instruct_conversation():
    """conv_phi3_instruct, SeparatorStyle.MPT: system + sep, then role + message + sep per turn; an empty
    assistant message ends with the bare role (apply_for_chat: '<video>\\n' + question, 16 <image>)."""
    system, roles, sep = "<|system|>\nYou are a helpful AI assistant.", ("\n<|user|>\n", "\n<|assistant|>\n"), "<|end|>"
    user = "<image>" * 16 + "\n" + "What is the dog in this video? Please respond with segmentation masks."
    from video.prompt import build_chat

    assert build_chat(video_question("The Dog"), 16) == system + sep + roles[0] + user + sep + roles[1]
    assert build_chat(video_question("the dog"), 16, "Sure, [SEG].") == system + sep + roles[0] + user + sep + roles[1] + "Sure, [SEG]." + sep

"""video.model: VideoGLaMM composed from Phi-3 + projectors + InternVideo2 + SAM2, on tiny checkpoints in the
released layout (docs/videoglamm_layout.md). Peers: the stored tensors themselves, transformers'
Phi-3, the InternVideo2 encoder run chunk by chunk, and hand-written projector / pooling formulas."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from litelvlm.checkpoint import WEIGHT_FILES, CheckpointDir
from litelvlm.testing import make_tiny_videoglamm, write_sharded
from video.tokenizer_files import PHI3_SPECIAL_TOKENS
from video.internvideo2 import InternVideo2Config
from video.model import (
    IMAGE_TOKEN_INDEX,
    VideoGLaMM,
    VideoGLaMMArchitecture,
    VideoGLaMMConfig,
    hiera_large_sam2,
    load_videoglamm_tokenizer,
)
from video.sam2 import convert_sam2_state_dict, expected_hf_shapes, extract_sam2_state_dict, infer_sam2_architecture, to_original_sam2_state_dict

# The documented key groups, restated here (an independent list of what the release stores).
GROUPS = ("model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.", "model.image_mm_projector.", "model.mm_projector.",
          "model.text_hidden_fcs.0.", "model.visual_model.", "model.vision_tower.")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_videoglamm(tmp_path_factory.mktemp("videoglamm"))


@pytest.fixture(scope="module")
def stored(tiny):
    ckpt = CheckpointDir(tiny["checkpoint"])
    return ckpt.load(ckpt.keys())


@pytest.fixture(scope="module")
def model(tiny):
    return VideoGLaMM.from_checkpoint(tiny["checkpoint"], video_tower=tiny["video_tower"])


def _f(t: torch.Tensor) -> torch.Tensor:
    return t.float()


def _mlp(x: torch.Tensor, sd: dict, prefix: str, act) -> torch.Tensor:
    """Linear(0) -> act -> Linear(2) written out from the stored tensors."""
    h = act(x @ _f(sd[prefix + "0.weight"]).T + _f(sd[prefix + "0.bias"]))
    return h @ _f(sd[prefix + "2.weight"]).T + _f(sd[prefix + "2.bias"])


def _rewrite(tiny, stored, tmp_path, edit, config_edit=None):
    """A copy of the tiny checkpoint with its tensors passed through ``edit`` (and config.json through ``config_edit``)."""
    out = tmp_path / "edited"
    out.mkdir()
    for f in tiny["checkpoint"].iterdir():
        if not f.name.startswith(("pytorch_model", "model.safetensors")):
            shutil.copy(f, out / f.name)
    write_sharded(edit(dict(stored)), out, weight_format="bin")
    if config_edit:
        config = json.loads((out / "config.json").read_text())
        config_edit(config)
        (out / "config.json").write_text(json.dumps(config))
    return out


# ----------------------------------------------------------------------------- layout


def test_tiny_checkpoint_carries_the_released_files_and_key_names(tiny, stored):
    root = tiny["checkpoint"]
    for name in ("config.json", "generation_config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                 "added_tokens.json", "pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin"):
        assert (root / name).exists(), name
    assert tiny["video_tower"].name == "InternVideo2-stage2_1b-224p-f4.pt" and (tiny["vision_tower"] / "config.json").exists()
    keys = set(stored)
    for key in ("model.embed_tokens.weight", "model.layers.0.self_attn.qkv_proj.weight", "model.layers.1.self_attn.o_proj.weight",
                "model.layers.0.mlp.gate_up_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.norm.weight", "lm_head.weight",
                "model.image_mm_projector.0.weight", "model.image_mm_projector.2.bias", "model.mm_projector.0.weight",
                "model.mm_projector.2.bias", "model.text_hidden_fcs.0.0.weight", "model.text_hidden_fcs.0.2.bias",
                "model.visual_model.image_encoder.trunk.patch_embed.proj.weight", "model.visual_model.image_encoder.neck.convs.0.conv.weight",
                "model.visual_model.sam_prompt_encoder.point_embeddings.0.weight", "model.visual_model.sam_mask_decoder.obj_score_token.weight",
                "model.visual_model.memory_encoder.fuser.layers.0.weight", "model.visual_model.maskmem_tpos_enc",
                "model.visual_model.no_mem_embed", "model.vision_tower.vision_encoder.patch_embed.proj.weight",
                "model.vision_tower.vision_encoder.blocks.0.attn.qkv.weight", "model.vision_tower.vision_proj.weight"):
        assert key in keys, key
    assert all(k.startswith(GROUPS) for k in keys)
    assert not any(k.startswith("model.image_vision_tower.") or k.endswith("fuser.layers.0.gamma") for k in keys)


def test_config_json_and_tokenizer_files_use_the_released_names(tiny, stored):
    root = tiny["checkpoint"]
    config = json.loads((root / "config.json").read_text())
    added = json.loads((root / "added_tokens.json").read_text())
    first = added[PHI3_SPECIAL_TOKENS[0]]
    assert [added[t] for t in PHI3_SPECIAL_TOKENS] == list(range(first, first + 11))
    assert added["[SEG]"] == first + 11 == config["seg_token_idx"] == config["vocab_size"] - 1
    assert stored["model.embed_tokens.weight"].shape[0] == stored["lm_head.weight"].shape[0] == config["vocab_size"]
    assert config["model_type"] == "VideoGPT+" and config["use_sam2"] is True and config["mm_use_im_start_end"] is False
    assert config["mm_vision_select_layer"] == -2 and config["sliding_window"] == 2047
    assert config["mm_projector_type"] == config["image_mm_projector_type"] == "mlp2x_gelu"
    assert config["image_mm_vision_tower"] == "openai/clip-vit-large-patch14-336" and config["mm_vision_tower"].endswith(".pt")
    assert config["mm_hidden_size"] == stored["model.mm_projector.0.weight"].shape[1]
    assert config["image_mm_hidden_size"] == stored["model.image_mm_projector.0.weight"].shape[1]
    assert config["out_dim"] == stored["model.text_hidden_fcs.0.2.weight"].shape[0]
    tok_config = json.loads((root / "tokenizer_config.json").read_text())
    assert tok_config["eos_token"] == "<|endoftext|>" and tok_config["pad_token"] == "<unk>"
    assert tok_config["added_tokens_decoder"][str(added["[SEG]"])]["special"] is False
    pt = torch.load(tiny["video_tower"], map_location="cpu", weights_only=True)["module"]
    copy = {k[len("model.vision_tower."):]: v for k, v in stored.items() if k.startswith("model.vision_tower.")}
    assert set(copy) == {k for k in pt if k.startswith(("vision_encoder.", "vision_proj."))}
    assert all(torch.equal(v, pt[k].to(v.dtype)) for k, v in copy.items())


def test_tokenizer_gives_seg_placeholder_and_eos_ids(tiny):
    tokenizer, ids = load_videoglamm_tokenizer(tiny["checkpoint"])
    config = json.loads((tiny["checkpoint"] / "config.json").read_text())
    seg = ids["seg"]
    assert seg == config["seg_token_idx"] and ids["image"] == IMAGE_TOKEN_INDEX == -200
    assert tokenizer.convert_tokens_to_ids("<|user|>") == seg - 1 and tokenizer.eos_token == "<|endoftext|>"
    assert ids["eos"] == tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|assistant|>", "<|end|>"])
    ids_ = tokenizer("<|user|>\nWhat is the dog in this video?<|end|>\n<|assistant|>\nSure, [SEG].").input_ids
    # no BOS added; the released 4.41 slow tokenizer keeps a leading "▁" before <|user|> (not an all_special_token)
    assert ids_.count(seg) == 1 and ids_[:2] == [tokenizer.convert_tokens_to_ids("\u2581"), tokenizer.convert_tokens_to_ids("<|user|>")]


def test_tokenizer_disagreeing_with_config_is_refused(tiny, tmp_path):
    for f in tiny["checkpoint"].iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "added_tokens", "config")):
            shutil.copy(f, tmp_path / f.name)
    config = json.loads((tmp_path / "config.json").read_text())
    config["seg_token_idx"] -= 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="seg_token_idx"):
        load_videoglamm_tokenizer(tmp_path)


# ----------------------------------------------------------------------------- loading


def test_every_part_holds_the_checkpoint_tensors(model, stored, tiny):
    llm = model.llm.state_dict()
    for key, value in stored.items():
        if key.startswith(("model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.")):
            assert torch.equal(llm[key], _f(value)), key
    for module, prefix in ((model.image_projector, "model.image_mm_projector."), (model.video_projector, "model.mm_projector."),
                           (model.text_hidden_fcs, "model.text_hidden_fcs.0.")):
        own = module.state_dict()
        assert set(own) == {k[len(prefix):] for k in stored if k.startswith(prefix)}
        assert all(torch.equal(v, _f(stored[prefix + k])) for k, v in own.items())
    hf = convert_sam2_state_dict(extract_sam2_state_dict(stored))
    decoder = model.pixel_decoder.model.state_dict()
    assert set(decoder) == set(hf) and all(torch.equal(decoder[k], _f(v)) for k, v in hf.items())
    pt = torch.load(tiny["video_tower"], map_location="cpu", weights_only=True)["module"]
    assert all(torch.equal(v, pt["vision_encoder." + k]) for k, v in model.video_encoder.state_dict().items())
    assert model.llm.config.sliding_window == 2047 + 1 and model.config.select_layer == -2  # released: window + 1 keys
    assert (model.config.image_pool_side, model.config.video_pool_side, model.config.num_frames) == (12, 8, 16)


def test_video_tower_copy_in_the_checkpoint_is_used_without_a_pt(tiny, model):
    own = VideoGLaMM.from_checkpoint(tiny["checkpoint"])
    for k, v in model.video_encoder.state_dict().items():
        assert torch.equal(own.video_encoder.state_dict()[k], v.to(torch.bfloat16).float()), k


@pytest.mark.parametrize("edit, match", [
    (lambda sd: {k: v for k, v in sd.items() if k != "model.layers.1.mlp.down_proj.weight"}, r"model\.layers\.1\.mlp\.down_proj\.weight"),
    (lambda sd: dict(sd, **{"model.foo.weight": torch.zeros(2)}), r"model\.foo\.weight"),
    (lambda sd: dict(sd, **{"model.text_hidden_fcs.1.0.weight": torch.zeros(2)}), r"model\.text_hidden_fcs\.1\.0\.weight"),
    (lambda sd: {k: v for k, v in sd.items() if k != "model.image_mm_projector.2.bias"}, r"image_mm_projector.*2\.bias"),
    (lambda sd: {k: v for k, v in sd.items() if not k.startswith("model.mm_projector.")}, r"model\.mm_projector\."),
    (lambda sd: {k: v for k, v in sd.items() if not k.startswith("model.visual_model.")}, r"model\.visual_model\."),
    (lambda sd: {k: v for k, v in sd.items() if k != "model.visual_model.sam_mask_decoder.iou_token.weight"},
     r"sam_mask_decoder\.iou_token\.weight"),
    (lambda sd: {k: v for k, v in sd.items() if k != "model.vision_tower.vision_encoder.blocks.0.mlp.fc1.weight"},
     r"model\.vision_tower\.vision_encoder\.blocks\.0\.mlp\.fc1\.weight"),
    (lambda sd: {k: v for k, v in sd.items() if not k.startswith("model.vision_tower.")}, r"video_tower="),
])
def test_missing_and_unknown_keys_are_named(tiny, stored, tmp_path, edit, match):
    root = _rewrite(tiny, stored, tmp_path, edit)
    with pytest.raises((ValueError, KeyError), match=match):
        VideoGLaMM.from_checkpoint(root)


@pytest.mark.parametrize("config_edit, match", [
    (lambda c: c.update(mm_projector_type="mlp3x_gelu"), r"mlp3x_gelu.*3 Linear"),
    (lambda c: c.update(image_mm_projector_type="identity"), "identity"),
    (lambda c: c.update(use_sam2=False), "use_sam2"),
    (lambda c: c.pop("hidden_size"), "hidden_size"),
])
def test_config_that_does_not_fit_is_refused(tiny, stored, tmp_path, config_edit, match):
    root = _rewrite(tiny, stored, tmp_path, lambda sd: sd, config_edit)
    with pytest.raises(ValueError, match=match):
        VideoGLaMM.from_checkpoint(root, video_tower=tiny["video_tower"])


def test_parts_that_do_not_fit_together_are_refused(model):
    h = model.hidden_size
    wrong_fcs = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 7))
    with pytest.raises(ValueError, match="text_hidden_fcs output"):
        VideoGLaMM(model.llm, model.image_projector, model.video_projector, wrong_fcs, model.pixel_decoder, model.video_encoder, model.config)


def test_safetensors_and_bin_checkpoints_agree(tiny, stored, model, tmp_path):
    other = make_tiny_videoglamm(tmp_path, weight_format="safetensors")
    assert (other["checkpoint"] / WEIGHT_FILES[0]).exists()
    ckpt = CheckpointDir(other["checkpoint"])
    assert set(ckpt.keys()) == set(stored)
    assert all(torch.equal(v, stored[k]) for k, v in ckpt.load(ckpt.keys()).items())  # same seed -> same tensors
    loaded = VideoGLaMM.from_checkpoint(other["checkpoint"], video_tower=other["video_tower"])
    g = torch.Generator().manual_seed(3)
    embeds = torch.randn(1, 40, model.hidden_size, generator=g)
    mask = torch.ones(1, 40, dtype=torch.long)
    torch.testing.assert_close(loaded.prefill_hidden(embeds, mask), model.prefill_hidden(embeds, mask), rtol=0, atol=0)
    clip = torch.randn(2, 576, model.image_feature_width, generator=g)
    assert torch.equal(loaded.project_image_tokens(clip), model.project_image_tokens(clip))
    frames = torch.randn(4, 3, 56, 56, generator=g)
    assert torch.equal(loaded.video_token_grids(frames), model.video_token_grids(frames))
    hidden = torch.randn(2, model.hidden_size, generator=g)
    assert torch.equal(loaded.seg_prompts(hidden), model.seg_prompts(hidden))


# ----------------------------------------------------------------------------- visual tokens and [SEG]


def _window_pool(grid: torch.Tensor, out: int) -> torch.Tensor:
    """Adaptive average pooling written out: cell i covers rows floor(i*n/out) .. ceil((i+1)*n/out)."""
    n = grid.shape[1]
    spans = [(math.floor(i * n / out), math.ceil((i + 1) * n / out)) for i in range(out)]
    rows = [torch.stack([grid[:, a:b, c:d].mean(dim=(1, 2)) for c, d in spans], dim=1) for a, b in spans]
    return torch.stack(rows, dim=1).flatten(1, 2)


def test_sixteen_frames_give_16x144_clip_and_16x64_video_tokens(model, stored):
    g = torch.Generator().manual_seed(0)
    clip_states = torch.randn(16, 576, model.image_feature_width, generator=g)
    projected = model.project_image_tokens(clip_states)
    torch.testing.assert_close(projected, _mlp(clip_states, stored, "model.image_mm_projector.", F.gelu), rtol=1e-5, atol=1e-5)
    pooled = model.pool_image_tokens(projected)
    expected = projected.reshape(16, 12, 2, 12, 2, -1).mean(dim=(2, 4)).reshape(16, 144, -1)
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-6)

    frames = torch.randn(16, 3, 56, 56, generator=g)
    grids = model.video_token_grids(frames)
    enc = model.video_encoder
    side = enc.config.grid_size
    chunks = [enc(frames[c : c + 4].permute(1, 0, 2, 3)[None])[0, 1:].reshape(4, side, side, -1) for c in range(0, 16, 4)]
    torch.testing.assert_close(grids, torch.cat(chunks), rtol=0, atol=0)
    video = model.project_video_tokens(grids)
    per_token = _mlp(grids, stored, "model.mm_projector.", F.gelu)  # (16, 4, 4, H); 4 -> 8 pooling copies each cell 2x2
    expected = per_token.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2).reshape(16, 64, -1)
    torch.testing.assert_close(video, expected, rtol=1e-5, atol=1e-5)
    assert pooled.shape[:2] == (16, 144) and video.shape[:2] == (16, 64)
    assert pooled.shape[0] * pooled.shape[1] + video.shape[0] * video.shape[1] == 3328


def test_full_size_video_grid_pools_16x16_to_8x8(model, stored):
    grids = torch.randn(2, 16, 16, model.video_encoder.config.width, generator=torch.Generator().manual_seed(1))
    per_token = _mlp(grids, stored, "model.mm_projector.", F.gelu)
    expected = per_token.reshape(2, 8, 2, 8, 2, -1).mean(dim=(2, 4)).reshape(2, 64, -1)
    torch.testing.assert_close(model.project_video_tokens(grids), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kept", [196, 81])
def test_pruned_square_grids_pool_to_12x12(model, kept):
    tokens = torch.randn(3, kept, 5, generator=torch.Generator().manual_seed(kept))
    side = int(kept**0.5)
    expected = _window_pool(tokens.reshape(3, side, side, 5), 12)
    torch.testing.assert_close(model.pool_image_tokens(tokens), expected, rtol=1e-5, atol=1e-6)


def test_non_square_token_counts_and_wrong_widths_are_refused(model):
    with pytest.raises(ValueError, match="square"):
        model.pool_image_tokens(torch.zeros(2, 150, 4))
    with pytest.raises(ValueError, match="clip_states"):
        model.project_image_tokens(torch.zeros(2, 576, model.image_feature_width + 1))
    with pytest.raises(ValueError, match="grids"):
        model.project_video_tokens(torch.zeros(2, 4, 4, 3))


def test_encode_video_preprocesses_like_videoglamm(model):
    """uint8 frames -> cv2 resize to the encoder size, /255, ImageNet mean/std -> grids -> projector -> 8x8."""
    import cv2

    frames = np.random.default_rng(0).integers(0, 256, size=(8, 30, 50, 3), dtype=np.uint8)
    size = model.video_encoder.config.image_size
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = torch.from_numpy(np.stack([((cv2.resize(f, (size, size)) / 255.0 - mean) / std).transpose(2, 0, 1) for f in frames])).float()
    expected = model.project_video_tokens(model.video_token_grids(pixels))
    torch.testing.assert_close(model.encode_video(frames), expected, rtol=0, atol=0)
    assert expected.shape == (8, 64, model.hidden_size)


def test_seg_prompts_apply_text_hidden_fcs(model, stored):
    hidden = torch.randn(3, model.hidden_size, generator=torch.Generator().manual_seed(2))
    expected = _mlp(hidden, stored, "model.text_hidden_fcs.0.", F.relu)
    torch.testing.assert_close(model.seg_prompts(hidden), expected, rtol=1e-5, atol=1e-6)
    assert model.seg_prompts(hidden).shape == (3, model.pixel_decoder.hidden_size)


def test_phi3_sliding_window_from_the_config_limits_attention(model):
    """config.json's window 2047, as the released run applies it (2048 keys): after one layer, position 2048 no
    longer sees position 0; position 2047 still does (transformers 5 with 2047 would cut it)."""
    embeds = torch.randn(1, 2061, model.hidden_size, generator=torch.Generator().manual_seed(4))
    mask = torch.ones(1, 2061, dtype=torch.long)
    first_layer = lambda e: model.llm.model(inputs_embeds=e, attention_mask=mask, output_hidden_states=True).hidden_states[1][0]  # noqa: E731
    base = first_layer(embeds)
    embeds[0, 0] += 5.0
    moved = first_layer(embeds)
    assert torch.equal(base[2060], moved[2060]) and torch.equal(base[2048], moved[2048])
    assert not torch.allclose(base[2047], moved[2047]) and not torch.allclose(base[2000], moved[2000])


# ----------------------------------------------------------------------------- architectures


def test_full_architecture_is_the_released_model():
    arch = VideoGLaMMArchitecture.full()
    assert (arch.llm_width, arch.llm_layers, arch.llm_heads, arch.llm_mlp, arch.llm_vocab) == (3072, 32, 32, 8192, 32012)
    assert arch.video == InternVideo2Config.stage2_1b_224p_f4() and arch.num_frames == 16
    shapes = expected_hf_shapes(arch.sam2.to_transformers())
    original = to_original_sam2_state_dict({k: torch.empty(s, device="meta") for k, s in shapes.items()}, layer_scale_name="weight")
    assert infer_sam2_architecture(original) == arch.sam2 == hiera_large_sam2()
    assert arch.scaled(1.0, 1.0) == arch


def test_full_architecture_parameter_counts_on_meta():
    model = VideoGLaMM.from_architecture(VideoGLaMMArchitecture.full(), device="meta")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    v, h, i, layers = 32012, 3072, 8192, 32
    phi3 = 2 * v * h + layers * (3 * h * h + h * h + 2 * i * h + i * h + 2 * h) + h
    assert count(model.llm) == phi3 == 3_820_760_064
    assert abs(count(model.pixel_decoder) - 224.4e6) < 0.1e6  # SAM2 Hiera-L: 224.4 M parameters
    assert 0.95e9 < count(model.video_encoder) < 1.05e9  # InternVideo2 1B, 39 of 40 blocks run
    assert count(model.image_projector) == 1024 * h + h + h * h + h and count(model.text_hidden_fcs) == h * h + h + h * 256 + 256


SCALED = VideoGLaMMArchitecture.full().scaled(1 / 32, 1 / 16)


@pytest.fixture(scope="module")
def scaled_model():
    return VideoGLaMM.from_architecture(SCALED, seed=0)


def test_scaled_architecture_builds_and_keeps_token_counts(scaled_model):
    arch, model = SCALED, scaled_model
    assert (arch.llm_width, arch.llm_layers, arch.video.width, arch.video.depth) == (96, 2, 176, 2)
    assert model.hidden_size == 96 and model.image_feature_width == arch.clip_width
    g = torch.Generator().manual_seed(0)
    clip = model.pool_image_tokens(model.project_image_tokens(torch.randn(16, 576, arch.clip_width, generator=g)))
    video = model.project_video_tokens(model.video_token_grids(torch.randn(16, 3, 224, 224, generator=g)))
    assert clip.shape == (16, 144, 96) and video.shape == (16, 64, 96)
    assert model.seg_prompts(torch.randn(2, 96, generator=g)).shape == (2, arch.sam2.hidden_size)


def test_random_construction_is_deterministic_per_seed(scaled_model):
    a = scaled_model.state_dict()
    b = VideoGLaMM.from_architecture(SCALED, seed=0).state_dict()
    c = VideoGLaMM.from_architecture(SCALED, seed=1).state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["llm.model.embed_tokens.weight"], c["llm.model.embed_tokens.weight"])


def test_config_from_dict_reads_the_released_fields():
    raw = {"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16, "sliding_window": 2047,
           "rope_theta": 10000.0, "mm_vision_select_layer": -2, "mm_projector_type": "mlp2x_gelu", "image_mm_projector_type": "linear",
           "seg_token_idx": 7, "out_dim": 256, "mm_vision_tower": "x.pt", "image_mm_vision_tower": "openai/clip-vit-large-patch14-336"}
    config = VideoGLaMMConfig.from_dict(raw)
    assert config.llm_fields["sliding_window"] == 2048 and config.llm_fields["rope_parameters"]["rope_theta"] == 10000.0  # 2047 + 1
    assert (config.video_projector_type, config.image_projector_type, config.seg_token_idx) == ("mlp2x_gelu", "linear", 7)
    assert (config.video_tower, config.vision_tower) == ("x.pt", "openai/clip-vit-large-patch14-336")
    with pytest.raises(ValueError, match="attention_bias"):
        VideoGLaMMConfig.from_dict(dict(raw, attention_bias=True))

"""InternVideo2 vision encoder: official-layout tiny checkpoints, loading, shapes, and restated maths."""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest
import torch

from video.internvideo2 import (
    INTERNVIDEO2_MEAN,
    INTERNVIDEO2_STD,
    InternVideo2Config,
    InternVideo2VisionEncoder,
    infer_internvideo2_config,
    load_internvideo2,
    preprocess_internvideo2_frames,
    tiny_internvideo2_checkpoint,
    write_tiny_internvideo2,
)
from video.internvideo2.pos_embed import sincos_3d_with_cls

PREFIX = "vision_encoder."


class _Opaque:
    """An object a weights-only load refuses."""


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("iv2") / "InternVideo2-stage2_1b-224p-f4.pt"
    write_tiny_internvideo2(path, seed=0)
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_path):
    return load_internvideo2(tiny_path)


def _clip(frames: int, config=InternVideo2Config.tiny(), batch: int = 2, seed: int = 1) -> torch.Tensor:
    size = config.image_size
    return torch.randn(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


def _encoder_state(state: dict, config: InternVideo2Config) -> dict:
    """The checkpoint tensors the encoder needs, selected here independently of the loader."""
    blocks = {f"blocks.{i}." for i in range(config.num_blocks_run)}
    top = ("cls_token", "pos_embed", "img_pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias")
    out = {}
    for key, value in state.items():
        local = key[len(PREFIX):] if key.startswith(PREFIX) else None
        if local is not None and (local in top or any(local.startswith(b) for b in blocks)):
            out[local] = value
    return out


# ---------------------------------------------------------------- independent restatement of the maths
def _rms(x, weight, eps=1e-6):
    return weight * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _manual_block(x, s: dict, i: int, heads: int):
    """One block written out head by head: RMSNorm, full-width qk RMSNorm, softmax attention, LayerScale, MLP."""
    p = f"blocks.{i}."
    width = x.shape[-1]
    d = width // heads
    h = _rms(x, s[p + "norm1.weight"])
    qkv = h @ s[p + "attn.qkv.weight"].T
    q, k, v = qkv[..., :width], qkv[..., width : 2 * width], qkv[..., 2 * width :]
    q, k = _rms(q, s[p + "attn.q_norm.weight"]), _rms(k, s[p + "attn.k_norm.weight"])
    outs = []
    for head in range(heads):
        cols = slice(head * d, (head + 1) * d)
        scores = q[..., cols] @ k[..., cols].transpose(-1, -2) / math.sqrt(d)
        outs.append(torch.softmax(scores, dim=-1) @ v[..., cols])
    attn = torch.cat(outs, dim=-1) @ s[p + "attn.proj.weight"].T + s[p + "attn.proj.bias"]
    x = x + s[p + "ls1.gamma"] * attn
    h = _rms(x, s[p + "norm2.weight"])
    mlp = _gelu(h @ s[p + "mlp.fc1.weight"].T + s[p + "mlp.fc1.bias"]) @ s[p + "mlp.fc2.weight"].T + s[p + "mlp.fc2.bias"]
    return x + s[p + "ls2.gamma"] * mlp


def _manual_forward(video, s: dict, cfg: InternVideo2Config):
    """Patchify by slicing, CLS + positions, then the selected number of manual blocks."""
    p, g = cfg.patch_size, cfg.grid_size
    weight = s["patch_embed.proj.weight"].reshape(cfg.width, -1)
    tokens = []
    for t in range(video.shape[2]):
        for r in range(g):
            for c in range(g):
                patch = video[:, :, t, r * p : (r + 1) * p, c * p : (c + 1) * p].reshape(video.shape[0], -1)
                tokens.append(patch @ weight.T + s["patch_embed.proj.bias"])
    x = torch.stack(tokens, dim=1)
    pos = s["pos_embed"] if video.shape[2] == cfg.num_frames else s["img_pos_embed"]
    x = torch.cat([s["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + pos
    for i in range(cfg.num_blocks_run):
        x = _manual_block(x, s, i, cfg.num_heads)
    return x


# ---------------------------------------------------------------- checkpoint layout and round trip
def test_tiny_checkpoint_has_the_official_layout(tiny_path):
    raw = torch.load(tiny_path, map_location="cpu", weights_only=True)
    assert list(raw) == ["module"]
    state, cfg = raw["module"], InternVideo2Config.tiny()
    w = cfg.width
    assert state[PREFIX + "patch_embed.proj.weight"].shape == (w, 3, 1, 14, 14)
    assert state[PREFIX + "pos_embed"].shape == (1, 1 + 4 * 16, w)
    assert state[PREFIX + "img_pos_embed"].shape == (1, 1 + 16, w)
    assert state[PREFIX + "blocks.0.attn.qkv.weight"].shape == (3 * w, w)
    assert PREFIX + "blocks.0.attn.qkv.bias" not in state
    assert state[PREFIX + f"blocks.{cfg.depth - 1}.mlp.fc1.weight"].shape == (cfg.mlp_hidden_dim, w)
    for name in ("clip_pos_embed", "clip_projector.cross_attn.q_bias", "clip_decoder.0.head.weight",
                 "final_clip_decoder.norm.bias"):
        assert PREFIX + name in state
    for name in ("text_encoder.bert.embeddings.word_embeddings.weight", "text_encoder.cls.predictions.bias",
                 "text_encoder.bert.encoder.layer.1.crossattention.self.key.weight", "vision_proj.weight", "temp"):
        assert name in state
    assert state["text_encoder.bert.encoder.layer.1.crossattention.self.key.weight"].shape[1] == w


def test_round_trip_matches_in_memory_model(tiny_path, tiny_model):
    cfg = InternVideo2Config.tiny()
    state = tiny_internvideo2_checkpoint(cfg, seed=0)["module"]
    memory = InternVideo2VisionEncoder(cfg)
    memory.load_state_dict(_encoder_state(state, cfg), strict=True)
    memory.eval()
    video = _clip(cfg.num_frames)
    with torch.no_grad():
        expected = memory(video)
        assert torch.equal(tiny_model(video), expected)
        assert torch.equal(load_internvideo2(tiny_internvideo2_checkpoint(cfg, seed=0))(video), expected)
    assert not any(p.requires_grad for p in tiny_model.parameters()) and not tiny_model.training


@pytest.mark.parametrize("wrap", ["model", "flat_prefixed", "flat_bare", "module_dot_prefix"])
def test_nesting_and_prefix_variants_load_the_same(tiny_model, wrap):
    state = tiny_internvideo2_checkpoint(seed=0)["module"]
    variants = {
        "model": lambda: {"model": state},
        "flat_prefixed": lambda: dict(state),
        "flat_bare": lambda: {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)},
        "module_dot_prefix": lambda: {"module." + k: v for k, v in state.items()},
    }
    video = _clip(4)
    with torch.no_grad():
        assert torch.equal(load_internvideo2(variants[wrap]())(video), tiny_model(video))


def test_legacy_non_zip_file_loads(tmp_path, tiny_model):
    path = tmp_path / "legacy.pt"
    torch.save(tiny_internvideo2_checkpoint(seed=0), path, _use_new_zipfile_serialization=False)
    video = _clip(4)
    with torch.no_grad():
        assert torch.equal(load_internvideo2(path)(video), tiny_model(video))


def test_non_tensor_objects_need_allow_pickle(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({**tiny_internvideo2_checkpoint(seed=0), "args": _Opaque()}, path)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_internvideo2(path)
    assert load_internvideo2(path, allow_pickle=True).config == InternVideo2Config.tiny()


def test_skipped_heads_are_logged(tiny_path, caplog):
    with caplog.at_level(logging.INFO, logger="video.internvideo2.checkpoint"):
        load_internvideo2(tiny_path)
    text = caplog.text
    for group in ("vision_encoder.clip_projector", "vision_encoder.clip_decoder", "vision_encoder.final_clip_decoder",
                  "vision_encoder.clip_pos_embed", "vision_encoder.blocks.2 ", "text_encoder", "vision_proj", "itm_head"):
        assert group in text, group
    assert "vision_encoder.blocks.1 " not in text


# ---------------------------------------------------------------- config inference and errors
def test_config_is_inferred_from_shapes(tmp_path):
    odd = InternVideo2Config(image_size=42, patch_size=14, tubelet_size=2, num_frames=8, width=352, depth=4, num_heads=4,
                             mlp_hidden_dim=100, qkv_bias=True, qk_norm=True, layerscale=True)
    write_tiny_internvideo2(tmp_path / "odd.pt", odd, seed=5)
    model = load_internvideo2(tmp_path / "odd.pt")
    assert model.config == odd
    assert len(model.blocks) == 3
    assert model.chunk_features(_clip(16, odd, batch=1)).shape == (1, 2, 4 * 9, 352)
    real = InternVideo2Config.stage2_1b_224p_f4()
    with torch.device("meta"):
        shapes = InternVideo2VisionEncoder(dataclasses.replace(real, return_block_index=-1)).state_dict()
    assert infer_internvideo2_config(shapes, prefix="") == real


def test_config_without_layerscale_or_qk_norm(tmp_path):
    plain = dataclasses.replace(InternVideo2Config.tiny(), layerscale=False, qk_norm=False, depth=2)
    write_tiny_internvideo2(tmp_path / "plain.pt", plain)
    model = load_internvideo2(tmp_path / "plain.pt")
    assert model.config == plain and not any("gamma" in k or "q_norm" in k for k in model.state_dict())


def test_image_size_needs_image_positions_or_a_config():
    no_image = dataclasses.replace(InternVideo2Config.tiny(), separate_image_pos_embed=False)
    state = tiny_internvideo2_checkpoint(no_image)["module"]
    assert not any("img_pos_embed" in k for k in state)
    with pytest.raises(KeyError, match="img_pos_embed"):
        load_internvideo2(state)
    model = load_internvideo2(state, config=no_image)
    image = _clip(1, batch=1)
    frame_mean = model.pos_embed[:, 1:].reshape(1, 4, 16, 176).mean(dim=1)
    positions = torch.cat([model.pos_embed[:, :1], frame_mean], dim=1)
    s = dict(model.state_dict(), img_pos_embed=positions)
    with torch.no_grad():
        assert torch.allclose(model(image), _manual_forward(image, s, no_image), atol=1e-4)


@pytest.mark.parametrize("key", ["vision_encoder.blocks.1.attn.k_norm.weight", "vision_encoder.cls_token",
                                 "vision_encoder.blocks.0.mlp.fc2.bias", "vision_encoder.patch_embed.proj.bias"])
def test_missing_key_is_named(key):
    state = tiny_internvideo2_checkpoint(seed=0)["module"]
    del state[key]
    with pytest.raises(KeyError, match=key.replace(".", r"\.")):
        load_internvideo2({"module": state})


def test_config_mismatches_are_named():
    state = tiny_internvideo2_checkpoint(seed=0)
    wide_mlp = dataclasses.replace(InternVideo2Config.tiny(), mlp_hidden_dim=128)
    with pytest.raises(ValueError, match=r"vision_encoder\.blocks\.0\.mlp\.fc1\.weight"):
        load_internvideo2(state, config=wide_mlp)
    with pytest.raises(KeyError, match=r"vision_encoder\.blocks\.0\.attn\.q_norm\.weight"):
        load_internvideo2(state, config=dataclasses.replace(InternVideo2Config.tiny(), qk_norm=False))
    with pytest.raises(ValueError, match="depth"):
        load_internvideo2(state, config=dataclasses.replace(InternVideo2Config.tiny(), depth=4))
    with pytest.raises(KeyError, match="patch_embed.proj.weight"):
        load_internvideo2({"module": {"text_proj.weight": torch.zeros(2, 2)}})
    narrow = dataclasses.replace(InternVideo2Config.tiny(), width=64)
    with pytest.raises(ValueError, match="multiple of 88"):
        load_internvideo2(tiny_internvideo2_checkpoint(narrow))
    assert load_internvideo2(tiny_internvideo2_checkpoint(narrow), config=narrow).config == narrow


# ---------------------------------------------------------------- shapes and the VideoGLaMM chunking
def test_sixteen_frame_clip_in_four_frame_chunks(tiny_model):
    video = _clip(16, batch=2)
    assert tiny_model(video[:, :, :4]).shape == (2, 1 + 4 * 16, 176)
    assert tiny_model.chunk_features(video).shape == (2, 4, 64, 176)
    assert tiny_model.frame_token_grids(video).shape == (2, 16, 4, 4, 176)
    real = InternVideo2Config.stage2_1b_224p_f4()
    assert (real.num_blocks_run, real.tokens_per_frame, real.num_patches) == (39, 256, 1024)
    with torch.device("meta"):
        model = InternVideo2VisionEncoder(real)
        frames = torch.empty(1, 3, 16, 224, 224)
        assert model(frames[:, :, :4]).shape == (1, 1025, 1408)
        assert model.chunk_features(frames).shape == (1, 4, 1024, 1408)
        assert model.frame_token_grids(frames).shape == (1, 16, 16, 16, 1408)


def test_chunking_matches_videoglamm_restatement(tiny_model):
    video = _clip(16, batch=1)
    frames = video[0].permute(1, 0, 2, 3)  # VideoGLaMM holds one video as (T, C, H, W)
    chunk_batch = torch.stack(frames.chunk(4, dim=0), dim=0).permute(0, 2, 1, 3, 4)  # (chunks, C, 4, H, W)
    with torch.no_grad():
        reference = tiny_model(chunk_batch)[:, 1:]  # CLS dropped, (4, 4*16, D)
        per_frame = reference.reshape(4, 4, 16, 176).reshape(16, 4, 4, 176)
        assert torch.allclose(tiny_model.chunk_features(video)[0], reference, atol=1e-5)
        assert torch.allclose(tiny_model.frame_token_grids(video)[0], per_frame, atol=1e-5)


def test_bad_inputs_raise_clear_errors(tiny_model):
    with pytest.raises(ValueError, match="3 frames"):
        tiny_model(_clip(3))
    with pytest.raises(ValueError, match="6 frames"):
        tiny_model.chunk_features(_clip(6))
    with pytest.raises(ValueError, match=r"\(B, 3, T, 56, 56\)"):
        tiny_model(torch.zeros(1, 3, 4, 32, 32))


def test_determinism(tmp_path, tiny_model):
    a, b = tiny_internvideo2_checkpoint(seed=0)["module"], tiny_internvideo2_checkpoint(seed=0)["module"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = tiny_internvideo2_checkpoint(seed=1)["module"]
    assert not torch.equal(a[PREFIX + "blocks.0.attn.qkv.weight"], other[PREFIX + "blocks.0.attn.qkv.weight"])
    video = _clip(4)
    with torch.no_grad():
        assert torch.equal(tiny_model(video), tiny_model(video))


# ---------------------------------------------------------------- equivalence with restated maths
def test_block_matches_manual_per_head_attention(tiny_model):
    state = {k: v for k, v in tiny_model.state_dict().items()}
    x = torch.randn(2, 9, 176, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for i, block in enumerate(tiny_model.blocks):
            assert torch.allclose(block(x), _manual_block(x, state, i, heads=2), atol=1e-5)


def test_forward_matches_manual_restatement(tiny_model):
    cfg, state = tiny_model.config, tiny_model.state_dict()
    with torch.no_grad():
        for frames in (4, 1):  # a clip (pos_embed) and an image (img_pos_embed)
            video = _clip(frames, batch=2, seed=frames)
            assert torch.allclose(tiny_model(video), _manual_forward(video, state, cfg), atol=1e-4)


def test_layer_selection_changes_depth_run(tiny_path, tiny_model):
    last = load_internvideo2(tiny_path, config=dataclasses.replace(InternVideo2Config.tiny(), return_block_index=-1))
    assert len(last.blocks) == 3 and len(tiny_model.blocks) == 2
    video = _clip(4)
    with torch.no_grad():
        assert torch.allclose(last(video), _manual_forward(video, last.state_dict(), last.config), atol=1e-4)
        assert not torch.allclose(last(video), tiny_model(video), atol=1e-3)


def test_bfloat16_load_follows_float32(tiny_path, tiny_model):
    half = load_internvideo2(tiny_path, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    video = _clip(4)
    with torch.no_grad():
        out, ref = half(video), tiny_model(video)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()


def test_fresh_position_table_is_3d_sincos():
    width, grid, time = 32, 3, 2
    table = sincos_3d_with_cls(width, grid, time)
    assert table.shape == (1 + time * grid * grid, width) and torch.all(table[0] == 0)

    def one_d(dim, pos):
        return [math.sin(pos / 10000 ** (i / (dim / 2))) for i in range(dim // 2)] + \
               [math.cos(pos / 10000 ** (i / (dim / 2))) for i in range(dim // 2)]

    for t, r, c in [(0, 0, 0), (1, 2, 0), (1, 1, 2)]:
        row = table[1 + t * grid * grid + r * grid + c].tolist()
        expected = one_d(8, t) + one_d(12, c) + one_d(12, r)
        assert np.allclose(row, expected, atol=1e-9)
    fresh = InternVideo2VisionEncoder(InternVideo2Config.tiny())
    assert torch.allclose(fresh.pos_embed[0].double(), sincos_3d_with_cls(176, 4, 4), atol=1e-6)


# ---------------------------------------------------------------- preprocessing
def test_preprocessing_resizes_and_normalises():
    rng = np.random.default_rng(0)
    flat = np.full((30, 40, 3), (10, 128, 250), dtype=np.uint8)
    exact = rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)
    out = preprocess_internvideo2_frames([flat, exact], image_size=56)
    assert out.shape == (2, 3, 56, 56) and out.dtype == torch.float32
    mean, std = np.array(INTERNVIDEO2_MEAN), np.array(INTERNVIDEO2_STD)
    for ch, value in enumerate((10, 128, 250)):
        assert torch.allclose(out[0, ch], torch.tensor((value / 255 - mean[ch]) / std[ch], dtype=torch.float32))
    expected = (exact / 255.0 - mean) / std
    assert np.allclose(out[1].numpy(), expected.transpose(2, 0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_internvideo2_frames([flat.astype(np.float32)])

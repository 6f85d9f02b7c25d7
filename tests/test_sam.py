"""SAM grounding encoder vs Meta's segment-anything modules (the peer implementation), on tiny random models.

segment-anything's package ``__init__`` imports torchvision (absent here). The fixture below imports its
``modeling``, ``build_sam`` and ``utils.transforms`` submodules without running that ``__init__``, with a
minimal stand-in ``torchvision`` (only ``transforms.functional.resize`` / ``to_pil_image``, restated on PIL
as torchvision does for PIL images) present during the import only. All inserted modules are removed.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import sys
import types
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from litelvlm.sam import (
    SAM_VIT_B,
    SAM_VIT_H,
    SAM_VIT_L,
    GroundingEncoder,
    SamArchitecture,
    convert_sam_state_dict,
    expected_hf_keys,
    infer_sam_architecture,
    preprocess_for_sam,
    sam_config_from_state_dict,
    strip_prefix,
    to_segment_anything_state_dict,
)

# Two tiny architectures in Meta's constructor vocabulary. B differs in every inferred field: grid 16
# from 128/8 (window 3 does not divide it: padded windows), no qkv bias, two global blocks, 2 decoder
# heads (not readable from weights: passed as a hint), depth-2 IoU head, 2 multimask outputs.
SPEC_A = dict(img_size=256, patch_size=16, embed_dim=32, depth=3, num_heads=2, mlp_ratio=4.0, window_size=4,
              global_attn_indexes=(1,), qkv_bias=True, out_chans=64, mask_in_chans=16, decoder_depth=2,
              decoder_mlp_dim=64, decoder_heads=8, downsample=2, num_multimask_outputs=3, iou_head_depth=3,
              iou_head_hidden_dim=32)
SPEC_B = dict(img_size=128, patch_size=8, embed_dim=48, depth=4, num_heads=3, mlp_ratio=2.0, window_size=3,
              global_attn_indexes=(0, 3), qkv_bias=False, out_chans=32, mask_in_chans=8, decoder_depth=1,
              decoder_mlp_dim=48, decoder_heads=2, downsample=2, num_multimask_outputs=2, iou_head_depth=2,
              iou_head_hidden_dim=24)
SPECS = {"A": SPEC_A, "B": SPEC_B}


def _stand_in_torchvision() -> dict[str, types.ModuleType]:
    def to_pil_image(array):
        return Image.fromarray(array)

    def resize(image, size):  # torchvision on a PIL image with size (h, w): PIL bilinear to (w, h)
        return image.resize((size[1], size[0]), Image.Resampling.BILINEAR)

    root, transforms, functional = (types.ModuleType(n) for n in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"))
    functional.resize, functional.to_pil_image = resize, to_pil_image
    root.transforms, transforms.functional = transforms, functional
    return {m.__name__: m for m in (root, transforms, functional)}


@contextlib.contextmanager
def _segment_anything():
    import transformers.models.sam.modeling_sam  # noqa: F401  (import transformers before any stand-in exists)

    spec = importlib.util.find_spec("segment_anything")
    assert spec is not None, "segment-anything==1.0 (test dependency) is not installed"
    before = set(sys.modules)
    package = types.ModuleType("segment_anything")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["segment_anything"] = package
    stand_ins = _stand_in_torchvision()
    assert not set(stand_ins) & before, "a real torchvision is imported; this test must not shadow it"
    sys.modules.update(stand_ins)
    try:
        sa = types.SimpleNamespace(
            modeling=importlib.import_module("segment_anything.modeling"),
            build=importlib.import_module("segment_anything.build_sam"),
            transforms=importlib.import_module("segment_anything.utils.transforms"),
        )
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
    try:
        yield sa
    finally:
        for name in set(sys.modules) - before:
            if name == "segment_anything" or name.startswith("segment_anything."):
                del sys.modules[name]


@pytest.fixture(scope="module")
def sa():
    with _segment_anything() as modules:
        yield modules


def _meta_sam(sa, spec):
    """Meta's Sam built from ``spec`` (default init)."""
    m = sa.modeling
    grid = spec["img_size"] // spec["patch_size"]
    image_encoder = m.ImageEncoderViT(
        img_size=spec["img_size"], patch_size=spec["patch_size"], embed_dim=spec["embed_dim"], depth=spec["depth"],
        num_heads=spec["num_heads"], mlp_ratio=spec["mlp_ratio"], out_chans=spec["out_chans"], qkv_bias=spec["qkv_bias"],
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_abs_pos=True, use_rel_pos=True,
        window_size=spec["window_size"], global_attn_indexes=spec["global_attn_indexes"],
    )
    prompt_encoder = m.PromptEncoder(
        embed_dim=spec["out_chans"], image_embedding_size=(grid, grid),
        input_image_size=(spec["img_size"], spec["img_size"]), mask_in_chans=spec["mask_in_chans"],
    )
    transformer = m.TwoWayTransformer(
        depth=spec["decoder_depth"], embedding_dim=spec["out_chans"], num_heads=spec["decoder_heads"],
        mlp_dim=spec["decoder_mlp_dim"], attention_downsample_rate=spec["downsample"],
    )
    mask_decoder = m.MaskDecoder(
        transformer_dim=spec["out_chans"], transformer=transformer, num_multimask_outputs=spec["num_multimask_outputs"],
        iou_head_depth=spec["iou_head_depth"], iou_head_hidden_dim=spec["iou_head_hidden_dim"],
    )
    return m.Sam(image_encoder, prompt_encoder, mask_decoder).eval()


def _randomise_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every weight random (zero-initialised pos_embed / rel_pos included), norms near identity."""
    g = torch.Generator().manual_seed(seed)
    norm_ids = {id(p) for mod in model.modules() if "LayerNorm" in type(mod).__name__ for p in mod.parameters()}
    with torch.no_grad():
        for name, t in sorted(model.state_dict(keep_vars=True).items()):
            noise = torch.randn(t.shape, generator=g)
            if id(t) in norm_ids:
                t.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            elif t.ndim >= 2 and name.endswith("weight") and "embed" not in name and "token" not in name:
                t.copy_(noise / (t[0].numel() ** 0.5))
            else:
                t.copy_(0.5 * noise)
    return model


@pytest.fixture(scope="module")
def peers(sa):
    """For each spec: (Meta's Sam with random weights, our GroundingEncoder loaded from its state dict)."""
    torch.manual_seed(0)
    out = {}
    for key, spec in SPECS.items():
        meta = _randomise_(_meta_sam(sa, spec), seed=len(out) + 1)
        ours = GroundingEncoder.from_original_state_dict(meta.state_dict(), decoder_num_heads=spec["decoder_heads"])
        out[key] = (meta, ours)
    return out


# ---------------------------------------------------------------- config inference


@pytest.mark.parametrize("name", sorted(SPECS))
def test_config_inferred_from_shapes(sa, name):
    spec = SPECS[name]
    with torch.device("meta"):
        sd = _meta_sam(sa, spec).state_dict()
    cfg = sam_config_from_state_dict(sd, decoder_num_heads=None if spec["decoder_heads"] == 8 else spec["decoder_heads"])
    v, p, d = cfg.vision_config, cfg.prompt_encoder_config, cfg.mask_decoder_config
    grid = spec["img_size"] // spec["patch_size"]
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads) == (spec["embed_dim"], spec["depth"], spec["num_heads"])
    assert (v.image_size, v.patch_size, v.window_size) == (spec["img_size"], spec["patch_size"], spec["window_size"])
    assert tuple(v.global_attn_indexes) == spec["global_attn_indexes"]
    assert v.mlp_dim == int(spec["embed_dim"] * spec["mlp_ratio"]) and v.qkv_bias == spec["qkv_bias"]
    assert (v.output_channels, v.num_pos_feats, v.use_rel_pos, v.use_abs_pos) == (spec["out_chans"], spec["out_chans"] // 2, True, True)
    assert (p.hidden_size, p.image_size, p.patch_size, p.image_embedding_size) == (spec["out_chans"], spec["img_size"], spec["patch_size"], grid)
    assert (p.mask_input_channels, p.num_point_embeddings) == (spec["mask_in_chans"], 4)
    assert (d.hidden_size, d.num_hidden_layers, d.mlp_dim, d.num_attention_heads) == (
        spec["out_chans"], spec["decoder_depth"], spec["decoder_mlp_dim"], spec["decoder_heads"])
    assert (d.attention_downsample_rate, d.num_multimask_outputs) == (spec["downsample"], spec["num_multimask_outputs"])
    assert (d.iou_head_depth, d.iou_head_hidden_dim) == (spec["iou_head_depth"], spec["iou_head_hidden_dim"])


@pytest.mark.parametrize("builder,expected", [("build_sam_vit_b", SAM_VIT_B), ("build_sam_vit_l", SAM_VIT_L), ("build_sam_vit_h", SAM_VIT_H)])
def test_released_architectures_inferred(sa, builder, expected):
    with torch.device("meta"):
        sd = getattr(sa.build, builder)().state_dict()
    arch = infer_sam_architecture(sd)
    assert arch == expected
    assert (arch.vision_heads, arch.window_size, arch.image_size, arch.embed_dim, arch.decoder_heads) == (
        {768: 12, 1024: 16, 1280: 16}[arch.vision_width], 14, 1024, 256, 8)
    assert set(convert_sam_state_dict(sd)) == expected_hf_keys(arch.to_sam_config())


def test_decoder_heads_that_do_not_divide_ask_for_a_hint(sa):
    with torch.device("meta"):
        sd = _meta_sam(sa, dict(SPEC_A, out_chans=24, decoder_heads=2)).state_dict()
    with pytest.raises(ValueError, match="decoder_num_heads"):
        infer_sam_architecture(sd)
    assert infer_sam_architecture(sd, decoder_num_heads=2).decoder_heads == 2


# ---------------------------------------------------------------- numerical parity with Meta's modules


@pytest.mark.parametrize("name", sorted(SPECS))
def test_image_embeddings_match_meta(peers, name):
    meta, ours = peers[name]
    size = SPECS[name]["img_size"]
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        expected = meta.image_encoder(pixels)
        got = ours.encode_image(pixels)
    assert got.shape == (2, SPECS[name]["out_chans"], size // SPECS[name]["patch_size"], size // SPECS[name]["patch_size"])
    assert expected.std() > 0.3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _meta_decode(meta, image_embeddings, prompts):
    sparse, dense = meta.prompt_encoder(points=None, boxes=None, masks=None)
    assert sparse.shape[1] == 0
    dense = dense.expand(prompts.shape[0], -1, -1, -1)
    low_res, _ = meta.mask_decoder(
        image_embeddings=image_embeddings, image_pe=meta.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=prompts[:, None, :], dense_prompt_embeddings=dense, multimask_output=False,
    )
    return low_res


@pytest.mark.parametrize("name", sorted(SPECS))
def test_decoded_and_postprocessed_masks_match_meta(peers, name):
    meta, ours = peers[name]
    spec = SPECS[name]
    g = torch.Generator().manual_seed(12)
    image_embeddings = torch.randn(1, spec["out_chans"], *(2 * [spec["img_size"] // spec["patch_size"]]), generator=g)
    prompts = torch.randn(3, spec["out_chans"], generator=g)
    input_size, original_size = (spec["img_size"] * 3 // 4, spec["img_size"]), (97, 130)
    with torch.no_grad():
        expected_low = _meta_decode(meta, image_embeddings, prompts)
        got_low = ours.decode_masks(image_embeddings, prompts)
        single = torch.cat([ours.decode_masks(image_embeddings, prompts[i : i + 1]) for i in range(3)])
        expected = meta.postprocess_masks(expected_low, input_size, original_size)
        got = ours.postprocess_masks(got_low, input_size, original_size)
    assert got_low.shape == (3, 1, 4 * spec["img_size"] // spec["patch_size"], 4 * spec["img_size"] // spec["patch_size"])
    assert expected_low.std() > 0.1 and not torch.allclose(got_low[0], got_low[1])
    torch.testing.assert_close(got_low, expected_low, atol=5e-5, rtol=1e-5)
    torch.testing.assert_close(single, got_low, atol=1e-4, rtol=1e-5)
    assert got.shape == (3, *original_size) and expected.shape == (3, 1, *original_size)
    torch.testing.assert_close(got, expected[:, 0], atol=5e-5, rtol=1e-5)
    confident = expected[:, 0].abs() > 1e-4
    assert torch.equal((got > 0)[confident], (expected[:, 0] > 0)[confident])
    assert 0 < (got > 0).float().mean() < 1


def _dense_pe_restated(gaussian: torch.Tensor, grid: int) -> torch.Tensor:
    """Random-Fourier positional encoding of the grid cell centres, (1, 2F, grid, grid)."""
    centres = (torch.arange(grid, dtype=gaussian.dtype) + 0.5) / grid
    xy = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), dim=-1)  # [..., 0] = x (column)
    angles = 2 * torch.pi * ((2 * xy - 1) @ gaussian)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).permute(2, 0, 1)[None]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_float64_parity_is_exact(peers, name):
    """In float64 every weight, epsilon and formula must agree to ~1e-10 (fp32 noise hides small slips)."""
    meta, _ = peers[name]
    spec = SPECS[name]
    meta64 = copy.deepcopy(meta).double()
    ours64 = GroundingEncoder.from_original_state_dict(meta64.state_dict(), decoder_num_heads=spec["decoder_heads"])
    grid = spec["img_size"] // spec["patch_size"]
    gaussian = meta64.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    pe = _dense_pe_restated(gaussian, grid)
    torch.testing.assert_close(_dense_pe_restated(gaussian.float(), grid), meta.prompt_encoder.get_dense_pe(), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours64.dense_positional_embedding(), pe, atol=1e-12, rtol=0)
    g = torch.Generator().manual_seed(13)
    pixels = torch.randn(1, 3, spec["img_size"], spec["img_size"], generator=g, dtype=torch.float64)
    prompts = torch.randn(4, spec["out_chans"], generator=g, dtype=torch.float64)
    with torch.no_grad():
        embeddings = meta64.image_encoder(pixels)
        torch.testing.assert_close(ours64.encode_image(pixels), embeddings, atol=1e-10, rtol=0)
        expected, _ = meta64.mask_decoder(
            image_embeddings=embeddings, image_pe=pe, sparse_prompt_embeddings=prompts[:, None, :],
            dense_prompt_embeddings=meta64.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1), multimask_output=False,
        )
        torch.testing.assert_close(ours64.decode_masks(embeddings, prompts), expected, atol=1e-10, rtol=0)


def test_zero_prompts_give_zero_masks(peers):
    _, ours = peers["A"]
    out = ours.decode_masks(torch.zeros(1, 64, 16, 16), torch.zeros(0, 64))
    assert out.shape == (0, 1, 64, 64)


def test_hf_checkpoint_written_in_original_layout_loads_into_meta(sa):
    """to_segment_anything_state_dict writes tiny checkpoints that Meta's modules load strictly and run identically."""
    arch = SamArchitecture(vision_width=32, vision_depth=2, vision_heads=2, vision_mlp_dim=128, window_size=4,
                           global_attn_indexes=(1,), image_size=256, embed_dim=64, decoder_mlp_dim=64, iou_head_hidden_dim=32)
    from transformers import SamModel

    torch.manual_seed(3)
    hf = _randomise_(SamModel(arch.to_sam_config()), seed=4)
    hf_sd = hf.state_dict()
    assert "shared_image_embedding.positional_embedding" in hf_sd  # transformers' tied copy is dropped
    original = to_segment_anything_state_dict(hf_sd)
    meta = _meta_sam(sa, dict(SPEC_A, depth=2, out_chans=64))
    meta.load_state_dict(original, strict=True)
    ours = GroundingEncoder.from_original_state_dict(original)
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(pixels), meta.image_encoder(pixels), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.encode_image(pixels), hf.get_image_embeddings(pixels), atol=1e-6, rtol=1e-6)


def test_dtype_argument_casts_weights(peers):
    meta, _ = peers["A"]
    ours = GroundingEncoder.from_original_state_dict(meta.state_dict(), dtype=torch.bfloat16)
    assert {t.dtype for t in ours.state_dict().values()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in ours.parameters()) and not ours.training


# ---------------------------------------------------------------- key conversion


def test_key_round_trip(peers):
    meta, _ = peers["B"]
    original = meta.state_dict()
    hf_sd = convert_sam_state_dict(original, decoder_num_heads=2)
    assert set(hf_sd) == expected_hf_keys(sam_config_from_state_dict(original, decoder_num_heads=2))
    assert "mask_decoder.iou_prediction_head.proj_out.weight" in hf_sd and "vision_encoder.neck.layer_norm2.bias" in hf_sd
    back = to_segment_anything_state_dict(hf_sd)
    assert set(back) == set(original)
    assert all(torch.equal(back[k], original[k]) for k in original)


def test_iou_head_middle_layers_are_renumbered(peers):
    meta, _ = peers["A"]  # iou_head_depth 3: layers.0 / layers.1 / layers.2
    hf_sd = convert_sam_state_dict(meta.state_dict())
    sd = meta.state_dict()
    assert torch.equal(hf_sd["mask_decoder.iou_prediction_head.proj_in.weight"], sd["mask_decoder.iou_prediction_head.layers.0.weight"])
    assert torch.equal(hf_sd["mask_decoder.iou_prediction_head.layers.0.weight"], sd["mask_decoder.iou_prediction_head.layers.1.weight"])
    assert torch.equal(hf_sd["mask_decoder.iou_prediction_head.proj_out.weight"], sd["mask_decoder.iou_prediction_head.layers.2.weight"])


@pytest.mark.parametrize("extra", ["image_encoder.blocks.0.attn.extra", "prompt_encoder.point_embeddings.0.bias"])
def test_extra_original_key_is_named(peers, extra):
    sd = dict(peers["A"][0].state_dict())
    sd[extra] = torch.zeros(1)
    for call in (convert_sam_state_dict, GroundingEncoder.from_original_state_dict):
        with pytest.raises(ValueError, match=extra.replace(".", r"\.")):
            call(sd)


@pytest.mark.parametrize("missing", ["image_encoder.blocks.1.mlp.lin2.bias", "mask_decoder.transformer.norm_final_attn.weight", "image_encoder.pos_embed"])
def test_missing_original_key_is_named(peers, missing):
    sd = dict(peers["A"][0].state_dict())
    del sd[missing]
    for call in (convert_sam_state_dict, GroundingEncoder.from_original_state_dict):
        with pytest.raises(ValueError, match=missing.replace(".", r"\.")):
            call(sd)


def test_prefixed_checkpoint_keys_get_a_hint(peers):
    sd = {f"model.grounding_encoder.{k}": v for k, v in peers["A"][0].state_dict().items()}
    with pytest.raises(ValueError, match="model.grounding_encoder."):
        infer_sam_architecture(sd)
    stripped = strip_prefix({**sd, "model.other.weight": torch.zeros(1)})
    assert set(stripped) == set(peers["A"][0].state_dict())


def test_hf_side_missing_or_extra_key_is_named(peers):
    hf_sd = convert_sam_state_dict(peers["A"][0].state_dict())
    missing = dict(hf_sd)
    del missing["mask_decoder.upscale_conv2.bias"]
    with pytest.raises(ValueError, match=r"mask_decoder\.upscale_conv2\.bias"):
        to_segment_anything_state_dict(missing)
    extra = dict(hf_sd, **{"vision_encoder.layers.0.attn.extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"vision_encoder\.layers\.0\.attn\.extra"):
        to_segment_anything_state_dict(extra)


# ---------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("target,hw", [(10, (4, 1)), (256, (37, 53)), (256, (300, 200)), (1024, (480, 640)), (128, (129, 7))])
def test_preprocess_matches_meta_resize_normalise_pad(sa, target, hw):
    image = np.random.default_rng(hw[0]).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    pixels, input_size = preprocess_for_sam(image, target_size=target)
    resized = sa.transforms.ResizeLongestSide(target).apply_image(image)
    sam = sa.modeling.Sam.__new__(sa.modeling.Sam)  # only preprocess(): pixel mean/std and the image size
    torch.nn.Module.__init__(sam)
    sam.register_buffer("pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1), False)
    sam.register_buffer("pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1), False)
    sam.image_encoder = types.SimpleNamespace(img_size=target)
    expected = sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1).float())
    assert pixels.shape == (1, 3, target, target) and pixels.dtype == torch.float32
    assert input_size == resized.shape[:2] and max(input_size) == target
    torch.testing.assert_close(pixels[0], expected, atol=1e-6, rtol=1e-6)
    h, w = input_size
    assert (pixels[..., h:, :] == 0).all() and (pixels[..., :, w:] == 0).all()


def test_preprocess_restated_on_uniform_image():
    image = np.full((10, 40, 3), (200, 100, 0), dtype=np.uint8)
    pixels, (h, w) = preprocess_for_sam(image, target_size=64)
    assert (h, w) == (16, 64)  # 10 * 64/40 = 16
    expected = (torch.tensor([200.0, 100.0, 0.0]) - torch.tensor([123.675, 116.28, 103.53])) / torch.tensor([58.395, 57.12, 57.375])
    torch.testing.assert_close(pixels[0, :, :h, :w], expected.view(3, 1, 1).expand(3, h, w))
    assert (pixels[0, :, h:] == 0).all()


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8)])
def test_preprocess_rejects_bad_images(bad):
    with pytest.raises(ValueError, match="image must be"):
        preprocess_for_sam(bad)


def test_encoder_rejects_bad_shapes(peers):
    _, ours = peers["A"]
    with pytest.raises(ValueError, match="pixel_values"):
        ours.encode_image(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match="prompt_embeddings"):
        ours.decode_masks(torch.zeros(1, 64, 16, 16), torch.zeros(2, 32))
    with pytest.raises(ValueError, match="image_embeddings"):
        ours.decode_masks(torch.zeros(2, 64, 16, 16), torch.zeros(2, 64))

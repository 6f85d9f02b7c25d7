"""video.sam2: original-naming SAM2 weights -> transformers Sam2Video, VideoGLaMM's [SEG]-prompted video decoding.

Peers: transformers' own Sam2Video inference session (point-prompted tracking) and, when Meta's
``sam2`` package is importable (``pip install --no-deps sam2==1.1.0 hydra-core iopath``), Meta's
SAM2Base modules driven the way VideoGLaMM's SAM2VideoPredictor drives them.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from video.sam2 import (
    NO_OBJECT_SCORE,
    SAM2_PIXEL_MEAN,
    SAM2_PIXEL_STD,
    Sam2Architecture,
    Sam2PixelDecoder,
    convert_sam2_state_dict,
    expected_hf_shapes,
    extract_sam2_state_dict,
    infer_sam2_architecture,
    random_sam2_tensors,
    sam2_config_from_state_dict,
    tiny_sam2_architecture,
    to_original_sam2_state_dict,
    write_tiny_sam2_state_dict,
)

VARIANT_B = dict(
    embed_dim=16, blocks_per_stage=(1, 1, 3, 1), window0=8, hidden_size=256, memory_attention_layers=1, num_maskmem=3
)


@pytest.fixture(scope="module")
def tiny_sd():
    return write_tiny_sam2_state_dict(seed=0)


@pytest.fixture(scope="module")
def tiny_sd_b():
    return write_tiny_sam2_state_dict(seed=1, **VARIANT_B)


@pytest.fixture(scope="module")
def decoder(tiny_sd):
    return Sam2PixelDecoder.from_original_state_dict(tiny_sd)


@pytest.fixture(scope="module")
def decoder_b(tiny_sd_b):
    return Sam2PixelDecoder.from_original_state_dict(tiny_sd_b)


@pytest.fixture(scope="module")
def decoder_absent():
    """Object-score head biased negative: SAM2 judges every tracked object absent."""
    return Sam2PixelDecoder.from_original_state_dict(write_tiny_sam2_state_dict(seed=0, object_score_bias=-5.0))


def _frames(num_frames=4, height=40, width=56, seed=0):
    """A smooth moving blob video (uint8 RGB) so that features change coherently between frames."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(num_frames):
        blob = np.exp(-((yy - height / 2) ** 2 + (xx - 10 - 4 * t) ** 2) / 60.0)
        noise = np.random.default_rng(seed + t).normal(0, 0.1, (height, width, 3))
        frames.append(np.clip((blob[..., None] * [0.9, 0.3, 0.5] + 0.2 + noise) * 255, 0, 255))
    return np.stack(frames).astype(np.uint8)


def _prompts(decoder, count, seed=0):
    return torch.randn(count, decoder.hidden_size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- weights and config


def test_tiny_weights_use_the_original_sam2_names(tiny_sd):
    expected = {
        "image_encoder.trunk.patch_embed.proj.weight",
        "image_encoder.trunk.pos_embed_window",
        "image_encoder.trunk.blocks.1.proj.weight",
        "image_encoder.trunk.blocks.0.mlp.layers.1.weight",
        "image_encoder.neck.convs.3.conv.weight",
        "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "sam_prompt_encoder.point_embeddings.3.weight",
        "sam_prompt_encoder.mask_downscaling.6.weight",
        "sam_mask_decoder.output_upscaling.1.weight",
        "sam_mask_decoder.output_hypernetworks_mlps.3.layers.2.weight",
        "sam_mask_decoder.transformer.layers.1.norm4.bias",
        "sam_mask_decoder.transformer.norm_final_attn.weight",
        "sam_mask_decoder.transformer.final_attn_token_to_image.out_proj.weight",
        "sam_mask_decoder.pred_obj_score_head.layers.2.weight",
        "memory_attention.layers.1.cross_attn_image.k_proj.weight",
        "memory_attention.norm.weight",
        "memory_encoder.mask_downsampler.encoder.12.weight",
        "memory_encoder.mask_downsampler.encoder.10.bias",
        "memory_encoder.pix_feat_proj.weight",
        "memory_encoder.fuser.layers.1.gamma",
        "memory_encoder.fuser.layers.0.pwconv2.weight",
        "memory_encoder.out_proj.weight",
        "maskmem_tpos_enc",
        "no_mem_embed",
        "no_mem_pos_enc",
        "no_obj_ptr",
        "mask_downsample.weight",
        "obj_ptr_proj.layers.2.bias",
    }
    assert expected <= set(tiny_sd)
    assert tiny_sd["maskmem_tpos_enc"].shape == (7, 1, 1, 64)
    assert tiny_sd["sam_prompt_encoder.point_embeddings.0.weight"].shape == (1, 128)
    leftovers = [k for k in tiny_sd if any(s in k for s in ("layer_norm", "proj_in", "o_proj", "vision_encoder", "memory_fuser"))]
    assert not leftovers
    videoglamm = write_tiny_sam2_state_dict(seed=0, layer_scale_name="weight")
    assert "memory_encoder.fuser.layers.1.weight" in videoglamm and "memory_encoder.fuser.layers.1.gamma" not in videoglamm


def test_conversion_round_trip(tiny_sd):
    hf = convert_sam2_state_dict(tiny_sd)
    assert set(hf) == set(expected_hf_shapes(sam2_config_from_state_dict(tiny_sd)))
    fourier = tiny_sd["sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]
    assert torch.equal(hf["prompt_encoder.point_embed.weight"][2], tiny_sd["sam_prompt_encoder.point_embeddings.2.weight"][0])
    assert torch.equal(hf["shared_image_embedding.positional_embedding"], fourier)
    assert torch.equal(hf["prompt_encoder.shared_embedding.positional_embedding"], fourier)
    assert torch.equal(hf["memory_encoder.memory_fuser.layers.0.scale"], tiny_sd["memory_encoder.fuser.layers.0.gamma"])
    back = to_original_sam2_state_dict(hf)
    assert set(back) == set(tiny_sd) and all(torch.equal(back[k], tiny_sd[k]) for k in tiny_sd)
    videoglamm = to_original_sam2_state_dict(hf, layer_scale_name="weight")
    again = convert_sam2_state_dict(videoglamm)
    assert set(again) == set(hf) and all(torch.equal(again[k], hf[k]) for k in hf)


@pytest.mark.parametrize("sizes", [{}, VARIANT_B], ids=["default", "variant_b"])
def test_config_inferred_from_tiny_weights(sizes):
    sd = write_tiny_sam2_state_dict(seed=3, **sizes)
    assert infer_sam2_architecture(sd) == tiny_sam2_architecture(**sizes)
    config = sam2_config_from_state_dict(sd)
    hiera = config.vision_config.backbone_config
    blocks = sizes.get("blocks_per_stage", (1, 2, 2, 1))
    embed = sizes.get("embed_dim", 8)
    assert list(hiera.blocks_per_stage) == list(blocks)
    assert list(hiera.embed_dim_per_stage) == [embed, 2 * embed, 4 * embed, 8 * embed]
    assert list(hiera.num_attention_heads_per_stage) == [1, 2, 4, 8]
    assert list(hiera.global_attention_blocks) == [sum(blocks[:3]) - 1]
    assert list(hiera.window_size_per_stage) == [sizes.get("window0", 4), 4, 14, 7]
    assert config.num_maskmem == sizes.get("num_maskmem", 7) and config.image_size == 64
    assert config.memory_attention_rope_feat_sizes == [4, 4]
    assert not config.enable_occlusion_spatial_embedding and not config.enable_temporal_pos_encoding_for_object_pointers


def _hiera_large() -> Sam2Architecture:
    """sam2_hiera_l.yaml (VideoGLaMM's pixel decoder)."""
    return Sam2Architecture(
        image_size=1024,
        embed_dim=144,
        num_heads=2,
        blocks_per_stage=(2, 6, 36, 4),
        window_spec=(8, 4, 16, 8),
        global_attention_blocks=(23, 33, 43),
        window_pos_embed_bkg=(7, 7),
    )


def test_hiera_large_layout_needs_no_extra_configuration():
    shapes = expected_hf_shapes(_hiera_large().to_transformers())
    empty = {k: torch.empty(s, device="meta") for k, s in shapes.items()}  # shapes only, no memory
    original = to_original_sam2_state_dict(empty, layer_scale_name="weight")
    checkpoint = {f"model.visual_model.{k}": v for k, v in original.items()}
    checkpoint["model.text_hidden_fcs.0.0.weight"] = torch.empty(3072, 3072, device="meta")
    sam2 = extract_sam2_state_dict(checkpoint)
    assert infer_sam2_architecture(sam2) == _hiera_large()
    config = sam2_config_from_state_dict(sam2)
    assert list(config.vision_config.backbone_channel_list) == [1152, 576, 288, 144]
    assert config.memory_attention_rope_feat_sizes == [64, 64] and config.num_maskmem == 7
    assert len(convert_sam2_state_dict(sam2, config)) == len(shapes)


def test_missing_unexpected_and_misshaped_keys_are_named(tiny_sd):
    missing = {k: v for k, v in tiny_sd.items() if k != "sam_mask_decoder.iou_token.weight"}
    with pytest.raises(ValueError, match=r"missing 1 keys: sam_mask_decoder\.iou_token\.weight"):
        convert_sam2_state_dict(missing)
    extra = dict(tiny_sd, **{"sam_mask_decoder.extra_head.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected 1 keys: sam_mask_decoder\.extra_head\.weight"):
        convert_sam2_state_dict(extra)
    misshaped = dict(tiny_sd, **{"no_obj_ptr": torch.zeros(1, 129)})
    with pytest.raises(ValueError, match="no_obj_ptr"):
        convert_sam2_state_dict(misshaped)
    no_window = {k: v for k, v in tiny_sd.items() if k != "image_encoder.trunk.pos_embed_window"}
    with pytest.raises(KeyError, match="image_encoder.trunk.pos_embed_window"):
        convert_sam2_state_dict(no_window)
    with pytest.raises(KeyError, match="extract_sam2_state_dict"):
        sam2_config_from_state_dict({f"model.visual_model.{k}": v for k, v in tiny_sd.items()})
    both = dict(tiny_sd, **{"memory_encoder.fuser.layers.0.weight": tiny_sd["memory_encoder.fuser.layers.0.gamma"]})
    with pytest.raises(ValueError, match="both"):
        convert_sam2_state_dict(both)


# ----------------------------------------------------------------------------- preprocessing


def test_preprocess_restates_videoglamm_sam2_transform(decoder):
    from PIL import Image

    frames = _frames(2, height=30, width=50)
    pixel_values = decoder.preprocess(frames)
    assert pixel_values.shape == (2, 3, 64, 64) and pixel_values.dtype == torch.float32
    mean, std = np.array(SAM2_PIXEL_MEAN), np.array(SAM2_PIXEL_STD)
    for t, frame in enumerate(frames):
        resized = np.asarray(Image.fromarray(frame).resize((64, 38), Image.BILINEAR), dtype=np.float64)  # 30*64/50 = 38.4
        normalised = torch.tensor(((resized - mean) / std).transpose(2, 0, 1), dtype=torch.float32)
        expected = F.interpolate(normalised[None], size=(64, 64), mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(pixel_values[t], expected, atol=1e-5, rtol=0)
    square = _frames(1, height=64, width=64)
    plain = (torch.tensor(square[0], dtype=torch.float64) - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(decoder.preprocess(square)[0], plain.permute(2, 0, 1).float(), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- segment


@pytest.mark.parametrize("mode", ["propagate", "framewise"])
def test_segment_shapes_dtypes_and_resizing(tiny_sd, decoder, mode):
    frames = _frames(3)
    prompts = _prompts(decoder, 2)
    masks = decoder.segment(frames, prompts, mode=mode)
    assert masks.shape == (2, 3, 40, 56) and masks.dtype == torch.bool
    pixel_values = decoder.preprocess(frames)
    assert torch.equal(decoder.segment(pixel_values, prompts, original_size=(40, 56), mode=mode), masks)
    if mode == "propagate":
        logits = decoder.propagate_logits(pixel_values, decoder.object_tokens(prompts))
    else:
        logits = decoder.framewise_logits(pixel_values, prompts)
    assert logits.shape == (2, 3, 16, 16) and logits.dtype == torch.float32
    resized = F.interpolate(logits.reshape(6, 1, 16, 16), size=(40, 56), mode="bilinear", align_corners=False)
    assert torch.equal(masks, resized.reshape(2, 3, 40, 56) > 0)
    assert 0 < masks.float().mean() < 1  # random weights still give non-trivial masks
    assert decoder.segment(frames, prompts[:0], mode=mode).shape == (0, 3, 40, 56)
    bf16 = Sam2PixelDecoder.from_original_state_dict({k: v.to(torch.bfloat16) for k, v in tiny_sd.items()})
    low_precision = bf16.segment(frames, prompts, mode=mode)
    assert bf16.dtype == torch.bfloat16 and low_precision.shape == (2, 3, 40, 56) and low_precision.dtype == torch.bool


def test_segment_rejects_bad_inputs(decoder):
    frames, prompts = _frames(2), _prompts(decoder, 1)
    with pytest.raises(ValueError, match="mode"):
        decoder.segment(frames, prompts, mode="tracking")
    with pytest.raises(ValueError, match="prompt_embeddings"):
        decoder.segment(frames, torch.zeros(1, 256))
    with pytest.raises(ValueError, match="original_size"):
        decoder.segment(decoder.preprocess(frames), prompts)
    with pytest.raises(ValueError, match="uint8"):
        decoder.segment(frames.astype(np.int64), prompts)


@pytest.mark.parametrize("mode", ["propagate", "framewise"])
def test_segment_is_deterministic(tiny_sd, decoder, mode):
    frames, prompts = _frames(3), _prompts(decoder, 2)
    first = decoder.segment(frames, prompts, mode=mode)
    assert torch.equal(first, decoder.segment(frames, prompts, mode=mode))
    assert torch.equal(first, Sam2PixelDecoder.from_original_state_dict(tiny_sd).segment(frames, prompts, mode=mode))


@pytest.mark.parametrize("mode", ["propagate", "framewise"])
def test_objects_batched_equal_one_by_one(decoder_b, mode):
    pixel_values = decoder_b.preprocess(_frames(5))
    prompts = _prompts(decoder_b, 3, seed=2)

    def logits(p):
        if mode == "propagate":
            return decoder_b.propagate_logits(pixel_values, decoder_b.object_tokens(p))
        return decoder_b.framewise_logits(pixel_values, p)

    together = logits(prompts)
    alone = torch.cat([logits(prompts[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["propagate", "framewise"])
def test_image_encoder_runs_once_per_frame_for_all_objects(decoder, mode):
    calls = []
    handle = decoder.model.vision_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        decoder.segment(_frames(4), _prompts(decoder, 3), mode=mode)
    finally:
        handle.remove()
    assert len(calls) == 4


def test_absent_objects_blank_tracking_but_not_framewise_decoding(decoder_absent):
    frames, prompts = _frames(3), _prompts(decoder_absent, 2)
    pixel_values = decoder_absent.preprocess(frames)
    logits = decoder_absent.propagate_logits(pixel_values, decoder_absent.object_tokens(prompts))
    assert torch.all(logits == NO_OBJECT_SCORE)
    assert not decoder_absent.segment(frames, prompts).any()
    assert decoder_absent.segment(frames, prompts, mode="framewise").any()  # VideoGLaMM's framewise path never gates


def test_frame0_prompt_is_two_not_a_point_tokens_then_seg(decoder):
    prompts = _prompts(decoder, 2)
    tokens = decoder.object_tokens(prompts)
    not_a_point = decoder.model.prompt_encoder.not_a_point_embed.weight[0]
    assert tokens.shape == (2, 1, 3, decoder.hidden_size)
    assert torch.equal(tokens[:, 0, 0], not_a_point.expand(2, -1))
    assert torch.equal(tokens[:, 0, 1], not_a_point.expand(2, -1))
    assert torch.equal(tokens[:, 0, 2], prompts)


# ----------------------------------------------------------------------------- peer: transformers' session API


def _session_logits(model, pixel_values, points):
    """Point-prompted tracking with transformers' own Sam2VideoInferenceSession (objects run one by one)."""
    from transformers import Sam2VideoInferenceSession

    session = Sam2VideoInferenceSession(video=pixel_values, video_height=40, video_width=56, dtype=torch.float32)
    for obj_id, point in enumerate(points):
        obj_idx = session.obj_id_to_idx(obj_id)
        click = {"point_coords": point.view(1, 1, 1, 2), "point_labels": torch.ones(1, 1, 1, dtype=torch.int32)}
        session.add_point_inputs(obj_idx, 0, click)
    session.obj_with_new_inputs = list(range(len(points)))
    model(inference_session=session, frame_idx=0)
    frames = {out.frame_idx: out.pred_masks[:, 0] for out in model.propagate_in_video_iterator(session)}
    return torch.stack([frames[t] for t in range(len(pixel_values))], dim=1)


@pytest.mark.parametrize("which,num_frames", [("default", 18), ("variant_b", 6), ("absent", 4)])
def test_propagation_matches_transformers_session(decoder, decoder_b, decoder_absent, which, num_frames):
    dec = {"default": decoder, "variant_b": decoder_b, "absent": decoder_absent}[which]
    pixel_values = dec.preprocess(_frames(num_frames, seed=5))
    points = torch.tensor([[20.0, 30.0], [44.0, 12.0]])
    expected = _session_logits(dec.model, pixel_values, points)
    labels = torch.ones(2, 1, 1, dtype=torch.int32)
    tokens, _ = dec.model.prompt_encoder(
        input_points=points.view(2, 1, 1, 2), input_labels=labels, input_boxes=None, input_masks=None
    )  # [click, padding point]
    ours = dec.propagate_logits(pixel_values, tokens)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, atol=2e-3, rtol=1e-3)
    assert torch.all(ours == NO_OBJECT_SCORE) == (which == "absent")


# ----------------------------------------------------------------------------- peer: Meta's sam2 package


# SAM2Base flags of sam2_hiera_l.yaml plus the video-predictor overrides of VideoGLaMM's build_sam.py.
SAM2_L_FLAGS = dict(
    sigmoid_scale_for_mem_enc=20.0,
    sigmoid_bias_for_mem_enc=-10.0,
    binarize_mask_from_pts_for_mem_enc=True,
    use_mask_input_as_output_without_sam=True,
    directly_add_no_mem_embed=True,
    use_high_res_features_in_sam=True,
    multimask_output_in_sam=True,
    iou_prediction_use_sigmoid=True,
    use_obj_ptrs_in_encoder=True,
    add_tpos_enc_to_obj_ptrs=False,
    only_obj_ptrs_in_the_past_for_eval=True,
    pred_obj_scores=True,
    pred_obj_scores_mlp=True,
    fixed_no_obj_ptr=True,
    multimask_output_for_tracking=True,
    use_multimask_token_for_obj_ptr=True,
    multimask_min_pt_num=0,
    multimask_max_pt_num=1,
    use_mlp_for_obj_ptr_proj=True,
    sam_mask_decoder_extra_args=dict(
        dynamic_multimask_via_stability=True,
        dynamic_multimask_stability_delta=0.05,
        dynamic_multimask_stability_thresh=0.98,
    ),
)


def _meta_image_encoder(arch: Sam2Architecture):
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine

    trunk = Hiera(
        embed_dim=arch.embed_dim,
        num_heads=arch.num_heads,
        stages=arch.blocks_per_stage,
        window_pos_embed_bkg_spatial_size=arch.window_pos_embed_bkg,
        window_spec=arch.window_spec,
        global_att_blocks=arch.global_attention_blocks,
    )
    neck = FpnNeck(
        PositionEmbeddingSine(num_pos_feats=arch.hidden_size, normalize=True, temperature=10000),
        d_model=arch.hidden_size,
        backbone_channel_list=arch.embed_dim_per_stage[::-1],
        fpn_top_down_levels=[2, 3],
        fpn_interp_model="nearest",
    )
    return ImageEncoder(trunk, neck, scalp=1)


def _meta_memory_modules(arch: Sam2Architecture):
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention

    c = arch.hidden_size
    rope = dict(rope_theta=10000.0, feat_sizes=[32, 32], embedding_dim=c, num_heads=1, downsample_rate=1, dropout=0.1)
    layer = MemoryAttentionLayer(
        activation="relu",
        cross_attention=RoPEAttention(rope_k_repeat=True, kv_in_dim=64, **rope),
        d_model=c,
        dim_feedforward=arch.memory_attention_ffn_dim,
        dropout=0.1,
        pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        self_attention=RoPEAttention(**rope),
    )
    attention = MemoryAttention(d_model=c, pos_enc_at_input=True, layer=layer, num_layers=arch.memory_attention_layers)
    block = CXBlock(dim=c, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True)
    encoder = MemoryEncoder(
        out_dim=64,
        mask_downsampler=MaskDownSampler(embed_dim=c, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(block, num_layers=2),
        position_encoding=PositionEmbeddingSine(num_pos_feats=64, normalize=True, temperature=10000),
        in_dim=c,
    )
    return attention, encoder


def _meta_sam2(arch: Sam2Architecture, seed: int):
    """Meta's SAM2Base with VideoGLaMM's sam2_hiera_l.yaml settings at ``arch``'s sizes, random weights."""
    try:
        from sam2.modeling.sam2_base import SAM2Base
    except ImportError as err:  # the peer check must run, never skip: scripts/setup.sh installs it
        raise ImportError(f"Meta's sam2 peer is missing ({err}): run scripts/setup.sh (it installs sam2==1.1.0 --no-deps)") from None

    attention, encoder = _meta_memory_modules(arch)
    model = SAM2Base(
        _meta_image_encoder(arch), attention, encoder, num_maskmem=arch.num_maskmem, image_size=arch.image_size, **SAM2_L_FLAGS
    )
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict(random_sam2_tensors(shapes, seed), strict=True)
    return model.eval()


@contextlib.contextmanager
def _appended_text(meta, text):
    """VideoGLaMM's prompt-encoder change: [SEG] embeddings appended after the point tokens."""
    encoder = meta.sam_prompt_encoder
    original = encoder.forward

    def forward(points, boxes, masks):
        sparse, dense = original(points, boxes, masks)
        return torch.cat([sparse, text.to(sparse.dtype)], dim=1), dense

    encoder.forward = forward
    try:
        yield
    finally:
        del encoder.forward


def _meta_frame(meta, pixel_values, num_objects):
    backbone = meta.forward_image(pixel_values)
    expanded = {key: [x.expand(num_objects, -1, -1, -1) for x in backbone[key]] for key in ("backbone_fpn", "vision_pos_enc")}
    return meta._prepare_backbone_features(expanded)[1:]


def _meta_propagate(meta, pixel_values, seg):
    """VideoGLaMM's SAM2VideoPredictor.add_new_text + propagate_in_video, on Meta's track_step."""
    num_objects, num_frames, size = len(seg), len(pixel_values), meta.image_size
    output = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    logits = []
    for t in range(num_frames):
        feats, pos, sizes = _meta_frame(meta, pixel_values[t : t + 1], num_objects)
        if t == 0:
            with _appended_text(meta, seg[:, None, :]):
                out = meta.track_step(0, True, feats, pos, sizes, None, None, output, num_frames, run_mem_encoder=False)
            high = F.interpolate(out["pred_masks"], size=(size, size), mode="bilinear", align_corners=False)
            memory, memory_pos = meta._encode_new_memory(feats, sizes, high, out["object_score_logits"], is_mask_from_pts=True)
            out["maskmem_features"], out["maskmem_pos_enc"] = memory, memory_pos
            output["cond_frame_outputs"][0] = out
        else:
            out = meta.track_step(t, False, feats, pos, sizes, None, None, output, num_frames, run_mem_encoder=True)
            output["non_cond_frame_outputs"][t] = out
        out["maskmem_features"] = out["maskmem_features"].to(torch.bfloat16)  # the video predictor's storage dtype
        logits.append(out["pred_masks"][:, 0])
    return torch.stack(logits, dim=1)


def _meta_framewise(meta, pixel_values, seg):
    """VideoGLaMM's inference_framewise on Meta's modules."""
    logits = []
    for t in range(len(pixel_values)):
        feats, _, sizes = _meta_frame(meta, pixel_values[t : t + 1], 1)
        maps = [x.permute(1, 2, 0).reshape(1, -1, *s) for x, s in zip(feats, sizes)]
        image = maps[-1] + meta.no_mem_embed.view(1, -1, 1, 1)
        dense = meta.sam_prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(len(seg), -1, *sizes[-1])
        low, *_ = meta.sam_mask_decoder(
            image_embeddings=image,
            image_pe=meta.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=seg[:, None, :],
            dense_prompt_embeddings=dense,
            multimask_output=False,
            repeat_image=True,
            high_res_features=maps[:-1],
        )
        logits.append(low[:, 0])
    return torch.stack(logits, dim=1)


def _meta_pair(object_score_bias):
    meta = _meta_sam2(tiny_sam2_architecture(num_maskmem=3), seed=7)
    meta.sam_mask_decoder.pred_obj_score_head.layers[2].bias.data += object_score_bias
    original = {k: v.clone() for k, v in meta.state_dict().items()}
    return meta, Sam2PixelDecoder.from_original_state_dict(original)


@pytest.fixture(scope="module")
def meta_pair():
    return _meta_pair(1.0)


@torch.no_grad()
def test_meta_peer_image_encoder_features(meta_pair):
    meta, ours = meta_pair
    pixel_values = ours.preprocess(_frames(1, seed=9))
    backbone = meta.forward_image(pixel_values)
    frame = ours.encode_frame(pixel_values)
    for got, want in zip(frame.high_res, backbone["backbone_fpn"][:2]):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(frame.top, backbone["backbone_fpn"][2].flatten(2).permute(2, 0, 1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(frame.top_pos, backbone["vision_pos_enc"][2].flatten(2).permute(2, 0, 1), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_meta_peer_framewise_decode(meta_pair):
    meta, ours = meta_pair
    pixel_values, seg = ours.preprocess(_frames(2, seed=11)), _prompts(ours, 3, seed=4)
    expected = _meta_framewise(meta, pixel_values, seg)
    torch.testing.assert_close(ours.framewise_logits(pixel_values, seg), expected, atol=1e-3, rtol=1e-3)


@torch.no_grad()
@pytest.mark.parametrize("object_score_bias", [1.0, -5.0], ids=["present", "absent"])
def test_meta_peer_seg_prompted_propagation(object_score_bias):
    meta, ours = _meta_pair(object_score_bias)
    pixel_values, seg = ours.preprocess(_frames(6, seed=13)), _prompts(ours, 3, seed=6)
    expected = _meta_propagate(meta, pixel_values, seg)
    got = ours.propagate_logits(pixel_values, ours.object_tokens(seg))
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=1e-3)
    assert torch.all(got == NO_OBJECT_SCORE) == (object_score_bias < 0)
    masks = ours.masks_at(got, (40, 56))
    assert torch.equal(masks, ours.segment(pixel_values, seg, original_size=(40, 56)))


def test_neck_position_tables_are_computed_once_per_shape_and_equal_transformers(tiny_sd):
    """transformers caches one shape; the neck asks for several per frame: litelvlm caches each, exactly."""
    from video.sam2.decoder import ShapeCachedSinePositionEmbedding

    decoder = Sam2PixelDecoder.from_original_state_dict(tiny_sd)
    cached = decoder.model.vision_encoder.neck.position_encoding
    assert isinstance(cached, ShapeCachedSinePositionEmbedding)
    calls = []
    original = cached.inner.forward
    cached.inner.forward = lambda *a, **k: calls.append(tuple(a[0])) or original(*a, **k)
    frames = _frames(num_frames=3)
    decoder.segment(frames, torch.randn(1, decoder.hidden_size), frames.shape[1:3], mode="propagate")
    shapes = set(calls)
    assert len(calls) == len(shapes) >= 2  # each shape computed once for the whole video, not once per frame
    for shape in shapes:
        assert torch.equal(cached(torch.Size(shape), "cpu", torch.float32), original(torch.Size(shape), "cpu", torch.float32))

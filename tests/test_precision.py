"""The released precision path (bf16, eager CLIP) and ``litelvlm precision``, which measures what it changes."""

import json

import numpy as np
import pytest
import torch

from litelvlm.bench.precision import PAIRS, kept_token_changes, towers_on_path
from litelvlm.cli import main


def test_paths_share_weights_and_differ_only_in_dtype_and_attention(tiny_clip):
    eager = towers_on_path(tiny_clip, torch.bfloat16, "eager")
    assert eager.vision.dtype == torch.bfloat16 and eager.vision.config._attn_implementation == "eager"
    assert eager.text.config._attn_implementation == "eager" and tiny_clip.vision.dtype == torch.float32
    w = "vision_model.encoder.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(eager.vision.state_dict()[w].float(), tiny_clip.vision.state_dict()[w].bfloat16().float())


def test_kept_token_changes_counts_set_differences(tiny_clip):
    images = [np.random.default_rng(i).integers(0, 256, (60, 80, 3), dtype=np.uint8) for i in range(3)]
    rows, errors = kept_token_changes(tiny_clip, images, ["a red car", "the man"], budgets=(64, 576))
    assert [r.budget for r in rows] == [64, 576] and errors["fp32"] == 0.0 and errors["bf16-eager"] > 0
    for row in rows:
        assert set(row.changed_mean) == {f"{a} vs {b}" for a, b in PAIRS}
        assert all(0 <= v <= row.budget for v in row.changed_max.values())
    assert all(v == 0 for v in rows[1].changed_max.values())  # all 576 kept: nothing can differ


def test_precision_cli_prints_a_titled_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["precision", "--budget", "64", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "random weights" in text and "bf16-eager vs bf16-sdpa" in text and f"wrote {out}" in text
    data = json.loads(out.read_text())
    assert data["images"] == 8 and data["rows"][0]["budget"] == 64


def test_glamm_protocol_runs_bf16_with_eager_attention_as_released(tiny_glamm_dirs, tmp_path):
    from eval.refseg.config import RefSegConfig
    from eval.refseg.model import build_segmenter

    base = dict(checkpoint=str(tiny_glamm_dirs["glamm"]), vision_tower=str(tiny_glamm_dirs["clip"]), results_path=str(tmp_path), device="cpu")
    released = RefSegConfig(protocol="glamm", **base)
    assert (released.model_dtype, released.model_attn_implementation) == ("bfloat16", "eager")
    assert (RefSegConfig(**base).model_dtype, RefSegConfig(**base).model_attn_implementation) == ("auto", None)
    assert RefSegConfig(protocol="glamm", dtype="float32", attn_implementation="sdpa", **base).model_dtype == "float32"
    segmenter = build_segmenter(released)
    assert segmenter.dtype == torch.bfloat16 and segmenter.clip.vision.dtype == torch.bfloat16
    assert segmenter.clip.vision.config._attn_implementation == "eager"
    assert segmenter.model.llm.config._attn_implementation == "eager"


# ---------------------------------------------------------------- autocast: the released VideoGLaMM fp16 path


def _autocast_states(segmenter):
    """Per model part, the set of (autocast enabled, autocast dtype) seen at the forward of each of its modules."""
    parts = {"clip": segmenter.clip.vision, "llm": segmenter.model.llm, "video_encoder": segmenter.model.video_encoder,
             "sam2": segmenter.model.pixel_decoder, "text_hidden_fcs": segmenter.model.text_hidden_fcs}
    seen, handles = {name: set() for name in parts}, []
    for name, part in parts.items():
        for module in part.modules():
            record = lambda *_, name=name: seen[name].add((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))  # noqa: E731
            handles.append(module.register_forward_pre_hook(record))
    return seen, handles


def _preset_file(tmp_path, model_lines: str):
    from video.preset import PRESET_DIR

    text = (PRESET_DIR / "released.yaml").read_text()
    start, end = text.index("model:"), text.index("segmenter:")
    path = tmp_path / "precision.yaml"
    path.write_text(text[:start] + "model:\n" + model_lines + text[end:])
    return str(path)


def test_released_preset_pairs_fp16_weights_with_fp16_autocast_on_cuda_only():
    from video.preset import load_preset

    released, default = load_preset("released", "davis"), load_preset("default")
    assert released.precision("cuda:0") == (torch.float16, torch.float16)  # chat.py .half() + torch.cuda.amp.autocast()
    assert released.precision("cpu") == (torch.float32, None)
    assert released.precision("cuda", torch.float32) == (torch.float32, None)  # an explicit --dtype: no autocast
    assert default.precision("cuda") == (None, None) and default.precision("cpu") == (None, None)


def test_harness_builds_the_released_segmenter_with_fp16_autocast_on_cuda(tmp_path, monkeypatch):
    """The device comes from --device auto; with CUDA present the released preset asks for fp16 weights under fp16
    autocast (the load itself is faked: no GPU here)."""
    from eval.rvos.config import RVOSConfig
    from eval.rvos.model import build_video_segmenter
    from video.segmenter import VideoSegmenter

    built = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("eval.rvos.model.check_model_inputs", lambda config: None)
    monkeypatch.setattr(VideoSegmenter, "from_pretrained", classmethod(lambda cls, **kw: built.update(kw) or "built"))
    for preset, expected in (("released", (torch.float16, torch.float16, "eager")), ("default", (None, None, None))):
        config = RVOSConfig(benchmark="davis", checkpoint="ckpt", results_path=str(tmp_path), preset=preset)
        assert build_video_segmenter(config) == "built" and built["device"].startswith("cuda")
        assert (built["dtype"], built["autocast"], built["attn_implementation"]) == expected
    config = RVOSConfig(benchmark="davis", checkpoint="ckpt", results_path=str(tmp_path), dtype="float32")
    build_video_segmenter(config)
    assert (built["dtype"], built["autocast"]) == (torch.float32, None)


@pytest.mark.parametrize("weights, autocast", [("float16", "float16"), ("float32", "bfloat16")])
def test_every_model_forward_runs_inside_the_presets_autocast_region(tiny_videoglamm_kwargs, tmp_path, weights, autocast):
    """The mechanism on CPU (CPU autocast takes float16 and bfloat16): a preset's autocast reaches the segmenter through
    the harness and every module of CLIP, the LLM, InternVideo2, SAM2 and the [SEG] head runs inside it; nothing
    outside the call. (On CPU the op lists differ from CUDA's; the numbers are the GPU's business.)"""
    from eval.rvos.config import RVOSConfig
    from eval.rvos.model import build_video_segmenter

    preset = _preset_file(tmp_path, f"  dtype: {{cuda: float16, cpu: {weights}}}\n  autocast: {{cuda: float16, cpu: {autocast}}}\n"
                                    "  attn_implementation: eager\n  clip_attn_implementation: eager\n")
    config = RVOSConfig(benchmark="davis", checkpoint=str(tiny_videoglamm_kwargs["checkpoint"]), device="cpu",
                        vision_tower=str(tiny_videoglamm_kwargs["vision_tower"]), preset=preset,
                        video_tower=str(tiny_videoglamm_kwargs["video_tower"]), results_path=str(tmp_path))
    segmenter = build_video_segmenter(config)
    assert segmenter.autocast == getattr(torch, autocast) and segmenter.dtype == getattr(torch, weights)
    seen, handles = _autocast_states(segmenter)
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 32, 40, 3), dtype=np.uint8)
    try:
        result = segmenter.segment(frames, ["the dog"], budget=81, answer="Sure, [SEG].")
    finally:
        for handle in handles:
            handle.remove()
    assert result.has_seg == [True] and not torch.is_autocast_enabled("cpu")
    assert seen == {name: {(True, getattr(torch, autocast))} for name in seen}


def test_without_autocast_the_forwards_run_in_the_weights_dtype(tiny_video_segmenter):
    assert tiny_video_segmenter.autocast is None
    seen, handles = _autocast_states(tiny_video_segmenter)
    frames = np.random.default_rng(1).integers(0, 256, size=(4, 32, 40, 3), dtype=np.uint8)
    try:
        tiny_video_segmenter.segment(frames, ["a cat"], budget=81, answer="Sure, [SEG].")
    finally:
        for handle in handles:
            handle.remove()
    assert all(states and {enabled for enabled, _ in states} == {False} for states in seen.values())


def test_autocast_context_takes_the_devices_type_and_refuses_what_torch_would_silently_disable():
    import warnings

    from litelvlm.precision_context import inference_autocast

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CPU-only torch: "CUDA is not available ... Disabling autocast"
        region = inference_autocast("cuda:1", torch.float16)
    assert isinstance(region, torch.autocast) and (region.device, region.fast_dtype) == ("cuda", torch.float16)
    with inference_autocast("cpu", torch.bfloat16):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with inference_autocast("cpu", None):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="autocast float32 is not available on cpu"):
        inference_autocast("cpu", torch.float32)


def test_bad_autocast_in_a_preset_is_one_line_before_any_model(tmp_path):
    from video.preset import load_preset

    with pytest.raises(ValueError, match=r"model\.autocast must be null, one of \['bfloat16', 'float16'\]"):
        load_preset(_preset_file(tmp_path, "  autocast: {cuda: float32}\n"))
    with pytest.raises(ValueError, match="model.autocast"):
        load_preset(_preset_file(tmp_path, "  autocast: {gpu: float16}\n"))


# ---------------------------------------------------------------- GLaMM: the released evaluation is plain bf16


def test_glamm_protocol_runs_plain_bf16_without_autocast_as_released(tiny_glamm_dirs, tmp_path):
    """infer_and_evaluate.py loads bf16, DeepSpeed (bf16 enabled) calls module.bfloat16() and wraps no autocast (the
    engine only casts inputs for fp16 auto_cast): every part, SAM and text_hidden_fcs included, runs plain bf16."""
    from eval.refseg.config import RefSegConfig
    from eval.refseg.model import build_segmenter

    segmenter = build_segmenter(RefSegConfig(protocol="glamm", checkpoint=str(tiny_glamm_dirs["glamm"]), device="cpu",
                                             vision_tower=str(tiny_glamm_dirs["clip"]), results_path=str(tmp_path)))
    parts = {"clip": segmenter.clip.vision, "llm": segmenter.model.llm, "sam": segmenter.model.grounding,
             "text_hidden_fcs": segmenter.model.text_hidden_fcs, "mm_projector": segmenter.model.mm_projector}
    assert {p.dtype for part in parts.values() for p in part.parameters()} == {torch.bfloat16}
    seen, handles = {name: set() for name in parts}, []
    for name, part in parts.items():
        for module in part.modules():
            handles.append(module.register_forward_pre_hook(
                lambda *_, name=name: seen[name].add((torch.is_autocast_enabled("cpu"), torch.is_autocast_enabled("cuda")))))
    image = np.random.default_rng(0).integers(0, 256, size=(40, 52, 3), dtype=np.uint8)
    try:
        segmenter.segment(image, ["the dog", "a cat"], budget=64)
    finally:
        for handle in handles:
            handle.remove()
    assert seen == {name: {(False, False)} for name in parts}


def test_precision_paths_script_compares_every_path_with_fp32(tiny_videoglamm_kwargs, tmp_path, capsys):
    """``python -m video.precision_paths`` (the GPU comparison of docs/release_parity.md) end to end on the CPU."""
    from PIL import Image

    from video.precision_paths import PATHS, main as precision_paths

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(np.random.default_rng(2).integers(0, 256, size=(5, 32, 40, 3), dtype=np.uint8)):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    kw = tiny_videoglamm_kwargs
    argv = ["--version", str(kw["checkpoint"]), "--vision-tower", str(kw["vision_tower"]), "--video-tower", str(kw["video_tower"]),
            "--video", str(folder), "--text", "the dog", "--budget", "81", "--device", "cpu", "--json", str(tmp_path / "p.json")]
    assert precision_paths(argv) == 0
    rows = {r["path"]: r for r in json.loads((tmp_path / "p.json").read_text())}
    assert list(rows) == list(PATHS) and "fp16-autocast" in capsys.readouterr().out
    assert rows["fp32"]["max |[SEG] state - fp32|"] == 0.0 and rows["fp32"]["mask IoU with fp32"] == 1.0
    assert all(rows[p]["max |[SEG] state - fp32|"] > 0 for p in PATHS if p != "fp32")
    assert precision_paths(argv[:8] + ["--video", str(tmp_path / "nothing.mp4"), "--text", "x", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == f"error: video not found: {tmp_path / 'nothing.mp4'}"

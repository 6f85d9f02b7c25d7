"""The command line's hardening: bad input refused in one line before any model loads, images and videos
decoded correctly or refused naming the file, unreadable checkpoint shards named, pictures and stdout that
explain themselves, help texts with defaults, and no library warnings in normal runs."""

import argparse
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from litelvlm.checkpoint import CheckpointDir
from litelvlm.cli import build_parser, main
from litelvlm.demo import sample_image_path
from litelvlm.viz import load_rgb
from video.io import read_frame_folder, read_video, write_mp4


# ---------------------------------------------------------------------------------------------- helpers
def _half_jpeg(path: Path) -> Path:
    data = sample_image_path().read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _frames_folder(path: Path, sizes, *, truncated: int | None = None) -> Path:
    path.mkdir()
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), 40 * i, dtype=np.uint8)).save(path / f"{i:05d}.jpg")
    if truncated is not None:
        _half_jpeg(path / f"{truncated:05d}.jpg")
    return path


@pytest.fixture
def ctx(tmp_path, tiny_glamm_dirs, tiny_videoglamm_kwargs):
    """Paths the bad-input table refers to by name."""
    a_file = tmp_path / "a_file"
    a_file.write_text("I am a file\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n")
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "still.png")
    corrupt = tmp_path / "corrupt_glamm"
    shutil.copytree(tiny_glamm_dirs["glamm"], corrupt)
    (corrupt / "pytorch_model-00002-of-00002.bin").write_text("404: Not Found\n")  # a failed download saved as the shard
    bad_index = tmp_path / "bad_index_glamm"
    shutil.copytree(tiny_glamm_dirs["glamm"], bad_index)
    index = bad_index / "pytorch_model.bin.index.json"
    index.write_text(index.read_text()[:-40])
    return {
        "tmp": tmp_path, "a_file": a_file, "notes": notes, "empty": tmp_path / "empty", "still": tmp_path / "still.png",
        "half_jpg": _half_jpeg(tmp_path / "half.jpg"), "image": sample_image_path(),
        "mixed": _frames_folder(tmp_path / "mixed", [(20, 24), (20, 28)]),
        "trunc_frames": _frames_folder(tmp_path / "trunc_frames", [(20, 24), (20, 24)], truncated=1),
        "mp4": write_mp4(np.random.default_rng(0).integers(0, 256, (4, 32, 40, 3), dtype=np.uint8), tmp_path / "c.mp4", fps=4),
        "glamm": tiny_glamm_dirs["glamm"], "clip": tiny_glamm_dirs["clip"], "corrupt_glamm": corrupt, "bad_index_glamm": bad_index,
        **{f"vg_{k}": v for k, v in tiny_videoglamm_kwargs.items()},
    }


def _segment(ctx, *extra, image="image", glamm="glamm", budget=("--budget", "64"), out=None):
    return ["segment", "--image", str(ctx[image]), "--text", "the red car", *budget, "--glamm", str(ctx[glamm]),
            "--vision-tower", str(ctx["clip"]), "--out", str(out or ctx["tmp"] / "out"), *extra]


def _video(ctx, *extra, video="mp4", budget=("--budget", "81"), out=None):
    return ["segment-video", "--video", str(ctx[video]), "--text", "the dog", *budget, "--answer", "Sure, [SEG].",
            "--checkpoint", str(ctx["vg_checkpoint"]), "--vision-tower", str(ctx["vg_vision_tower"]),
            "--video-tower", str(ctx["vg_video_tower"]), "--out", str(out or ctx["tmp"] / "out"), *extra]


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _one_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def _no_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


# (id, argv from ctx, expected words in the one stderr line, setup, whether the model may load first)
BAD_INPUT = [
    ("segment-out-is-file", lambda c: _segment(c, out=c["a_file"]), ["--out", "a_file", "existing file", "folder"], None, False),
    ("segment-out-under-file", lambda c: _segment(c, out=c["a_file"] / "sub"), ["--out", "a_file is a file"], None, False),
    ("segment-cuda-missing", lambda c: _segment(c, "--device", "cuda"), ["--device cuda", "no CUDA device", "--device cpu"],
     _no_cuda, False),
    ("segment-cuda-index", lambda c: _segment(c, "--device", "cuda:3"), ["--device cuda:3", "only 1 CUDA device", "cuda:0"],
     _one_cuda, False),
    ("segment-mps-missing", lambda c: _segment(c, "--device", "mps"), ["--device mps", "not available", "--device cpu"],
     _no_mps, False),
    ("segment-device-unknown", lambda c: _segment(c, "--device", "gpu"), ["unknown device 'gpu'", "cpu", "cuda:N", "mps"],
     None, False),
    ("segment-method-unknown", lambda c: _segment(c, "--method", "nosuch", budget=()),
     ["unknown pruning method 'nosuch'", "litelvlm", "none"], None, False),
    ("segment-method-without-budget", lambda c: _segment(c, "--method", "random", budget=()),
     ["--method random", "--budget", "--method none", "unpruned"], None, False),
    ("segment-none-with-budget", lambda c: _segment(c, "--method", "none"), ["--method none", "drop --budget"], None, False),
    ("segment-budget-zero", lambda c: _segment(c, budget=("--budget", "0")), ["--budget 0", "positive"], None, False),
    ("segment-dtype-unknown", lambda c: _segment(c, "--dtype", "fp8"), ["unknown dtype 'fp8'", "bf16"], None, False),
    ("segment-empty-text", lambda c: [*_segment(c), "--text", " "], ["--text", "empty"], None, False),
    ("segment-truncated-jpeg", lambda c: _segment(c, image="half_jpg"), ["cannot read image", "half.jpg", "truncated"],
     None, False),
    ("segment-image-is-folder", lambda c: _segment(c, image="empty"), ["empty", "is a folder"], None, False),
    ("segment-corrupt-shard", lambda c: _segment(c, glamm="corrupt_glamm"),
     ["pytorch_model-00002-of-00002.bin", "corrupt", "re-download"], None, True),
    ("segment-malformed-index", lambda c: _segment(c, glamm="bad_index_glamm"),
     ["pytorch_model.bin.index.json", "not valid JSON", "line", "column", "re-download"], None, True),
    ("video-out-is-file", lambda c: _video(c, out=c["a_file"]), ["--out", "a_file", "existing file"], None, False),
    ("video-cuda-missing", lambda c: _video(c, "--device", "cuda"), ["--device cuda", "no CUDA device"], _no_cuda, False),
    ("video-method-unknown", lambda c: _video(c, "--method", "nosuch", budget=()), ["unknown pruning method 'nosuch'"],
     None, False),
    ("video-method-without-budget", lambda c: _video(c, "--method", "litelvlm", budget=()), ["--method litelvlm", "--budget"],
     None, False),
    ("video-text-file", lambda c: _video(c, video="notes"), ["notes.txt", "mp4", "folder of JPEG/PNG frames"], None, False),
    ("video-still-image", lambda c: _video(c, video="still"), ["still.png", "single image", "folder of JPEG/PNG frames"],
     None, False),
    ("video-empty-folder", lambda c: _video(c, video="empty"), ["no frames", "empty"], None, False),
    ("video-mixed-sizes", lambda c: _video(c, video="mixed"), ["different sizes", "00000.jpg", "00001.jpg"], None, False),
    ("video-truncated-frame", lambda c: _video(c, video="trunc_frames"), ["cannot read image", "00001.jpg", "truncated"],
     None, False),
    ("demo-out-is-file", lambda c: ["demo", "--out", str(c["a_file"])], ["--out", "a_file", "existing file"], None, False),
]


@pytest.mark.parametrize("argv, words, setup, loads", [row[1:] for row in BAD_INPUT], ids=[row[0] for row in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(argv, words, setup, loads, ctx, monkeypatch, capsys, request):
    if not loads:
        request.getfixturevalue("no_model_builds")  # conftest.py
    if setup is not None:
        setup(monkeypatch)
    assert main(argv(ctx)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"litelvlm {argv(ctx)[0]}: error: ")
    for word in words:
        assert word in err[0], (word, err[0])


# ------------------------------------------------------------------------------------- output folders
def test_out_folder_is_created_with_its_parents(tmp_path):
    from litelvlm.outputs import prepare_output_dir as prepare_out_dir

    out = prepare_out_dir(tmp_path / "a" / "b")
    assert out.is_dir()
    assert prepare_out_dir(out) == out  # an existing folder is fine


def test_unwritable_out_folder_is_refused(tmp_path, monkeypatch):
    """The write probe failing as in a read-only folder (tests may run as root, who writes anywhere)."""
    import tempfile

    from litelvlm.outputs import prepare_output_dir as prepare_out_dir

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(ValueError, match="not writable"):
        prepare_out_dir(tmp_path / "out")


# ------------------------------------------------------------------------------------------- images
def test_16_bit_grayscale_png_is_scaled_not_saturated(tmp_path):
    values = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    rgb = load_rgb(tmp_path / "g16.png")
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 2]).all()
    assert np.array_equal(rgb[..., 0], (values >> 8).astype(np.uint8))  # the high byte, as OpenCV reads it
    assert (rgb == 255).mean() < 0.01  # PIL's convert("RGB") saturates 99.6% of these pixels


def test_16_bit_rgb_png_and_32_bit_int_image(tmp_path):
    cv2 = pytest.importorskip("cv2")
    values = np.linspace(0, 65535, 16 * 20).reshape(16, 20).astype(np.uint16)
    rgb16 = np.stack([values, values[::-1], np.full_like(values, 30000)], -1)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    rgb = load_rgb(tmp_path / "rgb16.png")
    assert np.abs(rgb.astype(int) - np.round(rgb16 / 257)).max() <= 1
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "i32.tif")  # mode "I" with 16-bit values
    assert Image.open(tmp_path / "i32.tif").mode == "I"
    assert np.array_equal(load_rgb(tmp_path / "i32.tif")[..., 1], (values >> 8).astype(np.uint8))
    Image.fromarray(np.full((4, 4), 1.5, np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"float\.tif.*unsupported pixel format 'F'"):
        load_rgb(tmp_path / "float.tif")


def test_grayscale_rgba_and_palette_images_become_rgb(tmp_path):
    Image.fromarray(np.full((5, 6), 100, np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(np.full((5, 6, 4), 100, np.uint8)).save(tmp_path / "rgba.png")
    palette = Image.new("P", (6, 5))
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette.paste(1, (0, 0, 6, 5))
    palette.save(tmp_path / "palette.png", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL warns about palette transparency converted straight to RGB
        for name, pixel in (("gray.png", [100] * 3), ("rgba.png", [100] * 3), ("palette.png", [200, 10, 10])):
            rgb = load_rgb(tmp_path / name)
            assert rgb.shape == (5, 6, 3) and rgb.dtype == np.uint8 and rgb[0, 0].tolist() == pixel


def test_truncated_jpeg_is_refused_even_when_pil_is_told_to_tolerate_it(tmp_path, monkeypatch):
    half = _half_jpeg(tmp_path / "half.jpg")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some other library may set it
    with pytest.raises(ValueError, match=r"cannot read image .*half\.jpg: image file is truncated"):
        load_rgb(half)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for whoever set it
    folder = _frames_folder(tmp_path / "frames", [(10, 12), (10, 12)], truncated=1)
    with pytest.raises(ValueError, match=r"00001\.jpg.*truncated"):
        read_frame_folder(folder)


def test_frame_folder_decodes_16_bit_frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((6, 8), 257 * (10 + i), np.uint16)).save(folder / f"{i:05d}.png")
    frames, names = read_frame_folder(folder)
    assert frames.shape == (2, 6, 8, 3) and names == ["00000", "00001"]
    assert frames[0, 0, 0].tolist() == [10, 10, 10] and frames[1, 0, 0].tolist() == [11, 11, 11]


class _Stop(Exception):
    pass


@pytest.mark.parametrize("height", [1, 3])
def test_short_images_reach_clip_channels_last(tiny_segmenter, monkeypatch, height):
    """An (H, W, 3) image with H of 1 or 3 is what CLIP sees of it, not read as channels-first."""
    image = np.random.default_rng(height).integers(0, 256, (height, 120, 3), dtype=np.uint8)
    seen = {}

    def spy(pixels, *args, **kwargs):
        seen["pixels"] = pixels.float()
        raise _Stop

    monkeypatch.setattr(tiny_segmenter.pruner, "encode", spy)
    with pytest.raises(_Stop):
        tiny_segmenter.segment(image, ["x"], budget=64)
    reference = tiny_segmenter.clip.image_processor(images=[Image.fromarray(image)], return_tensors="pt").pixel_values
    assert torch.allclose(seen["pixels"], reference.float())


def test_short_video_frames_reach_clip_channels_last(tiny_video_segmenter, monkeypatch):
    frames = np.random.default_rng(7).integers(0, 256, (4, 3, 64, 3), dtype=np.uint8)
    seen = {}

    def spy(pixels, *args, **kwargs):
        seen["pixels"] = pixels.float()
        raise _Stop

    monkeypatch.setattr(tiny_video_segmenter.pruner, "encode", spy)
    with pytest.raises(_Stop):
        tiny_video_segmenter.segment(frames, ["x"], budget=81, answer="Sure, [SEG].")
    reference = tiny_video_segmenter.clip.image_processor(images=[Image.fromarray(f) for f in frames[:1]],
                                                          return_tensors="pt").pixel_values
    assert torch.allclose(seen["pixels"][:1], reference.float())


# ------------------------------------------------------------------------------------------- videos
def test_read_video_names_the_file_and_what_it_expected(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    fake = tmp_path / "fake.mp4"
    fake.write_text("hello\n")
    for path in (notes, fake):
        with pytest.raises(ValueError) as info:
            read_video(path)
        message = str(info.value)
        assert str(path) in message and ".mp4" in message and "folder of JPEG/PNG frames" in message
        assert "Errno" not in message
    still = tmp_path / "still.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(still)
    with pytest.raises(ValueError, match="single image, not a video"):
        read_video(still)


# --------------------------------------------------------------------------------------- checkpoints
def _tiny_state():
    return {"a.weight": torch.arange(6.0).reshape(2, 3), "b.weight": torch.ones(4), "c.bias": torch.zeros(2)}


def test_checkpoint_shards_torch_refuses_are_named(tmp_path):
    from litelvlm.testing import write_sharded

    for fmt, shard in (("bin", "pytorch_model-00002-of-00002.bin"), ("safetensors", "model-00002-of-00002.safetensors")):
        for damage in ("text", "truncated"):
            folder = tmp_path / f"{fmt}_{damage}"
            folder.mkdir()
            write_sharded(_tiny_state(), folder, weight_format=fmt)
            path = folder / shard
            if damage == "text":
                path.write_text("<html>rate limited</html>\n")
            else:
                path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            ckpt = CheckpointDir(folder)  # the index alone is read here
            with pytest.raises(ValueError) as info:
                ckpt.load(ckpt.keys())
            message = str(info.value)
            assert str(path) in message and "re-download" in message and "\n" not in message, message


def test_single_file_checkpoints_and_missing_tensors_are_named(tmp_path):
    from safetensors.torch import save_file

    for name in ("model.safetensors", "pytorch_model.bin"):
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / name).write_text("not weights\n")
        with pytest.raises(ValueError, match=rf"{name}.*re-download"):
            CheckpointDir(folder)
    folder = tmp_path / "stale"
    folder.mkdir()
    save_file({"a.weight": torch.ones(2)}, str(folder / "model-00001-of-00001.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a.weight": "model-00001-of-00001.safetensors", "b.weight": "model-00001-of-00001.safetensors"}}))
    ckpt = CheckpointDir(folder)
    with pytest.raises(ValueError, match=r"'b\.weight'.*model-00001-of-00001\.safetensors"):
        ckpt.load(["b.weight"])


def test_malformed_index_json_is_named_with_its_position(tmp_path):
    from litelvlm.testing import write_sharded

    write_sharded(_tiny_state(), tmp_path, weight_format="bin")
    index = tmp_path / "pytorch_model.bin.index.json"
    text = index.read_text()
    index.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"pytorch_model\.bin\.index\.json is not valid JSON \(.*line \d+ column \d+"):
        CheckpointDir(tmp_path)
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError, match=r"pytorch_model\.bin\.index\.json has no \"weight_map\""):
        CheckpointDir(tmp_path)


# ------------------------------------------------------------------------------------------- --help
def _sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_has_help_and_shows_its_default():
    subs = _sub_parsers(build_parser())
    assert set(subs) == {"demo", "segment", "segment-video", "bench", "precision", "serve", "sweep"}
    for name, sub in subs.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(action.option_strings)}"
            assert action.help and action.help is not argparse.SUPPRESS and action.help.strip(), label
            if action.default not in (None, False):
                assert "%(default)s" in action.help or f"default: {action.default}" in action.help, label
        text = sub.format_help()
        for action in sub._actions:
            if action.default not in (None, False) and not isinstance(action, argparse._HelpAction):
                assert f"default: {action.default}" in " ".join(text.split()), (name, action.dest)


def test_options_are_dashed_and_old_spellings_still_work():
    parser = build_parser()
    for name, sub in _sub_parsers(parser).items():
        for action in sub._actions:
            primary = action.option_strings[-1] if action.option_strings[0] == "-h" else action.option_strings[0]
            assert "_" not in primary, (name, primary)
    base = ["segment", "--image", "i.jpg", "--text", "x", "--out", "o"]
    a = parser.parse_args([*base, "--glamm", "G", "--num_retain_tokens", "64"])
    b = parser.parse_args([*base, "--checkpoint", "G", "--num-retain-tokens", "64"])
    c = parser.parse_args([*base, "--checkpoint", "G", "--budget", "64"])
    assert a.checkpoint == b.checkpoint == c.checkpoint == "G" and a.budget == b.budget == c.budget == 64
    v = parser.parse_args(["segment-video", "--video", "v", "--text", "x", "--checkpoint", "C", "--out", "o", "--config", "released"])
    assert v.preset == "released"


# ---------------------------------------------------------------------------- self-explaining outputs
def test_segment_pictures_and_stdout_explain_themselves(tmp_path, tiny_glamm_dirs, capsys):
    out = tmp_path / "seg"
    assert main(["segment", "--image", str(sample_image_path()), "--text", "the red car", "--text", "the man",
                 "--budget", "64", "--method", "random", "--checkpoint", str(tiny_glamm_dirs["glamm"]),
                 "--vision-tower", str(tiny_glamm_dirs["clip"]), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    report = json.loads((out / "result.json").read_text())
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("expression"))
    assert "mask" in lines[header] and "kept-token map" in lines[header] and set(lines[header + 1]) <= set("-+ ")
    for row in report["expressions"]:
        assert row["mask"] in stdout and row["kept_map"] in stdout
        title = Image.open(row["kept_map"]).text
        assert repr(row["text"])[1:-1] in title["Title"] and "method random" in title["Title"] and "64 of 576" in title["Title"]
        assert "kept" in title["Description"] and "dropped" in title["Description"]
    assert report["overlay"] in stdout and str(out / "result.json") in stdout
    overlay = Image.open(report["overlay"])
    assert "Masks" in overlay.text["Title"] and "the red car" in overlay.text["Description"]
    assert "the man" in overlay.text["Description"]
    page = np.asarray(overlay.convert("RGB"))
    band = page[:30]  # the title band: white page with dark text
    assert (band == 255).all(-1).mean() > 0.5 and (band < 80).all(-1).any()


def test_demo_pictures_say_random_weights(tmp_path, tiny_clip_dir, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--budget", "64", "--text", "the red car", "--text", "the man"]) == 0
    stdout = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    picture = Image.open(summary["budgets"][0]["picture"])
    assert "RANDOM WEIGHTS" in picture.text["Title"] and "budget 64" in picture.text["Title"]
    assert "the red car" in picture.text["Title"] and "litelvlm" in picture.text["Title"].lower()
    legend = picture.text["Description"]
    assert "similarity tokens" in legend and "red" in legend and "context tokens" in legend and "blue" in legend
    assert summary["budgets"][0]["picture"] in stdout and str(out / "summary.json") in stdout
    assert any(line.startswith("budget") for line in stdout.splitlines())
    assert main(["demo", "--out", str(out), "--budget", "64", "--vision-tower", str(tiny_clip_dir)]) == 0
    picture = Image.open(json.loads((out / "summary.json").read_text())["budgets"][0]["picture"])
    assert "RANDOM WEIGHTS" not in picture.text["Title"] and str(tiny_clip_dir) in picture.text["Title"]


# ----------------------------------------------------------------------------------------- warnings
class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _normal_runs():
    return {
        "segment": lambda c, out: _segment(c, out=out),
        "segment-fastv": lambda c, out: _segment(c, "--method", "fastv", out=out),
        "segment-unpruned": lambda c, out: _segment(c, budget=(), out=out),
        "segment-video-generate": lambda c, out: [a for a in _video(c, out=out) if a not in ("--answer", "Sure, [SEG].")],
        "segment-video-fastv": lambda c, out: _video(c, "--method", "fastv", out=out),
        "demo": lambda c, out: ["demo", "--out", str(out), "--budget", "64"],
    }


@pytest.mark.parametrize("run", list(_normal_runs()))
def test_normal_runs_print_no_library_warnings(run, ctx, capsys):
    logging.Logger.warning_once.cache_clear()  # transformers logs some notices once per process
    handler = _Records()
    logging.getLogger("transformers").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(_normal_runs()[run](ctx, ctx["tmp"] / run)) == 0
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert [r.getMessage() for r in handler.records] == []
    captured = capsys.readouterr()
    assert captured.err == ""

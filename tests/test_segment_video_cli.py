"""``litelvlm segment-video`` on the tiny VideoGLaMM: per-frame mask PNGs, an overlay mp4, one-line errors."""

import json

import numpy as np
from PIL import Image

from litelvlm.cli import main
from video.io import read_video, write_mp4


def test_segment_video_writes_masks_and_overlay(tmp_path, tiny_videoglamm_kwargs):
    frames = np.random.default_rng(3).integers(0, 256, size=(5, 36, 48, 3), dtype=np.uint8)
    clip = write_mp4(frames, tmp_path / "clip.mp4", fps=5)
    out = tmp_path / "out"
    argv = ["segment-video", "--video", str(clip), "--text", "the dog", "--budget", "81", "--answer", "Sure, [SEG].",
            "--checkpoint", str(tiny_videoglamm_kwargs["checkpoint"]), "--vision-tower", str(tiny_videoglamm_kwargs["vision_tower"]),
            "--video-tower", str(tiny_videoglamm_kwargs["video_tower"]), "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "result.json").read_text())
    assert report["frames"] == 5 and report["visual_tokens_per_frame"] == 21 + 64
    row = report["expressions"][0]
    pngs = sorted((out / "00_the_dog").glob("*.png"))
    assert row["has_seg"] and len(pngs) == 5
    assert np.asarray(Image.open(pngs[0])).shape == (36, 48) and set(np.unique(np.asarray(Image.open(pngs[0])))) <= {0, 255}
    overlay, _, _ = read_video(report["overlay"])
    assert overlay.shape == (5, 36, 48, 3)


def test_segment_video_bad_input_is_one_line(tmp_path, tiny_videoglamm_kwargs, capsys):
    argv = ["segment-video", "--video", str(tmp_path / "none.mp4"), "--text", "x",
            "--checkpoint", str(tiny_videoglamm_kwargs["checkpoint"]), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "video not found" in err[0]


def test_shipped_presets_load_and_the_default_one_is_the_default():
    import pytest

    from video.preset import PRESET_DIR
    from video.segmenter import VideoSegmenterConfig, load_segmenter_config

    assert load_segmenter_config("default") == VideoSegmenterConfig()
    assert load_segmenter_config(PRESET_DIR / "default.yaml") == VideoSegmenterConfig()
    released = load_segmenter_config("released")
    assert released.layout == "regrid" and released.use_cache is False
    with pytest.raises(FileNotFoundError, match="preset not found"):
        load_segmenter_config("data_bad_config.yaml")


def test_segment_video_reads_a_preset_file(tmp_path, tiny_videoglamm_kwargs):
    frames = np.random.default_rng(4).integers(0, 256, size=(4, 32, 40, 3), dtype=np.uint8)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg")
    config = tmp_path / "c.yaml"
    config.write_text("segmenter: {layout: unpooled, answer: 'Sure, [SEG].'}\n")
    out = tmp_path / "out"
    argv = ["segment-video", "--video", str(folder), "--text", "the dog", "--budget", "81", "--preset", str(config),
            "--checkpoint", str(tiny_videoglamm_kwargs["checkpoint"]), "--vision-tower", str(tiny_videoglamm_kwargs["vision_tower"]),
            "--video-tower", str(tiny_videoglamm_kwargs["video_tower"]), "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "result.json").read_text())
    assert report["clip_tokens_per_frame"] == 81 and report["expressions"][0]["has_seg"]
    config.write_text("segmenter: {layuot: cells}\n")
    assert main(argv) == 2
    config.write_text("layout: cells\n")  # the flat format of the first config files: refused with a clear error
    assert main(argv) == 2

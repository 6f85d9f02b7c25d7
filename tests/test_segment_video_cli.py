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


def test_segment_video_on_the_tiny_checkpoint_generates_seg_and_masks(tmp_path, tiny_videoglamm_kwargs, capsys):
    """No forced answer: the tiny model's own greedy answer carries [SEG] (by construction), so masks come out."""
    from litelvlm.testing.videos import scene_clip

    frames = scene_clip(5)
    clip = write_mp4(frames, tmp_path / "clip.mp4", fps=5)
    out = tmp_path / "out"
    assert main(["segment-video", "--video", str(clip), "--text", "the red car", "--budget", "81", *_tiny_args(tiny_videoglamm_kwargs),
                 "--out", str(out)]) == 0
    row = json.loads((out / "result.json").read_text())["expressions"][0]
    assert row["has_seg"] and row["answers"] == ["Sure, [SEG].<|end|>"] and "no: empty masks" not in capsys.readouterr().out
    masks = np.stack([np.asarray(Image.open(png)) for png in sorted((out / "00_the_red_car").glob("*.png"))])
    assert masks.shape == (5, 90, 120) and (masks == 255).any()  # the union over frames is not empty


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


def _tiny_args(kwargs):
    return ["--checkpoint", str(kwargs["checkpoint"]), "--vision-tower", str(kwargs["vision_tower"]),
            "--video-tower", str(kwargs["video_tower"])]


def test_segment_video_draws_the_kept_tokens_of_every_sampled_frame(tmp_path, tiny_videoglamm_kwargs, capsys):
    """litelvlm-time on a 5-frame clip (16 samples, so repeated frames): the picture marks reused tokens red;
    per-frame LiteLVLM reuses nothing. The picture's counts are the LLM's."""
    from litelvlm.viz import HIGHLIGHT_COLOUR, KEPT_COLOUR

    frames = np.random.default_rng(5).integers(0, 256, size=(5, 40, 56, 3), dtype=np.uint8)
    clip = write_mp4(frames, tmp_path / "clip.mp4", fps=5)
    base = ["segment-video", "--video", str(clip), "--text", "the dog", "--answer", "Sure, [SEG].", "--kept-pictures",
            *_tiny_args(tiny_videoglamm_kwargs)]

    def colour_pixels(png, colour):
        return int((np.asarray(Image.open(png).convert("RGB")) == np.array(colour, dtype=np.uint8)).all(-1).sum())

    assert main(base + ["--method", "litelvlm-time", "--budget", "81", "--clip-budget", "300", "--out", str(tmp_path / "t")]) == 0
    report = json.loads((tmp_path / "t" / "result.json").read_text())
    row = report["expressions"][0]
    assert report["clip_budget"] == 300 and len(report["sampled_frames"][0]) == 16 and row["llm_visual_tokens"] <= 300
    (picture,) = row["kept_pictures"]
    assert picture.endswith("00_the_dog/kept_tokens.png") and picture in capsys.readouterr().out
    with Image.open(picture) as im:
        assert f"method litelvlm-time: {row['llm_visual_tokens']} of {16 * (144 + 64)} LLM visual tokens" in im.info["Title"]

    # without a clip budget every frame keeps 21 cells, and the repeated frames reuse most of them
    assert main(base + ["--method", "litelvlm-time", "--budget", "81", "--out", str(tmp_path / "r")]) == 0
    (picture,) = json.loads((tmp_path / "r" / "result.json").read_text())["expressions"][0]["kept_pictures"]
    with Image.open(picture) as im:
        assert "reused" in im.info["Description"]
    assert colour_pixels(picture, HIGHLIGHT_COLOUR) > 0 and colour_pixels(picture, KEPT_COLOUR) > 0

    assert main(base + ["--budget", "81", "--out", str(tmp_path / "f")]) == 0
    row = json.loads((tmp_path / "f" / "result.json").read_text())["expressions"][0]
    (picture,) = row["kept_pictures"]
    with Image.open(picture) as im:
        assert "method litelvlm: 1360 of 3328" in im.info["Title"] and "reused" not in im.info["Description"]
    assert colour_pixels(picture, HIGHLIGHT_COLOUR) == 0 and colour_pixels(picture, KEPT_COLOUR) > 0


def test_frame_tokens_restate_the_result(tiny_video_segmenter):
    """Per sampled frame, the picture's record is what the LLM got: the per-frame kept rows, or the clip-level
    method's selections (sent + reused cells = kept cells)."""
    from video.kept_pictures import frame_tokens

    frames = np.random.default_rng(6).integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
    geometry = tiny_video_segmenter.stream_geometry()
    common = dict(answer="Sure, [SEG].", mask_mode="none", clip_length=10)
    per_frame = tiny_video_segmenter.segment(frames, ["a", "b"], budget=81, **common)
    clips = frame_tokens(per_frame, 1, geometry)
    assert [[f.frame for f in c] for c in clips] == per_frame.sampled_frames and len(clips) == 2
    flat = [f for c in clips for f in c]
    assert all(np.array_equal(f.clip_sent, per_frame.kept[1][i].numpy()) and len(f.video_sent) == 64 for i, f in enumerate(flat))
    timed = tiny_video_segmenter.segment(frames, ["a", "b"], budget=81, method="litelvlm-time", **common)
    flat = [f for c in frame_tokens(timed, 0, geometry) for f in c]
    assert sum(f.tokens for f in flat) == timed.llm_visual_tokens[0]
    for f, record in zip(flat, timed.frame_tokens[0]):
        assert len(f.clip_sent) == 4 * len(record.image_cells) and len(f.clip_reused) == 4 * len(record.reused_cells)
        assert len(record.image_cells) + len(record.reused_cells) == 21 and not np.intersect1d(f.clip_sent, f.clip_reused).size


def test_segment_video_clip_budget_errors_are_one_line(tmp_path, tiny_videoglamm_kwargs, capsys):
    base = ["segment-video", "--video", str(tmp_path / "missing.mp4"), "--text", "x", "--out", str(tmp_path / "o"),
            *_tiny_args(tiny_videoglamm_kwargs)]
    for extra, message in [(["--clip-budget", "300"], "--clip-budget 300 needs a clip-level --method: dycoke, fastvid, holitom, litelvlm-time, prunevid, sttm"),
                           (["--clip-budget", "300", "--method", "litelvlm"], "a clip budget needs a clip-level method"),
                           (["--clip-budget", "0", "--method", "litelvlm-time"], "positive number of LLM visual tokens per clip")]:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_segment_video_refuses_more_frames_than_max_frames_before_decoding(tmp_path, tiny_videoglamm_kwargs, capsys, monkeypatch):
    """--max-frames: the frames are counted from the container (or the folder's files) and nothing is decoded."""
    import litelvlm.viz
    from litelvlm.testing.decoding import DecodeCounter

    clip = write_mp4(np.zeros((5, 32, 32, 3), np.uint8), tmp_path / "clip.mp4")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / f"{i:05d}.jpg")
    counter = DecodeCounter().install(monkeypatch)
    read_frames = []
    monkeypatch.setattr(litelvlm.viz, "load_rgb", lambda *a, **k: read_frames.append(a))
    for video in (clip, folder):
        out = tmp_path / f"out_{video.name}"
        argv = ["segment-video", "--video", str(video), "--text", "the dog", "--max-frames", "3", "--out", str(out),
                *_tiny_args(tiny_videoglamm_kwargs)]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"video {video} has 5 frames, more than --max-frames 3: raise --max-frames" in err[0], err
        assert not out.exists()
    assert counter.decoded == 0 and not read_frames

    assert main(["segment-video", "--video", str(clip), "--text", "x", "--max-frames", "0", "--out", str(tmp_path / "o"),
                 *_tiny_args(tiny_videoglamm_kwargs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-frames 0: give a positive number of frames" in err[0]


def test_segment_video_help_states_the_frame_limit(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["segment-video", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--max-frames N refuse a video of more than N frames, counted from its container before decoding" in help_text
    assert "(default: 1000)" in help_text


def test_segment_video_shows_progress_through_load_clips_and_writing(tmp_path, tiny_videoglamm_kwargs, monkeypatch, capsys):
    """On a terminal, one bar: the model load, each clip (with its current stage), the writing; none on a pipe."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    frames = np.random.default_rng(6).integers(0, 256, size=(6, 24, 32, 3), dtype=np.uint8)
    clip = write_mp4(frames, tmp_path / "clip.mp4", fps=3)
    config = tmp_path / "two_clips.yaml"
    config.write_text("segmenter: {clip_length: 3, answer: 'Sure, [SEG].'}\n")  # 6 frames: 2 clips
    argv = ["segment-video", "--video", str(clip), "--text", "the dog", "--budget", "81", "--preset", str(config),
            *_tiny_args(tiny_videoglamm_kwargs), "--out", str(tmp_path / "out")]
    terminal = Terminal()
    with monkeypatch.context() as patch:
        patch.setattr("sys.stderr", terminal)
        assert main(argv) == 0
    drawn = terminal.getvalue()
    assert "litelvlm segment-video" in drawn and "loading the model" in drawn and "writing masks" in drawn
    assert "1/4" in drawn and "3/4" in drawn and "4/4" in drawn and "llm_prefill" in drawn and "mask_decoder" in drawn
    assert json.loads((tmp_path / "out" / "result.json").read_text())["sampled_frames"][1][0] == 3
    assert main([*argv[:-1], str(tmp_path / "piped")]) == 0
    assert capsys.readouterr().err == ""

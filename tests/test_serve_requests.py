"""``litelvlm serve``'s request checks through its handler functions: files are read only from the upload folder,
every request is bounded before any work, temporary folders go away, and no message names a server path."""

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the demo extra (gradio) is installed by scripts/setup.sh")

from litelvlm.demo import sample_image_path  # noqa: E402
from litelvlm.serve import DemoModels, _guard, preview_video_request, segment_image_request, segment_video_request  # noqa: E402
from litelvlm.serve_inputs import NOT_UPLOADED, DemoLimits, RequestRefused, UploadFolder  # noqa: E402
from litelvlm.serve_preview import browser_playable  # noqa: E402
from litelvlm.testing.decoding import DecodeCounter  # noqa: E402
from litelvlm.testing.videos import scene_clip, write_opencv_mp4  # noqa: E402
from litelvlm.viz import DISPLAY_LONGEST, PictureLimit  # noqa: E402
from video.io import read_video, write_mp4  # noqa: E402

HANDLERS = {"image": segment_image_request, "video": segment_video_request}
SERVER_PATH = re.compile(r"(?<![\w.])/(?:[\w.-]+/)+")  # /a/b/...: a path on the server


class _NoModels:
    """Models that must not run: every check here happens before any model work."""

    def pipeline(self, kind):
        raise AssertionError(f"the {kind} model ran on a request that should have been refused")


@pytest.fixture
def uploads(tmp_path):
    root = tmp_path / "gradio"
    root.mkdir()
    return UploadFolder(root.resolve())


def _upload(uploads: UploadFolder, source: Path) -> dict:
    """``source`` stored as Gradio stores an upload (``<folder>/<hash>/<name>``), as its API payload."""
    folder = uploads.root / "0123abcd"
    folder.mkdir(exist_ok=True)
    shutil.copy(source, folder / source.name)
    return {"path": str(folder / source.name), "meta": {"_type": "gradio.FileData"}}


def _clip(tmp_path, frames=8, size=(32, 48)) -> Path:
    return write_mp4(np.random.default_rng(1).integers(0, 256, (frames, *size, 3), dtype=np.uint8), tmp_path / "clip.mp4")


def _refusal(kind, payload, uploads, limits=DemoLimits(), text="the car", method="litelvlm", budget=64) -> str:
    with pytest.raises(RequestRefused) as info:
        HANDLERS[kind](_NoModels(), payload, text, method, budget, uploads=uploads, limits=limits)
    return str(info.value)


def _not_uploaded(uploads, tmp_path) -> list[str]:
    """A file outside the upload folder, a symlink from the folder to it, /etc/passwd, a missing file, a folder."""
    outside = tmp_path / "elsewhere" / "scene.jpg"
    outside.parent.mkdir()
    shutil.copy(sample_image_path(), outside)
    (uploads.root / "feed").mkdir()
    (uploads.root / "feed" / "link.jpg").symlink_to(outside)
    return [str(outside), str(uploads.root / "feed" / "link.jpg"), "/etc/passwd", str(uploads.root / "feed" / "missing.jpg"),
            str(uploads.root / "feed")]


@pytest.mark.parametrize("kind", ["image", "video"])
def test_files_not_uploaded_get_one_refusal_that_names_no_path(kind, uploads, tmp_path):
    messages = {_refusal(kind, payload, uploads)
                for path in _not_uploaded(uploads, tmp_path)
                for payload in (path, {"path": path}, {"path": path, "meta": {"_type": "gradio.FileData"}}, {"video": {"path": path}})}
    assert messages == {NOT_UPLOADED} and not SERVER_PATH.search(NOT_UPLOADED)
    assert _refusal(kind, {"path": 7}, uploads) == _refusal(kind, {"path": "a\0b"}, uploads) == NOT_UPLOADED


def test_an_uploaded_image_is_read(uploads, tmp_path):
    """The same image inside the upload folder passes the checks (and reaches the model)."""
    with pytest.raises(AssertionError, match="the image model ran"):
        segment_image_request(_NoModels(), _upload(uploads, sample_image_path()), "the car", "litelvlm", 64, uploads=uploads)


@pytest.mark.parametrize("text, words", [
    ("\n".join(f"thing {i}" for i in range(17)), "17 expressions: the demo takes at most 16 per request"),
    ("the car\n" + "x" * 201, "expression 2 is 201 characters: the demo takes at most 200"),
    ("x\n" * 5000, "the expressions are 10,000 characters"),
    (" \n ", "type at least one referring expression"),
])
def test_expressions_are_bounded(uploads, text, words):
    for kind in HANDLERS:
        assert words in _refusal(kind, _upload(uploads, sample_image_path()), uploads, text=text)


@pytest.mark.parametrize("kind, method, budget, words", [
    ("image", "litelvlm-time", 64, "pick a pruning method from the list"),  # clip-level: video only
    ("video", "no-such-method", 64, "pick a pruning method from the list"),
    ("image", "litelvlm", 0, "between 1 and 576"),
    ("image", "litelvlm", "inf", "between 1 and 576"),
    ("video", "litelvlm", float("inf"), "between 1 and 576"),
])
def test_methods_and_budgets_are_checked(uploads, kind, method, budget, words):
    assert words in _refusal(kind, _upload(uploads, sample_image_path()), uploads, method=method, budget=budget)


def test_images_over_the_pixel_limit_are_refused_before_decoding(uploads, tmp_path, monkeypatch):
    from PIL import ImageFile

    decoded = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or original(self))
    message = _refusal("image", _upload(uploads, sample_image_path()), uploads, DemoLimits(image=PictureLimit(100_000)))
    assert message.startswith("the uploaded image is 480x360 pixels (0.2 megapixels): at most 0.1 megapixels") and not decoded
    strip = tmp_path / "strip.png"
    Image.fromarray(np.zeros((20, 2000, 3), np.uint8)).save(strip)
    assert "sides at most 10:1 are accepted; crop it" in _refusal("image", _upload(uploads, strip), uploads)
    assert not decoded


def test_uploads_over_the_byte_limit_are_refused(uploads):
    size = sample_image_path().stat().st_size
    message = _refusal("image", _upload(uploads, sample_image_path()), uploads, DemoLimits(max_upload_bytes=1000))
    assert message == f"the upload is {size:,} bytes: the demo takes files of at most 1,000 bytes"


def test_videos_over_the_frame_limit_are_refused_before_decoding(uploads, tmp_path, monkeypatch):
    payload = _upload(uploads, _clip(tmp_path, frames=8))
    counter = DecodeCounter().install(monkeypatch)
    message = _refusal("video", payload, uploads, DemoLimits(max_video_frames=3))
    assert message == "the video has 8 frames: the demo takes short clips of at most 3 frames" and counter.decoded == 0
    message = _refusal("video", payload, uploads, DemoLimits(video_frame=PictureLimit(1000)))
    assert message.startswith("each frame of the uploaded video is 48x32 pixels") and counter.decoded == 0


def test_decoding_stops_at_the_limit_when_the_container_under_counts(uploads, tmp_path, monkeypatch):
    payload = _upload(uploads, _clip(tmp_path, frames=8))
    counter = DecodeCounter(claimed=2).install(monkeypatch)
    message = _refusal("video", payload, uploads, DemoLimits(max_video_frames=3))
    assert message == "the video has more than 3 frames: the demo takes short clips of at most 3 frames"
    assert counter.decoded == 4  # the limit, and the one frame that shows the video is longer


def test_bad_files_get_messages_that_name_no_server_path(uploads, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    cases = [("image", _upload(uploads, notes), "cannot read the uploaded image: cannot identify image file"),
             ("video", _upload(uploads, fake), "cannot read the uploaded video with av (Invalid data found"),
             ("video", _upload(uploads, notes), "the uploaded video is a single image")]
    for kind, payload, words in cases:
        page = _guard(lambda *a, k=kind: HANDLERS[k](_NoModels(), *a, uploads=uploads), (None, None, ""))
        *_, message = page(payload, "the car", "litelvlm", 64)
        assert words in message and not SERVER_PATH.search(message) and str(tmp_path) not in message, message


def test_unexpected_errors_name_only_their_type(caplog):
    def failing(*args):
        raise OSError("[Errno 28] No space left on device: '/srv/secret/overlay.mp4'")

    *_, message = _guard(failing, (None, None, ""))("x")
    assert message == "**Something went wrong** (OSError); the server log has the details."
    assert "/srv/secret/overlay.mp4" in caplog.text  # the operator still sees it


@pytest.fixture(scope="module")
def video_models(tiny_videoglamm_kwargs):
    kw = tiny_videoglamm_kwargs
    return DemoModels(video_checkpoint=str(kw["checkpoint"]), vision_tower=str(kw["vision_tower"]), video_tower=str(kw["video_tower"]))


def test_video_requests_leave_no_temporary_folder(video_models, uploads, tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    payload = _upload(uploads, _clip(tmp_path, frames=4))
    overlay, kept, summary, message = segment_video_request(video_models, payload, "the car", "litelvlm", 81, uploads=uploads)
    assert message == "" and Path(overlay).is_relative_to(uploads.root) and Path(overlay).stat().st_size > 0
    assert list(temp.iterdir()) == []

    import video.io

    def failing_writer(frames, masks, path, fps=10.0):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(video.io, "write_overlay_mp4", failing_writer)
    page = _guard(lambda *a: segment_video_request(video_models, *a, uploads=uploads), (None, None, ""))
    *_, message = page(payload, "the car", "litelvlm", 81)
    assert message.startswith("**Something went wrong** (OSError)") and list(temp.iterdir()) == []


class _StubApp:
    def __init__(self):
        self.launched = {}

    def queue(self, **kwargs):
        self.queued = kwargs

    def launch(self, **kwargs):
        self.launched = kwargs


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("192.0.2.7", True), ("127.0.0.1", False), ("localhost", False),
                                          ("::1", False)])
def test_serve_warns_when_reachable_from_other_machines(monkeypatch, capsys, host, warned):
    import litelvlm.serve as serve_module
    from litelvlm.cli import main

    app = _StubApp()
    monkeypatch.setattr(serve_module, "build_app", lambda models, limits: app)
    monkeypatch.setattr(serve_module.DemoModels, "pipeline", lambda self, kind: None)
    assert main(["serve", "--host", host, "--port", "7999"]) == 0
    err = capsys.readouterr().err
    assert (f"warning: litelvlm serve listens on {host}:7999, reachable from other machines" in err) == warned
    assert app.launched["server_name"] == host and app.launched["max_file_size"] == DemoLimits().max_upload_bytes
    assert app.queued["default_concurrency_limit"] == 1


def test_gradio_refuses_uploads_over_the_byte_limit(monkeypatch, tmp_path):
    """``serve`` hands the byte limit to Gradio, which refuses a larger upload before storing it."""
    import socket

    import httpx

    import litelvlm.serve as serve_module

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setattr(serve_module.DemoModels, "pipeline", lambda self, kind: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = serve_module.serve(DemoModels(), port=port, block=False, limits=DemoLimits(max_upload_bytes=10_000))
    try:
        big = tmp_path / "big.png"
        Image.fromarray(np.random.default_rng(2).integers(0, 256, (100, 100, 3), dtype=np.uint8)).save(big)
        assert big.stat().st_size > 10_000
        with big.open("rb") as f:  # as a client that skips gradio_client's own size check posts it
            response = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload", files={"files": ("big.png", f)}, timeout=30)
        assert response.status_code == 413
        assert not [p for p in (tmp_path / "gradio").rglob("*") if p.is_file() and p.stat().st_size > 10_000]
    finally:
        app.close()


class _Recording:
    """A page's pipeline that keeps the results it returns."""

    def __init__(self, pipe):
        self.pipe, self.results = pipe, []

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, *args, **kwargs):
        self.results.append(self.pipe(*args, **kwargs))
        return self.results[-1]


def _recording(models: DemoModels, kind: str) -> _Recording:
    models._pipes[kind] = _Recording(models.pipeline(kind))
    return models._pipes[kind]


def test_video_requests_show_masks_and_a_kept_token_sheet_per_expression(video_models, uploads, tmp_path, monkeypatch):
    """On the tiny checkpoint the model answers with [SEG], so the overlay has masks; each expression gets its own
    kept-token sheet, numbered out of all of them."""
    import video.kept_pictures

    titles, figures = [], video.kept_pictures.kept_token_figures
    monkeypatch.setattr(video.kept_pictures, "kept_token_figures",
                        lambda *a: [titles.append(f.title) or (e, c, f) for e, c, f in figures(*a)])
    recorder = _recording(video_models, "video")
    frames = scene_clip()
    payload = _upload(uploads, write_mp4(frames, tmp_path / "scene.mp4", fps=6))
    overlay, sheets, summary, message = segment_video_request(video_models, payload, "the red car\nthe dog", "litelvlm", 81,
                                                              uploads=uploads)
    assert message == "" and "[SEG] emitted: yes, yes" in summary
    (result,) = recorder.results
    assert result.masks.shape == (2, 6, 90, 120) and all(mask.any() for mask in result.masks)
    shown, original = read_video(overlay)[0], read_video(payload["path"])[0]
    assert np.abs(shown.astype(int) - original.astype(int)).max(axis=-1)[result.masks.any(0)].mean() > 20  # masks drawn
    assert len(sheets) == 2 and not np.array_equal(sheets[0], sheets[1])
    assert [(t[0].split(", ")[-1], t[1]) for t in titles] == [("expression 1 of 2", "'the red car'"), ("expression 2 of 2", "'the dog'")]


@pytest.fixture(scope="module")
def image_models(tiny_glamm_dirs):
    return DemoModels(image_checkpoint=str(tiny_glamm_dirs["glamm"]), vision_tower=str(tiny_glamm_dirs["clip"]), video_checkpoint=None)


def test_image_requests_show_a_kept_token_map_per_expression(image_models, uploads, monkeypatch):
    import litelvlm.segment_cli

    titles, pictures = [], litelvlm.segment_cli.result_pictures
    monkeypatch.setattr(litelvlm.segment_cli, "result_pictures",
                        lambda *a: (lambda out: titles.extend(m.title for m in out[1]) or out)(pictures(*a)))
    overlay, maps, summary, message = segment_image_request(image_models, _upload(uploads, sample_image_path()),
                                                            "the red car\nthe dog\nthe sun", "litelvlm", 64, uploads=uploads)
    assert message == "" and "3 expression(s)" in summary
    assert len(maps) == 3 and all(picture.shape[1] >= 336 for picture in maps) and not np.array_equal(maps[0], maps[1])
    assert [t[:2] for t in titles] == [[f"Kept visual tokens, expression {i} of 3", f"'{text}'"]
                                       for i, text in enumerate(["the red car", "the dog", "the sun"], 1)]


def test_large_uploads_come_back_at_display_size(image_models, uploads, tmp_path):
    """The largest photo the demo takes (4096x3072): its overlay is shown at most DISPLAY_LONGEST pixels a side."""
    big = tmp_path / "big.jpg"
    Image.open(sample_image_path()).resize((4096, 3072)).save(big, quality=85)
    overlay, _, _, message = segment_image_request(image_models, _upload(uploads, big), "the red car\nthe dog", "litelvlm", 64,
                                                   uploads=uploads)
    assert message == "" and DISPLAY_LONGEST <= overlay.shape[1] <= DISPLAY_LONGEST + 80 and overlay.shape[0] < 1280


def test_uploads_browsers_cannot_play_are_previewed_as_h264(uploads, tmp_path):
    import av
    import gradio as gr

    frames = scene_clip(8)
    payload = _upload(uploads, write_opencv_mp4(frames, tmp_path / "opencv.mp4"))
    assert not browser_playable(payload["path"])
    preview, message = preview_video_request(payload, uploads=uploads)
    assert message == "" and Path(preview).is_relative_to(uploads.root) and browser_playable(preview)
    with av.open(preview) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    copy = read_video(preview)[0]
    assert copy.shape == frames.shape and np.abs(copy.astype(int) - frames.astype(int)).mean() < 8
    playable = _upload(uploads, write_mp4(frames, tmp_path / "h264.mp4"))
    assert preview_video_request(playable, uploads=uploads) == (gr.skip(), "")  # left as it is


def test_previews_are_bounded_as_requests_are(uploads, tmp_path, monkeypatch):
    payload = _upload(uploads, write_opencv_mp4(scene_clip(8), tmp_path / "opencv.mp4"))
    counter = DecodeCounter().install(monkeypatch)
    with pytest.raises(RequestRefused, match="the video has 8 frames: the demo takes short clips of at most 3 frames"):
        preview_video_request(payload, uploads=uploads, limits=DemoLimits(max_video_frames=3))
    assert counter.decoded == 0
    for path in _not_uploaded(uploads, tmp_path):
        with pytest.raises(RequestRefused, match="that file was not uploaded"):
            preview_video_request({"path": path}, uploads=uploads)
    page = _guard(lambda v: preview_video_request(v, uploads=uploads, limits=DemoLimits(max_video_frames=3)), (None,), "preview")
    assert page(payload) == (None, "**Cannot preview:** the video has 8 frames: the demo takes short clips of at most 3 frames")

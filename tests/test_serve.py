"""``litelvlm serve``: the web demo through its API (Gradio client) and in a real headless Chromium."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the demo extra (gradio) is installed by scripts/setup.sh")

from litelvlm.demo import sample_image_path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def upload_folder(tmp_path_factory) -> Path:
    """Where the server's Gradio keeps uploads (its GRADIO_TEMP_DIR)."""
    return tmp_path_factory.mktemp("gradio").resolve()


@pytest.fixture(scope="module")
def server(tmp_path_factory, upload_folder):
    """The demo on the embedded tiny checkpoints, in its own process, as a user starts it."""
    port = _free_port()
    env = {**os.environ, "LITELVLM_CACHE": str(tmp_path_factory.mktemp("cache")), "PYTHONPATH": str(REPO),
           "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(upload_folder)}
    log = tmp_path_factory.mktemp("log") / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "litelvlm.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"litelvlm serve exited: {log.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            time.sleep(1)
    else:
        process.kill()
        raise RuntimeError(f"litelvlm serve did not answer within 240 s: {log.read_text()}")
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def _image_request(client, image, text, method="litelvlm", budget=64):
    from gradio_client import handle_file

    return client.predict(handle_file(str(image)) if image else None, text, method, budget, api_name="/segment_image")


def test_page_says_random_weights(server):
    html = urllib.request.urlopen(server, timeout=10).read().decode()
    assert "litelvlm demo" in html


def test_page_states_the_request_limits(server):
    from litelvlm.serve_inputs import DemoLimits

    config = urllib.request.urlopen(server + "config", timeout=10).read().decode()
    assert DemoLimits().describe() in config and "Per request: at most 16 expressions" in config


def test_files_not_uploaded_get_one_refusal(client, upload_folder, tmp_path):
    """The attack: an API client names a server file instead of uploading one. A file outside the upload folder, a
    symlink from the folder to it, /etc/passwd and a missing file all get the same words, naming no path."""
    from litelvlm.serve_inputs import NOT_UPLOADED

    outside = tmp_path / "scene.jpg"
    shutil.copy(sample_image_path(), outside)
    (upload_folder / "planted").mkdir(exist_ok=True)
    link = upload_folder / "planted" / "scene.jpg"
    link.symlink_to(outside)
    messages = [client.predict({"path": str(path)}, "the car", "litelvlm", 64, api_name="/segment_image")
                for path in (outside, link, "/etc/passwd", upload_folder / "planted" / "missing.jpg")]
    assert all(overlay is None for overlay, *_ in messages)
    assert {message for *_, message in messages} == {f"**Cannot segment:** {NOT_UPLOADED}"}


def test_image_request_returns_pictures_tokens_and_timings(client):
    overlay, kept, summary, message = _image_request(client, sample_image_path(), "the red car\nthe man on the right")
    assert message == "" and Path(overlay).is_file() and len(kept) == 2 and all(Path(item["image"]).is_file() for item in kept)
    assert "**64 visual tokens** of 576" in summary and "llm_prefill" in summary and "2 expression(s)" in summary
    from PIL import Image

    assert Image.open(overlay).size[0] >= 420  # the picture with its title band and legend
    assert "**576 visual tokens**" in _image_request(client, sample_image_path(), "the car", budget=576)[2]


@pytest.mark.parametrize("image, text, budget, words", [
    (None, "the car", 64, "upload an image first"),
    ("sample", "   \n ", 64, "type at least one referring expression"),
    ("text", "the car", 64, "cannot read the uploaded image"),
    ("sample", "\n".join(f"thing {i}" for i in range(17)), 64, "17 expressions: the demo takes at most 16 per request"),
    ("sample", "the car", 577, "between 1 and 576"),
])
def test_bad_requests_get_a_message_not_a_trace(client, tmp_path, image, text, budget, words):
    if image == "text":
        image = tmp_path / "notes.png"
        image.write_text("not an image")
    elif image == "sample":
        image = sample_image_path()
    overlay, kept, summary, message = _image_request(client, image, text, budget=budget)
    assert words in message and "traceback" not in message.lower() and overlay is None
    assert "/" not in message.replace("JPEG/PNG", "")  # no server path


def test_bad_videos_get_messages_that_name_no_server_path(client, tmp_path):
    from gradio_client import handle_file

    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    *_, message = client.predict(handle_file(str(fake)), "a dog", "litelvlm", 81, api_name="/segment_video")
    assert "cannot read the uploaded video with av" in message and "/tmp" not in message and str(tmp_path) not in message


def test_too_long_videos_get_a_message(client, tmp_path):
    from gradio_client import handle_file

    from litelvlm.serve import MAX_VIDEO_FRAMES
    from video.io import write_mp4

    path = write_mp4(np.zeros((MAX_VIDEO_FRAMES + 4, 32, 32, 3), np.uint8), tmp_path / "long.mp4")
    *_, message = client.predict(handle_file(str(path)), "a dog", "litelvlm", 81, api_name="/segment_video")
    assert message == f"**Cannot segment:** the video has {MAX_VIDEO_FRAMES + 4} frames: the demo takes short clips of at most {MAX_VIDEO_FRAMES} frames"


def test_video_request_returns_an_overlay_video(client, tmp_path):
    from gradio_client import handle_file

    from video.io import write_mp4

    from litelvlm.viz import load_rgb

    frames = np.stack([np.roll(load_rgb(sample_image_path()), 8 * t, axis=1)[::4, ::4] for t in range(6)])
    path = write_mp4(frames, tmp_path / "clip.mp4", fps=6)
    video, kept, summary, message = client.predict(handle_file(str(path)), "the red car\nthe dog", "litelvlm", 81,
                                                   api_name="/segment_video")
    assert message == "" and "visual tokens per frame" in summary and "[SEG] emitted: yes, yes" in summary
    assert len(kept) == 2 and all(Path(item["image"]).is_file() for item in kept)  # a kept-token sheet per expression
    assert Path(video["video"] if isinstance(video, dict) else video).stat().st_size > 1000
    # a clip-level method through the page: the kept-token sheet of both streams
    _, kept, summary, message = client.predict(handle_file(str(path)), "the red car", "litelvlm-time", 81, api_name="/segment_video")
    assert message == "" and len(kept) == 1 and "85 visual tokens per frame" not in summary


def test_video_uploads_browsers_cannot_play_are_previewed_as_h264(client, tmp_path):
    import av
    from gradio_client import handle_file

    from litelvlm.testing.videos import scene_clip, write_opencv_mp4

    preview, message = client.predict(handle_file(str(write_opencv_mp4(scene_clip(8), tmp_path / "opencv.mp4"))),
                                      api_name="/preview_video")
    with av.open(preview["video"] if isinstance(preview, dict) else preview) as container:
        assert message == "" and container.streams.video[0].codec_context.name == "h264"


def _browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1750",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _require_browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("LITELVLM_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required here (LITELVLM_REQUIRE_BROWSER is set): apt-get install chromium chromium-driver")
        pytest.skip("no chromium / chromedriver on this machine: apt-get install chromium chromium-driver (CI installs them)")


READABLE_ON_SCREEN = 9  # pixels: the smallest text height accepted on the page


def _shown_text_px(driver, selector: str) -> list[float]:
    """Per picture matching ``selector``: its text size (``viz.text_px`` of its width) at the size the page shows it."""
    from litelvlm.viz import text_px

    sizes = driver.execute_script(f"return Array.from(document.querySelectorAll('{selector}'))"
                                  ".map(i => [i.naturalWidth, i.naturalHeight, i.clientWidth, i.clientHeight])")
    return [(text_px(w) - 1) * min(cw / w, ch / h) for w, h, cw, ch in sizes]


def test_a_real_browser_uploads_the_sample_and_sees_masks_and_tokens(server, tmp_path):
    """Headless Chromium (Debian's, with its driver; .ci/run installs them): upload, type, click, see the result: the
    overlay and a kept-token map per expression, their text readable at the size the page shows them."""
    _require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser(tmp_path)
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#image-input input[type=file]"))
        assert "RANDOM weights" in driver.find_element(By.ID, "header").text
        driver.find_element(By.CSS_SELECTOR, "#image-input input[type=file]").send_keys(str(sample_image_path()))
        driver.find_element(By.CSS_SELECTOR, "#image-expressions textarea").send_keys("the red car on the left\nthe dog")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#image-input img"))
        driver.find_element(By.ID, "image-segment").click()
        wait.until(lambda d: "visual tokens" in d.find_element(By.ID, "image-summary").text)
        assert "192 visual tokens of 576" in driver.find_element(By.ID, "image-summary").text
        sources = [img.get_attribute("src") for img in driver.find_elements(By.CSS_SELECTOR, "#image-overlay img, #image-kept img")]
        assert len(sources) == 3 and all(src and "file=" in src for src in sources)
        assert all(px >= READABLE_ON_SCREEN for px in _shown_text_px(driver, "#image-overlay img, #image-kept img"))
        shot = os.environ.get("LITELVLM_SCREENSHOT") or str(tmp_path / "page.png")
        driver.save_screenshot(shot)
        assert Path(shot).stat().st_size > 10_000
    finally:
        driver.quit()


def test_a_real_browser_plays_the_preview_of_an_opencv_mp4_and_segments_it(server, tmp_path):
    """OpenCV's default mp4 (mp4v) is not playable in a browser: the video box gets an H.264 copy that plays. Then
    segment it: a kept-token sheet per expression, its text readable at the size the page shows it."""
    _require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from litelvlm.testing.videos import scene_clip, write_opencv_mp4

    upload = write_opencv_mp4(scene_clip(8), tmp_path / "opencv.mp4")
    driver = _browser(tmp_path)
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button[role=tab]"))
        driver.execute_script("Array.from(document.querySelectorAll('button[role=tab]')).find(b => b.textContent.trim() == 'Video').click()")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#video-input input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "#video-input input[type=file]").send_keys(str(upload))
        state = "return Array.from(document.querySelectorAll('#video-input video')).map(v => [v.readyState, v.videoWidth, v.src])"
        wait.until(lambda d: any(ready >= 2 and width == 120 and "preview.mp4" in src for ready, width, src in d.execute_script(state)))
        assert "not playable" not in driver.find_element(By.ID, "video-input").text.lower()
        assert driver.find_element(By.ID, "video-message").text == ""
        driver.find_element(By.CSS_SELECTOR, "#video-expressions textarea").send_keys("the red car\nthe dog")
        driver.find_element(By.ID, "video-segment").click()
        wait.until(lambda d: "visual tokens per frame" in d.find_element(By.ID, "video-summary").text)
        assert "[SEG] emitted: yes, yes" in driver.find_element(By.ID, "video-summary").text
        shown = _shown_text_px(driver, "#video-kept img")
        assert len(shown) == 2 and all(px >= READABLE_ON_SCREEN for px in shown), shown
    finally:
        driver.quit()

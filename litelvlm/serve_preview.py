"""The demo's video preview: an upload browsers cannot play (e.g. OpenCV's default mp4v) is transcoded to H.264
with PyAV, within the demo's request limits, so that the input box plays it (and segmentation reads that copy)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .serve_inputs import DemoLimits, UploadFolder, read_uploaded_clip

__all__ = ["browser_playable", "playable_preview", "PLAYABLE_CODECS"]

# What Chromium, Firefox and Safari all play: these codecs in 4:2:0, in an mp4 or webm container.
PLAYABLE_CODECS = ("h264", "vp8", "vp9", "av1")
PLAYABLE_PIXELS = ("yuv420p", "yuvj420p")
PLAYABLE_CONTAINERS = ("mp4", "webm")


def browser_playable(path: str | Path) -> bool:
    """Whether browsers play the video file ``path`` as it is (False also when PyAV cannot open it)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return False
            codec = container.streams.video[0].codec_context
            return (codec.name in PLAYABLE_CODECS and codec.pix_fmt in PLAYABLE_PIXELS
                    and any(name in container.format.name.split(",") for name in PLAYABLE_CONTAINERS))
    except Exception:  # av's errors for unreadable files: the reader names the problem
        return False


def playable_preview(uploads: UploadFolder, payload, limits: DemoLimits = DemoLimits()) -> str | None:
    """None when browsers play the uploaded video ``payload`` as it is; else the path of an H.264 copy written to the
    upload folder. The upload is read as a segmentation request reads it (bytes, frames and frame size bounded
    before decoding; refusals are ``RequestRefused``)."""
    from video.io import write_mp4

    if payload and browser_playable(uploads.file(payload, limits.max_upload_bytes)):
        return None
    frames, fps = read_uploaded_clip(uploads, payload, limits)
    with tempfile.TemporaryDirectory(prefix="litelvlm-preview-") as folder:
        return uploads.keep(write_mp4(frames, Path(folder) / "preview.mp4", fps or 25.0))

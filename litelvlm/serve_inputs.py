"""What a ``litelvlm serve`` request may carry, checked before any work: uploads read only from Gradio's upload
folder, and bounds on expressions, pictures, video frames and bytes. Refusals are ``RequestRefused``: one line
for the page that names no server path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .viz import PictureLimit

__all__ = ["RequestRefused", "DemoLimits", "UploadFolder", "NOT_UPLOADED", "MAX_VIDEO_FRAMES", "FULL_TOKENS",
           "parse_expressions", "parse_budget", "check_method", "read_uploaded_image", "read_uploaded_video", "read_uploaded_clip"]

FULL_TOKENS = 576
MAX_VIDEO_FRAMES = 96  # a short clip: the demo is interactive
# The same words whatever the path (outside the folder, a symlink out of it, missing, a folder): no oracle.
NOT_UPLOADED = "that file was not uploaded to this page: upload it with the file box (API clients: gradio_client.handle_file)"


class RequestRefused(ValueError):
    """A request the demo does not run; the message is for the page."""


@dataclass(frozen=True)
class DemoLimits:
    """Per-request bounds of the demo, stated on its page."""

    max_expressions: int = 16
    max_expression_chars: int = 200
    image: PictureLimit = field(default_factory=lambda: PictureLimit(4096 * 3072))  # a 12 MP photo; ~1.5 GB at 16 expressions
    max_video_frames: int = MAX_VIDEO_FRAMES
    video_frame: PictureLimit = field(default_factory=lambda: PictureLimit(640 * 480))
    max_upload_bytes: int = 32 * 2**20

    @property
    def max_text_chars(self) -> int:
        """The longest expressions box: every expression at its longest, one per line."""
        return self.max_expressions * (self.max_expression_chars + 1)

    def describe(self) -> str:
        return (f"Per request: at most {self.max_expressions} expressions of at most {self.max_expression_chars} characters; "
                f"images {self.image.describe()}; videos at most {self.max_video_frames} frames, each "
                f"{self.video_frame.describe()}; uploads at most {_megabytes(self.max_upload_bytes)}.")


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size:,} bytes"


@dataclass(frozen=True)
class UploadFolder:
    """Gradio's upload folder (also its cache of served files): the only place the demo reads files from."""

    root: Path

    @classmethod
    def of_gradio(cls) -> UploadFolder:
        """The folder Gradio saves uploads in (``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``), symlinks resolved."""
        from gradio.utils import get_upload_folder

        return cls(Path(get_upload_folder()).resolve())

    def file(self, payload, max_bytes: int) -> Path:
        """The uploaded file ``payload`` names (a path, Gradio's ``{"path": ...}``, or Gradio 5's video payload
        ``{"video": {"path": ...}}``), symlinks resolved; a path that does not resolve to a file inside the folder is
        refused with ``NOT_UPLOADED``, a larger file by its size."""
        if isinstance(payload, dict) and isinstance(payload.get("video"), dict):
            payload = payload["video"]
        raw = payload.get("path") if isinstance(payload, dict) else payload
        try:
            path = Path(raw).resolve(strict=True)
        except (TypeError, ValueError, OSError, RuntimeError):  # not a path, NUL byte, missing, symlink loop
            raise RequestRefused(NOT_UPLOADED) from None
        if not (path.is_relative_to(self.root) and path != self.root and path.is_file()):
            raise RequestRefused(NOT_UPLOADED)
        size = path.stat().st_size
        if size > max_bytes:
            raise RequestRefused(f"the upload is {_megabytes(size)}: the demo takes files of at most {_megabytes(max_bytes)}")
        return path

    def keep(self, path: Path) -> str:
        """Copy a result file into the folder, as Gradio copies the files it serves; the copy's path."""
        from gradio.processing_utils import save_file_to_cache

        return save_file_to_cache(path, str(self.root))


def parse_expressions(text, limits: DemoLimits) -> list[str]:
    """One expression per non-empty line, within the limits."""
    if text is not None and not isinstance(text, str):
        raise RequestRefused("the expressions must be text, one per line")
    if text and len(text) > limits.max_text_chars:
        raise RequestRefused(f"the expressions are {len(text):,} characters: the demo takes at most {limits.max_expressions} "
                             f"expressions of at most {limits.max_expression_chars} characters")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        raise RequestRefused("type at least one referring expression (one per line)")
    if len(lines) > limits.max_expressions:
        raise RequestRefused(f"{len(lines)} expressions: the demo takes at most {limits.max_expressions} per request")
    longest = max(range(len(lines)), key=lambda i: len(lines[i]))
    if len(lines[longest]) > limits.max_expression_chars:
        raise RequestRefused(f"expression {longest + 1} is {len(lines[longest])} characters: the demo takes at most "
                             f"{limits.max_expression_chars}")
    return lines


def parse_budget(budget) -> int | None:
    """Visual tokens kept, 1..576 (576: all, None)."""
    try:
        value = int(budget)
    except (TypeError, ValueError, OverflowError):
        value = 0
    if isinstance(budget, bool) or not 1 <= value <= FULL_TOKENS:
        raise RequestRefused(f"the budget must be a whole number of visual tokens between 1 and {FULL_TOKENS}")
    return None if value == FULL_TOKENS else value


def check_method(method, choices: list[str]) -> str:
    """``method`` if the page offers it."""
    if method not in choices:
        raise RequestRefused(f"pick a pruning method from the list: {', '.join(choices)}")
    return method


def read_uploaded_image(uploads: UploadFolder, payload, limits: DemoLimits) -> np.ndarray:
    """The uploaded image as (H, W, 3) uint8; its size is checked from its header before it is decoded."""
    from .viz import load_rgb

    if not payload:
        raise RequestRefused("upload an image first")
    path = uploads.file(payload, limits.max_upload_bytes)
    try:
        return load_rgb(path, limit=limits.image, name="the uploaded image")
    except ValueError as err:  # its words name the upload, not its path
        raise RequestRefused(str(err)) from None


def read_uploaded_video(uploads: UploadFolder, payload, limits: DemoLimits) -> np.ndarray:
    """The uploaded video's frames (T, H, W, 3) uint8; frames counted and sized from the container before decoding."""
    return read_uploaded_clip(uploads, payload, limits)[0]


def read_uploaded_clip(uploads: UploadFolder, payload, limits: DemoLimits) -> tuple[np.ndarray, float]:
    """(frames, frames per second) of the uploaded video, read as ``read_uploaded_video`` reads it."""
    from video.io import TooManyFrames, read_video

    if not payload:
        raise RequestRefused("upload a video first (mp4)")
    path = uploads.file(payload, limits.max_upload_bytes)
    try:
        frames, _, fps = read_video(path, max_frames=limits.max_video_frames, frame_limit=limits.video_frame, name="the uploaded video")
    except TooManyFrames as err:
        raise RequestRefused(f"the video has {err.counted}: the demo takes short clips of at most {err.limit} frames") from None
    except ValueError as err:  # its words name the upload, not its path
        raise RequestRefused(str(err)) from None
    return frames, fps

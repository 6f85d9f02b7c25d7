"""Reading videos (mp4 or a folder of JPEG frames), sampling frames, splitting clips, writing mp4."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from litelvlm.viz import InputTooLarge, PictureLimit

__all__ = ["read_video", "read_frame_folder", "TooManyFrames", "sample_frame_indices", "split_clips", "write_mp4", "write_overlay_mp4", "FRAME_SUFFIXES",
           "IMAGE_SUFFIXES", "SHORT_CLIP_SAMPLING"]

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


# Single pictures ffmpeg would also open (as a one-frame "video"): refused by ``read_video``.
IMAGE_SUFFIXES = FRAME_SUFFIXES + (".bmp", ".tif", ".tiff", ".webp")
EXPECTED_VIDEO = "expected a video file ffmpeg can decode (e.g. .mp4) or a folder of JPEG/PNG frames"


class _UnreadableVideo(ValueError):
    """Raised by the readers below with a message that already names the file."""


class TooManyFrames(InputTooLarge):
    """A video with more frames than the reader may decode; ``frames`` is None when decoding stopped at the limit
    (the container under-counted)."""

    def __init__(self, what: str, frames: int | None, limit: int):
        self.what, self.frames, self.limit = what, frames, limit
        super().__init__(f"{what} has {self.counted}, more than the limit of {limit}")

    @property
    def counted(self) -> str:
        return f"{self.frames} frames" if self.frames is not None else f"more than {self.limit} frames"


def read_frame_folder(folder: str | Path, *, max_frames: int | None = None,
                      frame_limit: PictureLimit | None = None) -> tuple[np.ndarray, list[str]]:
    """All frames of a folder (sorted by name) as (T, H, W, 3) uint8, and their names without suffix.

    Frames are decoded by ``litelvlm.viz.load_rgb``: a truncated or unreadable frame is an error naming
    it, 16-bit frames are scaled to 8 bits, grayscale / RGBA / palette frames become RGB. More than
    ``max_frames`` files, or a frame over ``frame_limit``, is refused before it is decoded."""
    from litelvlm.viz import load_rgb

    root = Path(folder)
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no frames ({', '.join(FRAME_SUFFIXES)}) in {root}: {EXPECTED_VIDEO}")
    if max_frames is not None and len(files) > max_frames:
        raise TooManyFrames(f"video {root}", len(files), max_frames)
    frames = [load_rgb(p, limit=frame_limit) for p in files]
    sizes = {f.shape for f in frames}
    if len(sizes) != 1:
        first = {shape: next(p.name for p, f in zip(files, frames) if f.shape == shape) for shape in sizes}
        detail = ", ".join(f"{shape[1]}x{shape[0]} (e.g. {name})" for shape, name in sorted(first.items()))
        raise ValueError(f"frames in {root} have different sizes: {detail}; all frames of a video must be the same size")
    return np.stack(frames), [p.stem for p in files]


def _video_stream(container, what: str):
    if not container.streams.video:
        streams = ", ".join(s.type for s in container.streams) or "none"
        raise _UnreadableVideo(f"{what} has no video stream (streams: {streams}): {EXPECTED_VIDEO}")
    return container.streams.video[0]


def _check_container(path: Path, what: str, max_frames: int | None, frame_limit: PictureLimit | None) -> None:
    """Refuse a video over the limits from its container, decoding nothing: the frame count its header gives
    (else its demuxed packets) and the frame size its codec announces."""
    import av

    with av.open(str(path)) as container:
        stream = _video_stream(container, what)
        if frame_limit is not None:
            frame_limit.check(stream.codec_context.width, stream.codec_context.height, f"each frame of {what}")
        if max_frames is not None:
            count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            if count > max_frames:
                raise TooManyFrames(what, count, max_frames)


def _read_mp4_decord(path: Path, what: str, max_frames: int | None, frame_limit: PictureLimit | None) -> tuple[np.ndarray, float]:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    if max_frames is not None and len(reader) > max_frames:
        raise TooManyFrames(what, len(reader), max_frames)
    return reader.get_batch(list(range(len(reader)))).asnumpy(), float(reader.get_avg_fps())


def _read_mp4_av(path: Path, what: str, max_frames: int | None, frame_limit: PictureLimit | None) -> tuple[np.ndarray, float]:
    """Decode frame by frame, stopping at ``max_frames`` and checking each frame's size before converting it."""
    import av

    frames = []
    with av.open(str(path)) as container:
        stream = _video_stream(container, what)
        for frame in container.decode(stream):
            if max_frames is not None and len(frames) == max_frames:
                raise TooManyFrames(what, None, max_frames)
            if frame_limit is not None:
                frame_limit.check(frame.width, frame.height, f"frame {len(frames)} of {what}")
            frames.append(frame.to_ndarray(format="rgb24"))
        fps = float(stream.average_rate or 0) or 25.0
    if not frames:
        raise _UnreadableVideo(f"{what} has no decodable frames: {EXPECTED_VIDEO}")
    return np.stack(frames), fps


def read_video(path: str | Path, backend: str | None = None, *, max_frames: int | None = None,
               frame_limit: PictureLimit | None = None, name: str | None = None) -> tuple[np.ndarray, list[str], float]:
    """(frames (T, H, W, 3) uint8, frame names, fps) from an mp4 (decord if installed, else PyAV) or a
    folder of frames (names from files, fps 0).

    ``max_frames``: refuse a longer video (``TooManyFrames``) from the frame count its container gives, before
    decoding, and stop decoding there should the container under-count. ``frame_limit``: refuse larger frames
    the same way. ``name``: what messages call the video instead of ``video <path>`` (a server names an upload
    without showing where it lies)."""
    p = Path(path)
    if p.is_dir():
        frames, names = read_frame_folder(p, max_frames=max_frames, frame_limit=frame_limit)
        return frames, names, 0.0
    if not p.is_file():
        raise FileNotFoundError(f"video not found: {p}")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(f"{name or p} is a single image, not a video: {EXPECTED_VIDEO} (litelvlm segment takes one image)")
    backend = backend or ("decord" if importlib.util.find_spec("decord") else "av")
    readers = {"decord": _read_mp4_decord, "av": _read_mp4_av}
    if backend not in readers:
        raise ValueError(f"unknown video backend {backend!r}: choose decord or av")
    what = name or f"video {p}"
    try:
        if max_frames is not None or frame_limit is not None:
            _check_container(p, what, max_frames, frame_limit)
        frames, fps = readers[backend](p, what, max_frames, frame_limit)
    except (ImportError, _UnreadableVideo, InputTooLarge):
        raise
    except Exception as err:  # decoders raise their own error types (av's are often ValueErrors) for unreadable files
        reason = getattr(err, "strerror", None) or " ".join(str(err).split()) or type(err).__name__
        if name:  # a decoder's message may name the path
            reason = reason.replace(str(p), name)
        raise ValueError(f"cannot read {what} with {backend} ({reason}): {EXPECTED_VIDEO}") from None
    return frames, [f"{i:05d}" for i in range(len(frames))], fps


SHORT_CLIP_SAMPLING = ("linspace", "repeat_last")


def sample_frame_indices(num_frames: int, num_samples: int = 16, short: str = "linspace") -> np.ndarray:
    """``num_samples`` frame indices of a clip of ``num_frames`` frames.

    A clip with more frames than samples: spread evenly (np.linspace, truncated), as released. A shorter
    clip: ``linspace`` (litelvlm's default) spreads the repeats over the clip, so every 4-frame InternVideo2
    chunk spans time; ``repeat_last`` keeps every frame once and repeats the last one, as the released
    ``EncPreprocessor_VideoGPTPlus`` pads."""
    if num_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if short not in SHORT_CLIP_SAMPLING:
        raise ValueError(f"short clip sampling must be one of {SHORT_CLIP_SAMPLING}, got {short!r}")
    if num_frames < num_samples and short == "repeat_last":
        return np.array(list(range(num_frames)) + [num_frames - 1] * (num_samples - num_frames))
    return np.linspace(0, num_frames - 1, num_samples).astype(int)


def split_clips(num_frames: int, clip_length: int | None = 64) -> list[range]:
    """Consecutive clips of at most ``clip_length`` frames covering the video (None: one clip, the whole video)."""
    if clip_length is None:
        return [range(0, num_frames)]
    if clip_length < 1:
        raise ValueError(f"clip_length must be >= 1 or None (whole video), got {clip_length}")
    return [range(s, min(s + clip_length, num_frames)) for s in range(0, num_frames, clip_length)]


def write_overlay_mp4(frames: np.ndarray, masks: np.ndarray, path: str | Path, fps: float = 10.0) -> Path:
    """``frames`` (T, H, W, 3) with each expression's masks (E, T, H, W) blended in (``litelvlm.viz.mask_overlay``),
    written as mp4."""
    from litelvlm.viz import mask_overlay

    return write_mp4(np.stack([mask_overlay(f, masks[:, t]) for t, f in enumerate(frames)]), path, fps)


def write_mp4(frames: np.ndarray, path: str | Path, fps: float = 10.0) -> Path:
    """Write (T, H, W, 3) uint8 frames as an H.264 mp4 (even sizes are padded) with PyAV."""
    import av

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    padded = np.zeros((t, h + h % 2, w + w % 2, 3), dtype=np.uint8)
    padded[:, :h, :w] = frames
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height, stream.pix_fmt = padded.shape[2], padded.shape[1], "yuv420p"
        for frame in padded:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out

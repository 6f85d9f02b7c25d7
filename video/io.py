"""Reading videos (mp4 or a folder of JPEG frames), sampling frames, splitting clips, writing mp4."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["read_video", "read_frame_folder", "sample_frame_indices", "split_clips", "write_mp4", "FRAME_SUFFIXES",
           "SHORT_CLIP_SAMPLING"]

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_frame_folder(folder: str | Path) -> tuple[np.ndarray, list[str]]:
    """All frames of a folder (sorted by name) as (T, H, W, 3) uint8, and their names without suffix."""
    root = Path(folder)
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise ValueError(f"no frames ({', '.join(FRAME_SUFFIXES)}) in {root}")
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    if len({f.shape for f in frames}) != 1:
        raise ValueError(f"frames in {root} have different sizes: {sorted({f.shape for f in frames})}")
    return np.stack(frames), [p.stem for p in files]


def _read_mp4_decord(path: Path) -> tuple[np.ndarray, float]:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    return reader.get_batch(list(range(len(reader)))).asnumpy(), float(reader.get_avg_fps())


def _read_mp4_av(path: Path) -> tuple[np.ndarray, float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        fps = float(stream.average_rate or 0) or 25.0
    if not frames:
        raise ValueError(f"no decodable frames in {path}")
    return np.stack(frames), fps


def read_video(path: str | Path, backend: str | None = None) -> tuple[np.ndarray, list[str], float]:
    """(frames (T, H, W, 3) uint8, frame names, fps) from an mp4 (decord if installed, else PyAV) or a
    folder of frames (names from files, fps 0)."""
    p = Path(path)
    if p.is_dir():
        frames, names = read_frame_folder(p)
        return frames, names, 0.0
    if not p.is_file():
        raise FileNotFoundError(f"video not found: {p}")
    backend = backend or ("decord" if importlib.util.find_spec("decord") else "av")
    readers = {"decord": _read_mp4_decord, "av": _read_mp4_av}
    if backend not in readers:
        raise ValueError(f"unknown video backend {backend!r}: choose decord or av")
    try:
        frames, fps = readers[backend](p)
    except (ImportError, ValueError):
        raise
    except Exception as err:  # decoders raise their own error types for corrupt files
        raise ValueError(f"cannot decode video {p} with {backend}: {err}") from None
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
    if num_frames == num_samples:
        return np.arange(num_frames)
    return np.linspace(0, num_frames - 1, num_samples).astype(int)


def split_clips(num_frames: int, clip_length: int | None = 64) -> list[range]:
    """Consecutive clips of at most ``clip_length`` frames covering the video (None: one clip, the whole video)."""
    if clip_length is None:
        return [range(0, num_frames)]
    if clip_length < 1:
        raise ValueError(f"clip_length must be >= 1 or None (whole video), got {clip_length}")
    return [range(s, min(s + clip_length, num_frames)) for s in range(0, num_frames, clip_length)]


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

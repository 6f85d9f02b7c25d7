"""Pictures of the visual tokens each sampled frame sends to VideoGLaMM's LLM, for both streams.

Per sampled frame, two tiles: the CLIP stream (CLIP's centre-cropped view, one cell per CLIP patch: the
patches of the LLM tokens sent are framed blue; with a clip-level method, the patches of cells kept but
carried by an earlier frame's token (reused, not sent again) are framed red; dropped ones dimmed) and the
video stream (InternVideo2's view, the whole frame squashed to a square, one cell per 8x8 LLM token)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from litelvlm.pruning import cell_tokens
from litelvlm.viz import (DROPPED_COLOUR, HIGHLIGHT_COLOUR, KEPT_COLOUR, Figure, center_crop_square, kept_token_map, text_font,
                          text_px, wrap_text)

__all__ = ["StreamGeometry", "FrameTokens", "frame_tokens", "kept_token_figures", "kept_token_sheet"]

TILE = 192  # pixels per tile side: a multiple of 24 and of 8


@dataclass(frozen=True)
class StreamGeometry:
    """What each stream's encoder sees and the grids of its tokens."""

    clip_crop: int  # CLIP's centre crop side (336)
    clip_grid: int  # CLIP patches per side (24)
    image_grid: int  # LLM tokens per side of the CLIP stream (12: one per 2x2 cell)
    video_size: int  # InternVideo2's input side (224; the frame is resized, not cropped)
    video_grid: int  # LLM tokens per side of the video stream (8)


@dataclass
class FrameTokens:
    """One sampled frame's LLM visual tokens: the CLIP patches they cover, and the video tokens sent."""

    frame: int  # index of the frame in the video
    clip_sent: np.ndarray  # CLIP patch indices covered by the CLIP-stream tokens sent
    clip_reused: np.ndarray  # CLIP patch indices of cells kept but carried by an earlier frame's token
    video_sent: np.ndarray  # video-grid indices of the video tokens sent
    image_tokens: float  # LLM tokens of the CLIP stream

    @property
    def tokens(self) -> float:
        return self.image_tokens + len(self.video_sent)


def frame_tokens(result, expression: int, geometry: StreamGeometry) -> list[list[FrameTokens]]:
    """Per clip, per sampled frame, what ``result`` (a ``VideoSegmentationResult``) sent for ``expression``."""
    empty = np.zeros(0, dtype=np.int64)
    all_video = np.arange(geometry.video_grid**2)
    cell = geometry.clip_grid // geometry.image_grid
    members = cell_tokens((geometry.clip_grid, geometry.clip_grid), cell).numpy()
    rows, out = 0, []
    for clip in result.sampled_frames:
        frames = []
        for frame in clip:
            if result.frame_tokens is not None:  # a clip-level method's own record
                record = result.frame_tokens[expression][rows]
                frames.append(FrameTokens(frame, record.clip_indices.numpy(), members[record.reused_cells.numpy()].reshape(-1),
                                          record.video_cells.numpy(), len(record.image_cells)))
            else:  # per-frame methods send every video token and the same CLIP quota per frame
                frames.append(FrameTokens(frame, np.asarray(result.kept[expression][rows]), empty, all_video,
                                          result.clip_tokens_per_frame))
            rows += 1
        out.append(frames)
    return out


def _tile(view: np.ndarray, grid: int, sent: np.ndarray, reused: np.ndarray) -> np.ndarray:
    kept = np.union1d(sent, reused).astype(np.int64)
    return kept_token_map(view, (grid, grid), kept, reused if len(reused) else None, crop=TILE)


def _count(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.1f}"


def _frame_label(tokens: FrameTokens, geometry: StreamGeometry) -> list[str]:
    reused = f", {len(tokens.clip_reused) // (geometry.clip_grid // geometry.image_grid) ** 2} reused" if len(tokens.clip_reused) else ""
    return [f"frame {tokens.frame}", f"{_count(tokens.image_tokens)} CLIP + {len(tokens.video_sent)} video{reused}"]


def kept_token_sheet(video: np.ndarray, frames: list[FrameTokens], geometry: StreamGeometry, per_row: int = 4) -> np.ndarray:
    """The tiles of ``frames`` (two per frame: CLIP stream, video stream), ``per_row`` frames a row, each pair
    labelled with the frame index and its token counts in text sized to the sheet (``litelvlm.viz.text_px``)."""
    gap, pair_w = 12, 2 * TILE + 4
    cols = min(per_row, len(frames))
    width = cols * pair_w + (cols - 1) * gap
    font = text_font(text_px(width))
    step = round(text_px(width) * 1.3)
    labels = [[line for text in _frame_label(tokens, geometry) for line in wrap_text(text, font, pair_w)] for tokens in frames]
    label = step * max(len(lines) for lines in labels) + 4
    rows = -(-len(frames) // cols)
    sheet = Image.new("RGB", (width, rows * (label + TILE) + (rows - 1) * gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (tokens, lines) in enumerate(zip(frames, labels)):
        x, y = (i % cols) * (pair_w + gap), (i // cols) * (label + TILE + gap)
        image = video[tokens.frame]
        clip_view = center_crop_square(image, geometry.clip_crop)
        video_view = np.asarray(Image.fromarray(image).resize((geometry.video_size, geometry.video_size), Image.BILINEAR))
        sheet.paste(Image.fromarray(_tile(clip_view, geometry.clip_grid, tokens.clip_sent, tokens.clip_reused)), (x, y + label))
        sheet.paste(Image.fromarray(_tile(video_view, geometry.video_grid, tokens.video_sent, np.zeros(0))), (x + TILE + 4, y + label))
        for n, line in enumerate(lines):
            draw.text((x, y + 2 + n * step), line, fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


def kept_token_figures(video: np.ndarray, result, texts, geometry: StreamGeometry) -> list[tuple[int, int, Figure]]:
    """(expression, clip, titled figure) for every expression and clip of ``result``: the kept-token sheet of the
    clip's sampled frames, with the method, the tokens sent against the unpruned count, and a legend."""
    per_frame = geometry.image_grid**2 + geometry.video_grid**2
    out = []
    for e, text in enumerate(texts):
        for c, frames in enumerate(frame_tokens(result, e, geometry)):
            sent = sum(f.tokens for f in frames)
            reused = sum(len(f.clip_reused) for f in frames)
            where = f", clip {c + 1} of {len(result.sampled_frames)}" if len(result.sampled_frames) > 1 else ""
            pruning = ("no pruning (method none)" if result.method == "none" else f"method {result.method}")
            title = [f"Visual tokens sent to the LLM per sampled frame, expression {e + 1} of {len(texts)}{where}",
                     f"'{text}'",
                     f"{pruning}: {_count(sent)} of {len(frames) * per_frame} LLM visual tokens for {len(frames)} sampled frames "
                     f"({geometry.image_grid}x{geometry.image_grid} CLIP-stream + {geometry.video_grid}x{geometry.video_grid} "
                     "video tokens each, unpruned)",
                     f"each frame: left, CLIP's {geometry.clip_crop}x{geometry.clip_crop} centre crop, one cell per patch "
                     f"({geometry.clip_grid}x{geometry.clip_grid}); right, InternVideo2's view of the whole frame, one cell per "
                     f"video token ({geometry.video_grid}x{geometry.video_grid})"]
            legend = [(KEPT_COLOUR, "sent to the LLM (framed blue): CLIP patches of the CLIP-stream tokens sent; video tokens sent")]
            if reused:
                legend.append((HIGHLIGHT_COLOUR, "reused (framed red): kept, but an earlier frame's token carries it, not sent again"))
            legend.append((DROPPED_COLOUR, "dropped (dimmed): never seen by the LLM"))
            out.append((e, c, Figure(kept_token_sheet(video, frames, geometry), title, legend)))
    return out

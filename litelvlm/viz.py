"""Pictures of what pruning kept and what segmentation found (PIL + numpy only), and image decoding."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFile, ImageFont, UnidentifiedImageError

__all__ = ["kept_token_map", "mask_overlay", "annotate", "text_font", "text_px", "wrap_text", "fit_display", "save_png",
           "save_annotated_png", "load_rgb", "to_rgb8", "center_crop_square", "strict_image_loading", "SIXTEEN_BIT_MODES",
           "PictureLimit", "InputTooLarge", "Figure", "PALETTE", "PALETTE_NAMES", "KEPT_COLOUR", "HIGHLIGHT_COLOUR",
           "DROPPED_COLOUR", "DISPLAY_WIDTH", "DISPLAY_LONGEST"]

PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230]],
    dtype=np.uint8,
)
PALETTE_NAMES = ("red", "green", "yellow", "blue", "orange", "purple", "cyan", "magenta")  # PALETTE's colours, in order
KEPT_COLOUR = (40, 110, 255)  # blue tint: kept tokens (context tokens when similarity tokens are highlighted)
HIGHLIGHT_COLOUR = (255, 40, 40)  # red tint: highlighted kept tokens (LiteLVLM's similarity tokens)
DROPPED_COLOUR = (50, 50, 50)  # dropped tokens are dimmed to a quarter of their brightness

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

# Pictures are drawn to be read when shown DISPLAY_WIDTH pixels wide (a page's result column): their text is
# READABLE_PX there, so it grows with the picture. A page shows large pictures at most DISPLAY_LONGEST on a side.
DISPLAY_WIDTH = 600
READABLE_PX = 14
MIN_TEXT_PX = 13
DISPLAY_LONGEST = 1280


@contextlib.contextmanager
def strict_image_loading() -> Iterator[None]:
    """Make Pillow raise on truncated data for the duration (another module may have relaxed
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` globally)."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255: the high byte (value >> 8), as OpenCV (the released evaluations' reader) and Pillow's
    16-bit RGB decoding do."""
    return (values.astype(np.uint32) >> 8).astype(np.uint8)


def to_rgb8(image: Image.Image) -> np.ndarray:
    """A decoded PIL image as (H, W, 3) uint8.

    8-bit modes (RGB, L, 1, P, RGBA, LA, CMYK, ...) go through ``convert("RGB")`` (alpha dropped);
    16-bit grayscale (I;16*, or I with values in 0..65535, taken as 16-bit) keeps its high byte (value >> 8)
    instead of the saturation ``convert`` gives; 16-bit RGB(A) PNGs are decoded to 8 bits by PIL itself (high byte).
    Other modes (32-bit integers beyond 16 bits, floats) raise a ``ValueError``."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"32-bit integer pixels ({values.min()}..{values.max()}) do not fit 16 bits: "
                             "save the image as 8-bit or 16-bit")
        gray = _sixteen_to_eight(values)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F" or mode.startswith("I;"):
        raise ValueError(f"unsupported pixel format {mode!r} (floating-point or signed/32-bit samples): save the image "
                         "as 8-bit or 16-bit RGB or grayscale")
    if mode in ("P", "PA") and "transparency" in image.info:  # via RGBA, as PIL asks (else it warns)
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"))


class InputTooLarge(ValueError):
    """An input over a size limit, refused before it is decoded."""


@dataclass(frozen=True)
class PictureLimit:
    """The largest picture accepted: ``max_pixels`` in all, and sides at most ``max_aspect``:1 (CLIP resizes the
    short side to 336 pixels, so a thin strip would grow to hundreds of megapixels)."""

    max_pixels: int
    max_aspect: float = 10.0

    def describe(self) -> str:
        return f"at most {self.max_pixels / 1e6:.1f} megapixels, sides at most {self.max_aspect:g}:1"

    def check(self, width: int, height: int, what: str) -> None:
        """Raise ``InputTooLarge`` naming ``what`` when a ``width`` x ``height`` picture is over the limit."""
        if width * height > self.max_pixels:
            raise InputTooLarge(f"{what} is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels): "
                                f"{self.describe()} are accepted; downscale it")
        if max(width, height) > self.max_aspect * min(width, height):
            raise InputTooLarge(f"{what} is {width}x{height} pixels: {self.describe()} are accepted; crop it")


def load_rgb(path: str | Path, *, limit: PictureLimit | None = None, name: str | None = None) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 array, with one clear error naming the file if it cannot be read.

    Every pixel is decoded here, so a truncated or corrupt file is refused (PIL's ``LOAD_TRUNCATED_IMAGES``
    is held off while decoding, whoever set it); see ``to_rgb8`` for the pixel formats. ``limit``: refuse a
    larger picture from its header, before decoding it. ``name``: what messages call the file instead of
    ``image <path>`` (a server names an upload without showing where it lies)."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a folder, not an image file")
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {p}")
    what = name or f"image {p}"
    try:
        with strict_image_loading(), Image.open(p) as im:
            if limit is not None:
                limit.check(im.width, im.height, what)
            im.load()
            return to_rgb8(im)
    except InputTooLarge:
        raise
    except Exception as err:  # PIL raises several types for corrupt files; to_rgb8 a ValueError
        reason = "cannot identify image file" if isinstance(err, UnidentifiedImageError) else str(err)  # PIL's names the path
        if name:  # other decoder messages may name it too
            reason = reason.replace(str(p), name)
        hint = "; the file is incomplete (cut short): copy or download it again" if "truncated" in reason else ""
        raise ValueError(f"cannot read {what}: {reason}{hint}") from None


def center_crop_square(image: np.ndarray, size: int) -> np.ndarray:
    """What CLIP's processor sees: shortest side resized to ``size``, then a centred ``size`` crop."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    resized = Image.fromarray(image).resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    rw, rh = resized.size
    left, top = (rw - size) // 2, (rh - size) // 2
    return np.asarray(resized.crop((left, top, left + size, top + size)))


def kept_token_map(
    image: np.ndarray, grid: tuple[int, int], kept: np.ndarray, highlight: np.ndarray | None = None, *, crop: int = 336
) -> np.ndarray:
    """The CLIP view of ``image`` with dropped patches dimmed; kept patches in ``highlight`` (e.g. the
    similarity tokens of LiteLVLM) tinted and framed red, other kept patches (context) tinted and framed blue."""
    view = center_crop_square(image, crop).astype(np.float32)
    gh, gw = grid
    ph, pw = crop // gh, crop // gw
    state = np.zeros(gh * gw, dtype=np.int8)  # 0 dropped, 1 kept, 2 highlighted
    state[np.asarray(kept, dtype=np.int64)] = 1
    if highlight is not None:
        state[np.asarray(highlight, dtype=np.int64)] = 2
    cell = np.kron(state.reshape(gh, gw), np.ones((ph, pw), dtype=np.int8))
    out = view.copy()
    out[cell == 0] *= 0.25
    out[cell == 1] = 0.6 * out[cell == 1] + 0.4 * np.array(KEPT_COLOUR)
    out[cell == 2] = 0.6 * out[cell == 2] + 0.4 * np.array(HIGHLIGHT_COLOUR)
    out[::ph, :] = out[::ph, :] * 0.7
    out[:, ::pw] = out[:, ::pw] * 0.7
    ys, xs = np.arange(cell.shape[0]) % ph, np.arange(cell.shape[1]) % pw
    edge = ((ys == 0) | (ys == ph - 1))[:, None] | ((xs == 0) | (xs == pw - 1))[None, :]  # each cell's 1-pixel frame
    out[edge & (cell == 1)] = KEPT_COLOUR
    out[edge & (cell == 2)] = HIGHLIGHT_COLOUR
    return out.clip(0, 255).astype(np.uint8)


def mask_overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``image`` (H, W, 3) with each boolean mask of ``masks`` (E, H, W) blended in its own colour. Where masks
    overlap, diagonal stripes take turns between their colours, so every expression stays visible even when
    masks coincide (stripes ~1/160 of the longest side wide, at least 3 pixels)."""
    masks = np.asarray(masks, dtype=bool)
    out = np.array(image, dtype=np.uint8)
    if not masks.size or not masks.any():
        return out
    h, w = image.shape[:2]
    covering = masks.sum(axis=0, dtype=np.uint16)
    stripe = max(3, round(max(h, w) / 160))
    diagonal = (np.arange(h, dtype=np.int32)[:, None] + np.arange(w, dtype=np.int32)[None, :]) // stripe
    turn = (diagonal % np.maximum(covering, 1)).astype(np.uint16)  # which of the covering masks shows here
    seen = np.zeros((h, w), dtype=np.uint16)  # masks before this one covering each pixel
    for i, mask in enumerate(masks):
        shown = mask & (seen == turn)
        seen += mask
        out[shown] = ((1 - alpha) * out[shown] + alpha * PALETTE[i % len(PALETTE)]).clip(0, 255).astype(np.uint8)
    return out


def fit_display(picture: np.ndarray, longest: int = DISPLAY_LONGEST) -> np.ndarray:
    """``picture`` downscaled (area averaging) so its longest side is at most ``longest``; smaller ones as they are."""
    h, w = picture.shape[:2]
    if max(h, w) <= longest:
        return picture
    scale = longest / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(np.asarray(picture, dtype=np.uint8)).resize(size, Image.BOX))


def text_px(width: int) -> int:
    """The text size (pixels) of a picture ``width`` pixels wide: ``READABLE_PX`` once it is shown ``DISPLAY_WIDTH``
    wide, at least ``MIN_TEXT_PX``."""
    return max(MIN_TEXT_PX, round(READABLE_PX * width / DISPLAY_WIDTH))


def text_font(size: int = 13):
    """Pillow's default font at ``size`` pixels (the fixed bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # pragma: no cover - Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def wrap_text(text: str, font, width: int) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels wide (a longer word stays whole)."""
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line]


def annotate(picture: np.ndarray, title: Sequence[str], legend: Sequence[tuple[Sequence[int], str]] = (), *,
             min_width: int = 420) -> np.ndarray:
    """``picture`` (H, W, 3) uint8 on a white page: ``title`` lines above it (the first larger and black, the
    others dark grey; long lines wrapped) and below it the ``legend``, one (RGB colour, label) swatch per line.
    The text is sized to the page (``text_px``): readable once the page is shown ``DISPLAY_WIDTH`` wide."""
    picture = np.asarray(picture, dtype=np.uint8)
    h, w = picture.shape[:2]
    size = text_px(max(w, min_width))
    margin = max(8, size // 2)
    width = max(w, min_width) + 2 * margin
    font, large = text_font(size), text_font(round(size * 1.15))
    text_width = width - 2 * margin
    swatch, step = size - 1, round(size * 1.4)
    heading = [(line, large if i == 0 else font, (0, 0, 0) if i == 0 else (60, 60, 60))
               for i, text in enumerate(title) for line in wrap_text(text, large if i == 0 else font, text_width)]
    keys = [(colour, wrap_text(label, font, text_width - swatch - size // 2)) for colour, label in legend]
    head_h = margin + step * len(heading) + (margin // 2 if heading else 0)
    foot_h = (margin + step * sum(len(lines) for _, lines in keys)) if keys else 0
    page = Image.new("RGB", (width, head_h + h + foot_h + margin), (255, 255, 255))
    page.paste(Image.fromarray(picture), ((width - w) // 2, head_h))
    draw = ImageDraw.Draw(page)
    y = margin
    for line, face, colour in heading:
        draw.text((margin, y), line, fill=colour, font=face)
        y += step
    y = head_h + h + margin
    for colour, lines in keys:
        draw.rectangle([margin, y + 2, margin + swatch, y + 2 + swatch], fill=tuple(int(c) for c in colour), outline=(0, 0, 0))
        for line in lines:
            draw.text((margin + swatch + size // 2, y), line, fill=(0, 0, 0), font=font)
            y += step
    return np.asarray(page)


def save_png(array: np.ndarray, path: str | Path, text: dict[str, str] | None = None) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG, creating parent folders; ``text``: PNG text chunks
    (e.g. ``Title``, ``Description``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    info = None
    if text:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
    Image.fromarray(np.asarray(array)).save(p, pnginfo=info)
    return p


@dataclass
class Figure:
    """A picture with its title lines and legend (colour, label) rows: rendered for a page, or saved as PNG."""

    picture: np.ndarray
    title: Sequence[str]
    legend: Sequence[tuple[Sequence[int], str]] = ()

    def render(self, longest: int | None = None) -> np.ndarray:
        """The titled page; ``longest``: the picture first downscaled to at most that many pixels a side (a page's
        display size: its text is then sized for the smaller page)."""
        picture = self.picture if longest is None else fit_display(self.picture, longest)
        return annotate(picture, self.title, self.legend)

    def save(self, path: str | Path) -> Path:
        return save_annotated_png(self.picture, path, self.title, self.legend)


def save_annotated_png(picture: np.ndarray, path: str | Path, title: Sequence[str],
                       legend: Sequence[tuple[Sequence[int], str]] = ()) -> Path:
    """``annotate(picture, title, legend)`` written as PNG; the title and legend also go into the file's
    ``Title`` and ``Description`` text chunks, for tools that read them."""
    text = {"Title": " / ".join(title), "Description": "; ".join(label for _, label in legend)}
    return save_png(annotate(picture, title, legend), path, text)

"""Reading benchmark images strictly: a truncated or corrupt file is an error naming it, never partial pixels.

* ``check_image_file(path, what)``: the cheap check run over every image of a run before the model loads: the file
  exists, its header decodes (format, mode, size), and it is complete: a JPEG ends with its EOI marker
  (``FF D9``), a PNG with its ``IEND`` chunk. A file without that ending (truncated, or with trailing bytes) is
  decoded in full to decide; other formats are always decoded in full.
* ``read_rgb_image(path, what)``: (H, W, 3) uint8 RGB pixels with Pillow, refusing truncated data whatever
  ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` says. 16-bit images keep their high byte (value >> 8, the rule Pillow
  applies to 16-bit RGB PNGs and OpenCV to every 16-bit PNG), instead of saturating at 255 as ``convert("RGB")``
  does for 16-bit greyscale.
* ``read_label_image(path, what)``: a single-channel label PNG (palette, greyscale, 8 or 16 bit) as (H, W) uint8
  integer labels; values above 255 are refused.
* ``open_image(path, what)``: ``Image.open`` for all of these: truncated data refused, and an image with more pixels
  than Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS`` x 2, e.g. a 30000 x 30000 PNG of 100 KB) is an
  error naming the file, raised when the header is read (before any pixel is decoded).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from litelvlm.viz import SIXTEEN_BIT_MODES, strict_image_loading

from .files import DataFileError, require_regular_file

__all__ = ["ImageInfo", "open_image", "check_image_file", "check_rgb_image", "check_label_image", "read_rgb_image",
           "read_label_image"]

_JPEG_END = b"\xff\xd9"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_RGB_CONVERTIBLE = ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "La")
_LABEL_MODES = ("P", "L", "1")


@dataclass(frozen=True)
class ImageInfo:
    """What an image header says: format (JPEG, PNG, ...), Pillow mode and size."""

    path: Path
    format: str
    mode: str
    width: int
    height: int

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.height, self.width)


def _fix(what: str) -> str:
    return f"re-extract or re-download the {what}"


@contextmanager
def open_image(path: str | os.PathLike, what: str = "image") -> Iterator[Image.Image]:
    """``Image.open(path)`` under ``strict_image_loading``; a decompression bomb is a ``DataFileError`` naming
    ``what`` and the file (other errors are the caller's to word)."""
    try:
        with strict_image_loading(), Image.open(path) as img:
            yield img
    except Image.DecompressionBombError as err:
        raise DataFileError(f"{what} {path} is refused: {err}; an image this large is not a benchmark image: "
                            f"{_fix(what)}") from None


def _ends_with(path: Path, ending: bytes) -> bool:
    size = path.stat().st_size
    if size < len(ending):
        return False
    with open(path, "rb") as handle:
        handle.seek(size - len(ending))
        return handle.read(len(ending)) == ending


def _decode(path: Path, what: str, allow_truncated: bool = False) -> None:
    try:
        with open_image(path, what) as img:
            img.load()
    except DataFileError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        if allow_truncated:
            print(f"warning: {what} {path} is truncated or corrupt ({err}); decoding what it holds as allowed",
                  file=sys.stderr, flush=True)
            return
        raise DataFileError(f"{what} {path} is truncated or corrupt ({err}); {_fix(what)}") from None


def check_image_file(path: str | os.PathLike, what: str = "image", allow_truncated: bool = False) -> ImageInfo:
    """Header, size and completeness of the image ``path`` (see the module docstring); errors name the file.

    ``allow_truncated``: an incomplete file is only warned about (stderr, naming it), for callers whose decoder
    keeps the part that is there (OpenCV, as the released RefCOCO evaluation); the header must still decode."""
    path = Path(path)
    require_regular_file(path, what)
    try:
        with open_image(path, what) as img:
            info = ImageInfo(path, str(img.format), img.mode, int(img.size[0]), int(img.size[1]))
    except DataFileError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise DataFileError(f"{what} {path} is truncated, corrupt or not an image ({err}); {_fix(what)}") from None
    ending = {"JPEG": _JPEG_END, "MPO": _JPEG_END, "PNG": _PNG_END}.get(info.format)
    if ending is None or not _ends_with(path, ending):
        _decode(path, what, allow_truncated)
    return info


def _is_sixteen_bit(mode: str, fmt: str) -> bool:
    return mode in SIXTEEN_BIT_MODES or (mode == "I" and fmt == "PNG")


def _require_rgb_mode(mode: str, fmt: str | None, what: str, path) -> None:
    if not (mode in _RGB_CONVERTIBLE or _is_sixteen_bit(mode, fmt)):
        raise DataFileError(f"{what} {path} has the pixel mode {mode}, which is not an 8/16-bit colour or "
                            f"greyscale image; convert it to an 8-bit RGB JPEG or PNG")


def _require_label_mode(mode: str, what: str, path) -> None:
    if mode not in _LABEL_MODES and mode not in SIXTEEN_BIT_MODES and mode != "I":
        raise DataFileError(f"{what} {path}: expected a palette or greyscale PNG (8 or 16 bit), got mode {mode}")


def check_rgb_image(path: str | os.PathLike, what: str = "image") -> ImageInfo:
    """``check_image_file`` plus: ``read_rgb_image`` can turn its pixel mode into RGB."""
    info = check_image_file(path, what)
    _require_rgb_mode(info.mode, info.format, what, info.path)
    return info


def check_label_image(path: str | os.PathLike, what: str = "label PNG") -> ImageInfo:
    """``check_image_file`` plus: a single-channel mode ``read_label_image`` reads (palette, 8/16-bit grey)."""
    info = check_image_file(path, what)
    _require_label_mode(info.mode, what, info.path)
    return info


def read_rgb_image(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of ``path``, decoded by ``litelvlm.viz.to_rgb8`` (16-bit images keep their high
    byte); errors name the file."""
    from litelvlm.viz import to_rgb8

    path = Path(path)
    require_regular_file(path, what)
    try:
        with open_image(path, what) as img:
            img.load()
            _require_rgb_mode(img.mode, str(img.format), what, path)
            return np.ascontiguousarray(to_rgb8(img))
    except DataFileError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise DataFileError(f"{what} {path} is truncated or corrupt ({err}); {_fix(what)}") from None


def read_label_image(path: str | os.PathLike, what: str = "label PNG") -> np.ndarray:
    """(H, W) uint8 integer labels of a single-channel PNG: palette indices or 8/16-bit grey values (<= 255)."""
    path = Path(path)
    require_regular_file(path, what)
    try:
        with open_image(path, what) as img:
            img.load()
            _require_label_mode(img.mode, what, path)
            if img.mode in _LABEL_MODES:
                return np.asarray(img, dtype=np.uint8)
            values = np.asarray(img).astype(np.int64)  # 16-bit or 32-bit grey: the values must fit a label
            low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
            if low < 0 or high > 255:
                raise DataFileError(f"{what} {path} holds the label value {high if high > 255 else low} (mode "
                                    f"{img.mode}); labels must be 0..255 (object ids, 255 void): fix the file")
            return values.astype(np.uint8)
    except DataFileError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise DataFileError(f"{what} {path} is truncated or corrupt ({err}); {_fix(what)}") from None

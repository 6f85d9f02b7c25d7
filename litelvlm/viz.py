"""Pictures of what pruning kept and what segmentation found (PIL + numpy only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["kept_token_map", "mask_overlay", "save_png", "load_rgb", "center_crop_square", "PALETTE"]

PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230]],
    dtype=np.uint8,
)


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 array, with one clear error if it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as err:  # PIL raises several types for corrupt files
        raise ValueError(f"cannot read image {p}: {err}") from None


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
    similarity tokens of LiteLVLM) tinted red, other kept patches (context) tinted blue."""
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
    out[cell == 1] = 0.6 * out[cell == 1] + 0.4 * np.array([40, 110, 255])
    out[cell == 2] = 0.6 * out[cell == 2] + 0.4 * np.array([255, 40, 40])
    out[::ph, :] = out[::ph, :] * 0.7
    out[:, ::pw] = out[:, ::pw] * 0.7
    return out.clip(0, 255).astype(np.uint8)


def mask_overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``image`` (H, W, 3) with each boolean mask of ``masks`` (E, H, W) blended in its own colour."""
    out = image.astype(np.float32).copy()
    for i, mask in enumerate(np.asarray(masks, dtype=bool)):
        out[mask] = (1 - alpha) * out[mask] + alpha * PALETTE[i % len(PALETTE)]
    return out.clip(0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG, creating parent folders."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(p)
    return p
